"""The audit trail: append-only, hash-chained, verified, and free of secrets."""

from __future__ import annotations

import threading

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from access import audit
from access.models import AuditEvent
from tests.fixtures.services import needs_postgresql

pytestmark = pytest.mark.django_db


def tamper(sql: str, *params: object) -> None:
    """Change the trail behind Warden's back, as someone with database access could."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE access_auditevent DISABLE TRIGGER USER")
        else:
            cursor.execute("DROP TRIGGER access_auditevent_append_only")
            cursor.execute("DROP TRIGGER access_auditevent_no_delete")
        cursor.execute(sql, params)


def three_events() -> list[AuditEvent]:
    return [
        audit.record("grant.created", object_type="grant", object_id=1, after={"role": "viewer"}),
        audit.record("grant.revoked", object_type="grant", object_id=1, reason="done"),
        audit.record("cluster.retired", object_type="cluster", object_id=7),
    ]


def test_an_untouched_trail_verifies():
    events = three_events()

    result = audit.verify()

    assert result.ok, result.problems
    assert result.checked == 3
    assert [e.seq for e in events] == [1, 2, 3]
    assert events[1].prev_hash == events[0].hash


def test_the_database_refuses_to_change_an_event():
    event = three_events()[0]

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(reason="nothing to see")


def test_an_edited_event_is_detected():
    events = three_events()
    tamper("UPDATE access_auditevent SET reason = %s WHERE id = %s", "routine", events[1].pk)

    result = audit.verify()

    assert result.problems == ["event #2 was changed after it was written"]


def test_a_deleted_event_is_detected():
    events = three_events()
    tamper("DELETE FROM access_auditevent WHERE id = %s", events[1].pk)

    assert audit.verify().problems == ["events #2..#2 are missing (deleted)"]


def test_events_removed_from_the_end_are_detected():
    events = three_events()
    tamper("DELETE FROM access_auditevent WHERE id = %s", events[2].pk)

    problems = audit.verify().problems

    assert problems == [
        "the chain ends at event #3 but the newest event is #2 (events were removed from the end)"
    ]


def test_a_rewritten_chain_link_is_detected():
    events = three_events()
    # a forger recomputes the edited event's own hash but cannot fix the next event's link
    forged = AuditEvent.objects.get(pk=events[1].pk)
    forged.reason = "routine"
    tamper(
        "UPDATE access_auditevent SET reason = %s, hash = %s WHERE id = %s",
        "routine",
        audit.compute_hash(forged),
        forged.pk,
    )

    assert audit.verify().problems == ["event #3 does not follow event #2 (inserted or replaced)"]


def test_the_verify_command_says_whether_the_trail_is_intact(capsys):
    events = three_events()
    call_command("verify_audit")
    assert "intact: 3 events" in capsys.readouterr().out

    tamper("UPDATE access_auditevent SET action = %s WHERE id = %s", "noop", events[0].pk)
    with pytest.raises(CommandError, match="broken in 1 place"):
        call_command("verify_audit")
    assert "event #1 was changed" in capsys.readouterr().err


def test_secrets_never_reach_an_event():
    event = audit.record(
        "cluster.registered",
        after={"api_url": "https://k8s", "token": "s3cr3t", "nested": [{"password": "pw"}]},
    )

    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.after == {
        "api_url": "https://k8s",
        "token": "[redacted]",
        "nested": [{"password": "[redacted]"}],
    }
    assert "s3cr3t" not in str(stored.after)
    assert audit.verify().ok


def test_an_event_names_the_web_request_that_made_it(client, django_user_model):
    operator = django_user_model.objects.create_user("olivia", password="pw", is_staff=True)
    client.force_login(operator)

    response = client.get("/healthz", headers={"X-Request-ID": "req-42"})
    assert response["X-Request-ID"] == "req-42"
    # a made-up id is not echoed into logs and audit events
    response = client.get("/healthz", headers={"X-Request-ID": "bad id\nwith newline"})
    assert response["X-Request-ID"] != "bad id\nwith newline"
    assert len(response["X-Request-ID"]) == 32


def test_the_actor_is_kept_by_name_when_the_account_goes(django_user_model):
    approver = django_user_model.objects.create_user("judy")
    event = audit.record("request.approved", actor=approver)

    approver.delete()

    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.actor_name == "judy"
    assert audit.verify().ok


def test_events_recorded_together_chain_exactly_like_events_recorded_one_by_one(
    django_user_model,
):
    # given: an operator's change audited alone, then a batch of rotations audited together
    operator = django_user_model.objects.create_user("olivia")
    first = audit.record("cluster.registered", actor=operator, object_type="cluster", object_id=7)

    batch = audit.record_many(
        [
            audit.Entry("serviceaccount.rotated", object_type="sa", object_id=n, after={"n": n})
            for n in (1, 2, 3)
        ]
        + [audit.Entry("serviceaccount.token_revoked", actor=operator, after={"token": "s3cr3t"})]
    )
    last = audit.record("cluster.retired", object_type="cluster", object_id=7)

    # then: one chain, in the order given, each link to the one before, secrets redacted
    assert [e.seq for e in [first, *batch, last]] == [1, 2, 3, 4, 5, 6]
    assert [e.prev_hash for e in batch] == [first.hash, *(e.hash for e in batch[:-1])]
    assert last.prev_hash == batch[-1].hash
    stored = AuditEvent.objects.get(seq=5)
    assert (stored.actor_name, stored.after) == ("olivia", {"token": "[redacted]"})
    assert AuditEvent.objects.get(seq=3).object_id == "2"
    result = audit.verify()
    assert result.ok, result.problems
    assert result.checked == 6


def test_an_edit_inside_a_batch_of_events_is_detected():
    audit.record_many([audit.Entry("grant.created", object_id=n) for n in range(4)])
    tamper("UPDATE access_auditevent SET object_id = %s WHERE seq = 2", "99")

    assert audit.verify().problems == ["event #2 was changed after it was written"]


def test_an_empty_batch_records_nothing():
    assert audit.record_many([]) == []

    assert AuditEvent.objects.count() == 0
    assert audit.record("grant.created").seq == 1


def test_a_batch_whose_change_is_rolled_back_leaves_no_event_and_no_gap():
    with pytest.raises(RuntimeError), transaction.atomic():
        audit.record_many([audit.Entry("grant.created"), audit.Entry("grant.revoked")])
        raise RuntimeError("the change failed")

    assert AuditEvent.objects.count() == 0
    assert audit.record("grant.created").seq == 1
    assert audit.verify().ok


@pytest.mark.django_db(transaction=True)
def test_batches_and_single_events_written_at_once_form_one_unbroken_chain():
    needs_postgresql("concurrent writers need PostgreSQL's row locks (CI runs it)")
    start = threading.Barrier(4)

    def write(batched: bool) -> None:
        try:
            start.wait()
            for round_ in range(5):
                if batched:
                    audit.record_many([audit.Entry("grant.created", object_id=n) for n in range(7)])
                else:
                    audit.record("grant.revoked", object_id=round_)
        finally:
            connection.close()

    writers = [threading.Thread(target=write, args=(n % 2 == 0,)) for n in range(4)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()

    result = audit.verify()
    assert result.ok, result.problems
    assert result.checked == 2 * 5 * 7 + 2 * 5
