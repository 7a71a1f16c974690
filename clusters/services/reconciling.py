"""Running one cluster's reconcile: inputs, compile, apply, record the run."""

from __future__ import annotations

import time

from django.db import transaction

from access import audit
from clusters import k8s, locks, signals
from clusters.choices import ClusterState, ReconcileStatus, ReconcileTrigger
from clusters.k8s import KubeError, Unreachable
from clusters.models import Cluster, ReconcileRun
from clusters.plan import object_key
from clusters.reconcile import Outcome, key_text, reconcile
from clusters.services.checks import registered_as
from clusters.services.inputs import endpoint_for, load_inputs, shared_inputs


def reconcile_cluster(
    cluster_id: int, trigger: str = ReconcileTrigger.SCHEDULE, dry_run: bool = False
) -> ReconcileRun | None:
    """Reconcile one cluster under its lock; None when another worker holds it (normal).

    No transaction is held while the cluster is called: the lock is not a row lock (see
    clusters/locks.py), and the run is recorded in one short transaction at the end.
    """
    with locks.cluster_lock(cluster_id) as held:
        if not held:
            return None
        cluster = Cluster.objects.filter(pk=cluster_id).first()
        if cluster is None or cluster.state == ClusterState.RETIRED:
            return None
        return _reconcile_locked(cluster, trigger, dry_run)


class DuplicateRegistration(Exception):
    """This registration's API server is registered already under another name."""


def _learn_identity(cluster: Cluster, client: k8s.KubeClient) -> None:
    """A cluster registered before Warden kept identities learns its own at a reconcile; when
    an earlier registration holds it, this one is the duplicate and writes nothing."""
    identity = client.cluster_identity()
    first = registered_as(identity, other_than=cluster.pk) if identity else None
    if first is not None:
        raise DuplicateRegistration(
            f"This API server is also registered as {first.name}: two registrations "
            "would undo each other's bindings, so this one writes nothing. Retire one of them."
        )
    cluster.identity = identity


def _reconcile_locked(cluster: Cluster, trigger: str, dry_run: bool) -> ReconcileRun:
    started = time.monotonic()
    run = ReconcileRun(cluster=cluster, trigger=trigger, dry_run=dry_run)
    client = k8s.client_for(endpoint_for(cluster))
    calls_before = client.calls
    last, last_finished, last_conflicts = (
        ReconcileRun.objects.filter(cluster=cluster, dry_run=False)
        .exclude(status=ReconcileStatus.RUNNING)
        .order_by("-started_at", "-id")
        .values_list("desired_digests", "finished_at", "conflicts")
        .first()
    ) or (None, None, [])
    inputs = None
    if trigger == ReconcileTrigger.SCHEDULE and not dry_run:
        inputs = shared_inputs(not_before=last_finished)
    outcome: Outcome | None = None
    duplicate = False
    try:
        if not cluster.identity:
            _learn_identity(cluster, client)
        outcome = reconcile(
            cluster.spec(),
            client,
            inputs or load_inputs([cluster]),
            last_desired=last,
            dry_run=dry_run,
        )
        run.status = ReconcileStatus.FAILED if outcome.errors else ReconcileStatus.SUCCEEDED
        run.error = "\n".join(outcome.errors[:20])
        cluster.state = ClusterState.ACTIVE
    except DuplicateRegistration as exc:
        run.status, run.error = ReconcileStatus.FAILED, str(exc)
        duplicate = True
    except Unreachable as exc:
        run.status, run.error = ReconcileStatus.FAILED, str(exc)
        cluster.state = ClusterState.UNREACHABLE
    except KubeError as exc:
        run.status, run.error = ReconcileStatus.FAILED, str(exc)
    if outcome is not None:
        run.created, run.updated = outcome.created, outcome.updated
        run.recreated, run.deleted, run.drift = outcome.recreated, outcome.deleted, outcome.drift
        run.pending = {str(k): v for k, v in outcome.desired.pending.items()}
        # Service accounts' reasons under "sa:<id>", apart from grant ids.
        run.pending.update({f"sa:{k}": v for k, v in outcome.desired.account_pending.items()})
        run.grants_in_force = outcome.in_force
        run.desired_digests = outcome.desired_digests
        run.conflicts = sorted(outcome.conflicts)
    else:
        # Nothing was compiled: Warden's intent is what it was, and the next run must still
        # know which kinds it owned here (e.g. ServiceAccounts to remove).
        run.desired_digests = last or {}
    run.api_calls = client.calls - calls_before
    run.mark_finished(started)
    with transaction.atomic():
        run.save()
        if not dry_run and outcome is not None:
            _audit_writes(cluster, run, outcome)
            if outcome.plan.create:
                signals.objects_created.send(
                    sender=Cluster,
                    cluster=cluster,
                    created=[object_key(obj) for obj in outcome.plan.create],
                )
        if duplicate and cluster.last_error != run.error and not dry_run:
            audit.record("cluster.duplicate", obj=cluster, reason=run.error)
        new_conflicts = sorted(set(run.conflicts) - set(last_conflicts or []))
        if new_conflicts and not dry_run:
            audit.record(
                "cluster.conflict",
                obj=cluster,
                after={"conflicts": new_conflicts},
                reason="names Warden wants are held by objects it does not own; left alone",
            )
        if not dry_run:
            cluster.last_reconcile_at = run.finished_at
            cluster.last_reconcile_status = run.status
            cluster.last_error = run.error
            cluster.save(
                update_fields=[
                    "identity",
                    "state",
                    "last_reconcile_at",
                    "last_reconcile_status",
                    "last_error",
                    "updated_at",
                ]
            )
    return run


def _audit_writes(cluster: Cluster, run: ReconcileRun, outcome: Outcome) -> None:
    """A reconcile that changed what a cluster holds is a change of access: audit it."""
    written = run.created + run.updated + run.recreated + run.deleted
    if not written:
        return
    plan = outcome.plan
    objects = {
        "create": [key_text(object_key(o)) for o in plan.create],
        "update": [key_text(object_key(o)) for o in plan.update],
        "recreate": [key_text(object_key(o)) for o in plan.recreate],
        "delete": [key_text(k) for k in plan.delete],
    }
    audit.record(
        "cluster.reconciled",
        obj=cluster,
        after={
            "run": run.pk,
            "created": run.created,
            "updated": run.updated,
            "recreated": run.recreated,
            "deleted": run.deleted,
            "drift": run.drift,
            "objects": {k: v[:200] for k, v in objects.items() if v},
            "errors": len(outcome.errors),
        },
        reason=f"trigger: {run.trigger}",
    )
