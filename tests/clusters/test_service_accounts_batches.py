"""Beat rotates due accounts in batches: each account keeps its own generation, run, audit
events and failures, and a batch costs the same five API calls per rotation."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from access import audit
from access.models import AuditEvent
from clusters import serviceaccounts
from clusters.choices import GenerationState, RotationStatus
from clusters.models import ManagedServiceAccount, RotationRun
from tests.clusters.sa_helpers import active, authenticated_as, declare, delivered_token
from tests.fixtures.services import needs_postgresql

pytestmark = pytest.mark.django_db


def subject(name: str) -> str:
    return f"system:serviceaccount:default:{name}"


def fleet(make_cluster, owner, per_cluster: int = 2, clusters: int = 2):
    """`per_cluster` accounts on each of `clusters` clusters, each delivering to its own
    Secret on its cluster, generation 1 in force: [(account, sim)], cluster by cluster."""
    made = []
    for _ in range(clusters):
        cluster, sim = make_cluster()
        for n in range(per_cluster):
            name = f"{cluster.name}-app{n}"[-40:].lstrip("-")
            account = declare(
                cluster,
                owner,
                name=name,
                consumer=(cluster, "default", f"{name}-token"),
                grace=timedelta(0),
            )
            made.append((account, sim))
    # (in a test whose transactions commit, declaring already queued each first rotation)
    serviceaccounts.rotate_accounts([a.pk for a, _ in made])
    assert [active(a).number for a, _ in made] == [1] * len(made)
    return made


def token_of(account, sim) -> str:
    return delivered_token(sim, "default", f"{account.name}-token")


def test_a_batch_rotates_every_account_with_its_own_generation_run_and_events(make_cluster, people):
    # given: four accounts on two clusters, generation 1 delivered to each consumer
    accounts = fleet(make_cluster, people["payments"])
    old = {a.pk: token_of(a, sim) for a, sim in accounts}
    ManagedServiceAccount.objects.update(next_rotation_at=timezone.now())

    # when: beat's batch rotates them
    runs = serviceaccounts.rotate_accounts([a.pk for a, _ in accounts])

    # then: each has generation 2 in force and delivered, generation 1 revoked, one run each
    # with the minimum five calls (the ownership read first), and its own "rotated" and
    # "token_revoked" events
    assert sorted(runs) == sorted(a.pk for a, _ in accounts)
    for account, sim in accounts:
        run = runs[account.pk]
        assert (run.status, run.api_calls, run.generation.number) == (
            RotationStatus.SUCCEEDED,
            5,
            2,
        ), run.error
        assert active(account).number == 2
        assert authenticated_as(sim, token_of(account, sim)) == subject(account.name)
        assert authenticated_as(sim, old[account.pk]) is None
        actions = list(
            AuditEvent.objects.filter(object_id=str(account.pk))
            .order_by("seq")
            .values_list("action", flat=True)
        )
        assert actions[-2:] == ["serviceaccount.rotated", "serviceaccount.token_revoked"]
    result = audit.verify()
    assert result.ok, result.problems


def test_an_unreachable_cluster_fails_only_its_own_accounts_and_is_asked_once(make_cluster, people):
    # given: a batch over two clusters, one of which stops answering
    accounts = fleet(make_cluster, people["payments"])
    (first, down), (second, _), (healthy, up), _ = accounts
    old = token_of(first, down)
    ManagedServiceAccount.objects.update(next_rotation_at=timezone.now())
    down.faults.unreachable = True
    try:
        runs = serviceaccounts.rotate_accounts([a.pk for a, _ in accounts])
    finally:
        down.faults.unreachable = False

    # then: the healthy cluster's accounts rotated; the other two failed, generation 1 still in
    # force and working, and the second did not wait for the dead cluster again
    assert runs[healthy.pk].status == RotationStatus.SUCCEEDED
    assert authenticated_as(up, token_of(healthy, up)) == subject(healthy.name)
    for account in (first, second):
        assert runs[account.pk].status == RotationStatus.FAILED
        assert active(account).number == 1
        account.refresh_from_db()
        assert account.consecutive_failures == 1
    assert "unreachable" in runs[first.pk].error
    assert "not tried again in this batch" in runs[second.pk].error
    assert authenticated_as(down, old) == subject(first.name)
    assert AuditEvent.objects.filter(action="serviceaccount.rotation_failed").count() == 2

    # when: the next attempt comes, it finishes the generation left pending
    retried = serviceaccounts.rotate_accounts([first.pk, second.pk])
    assert {r.status for r in retried.values()} == {RotationStatus.SUCCEEDED}
    assert active(first).number == 2
    assert first.generations.count() == 2
    assert authenticated_as(down, old) is None


def test_a_batch_leaves_an_account_another_worker_holds_alone(make_cluster, people):
    accounts = fleet(make_cluster, people["payments"], per_cluster=2, clusters=1)
    (held, _sim), (free, _) = accounts
    ManagedServiceAccount.objects.update(next_rotation_at=timezone.now())
    assert serviceaccounts.claim(held.pk) is not None  # another worker is rotating it

    runs = serviceaccounts.rotate_accounts([held.pk, free.pk])

    assert list(runs) == [free.pk]
    assert active(held).number == 1
    assert active(free).number == 2
    assert not RotationRun.objects.filter(account=held, generation__number=2).exists()
    # the batch gave back its own lease only
    held.refresh_from_db()
    free.refresh_from_db()
    assert held.lease_id and not free.lease_id


def test_a_failed_account_of_a_batch_is_retried_by_its_own_task(make_cluster, people):
    from clusters.tasks import rotate_service_accounts_task

    # given: the cluster throttles the first TokenRequest of the batch past the client's retries
    accounts = fleet(make_cluster, people["payments"], per_cluster=2, clusters=1)
    ManagedServiceAccount.objects.update(next_rotation_at=timezone.now())
    sim = accounts[0][1]
    sim.faults.throttle(5, retry_after=0)

    # when: beat's task rotates the batch (eager here: the retry runs at once)
    rotated = rotate_service_accounts_task([a.pk for a, _ in accounts])

    # then: one account failed in the batch, and its own task finished it
    assert rotated == 2
    failed = RotationRun.objects.filter(status=RotationStatus.FAILED)
    assert failed.count() == 1
    for account, _ in accounts:
        assert active(account).number == 2
        assert authenticated_as(sim, token_of(account, sim)) == subject(account.name)


def test_due_accounts_are_batched_with_the_others_of_their_cluster(make_cluster, people):
    first, _ = make_cluster()
    second, _ = make_cluster()
    declared = [
        declare(cluster, people["payments"], name=f"app{n}")
        for n, cluster in enumerate([first, second, first, second, first])
    ]
    ids = [a.pk for a in declared]

    batches = serviceaccounts.due_batches(2)

    by_cluster = {first.name: [ids[0], ids[2], ids[4]], second.name: [ids[1], ids[3]]}
    expected = by_cluster[min(by_cluster)] + by_cluster[max(by_cluster)]
    assert batches == [expected[0:2], expected[2:4], expected[4:5]]
    assert sorted(pk for batch in batches for pk in batch) == serviceaccounts.due_account_ids()


def test_a_retired_account_in_a_batch_is_revoked_while_the_others_rotate(make_cluster, people):
    accounts = fleet(make_cluster, people["payments"], per_cluster=2, clusters=1)
    (leaving, sim), (staying, _) = accounts
    old = token_of(leaving, sim)
    serviceaccounts.retire_service_account(leaving, reason="app decommissioned")
    ManagedServiceAccount.objects.filter(pk=staying.pk).update(next_rotation_at=timezone.now())

    runs = serviceaccounts.rotate_accounts([leaving.pk, staying.pk])

    assert runs[leaving.pk].status == RotationStatus.SUCCEEDED
    assert authenticated_as(sim, old) is None
    assert not leaving.generations.filter(state=GenerationState.ACTIVE).exists()
    assert active(staying).number == 2
    assert audit.verify().ok


@pytest.mark.django_db(transaction=True)
def test_a_batch_that_outlasts_its_lease_keeps_renewing_it(make_cluster, people, settings):
    needs_postgresql("concurrent readers need PostgreSQL (CI runs it)")
    # given: a two-second lease, and a slow cluster: the batch takes longer than that
    settings.SERVICE_ACCOUNT_LEASE_SECONDS = 2
    accounts = fleet(make_cluster, people["payments"], per_cluster=4, clusters=1)
    sim = accounts[0][1]
    last = accounts[-1][0]
    ManagedServiceAccount.objects.update(next_rotation_at=timezone.now())
    sim.faults.latency_s = 0.3  # issuing alone takes 8 calls: 2.4 s
    finished = threading.Event()
    lapses = []

    def watch() -> None:
        # what another worker's claim would see: a lease still held but run out
        try:
            while not finished.is_set():
                lease_id, until = ManagedServiceAccount.objects.values_list(
                    "lease_id", "lease_until"
                ).get(pk=last.pk)
                if lease_id and until < timezone.now():
                    lapses.append(until)
                time.sleep(0.05)
        finally:
            connection.close()

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        runs = serviceaccounts.rotate_accounts([a.pk for a, _ in accounts])
    finally:
        finished.set()
        watcher.join()
        sim.faults.latency_s = 0

    # then: the last account's lease never ran out while the batch held it, and all rotated
    assert lapses == []
    assert {r.status for r in runs.values()} == {RotationStatus.SUCCEEDED}
    assert active(last).number == 2


def test_a_surprise_in_one_accounts_rotation_fails_that_account_alone(
    make_cluster, people, monkeypatch, caplog
):
    from clusters import k8s

    # given: the Kubernetes door breaks in an unforeseen way for one account only
    accounts = fleet(make_cluster, people["payments"], per_cluster=2, clusters=1)
    (doomed, sim), (fine, _) = accounts
    ManagedServiceAccount.objects.update(next_rotation_at=timezone.now())
    request_token = k8s.KubeClient.request_token

    def breaks_for_one(self, namespace, service_account, *args, **kwargs):
        if service_account == doomed.name:
            raise RuntimeError("a bug")
        return request_token(self, namespace, service_account, *args, **kwargs)

    monkeypatch.setattr(k8s.KubeClient, "request_token", breaks_for_one)

    runs = serviceaccounts.rotate_accounts([doomed.pk, fine.pk])

    # then: the other account rotated; this one failed, said so, and kept its token
    assert runs[fine.pk].status == RotationStatus.SUCCEEDED
    assert runs[doomed.pk].status == RotationStatus.FAILED
    assert runs[doomed.pk].error == "unexpected error; see the worker log"
    assert "RuntimeError: a bug" in caplog.text
    assert active(doomed).number == 1
    assert authenticated_as(sim, token_of(doomed, sim)) == subject(doomed.name)
    doomed.refresh_from_db()
    assert not doomed.lease_id  # given back: the retry need not wait for it
