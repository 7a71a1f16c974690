"""Failure at every step of a rotation leaves a working token, and the next attempt finishes."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from clusters import serviceaccounts
from clusters.choices import GenerationState, RotationStatus
from clusters.models import ManagedServiceAccount, RotationRun, TokenGeneration
from tests.clusters.sa_helpers import (
    active,
    authenticated_as,
    create_namespace,
    declare,
    delivered_token,
)
from tests.fixtures.services import needs_postgresql

pytestmark = pytest.mark.django_db
SUBJECT = "system:serviceaccount:default:deployer"


@pytest.fixture
def in_use(make_cluster, people):
    """An account whose generation 1 is delivered to its consumer: (account, cluster, sim)."""
    cluster, sim = make_cluster()
    account = declare(cluster, people["payments"], consumer=(cluster, "default", "deployer-token"))
    assert serviceaccounts.rotate_account(account.pk).status == RotationStatus.SUCCEEDED
    return account, cluster, sim


def test_a_failed_delivery_leaves_the_old_token_in_force_and_the_retry_finishes(
    make_cluster, people
):
    # given: the consumer lives on another cluster, in a namespace not made yet
    cluster, sim = make_cluster()
    consumer, consumer_sim = make_cluster()
    create_namespace(consumer_sim, "ci")
    account = declare(cluster, people["payments"], consumer=(consumer, "ci", "deployer-token"))
    serviceaccounts.rotate_account(account.pk)
    old = delivered_token(consumer_sim, "ci")
    consumer_sim.faults.error_rate, consumer_sim.faults.status = 1.0, 500

    # when: the rotation cannot deliver
    failed = serviceaccounts.rotate_account(account.pk, force=True)

    # then: recorded, audited, and generation 1 is still the one in force and valid
    assert failed.status == RotationStatus.FAILED
    assert "delivery failed" in failed.error
    assert active(account).number == 1
    assert authenticated_as(sim, old) == SUBJECT
    pending = account.generations.get(state=GenerationState.PENDING)
    assert pending.number == 2
    account.refresh_from_db()
    assert account.consecutive_failures == 1
    assert serviceaccounts.due_account_ids() == [account.pk]  # beat will come back to it

    # when: the consumer's cluster answers again
    consumer_sim.faults.clear()
    retried = serviceaccounts.rotate_account(account.pk)

    # then: the same generation 2 is finished, not a third one
    assert retried.status == RotationStatus.SUCCEEDED, retried.error
    assert active(account).number == 2
    assert account.generations.count() == 2
    assert authenticated_as(sim, delivered_token(consumer_sim, "ci")) == SUBJECT
    assert authenticated_as(sim, old) == SUBJECT  # in its grace period


def test_an_unreachable_cluster_when_issuing_changes_nothing_in_force(in_use):
    account, _cluster, sim = in_use
    old = delivered_token(sim)
    sim.faults.unreachable = True
    try:
        failed = serviceaccounts.rotate_account(account.pk, force=True)
    finally:
        sim.faults.unreachable = False

    assert failed.status == RotationStatus.FAILED
    assert "unreachable" in failed.error
    assert active(account).number == 1
    assert authenticated_as(sim, old) == SUBJECT
    assert delivered_token(sim) == old

    retried = serviceaccounts.rotate_account(account.pk)
    assert retried.status == RotationStatus.SUCCEEDED, retried.error
    assert active(account).number == 2


def test_an_unreachable_cluster_when_revoking_is_retried_until_the_old_token_is_gone(in_use):
    account, _cluster, sim = in_use
    old = delivered_token(sim)
    serviceaccounts.rotate_account(account.pk, force=True)
    TokenGeneration.objects.filter(account=account, number=1).update(
        grace_until=timezone.now() - timedelta(seconds=1)
    )

    sim.faults.unreachable = True
    try:
        failed = serviceaccounts.rotate_account(account.pk)
    finally:
        sim.faults.unreachable = False

    assert failed.status == RotationStatus.FAILED
    assert account.generations.get(number=1).state == GenerationState.GRACE
    assert serviceaccounts.due_account_ids() == [account.pk]
    assert serviceaccounts.rotate_account(account.pk).status == RotationStatus.SUCCEEDED
    assert authenticated_as(sim, old) is None
    assert authenticated_as(sim, delivered_token(sim)) == SUBJECT


def abandon_mid_rotation(account, issue=True):
    """A worker claims the rotation, gets as far as issuing, and dies: no release, no finish."""
    lease = serviceaccounts.claim(account.pk)
    assert lease is not None
    attempt = serviceaccounts.attempt.Attempt(
        account=ManagedServiceAccount.objects.get(pk=account.pk),
        lease=lease,
        started_at=timezone.now(),
        started=0.0,
    )
    generation = serviceaccounts.rotation._start_generation(attempt, None)
    if issue:
        serviceaccounts.rotation._issue(attempt, generation)
    return lease, generation


def expire_lease(account):
    ManagedServiceAccount.objects.filter(pk=account.pk).update(
        lease_until=timezone.now() - timedelta(seconds=1)
    )


def test_a_worker_killed_mid_rotation_leaves_a_working_token_and_its_work_is_resumed(in_use):
    # given: a worker died after issuing generation 2, before delivering it
    account, _cluster, sim = in_use
    old = delivered_token(sim)
    _lease, generation = abandon_mid_rotation(account)

    # then: while its lease runs, nobody else rotates, and the consumer's token still works
    assert serviceaccounts.rotate_account(account.pk, force=True) is None
    assert authenticated_as(sim, old) == SUBJECT
    assert delivered_token(sim) == old

    # when: the lease runs out and the next attempt comes
    expire_lease(account)
    run = serviceaccounts.rotate_account(account.pk)

    # then: it finishes the dead worker's generation 2 (no third generation)
    assert run.status == RotationStatus.SUCCEEDED, run.error
    assert run.steps[0] == "resumed generation 2, left unfinished"
    assert active(account).pk == generation.pk
    assert account.generations.count() == 2
    assert authenticated_as(sim, delivered_token(sim)) == SUBJECT
    assert authenticated_as(sim, old) == SUBJECT  # generation 1 in its grace period


def test_a_token_a_dead_worker_got_but_never_recorded_is_revoked_on_resume(in_use, rbac):
    # given: the worker made the bound Secret and got a token, then died before recording it
    account, cluster, sim = in_use
    _lease, generation = abandon_mid_rotation(account, issue=False)
    from clusters import k8s, services

    client = k8s.client_for(services.endpoint_for(cluster))
    bound = serviceaccounts.issuing._create_bound_secret(client, account, generation)
    lost, _expiry = client.request_token("default", "deployer", 3600, bound)
    assert authenticated_as(sim, lost) == SUBJECT

    # when
    expire_lease(account)
    run = serviceaccounts.rotate_account(account.pk)

    # then: the lost token was revoked (its Secret remade), the delivered one works
    assert run.status == RotationStatus.SUCCEEDED, run.error
    assert authenticated_as(sim, lost) is None
    assert authenticated_as(sim, delivered_token(sim)) == SUBJECT


def test_a_rotation_whose_lease_was_taken_over_cannot_record_anything(in_use):
    account, _cluster, _sim = in_use
    stale_lease, generation = abandon_mid_rotation(account, issue=False)
    expire_lease(account)
    assert serviceaccounts.claim(account.pk) is not None  # another worker takes it

    attempt = serviceaccounts.attempt.Attempt(
        account=account,
        lease=stale_lease,
        started_at=timezone.now(),
        started=0.0,
    )
    with pytest.raises(serviceaccounts.LeaseLost):
        serviceaccounts.rotation._issue(attempt, generation)
    generation.refresh_from_db()
    assert generation.issued == {}


def test_two_requests_before_the_worker_runs_make_one_generation(
    in_use, django_capture_on_commit_callbacks
):
    account, _cluster, _sim = in_use
    with django_capture_on_commit_callbacks(execute=True) as queued:
        serviceaccounts.request_rotation(account, reason="suspected leak")
        serviceaccounts.request_rotation(account, reason="suspected leak, again")

    assert len(queued) == 2  # two tasks ran (eagerly); the second found nothing left to do
    assert active(account).number == 2
    assert account.generations.count() == 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_rotation_requests_produce_one_generation(make_cluster, people):
    needs_postgresql("concurrent writers need PostgreSQL's row locks (CI runs it)")
    cluster, sim = make_cluster()
    account = declare(cluster, people["payments"], consumer=(cluster, "default", "deployer-token"))
    serviceaccounts.rotate_account(account.pk)
    sim.faults.latency_s = 0.2  # a rotation takes a while: the others arrive during it
    start = threading.Barrier(3)
    results = []

    def work():
        try:
            start.wait()
            results.append(serviceaccounts.rotate_account(account.pk, force=True))
        finally:
            connection.close()

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sim.faults.latency_s = 0

    assert results.count(None) == 2  # the others found the lease held
    assert account.generations.count() == 2
    assert RotationRun.objects.filter(account=account).count() == 2
    assert authenticated_as(sim, delivered_token(sim)) == SUBJECT
    from access import audit

    assert audit.verify().ok  # the audit chain holds together under concurrent writers
