"""Namespace patterns as Warden reads them: when one pattern's namespaces are all another's.

Grants, requests and role definitions name namespaces or fnmatch patterns over the letters of a
namespace name (a-z, 0-9 and -): `*` any run of letters, `?` one letter, `[a-c]` / `[xyz]` one
of these (`[!...]` none of these). Matching a name against a pattern is fnmatch; deciding that
every name one *pattern* matches is matched by others is not: `fnmatch("team-*", "team-?")` is
true because `?` matches the character `*`, yet `team-*` reaches `team-ab` and `team-?` does
not. So both patterns are read as automata over that alphabet, and the question is answered by
walking the pair (a subset construction), with a shortest name as the counterexample.
"""

from __future__ import annotations

import string
from collections import deque
from collections.abc import Iterable

# The letters of a namespace name (a DNS label): nothing else can ever be matched.
ALPHABET = string.ascii_lowercase + string.digits + "-"
_ANY = frozenset(ALPHABET)
# A token of a pattern: a set of letters for one position, or STAR for any run of them.
STAR: frozenset[str] | None = None
Token = frozenset[str] | None


def tokens(pattern: str) -> tuple[Token, ...]:
    """The pattern as positions, read the way fnmatch reads it."""
    out: list[Token] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            if not out or out[-1] is not STAR:
                out.append(STAR)
        elif ch == "?":
            out.append(_ANY)
        elif ch == "[":
            j = i
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                out.append(frozenset())  # an unclosed `[` is the letter `[`: no name has it
            else:
                out.append(_bracket(pattern[i:j]))
                i = j + 1
        else:
            out.append(frozenset(ch) & _ANY)
    return tuple(out)


def _bracket(inside: str) -> frozenset[str]:
    negate = inside.startswith("!")
    if negate:
        inside = inside[1:]
    chosen: set[str] = set()
    k = 0
    while k < len(inside):
        if k + 2 < len(inside) and inside[k + 1] == "-":
            low, high = inside[k], inside[k + 2]
            chosen.update(c for c in ALPHABET if low <= c <= high)
            k += 3
        else:
            chosen.add(inside[k])
            k += 1
    letters = frozenset(chosen) & _ANY
    return _ANY - letters if negate else letters


# A state of the walk: for each pattern (by index), the positions it may be at.
_State = frozenset[tuple[int, int]]


def _closure(patterns: tuple[tuple[Token, ...], ...], state: Iterable[tuple[int, int]]) -> _State:
    out: set[tuple[int, int]] = set()
    todo = list(state)
    while todo:
        k, pos = todo.pop()
        if (k, pos) in out:
            continue
        out.add((k, pos))
        if pos < len(patterns[k]) and patterns[k][pos] is STAR:
            todo.append((k, pos + 1))  # a star may match nothing
    return frozenset(out)


def _step(patterns: tuple[tuple[Token, ...], ...], state: _State, letter: str) -> _State:
    moved: set[tuple[int, int]] = set()
    for k, pos in state:
        if pos >= len(patterns[k]):
            continue
        token = patterns[k][pos]
        if token is None:  # STAR
            moved.add((k, pos))
        elif letter in token:
            moved.add((k, pos + 1))
    return _closure(patterns, moved)


def _accepts(patterns: tuple[tuple[Token, ...], ...], state: _State) -> bool:
    return any(pos == len(patterns[k]) for k, pos in state)


def _start(patterns: tuple[tuple[Token, ...], ...]) -> _State:
    return _closure(patterns, [(k, 0) for k in range(len(patterns))])


def _search(first: Iterable[str], second: Iterable[str], want_second: bool) -> str | None:
    """A shortest name matched by a pattern of `first` and (want_second) by one of `second`,
    or (not want_second) by none of `second`; None if there is no such name."""
    a = tuple(tokens(p) for p in first)
    b = tuple(tokens(p) for p in second)
    start = (_start(a), _start(b))
    seen = {start}
    queue: deque[tuple[tuple[_State, _State], str]] = deque([(start, "")])
    while queue:
        (sa, sb), name = queue.popleft()
        if _accepts(a, sa) and _accepts(b, sb) == want_second:
            return name
        for letter in ALPHABET:
            nxt = (_step(a, sa, letter), _step(b, sb, letter))
            if not nxt[0]:
                continue  # no name of `first` goes on this way
            if nxt not in seen:
                seen.add(nxt)
                queue.append((nxt, name + letter))
    return None


def outside(wanted: str, held: Iterable[str]) -> str | None:
    """A namespace `wanted` reaches that none of `held` does; None when wanted ⊆ held."""
    return _search([wanted], list(held), want_second=False)


def is_subset(wanted: str, held: Iterable[str]) -> bool:
    """Every namespace `wanted` matches is matched by one of `held`."""
    return outside(wanted, held) is None


def overlap(a: Iterable[str], b: Iterable[str]) -> bool:
    """Some namespace is matched by a pattern of `a` and by one of `b`."""
    return _search(list(a), list(b), want_second=True) is not None
