"""Issue 15, item 12: the audit chain resists someone holding the database role.

Each event's hash is an HMAC under a key from the environment (WARDEN_AUDIT_KEYS, first = the
one that signs; the others still verify, so keys rotate), which the database never holds: a
forger who recomputes hashes consistently without it is caught. Events written before the key
(plain SHA-256) still verify, as an unbroken start of the chain only. The database refuses to
change or delete an event, on SQLite too, and deleting a role records the policies it takes along.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, timedelta

import pytest
from django.db import DatabaseError, connection, transaction
from django.urls import reverse

from access import audit
from access.models import ApprovalPolicy, AuditChain, AuditEvent, Role

pytestmark = pytest.mark.django_db
KEY = "the-key-in-the-secret-store-0123456789"
NEXT_KEY = "the-next-key-after-rotation-9876543210"


@pytest.fixture(autouse=True)
def keyed(settings):
    settings.WARDEN_AUDIT_KEYS = [KEY]


def with_triggers_off(sql: str, *params: object) -> None:
    """What someone with the database role does: switch off the guards, then write."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE access_auditevent DISABLE TRIGGER USER")
        else:
            cursor.execute("DROP TRIGGER IF EXISTS access_auditevent_append_only")
            cursor.execute("DROP TRIGGER IF EXISTS access_auditevent_no_delete")
        cursor.execute(sql, params)


def payload(event: AuditEvent) -> dict:
    return {
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


def sha256_of(event: AuditEvent) -> str:
    """The hash anyone can compute: plain SHA-256 of the event, as before the key."""
    canonical = json.dumps(payload(event), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def rewrite_from(seq: int, reason: str, *, key_fields: dict | None = None) -> None:
    """Edit event #seq and recompute every later hash, the head included, without the key."""
    prev = ""
    for event in AuditEvent.objects.order_by("seq"):
        if event.seq >= seq:
            if event.seq == seq:
                event.reason = reason
            event.prev_hash = prev
            for name, value in (key_fields or {}).items():
                setattr(event, name, value)
            event.hash = sha256_of(event)
            fields = ["reason", "prev_hash", "hash", *(key_fields or {})]
            sets = ", ".join(f"{name} = %s" for name in fields)
            with_triggers_off(
                f"UPDATE access_auditevent SET {sets} WHERE id = %s",  # noqa: S608 (our names)
                *[getattr(event, name) for name in fields],
                event.pk,
            )
        prev = event.hash
    AuditChain.objects.filter(name=audit.CHAIN).update(last_hash=prev)


def events(n: int) -> list[AuditEvent]:
    return [audit.record("grant.created", object_type="grant", object_id=i) for i in range(n)]


def test_a_forger_with_the_database_role_cannot_rewrite_the_chain_consistently():
    # given a trail of a grant's history
    events(4)
    # when someone with the database role rewrites event #2 and rehashes everything after it
    rewrite_from(2, "routine change, nothing to see")
    # then verification, which holds the key, catches it
    result = audit.verify()
    assert not result.ok
    assert any("#2" in problem for problem in result.problems)


def test_a_forger_cannot_pass_keyed_events_off_as_written_before_the_key():
    events(4)
    # a downgrade: mark events as unkeyed (written before the upgrade) and rehash them plainly
    rewrite_from(3, "routine", key_fields={"key_id": ""})

    problems = audit.verify().problems

    assert any("#3" in problem for problem in problems)


def test_events_written_before_the_key_still_verify(settings):
    # given events written by the release before (no key: plain SHA-256)
    settings.WARDEN_AUDIT_KEYS = []
    events(3)
    # when the upgrade brings a key and Warden writes on
    settings.WARDEN_AUDIT_KEYS = [KEY]
    events(2)
    # then the whole trail verifies, saying which part is unkeyed
    result = audit.verify()
    assert result.ok, result.problems
    assert (result.checked, result.unkeyed) == (5, 3)


def test_an_edit_among_events_written_before_the_key_is_still_caught(settings):
    settings.WARDEN_AUDIT_KEYS = []
    events(3)
    settings.WARDEN_AUDIT_KEYS = [KEY]
    events(2)
    # the forger rewrites the old, unkeyed part: the first keyed event's link gives it away
    rewrite_from(2, "routine")

    assert not audit.verify().ok


def test_a_chain_rewritten_whole_without_the_key_is_caught_once_the_upgrade_is_noted(settings):
    settings.WARDEN_AUDIT_KEYS = []
    events(2)
    settings.WARDEN_AUDIT_KEYS = [KEY]
    events(3)
    # the operator noted where the unkeyed events end, as the upgrade note asks
    settings.WARDEN_AUDIT_UNKEYED_UNTIL = 2
    assert audit.verify().ok
    # the forger rewrites the whole chain as if no key had ever signed it
    rewrite_from(1, "routine", key_fields={"key_id": ""})

    problems = audit.verify().problems

    assert any("WARDEN_AUDIT_UNKEYED_UNTIL" in problem for problem in problems)


def test_a_rolling_upgrade_interleaves_old_and_new_writers_and_still_verifies(settings):
    # old replicas (no key) and new ones (keyed) write in turn while the upgrade rolls out
    for keys in ([], [KEY], [], [KEY]):
        settings.WARDEN_AUDIT_KEYS = keys
        events(1)
    assert not audit.verify().ok  # until the operator says where the old release stopped
    settings.WARDEN_AUDIT_UNKEYED_UNTIL = audit.verify().last_unkeyed
    assert settings.WARDEN_AUDIT_UNKEYED_UNTIL == 3
    events(1)

    assert audit.verify().ok


def test_keys_rotate_and_a_dropped_key_is_named(settings):
    events(2)
    settings.WARDEN_AUDIT_KEYS = [NEXT_KEY, KEY]
    events(2)
    assert audit.verify().ok

    settings.WARDEN_AUDIT_KEYS = [NEXT_KEY]
    problems = audit.verify().problems

    assert problems and all("WARDEN_AUDIT_KEYS" in problem for problem in problems)


def test_the_database_refuses_to_delete_an_event():
    event = events(2)[0]

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.count() == 2


@pytest.mark.parametrize("how", ["delete page", "delete selected"])
def test_deleting_a_role_in_the_admin_records_the_policies_it_takes_along(company, browser_as, how):
    # given a policy that governs one role only
    role = Role.objects.create(name="db-admin", display_name="DB admin", rank=50)
    policy = ApprovalPolicy.objects.create(
        name="DB admin on prod",
        environment="prod",
        role=role,
        approvals_required=2,
        max_duration=timedelta(days=1),
        default_duration=timedelta(hours=4),
    )
    glass = ApprovalPolicy.objects.exclude(pk=policy.pk).first()
    glass.break_glass_roles.add(role)
    # the operator, as directory sync makes a member of WARDEN_ADMIN_TEAMS
    company.users["olivia"].is_superuser = True
    company.users["olivia"].save(update_fields=["is_superuser"])
    admin = browser_as("olivia")
    # when the operator deletes the role
    if how == "delete page":
        url = reverse("admin:access_role_delete", args=[role.pk])
        answer = admin.post(url, {"post": "yes"})
    else:
        answer = admin.post(
            reverse("admin:access_role_changelist"),
            {"action": "delete_selected", "_selected_action": [role.pk], "post": "yes"},
        )
    assert answer.status_code == 302
    assert not Role.objects.filter(pk=role.pk).exists()
    # then the trail shows the role, the policy that went with it and the policy it left
    trail = {(e.action, e.object_type, e.object_id) for e in AuditEvent.objects.all()}
    assert ("role.deleted", "access.role", str(role.pk)) in trail
    assert ("policy.deleted", "access.approvalpolicy", str(policy.pk)) in trail
    assert ("policy.saved", "access.approvalpolicy", str(glass.pk)) in trail
    assert audit.verify().ok
