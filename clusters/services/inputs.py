"""What the compiler reads: the clusters, roles, grants, people and service accounts as
specs, cached briefly and shared by the reconciles of one fleet pass."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from access.specs import (
    ClusterSpec,
    GrantSpec,
    directory_snapshot,
    grant_specs_in_force,
    role_specs,
)
from clusters.choices import AccountState, ClusterState
from clusters.compiler import ServiceAccountSpec
from clusters.k8s import Endpoint
from clusters.models import Cluster, ManagedServiceAccount
from clusters.reconcile import Inputs


def endpoint_for(cluster: Cluster) -> Endpoint:
    return Endpoint(api_url=cluster.api_url, token=str(cluster.token), ca_pem=cluster.ca_bundle)


def live_cluster_specs() -> list[ClusterSpec]:
    """What the compiler knows of every cluster that is not retired (no credentials read)."""
    clusters = Cluster.objects.exclude(state=ClusterState.RETIRED).only(*Cluster.SPEC)
    return [c.spec() for c in clusters.order_by("name")]


def live_clusters() -> list[Cluster]:
    return list(Cluster.objects.exclude(state=ClusterState.RETIRED))


def load_inputs(
    clusters: Iterable[Cluster] | None, extra_grants: Iterable[GrantSpec] = ()
) -> Inputs:
    """Grants in force, roles and just the directory facts those grants need.

    clusters: the clusters to be compiled (None: every live cluster); extra_grants: grants not
    saved yet, whose plan is being shown.
    """
    now = timezone.now()
    grants = grant_specs_in_force(now) + list(extra_grants)
    specs = live_cluster_specs() if clusters is None else [c.spec() for c in clusters]
    grants = [g for g in grants if any(g.reaches(spec) for spec in specs)]
    return Inputs(
        grants=grants,
        roles=role_specs(),
        directory=directory_snapshot(grants, expand=any(not spec.bind_groups for spec in specs)),
        now=now,
        service_accounts=account_specs(specs),
    )


# A scheduled pass compiles every cluster from the same grants, catalogue and directory: each
# worker process reads them once per RECONCILE_SHARED_INPUTS_SECONDS and shares them between
# the clusters it reconciles meanwhile (see shared_inputs).
_shared_lock = threading.Lock()
_shared: dict[str, tuple[datetime, float, Inputs]] = {}


def forget_shared_inputs() -> None:
    """Drop the inputs kept for reconciles of this process (they are read afresh next)."""
    with _shared_lock:
        _shared.clear()


def shared_inputs(not_before: datetime | None) -> Inputs | None:
    """The inputs of every live cluster as this process last read them, if read at most
    RECONCILE_SHARED_INPUTS_SECONDS ago and at or after `not_before`; else read afresh.
    None when sharing is off (0 seconds).

    Safe for scheduled passes only. A change (grant, membership, role, account, cluster)
    queues its own reconcile, which reads afresh; `not_before` (when the cluster's last run
    ended) keeps a pass from writing inputs older than those its last run wrote. Compiling
    with the current time drops grants that expired since the inputs were read.
    """
    max_age = settings.RECONCILE_SHARED_INPUTS_SECONDS
    if max_age <= 0:
        return None
    database = str(connection.settings_dict.get("NAME") or "")
    with _shared_lock:  # one read per process at a time; the other threads wait for it
        entry = _shared.get(database)
        if (
            entry is not None
            and time.monotonic() - entry[1] <= max_age
            and (not_before is None or entry[0] >= not_before)
        ):
            return dataclasses.replace(entry[2], now=timezone.now())
        now = timezone.now()
        # Grants that start while the inputs are shared are read too; the compiler puts each
        # in force from its start.
        grants = grant_specs_in_force(now, starting_by=now + timedelta(seconds=max_age))
        inputs = Inputs(
            grants=grants,
            roles=role_specs(),
            directory=directory_snapshot(
                grants,
                expand=Cluster.objects.exclude(state=ClusterState.RETIRED)
                .filter(bind_groups=False)
                .exists(),
            ),
            now=now,
            service_accounts=account_specs(None),
        )
        _shared[database] = (now, time.monotonic(), inputs)
        return inputs


def account_specs(clusters: list[ClusterSpec] | None) -> list[ServiceAccountSpec]:
    """Active managed service accounts that reach any of these clusters (None: every one)."""
    accounts = ManagedServiceAccount.objects.filter(state=AccountState.ACTIVE).select_related(
        "owner_team"
    )
    if connection.features.supports_json_field_contains and clusters:
        # Only accounts naming one of these clusters, or chosen by selector alone: a reconcile
        # of one cluster does not read the whole fleet's accounts (JSON containment, indexed
        # by nothing but still done by the database).
        named = Q(clusters=[])
        for cluster in clusters:
            named |= Q(clusters__contains=[cluster.name])
        accounts = accounts.filter(named)
    accounts_list = list(accounts)
    roles: dict[int, list[str]] = defaultdict(list)
    through = ManagedServiceAccount.roles.through.objects.filter(
        managedserviceaccount_id__in=[a.pk for a in accounts_list]
    ).values_list("managedserviceaccount_id", "role__name")
    for account_id, role_name in through:
        roles[account_id].append(role_name)
    out = []
    for account in accounts_list:
        spec = account.spec(role_names=tuple(sorted(roles.get(account.pk, ()))))
        if clusters is None or any(spec.reaches(cluster) for cluster in clusters):
            out.append(spec)
    return out
