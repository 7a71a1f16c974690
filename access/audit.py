"""The audit trail: append-only, hash-chained AuditEvents for every change of access.

Each event's hash covers its own fields and the previous event's hash, so editing, inserting or
deleting a row breaks the chain where it happened, and `verify()` (manage.py verify_audit) names
the place. Writers serialise on one locked head row, which also records the newest event, so a
truncated tail is noticed too. Secrets never reach an event: values under secret-looking keys
are redacted before they are written.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, models, transaction
from django.utils import timezone

from access.models import AuditChain, AuditEvent

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


def compute_hash(event: AuditEvent) -> str:
    payload = {
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
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


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
    actor: Any = None
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
    actor: Any = None,
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
        events = []
        for entry in entries:
            seq += 1
            event = _event(entry, seq, now, request_id, prev_hash)
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
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(chunk_size: int = 2000) -> Verification:
    """Walk the whole chain in order and report every event that does not hold together."""
    result = Verification()
    previous_seq, previous_hash = 0, ""
    for event in _in_order(chunk_size):
        result.checked += 1
        if event.seq != previous_seq + 1:
            result.problems.append(
                f"events #{previous_seq + 1}..#{event.seq - 1} are missing (deleted)"
            )
        elif event.prev_hash != previous_hash:
            result.problems.append(
                f"event #{event.seq} does not follow event #{previous_seq} (inserted or replaced)"
            )
        if compute_hash(event) != event.hash:
            result.problems.append(f"event #{event.seq} was changed after it was written")
        previous_seq, previous_hash = event.seq, event.hash
    head = AuditChain.objects.filter(name=CHAIN).first()
    if head is not None and (head.last_seq, head.last_hash) != (previous_seq, previous_hash):
        result.problems.append(
            f"the chain ends at event #{head.last_seq} but the newest event is "
            f"#{previous_seq} (events were removed from the end)"
        )
    return result


def _in_order(chunk_size: int) -> Iterator[AuditEvent]:
    return AuditEvent.objects.order_by("seq").iterator(chunk_size=chunk_size)
