"""What applying a file would add, change and remove in Warden."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ascode.format import Declared, Item


@dataclass
class Change:
    """One difference between the file and Warden."""

    action: str  # add, change, remove, keep (not in the file, kept without --prune)
    kind: str
    item: Item
    before: Item | None = None
    fields: list[str] = field(default_factory=list)

    def text(self) -> str:
        sign = {"add": "+", "change": "~", "remove": "-", "keep": "?"}[self.action]
        line = f"{sign} {self.item.label}"
        if self.action == "change" and self.before is not None:
            shown = [
                f"{name}: {_show(self.before.data.get(name))} → {_show(self.item.data.get(name))}"
                for name in self.fields
            ]
            line += " (" + "; ".join(shown) + ")"
        if self.action == "keep":
            line += " — not in the file; kept (--prune would remove it)"
        return line


def _show(value: Any) -> str:
    if value in ("", None, [], {}):
        return "(none)"
    if isinstance(value, list | dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


@dataclass
class Diff:
    changes: list[Change] = field(default_factory=list)

    def of(self, action: str) -> list[Change]:
        return [c for c in self.changes if c.action == action]

    @property
    def empty(self) -> bool:
        return not any(c.action in ("add", "change", "remove") for c in self.changes)

    def counts(self) -> dict[str, int]:
        return dict(Counter(c.action for c in self.changes))

    def text(self) -> str:
        if not self.changes:
            return "No change: Warden already holds what the file says."
        return "\n".join(c.text() for c in self.changes)


def _compare_keyed(
    diff: Diff,
    kind: str,
    wanted: Mapping[tuple[Any, ...], Item],
    have: Mapping[tuple[Any, ...], Item],
    prune: bool,
    managed: bool,
    may_remove: bool = True,
) -> None:
    for key, item in wanted.items():
        old = have.get(key)
        if old is None:
            diff.changes.append(Change("add", kind, item))
            continue
        changed = [name for name in item.data if item.data[name] != old.data.get(name)]
        if changed:
            diff.changes.append(Change("change", kind, item, before=old, fields=changed))
    if not managed:
        return
    for key, item in have.items():
        if key not in wanted:
            action = "remove" if prune and may_remove else "keep"
            diff.changes.append(Change(action, kind, item))


def diff(wanted: Declared, have: Declared, *, prune: bool = False) -> Diff:
    """What applying `wanted` would change in `have` (Warden now)."""
    result = Diff()
    _compare_keyed(
        result, "role", wanted.roles, have.roles, prune, "roles" in wanted.sections, False
    )
    # Definitions are managed per role: a role of the file owns its definitions.
    file_roles = {key[0] for key in wanted.roles}
    have_defs = {k: v for k, v in have.definitions.items() if k[0] in file_roles}
    _compare_keyed(
        result, "definition", wanted.definitions, have_defs, prune, "roles" in wanted.sections
    )
    _compare_keyed(
        result, "policy", wanted.policies, have.policies, prune, "policies" in wanted.sections
    )
    _compare_keyed(result, "cluster", wanted.clusters, have.clusters, prune, False)
    if "clusters" in wanted.sections:
        for key, item in have.clusters.items():
            if key not in wanted.clusters:
                # Never retired by a file: listed so that the reader knows it is not declared.
                result.changes.append(Change("keep", "cluster", item))
    _compare_grants(result, wanted, have, prune)
    _compare_keyed(
        result,
        "service_account",
        wanted.service_accounts,
        have.service_accounts,
        prune,
        "service_accounts" in wanted.sections,
    )
    order = {
        "role": 0,
        "definition": 1,
        "policy": 2,
        "cluster": 3,
        "grant": 4,
        "service_account": 5,
    }
    actions = {"remove": 0, "change": 1, "add": 2, "keep": 3}
    result.changes.sort(key=lambda c: (order[c.kind], actions[c.action], c.item.label))
    return result


def _compare_grants(result: Diff, wanted: Declared, have: Declared, prune: bool) -> None:
    available: dict[tuple[Any, ...], list[Item]] = {}
    for item in have.grants:
        available.setdefault(item.key, []).append(item)
    for item in wanted.grants:
        matches = available.get(item.key)
        if matches:
            matches.pop(0)  # held already: nothing to do (a different reason is not a change)
        else:
            result.changes.append(Change("add", "grant", item))
    if "grants" not in wanted.sections:
        return
    for leftovers in available.values():
        for item in leftovers:
            result.changes.append(Change("remove" if prune else "keep", "grant", item))
