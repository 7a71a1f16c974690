"""The audit trail: append-only, hash-chained AuditEvents for every change of access.

Each event's hash covers its own fields and the previous event's hash, so editing, inserting or
deleting a row breaks the chain where it happened, and `verify()` (manage.py verify_audit) names
the place. The hash is an HMAC-SHA256 under the first of WARDEN_AUDIT_KEYS, a key the database
never holds, so someone with the database role cannot recompute a rewritten chain; the other
keys still verify the events they signed (rotation). Events written before the key have a plain
SHA-256 and verify only as the unbroken start of the chain: the first keyed event's link vouches
for them. Writers serialise on one locked head row, which also records the newest event, so a
truncated tail is noticed too. Secrets never reach an event: values under secret-looking keys
are redacted before they are written.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, models, transaction
from django.utils import timezone

from access.models import AuditChain, AuditEvent
from core.types import Actor

CHAIN = "audit"
SYSTEM = "system"
REDACTED = "[redacted]"
# What an event shows outside Warden (the CSV/JSON export and the API), in this order.
EVENT_FIELDS = (
    "seq",
    "created_at",
    "actor_name",
    "action",
    "object_type",
    "object_id",
    "object_repr",
    "before",
    "after",
    "reason",
    "request_id",
    "prev_hash",
    "hash",
)
_SECRET_KEY = re.compile(r"token|password|passwd|secret|private|credential|kubeconfig", re.I)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

# The web request or Celery task being served; set by RequestIdMiddleware and Celery signals.
current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar(
    "warden_request_id", default=""
)


# Set only while the test harness empties the database between tests (tests/fixtures/audit.py):
# SQLite's DELETE trigger asks this through warden_audit_may_empty().
emptying_allowed: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "warden_audit_emptying_allowed", default=False
)


def may_empty() -> bool:
    return emptying_allowed.get()


def new_request_id(offered: str | None = None) -> str:
    """The caller's X-Request-ID when it is a sane token, else a new one."""
    if offered and _REQUEST_ID.match(offered):
        return offered
    return uuid.uuid4().hex


def redact(value: Any) -> Any:
    """A copy of `value` with everything under a secret-looking key replaced."""
    if isinstance(value, Mapping):
        return {
            str(k): (REDACTED if _SECRET_KEY.search(str(k)) and v not in (None, "") else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [redact(v) for v in items]
    return value


def _plain(value: Any) -> Any:
    """JSON-ready data exactly as the database will give it back (so the hash stays stable)."""
    if value is None:
        return None
    return json.loads(json.dumps(redact(value), cls=DjangoJSONEncoder, sort_keys=True))


def key_id(key: str) -> str:
    """A short name for a key, kept on each event it signs (it gives nothing of the key away)."""
    return hashlib.sha256(b"warden-audit-key-id:" + key.encode()).hexdigest()[:12]


def _keys() -> dict[str, str]:
    """Every configured key by its id; the first signs."""
    return {key_id(key): key for key in settings.WARDEN_AUDIT_KEYS}


def _signing_key_id() -> str:
    """The id of the key that signs new events; empty without a key (local use only)."""
    keys = list(settings.WARDEN_AUDIT_KEYS)
    return key_id(keys[0]) if keys else ""


class UnknownKey(LookupError):
    """The event was signed with a key that is not among WARDEN_AUDIT_KEYS."""


def compute_hash(event: AuditEvent) -> str:
    """The event's hash: HMAC-SHA256 under the key its key_id names, or plain SHA-256 for an
    event written before keys (key_id empty)."""
    payload: dict[str, Any] = {
        "seq": event.seq,
        "created_at": event.created_at.astimezone(UTC).isoformat(),
        "actor_id": event.actor_id,
        "actor_name": event.actor_name,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "object_repr": event.object_repr,
        "before": event.before,
        "after": event.after,
        "reason": event.reason,
        "request_id": event.request_id,
        "prev_hash": event.prev_hash,
    }
    if not event.key_id:
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()
    key = _keys().get(event.key_id)
    if key is None:
        raise UnknownKey(event.key_id)
    payload["key_id"] = event.key_id
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hmac.new(key.encode(), canonical.encode(), hashlib.sha256).hexdigest()


def _head() -> AuditChain:
    """The chain's head row, locked until the surrounding transaction ends."""
    try:
        return AuditChain.objects.select_for_update().get(name=CHAIN)
    except AuditChain.DoesNotExist:
        try:
            with transaction.atomic():
                AuditChain.objects.create(name=CHAIN)
        except IntegrityError:
            pass  # another writer made it first
        return AuditChain.objects.select_for_update().get(name=CHAIN)


@dataclass(frozen=True)
class Entry:
    """One event for record_many(): the arguments record() takes, kept for later."""

    action: str
    actor: Actor = None
    actor_name: str = ""
    obj: models.Model | None = None
    object_type: str = ""
    object_id: Any = ""
    object_repr: str = ""
    before: Any = None
    after: Any = None
    reason: str = ""


def record(
    action: str,
    *,
    actor: Actor = None,
    actor_name: str = "",
    obj: models.Model | None = None,
    object_type: str = "",
    object_id: Any = "",
    object_repr: str = "",
    before: Any = None,
    after: Any = None,
    reason: str = "",
) -> AuditEvent:
    """Append one event. Inside the caller's transaction: the event exists iff the change does."""
    entry = Entry(
        action,
        actor=actor,
        actor_name=actor_name,
        obj=obj,
        object_type=object_type,
        object_id=object_id,
        object_repr=object_repr,
        before=before,
        after=after,
        reason=reason,
    )
    return record_many([entry])[0]


def record_many(entries: Iterable[Entry]) -> list[AuditEvent]:
    """Append events in the order given, as record() would one by one, under one lock of the
    chain's head: one INSERT and one head update however many there are (a batch of rotations
    audits its steps this way). Inside the caller's transaction, like record()."""
    entries = list(entries)
    if not entries:
        return []
    request_id = current_request_id.get()
    with transaction.atomic():
        head = _head()
        now = timezone.now()
        seq, prev_hash = head.last_seq, head.last_hash
        signer = _signing_key_id()
        events = []
        for entry in entries:
            seq += 1
            event = _event(entry, seq, now, request_id, prev_hash)
            event.key_id = signer
            event.hash = prev_hash = compute_hash(event)
            events.append(event)
        AuditEvent.objects.bulk_create(events)
        head.last_seq, head.last_hash = seq, prev_hash
        head.save(update_fields=["last_seq", "last_hash"])
    return events


def _event(entry: Entry, seq: int, now: datetime, request_id: str, prev_hash: str) -> AuditEvent:
    """The event for one entry at its place in the chain (its hash still to be computed)."""
    obj = entry.obj
    object_type, object_id, object_repr = entry.object_type, entry.object_id, entry.object_repr
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or obj.pk
        object_repr = object_repr or str(obj)
    user = entry.actor if getattr(entry.actor, "is_authenticated", False) else None
    return AuditEvent(
        seq=seq,
        created_at=now,
        actor_id=user.pk if user is not None else None,
        actor_name=entry.actor_name or (user.get_username() if user is not None else SYSTEM),
        action=entry.action,
        object_type=object_type,
        object_id=str(object_id or ""),
        object_repr=object_repr[:255],
        before=_plain(entry.before),
        after=_plain(entry.after),
        reason=entry.reason,
        request_id=request_id,
        prev_hash=prev_hash,
    )


@dataclass
class Verification:
    """What verify() found: how many events it checked and every break in the chain."""

    checked: int = 0
    # Events written before the audit key (plain SHA-256), and the newest of them.
    unkeyed: int = 0
    last_unkeyed: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(chunk_size: int = 2000) -> Verification:
    """Walk the whole chain in order and report every event that does not hold together."""
    result = Verification()
    previous_seq, previous_hash = 0, ""
    keyed_seen = False
    unkeyed_until = settings.WARDEN_AUDIT_UNKEYED_UNTIL
    for event in _in_order(chunk_size):
        result.checked += 1
        if not event.key_id:
            result.unkeyed += 1
            result.last_unkeyed = event.seq
            problem = _unkeyed_problem(event.seq, keyed_seen, unkeyed_until)
            if problem:
                result.problems.append(problem)
        keyed_seen = keyed_seen or bool(event.key_id)
        if event.seq != previous_seq + 1:
            result.problems.append(
                f"events #{previous_seq + 1}..#{event.seq - 1} are missing (deleted)"
            )
        elif event.prev_hash != previous_hash:
            result.problems.append(
                f"event #{event.seq} does not follow event #{previous_seq} (inserted or replaced)"
            )
        try:
            intact = hmac.compare_digest(compute_hash(event), event.hash)
        except UnknownKey:
            result.problems.append(
                f"event #{event.seq} was signed with key {event.key_id}, which is not among "
                "WARDEN_AUDIT_KEYS (keep a rotated-out key listed while its events are kept)"
            )
        else:
            if not intact:
                result.problems.append(f"event #{event.seq} was changed after it was written")
        previous_seq, previous_hash = event.seq, event.hash
    head = AuditChain.objects.filter(name=CHAIN).first()
    if head is not None and (head.last_seq, head.last_hash) != (previous_seq, previous_hash):
        result.problems.append(
            f"the chain ends at event #{head.last_seq} but the newest event is "
            f"#{previous_seq} (events were removed from the end)"
        )
    return result


def _unkeyed_problem(seq: int, keyed_seen: bool, unkeyed_until: int | None) -> str:
    """Why an event without a key may not be where it is ("" when it may). Unkeyed events are
    the release before's: the start of the chain, or — once WARDEN_AUDIT_UNKEYED_UNTIL says where
    they end — anywhere up to there (a rolling upgrade interleaves old and new writers)."""
    if unkeyed_until is not None:
        if seq <= unkeyed_until:
            return ""
        return (
            f"event #{seq} has no key, but WARDEN_AUDIT_UNKEYED_UNTIL says every event after "
            f"#{unkeyed_until} is keyed (rewritten without the key)"
        )
    if keyed_seen:
        return f"event #{seq} has no key after keyed events (rewritten without the key)"
    return ""


def _in_order(chunk_size: int) -> Iterator[AuditEvent]:
    return AuditEvent.objects.order_by("seq").iterator(chunk_size=chunk_size)
