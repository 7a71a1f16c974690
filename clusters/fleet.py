"""The machine side's answers to the people side's questions about the fleet (access.fleet).

Connected when the clusters app is ready; each answer is a thin call of the selectors, lookups,
planning and queueing the machine side's own pages use.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from datetime import datetime

from access.fleet import Change, ClusterPicker, ClusterPlan, NamespaceCheck, Rollout
from access.specs import ClusterSpec
from clusters import planning, selectors, services
from clusters.services import lookups


class ClusterFleet:
    def cluster_specs(self) -> list[ClusterSpec]:
        return services.live_cluster_specs()

    def cluster_picker(
        self,
        environments: Sequence[str],
        tiers: Sequence[str],
        search: str,
        selected: Iterable[str],
        limit: int,
    ) -> ClusterPicker:
        return selectors.cluster_picker(environments, tiers, search, selected, limit)

    def namespace_check(self) -> NamespaceCheck:
        # Which clusters answer: read once per check, and only when a namespace is named.
        answering = functools.cache(services.answering_clusters)

        def check(clusters: Iterable[str], wanted: Iterable[str]) -> dict[str, list[str]]:
            wanted = list(wanted)
            if not lookups.plain_names(wanted):
                return {}
            return services.namespaces_missing(clusters, wanted, answering())

        return check

    def rollout(self) -> Rollout:
        runs = {run.cluster.name: run for run in selectors.latest_runs().values()}

        def state(grant_id: int, cluster: str) -> tuple[str, str]:
            return selectors.rollout_state(grant_id, runs.get(cluster))

        return state

    def reconcile_progress(
        self, cluster_ids: list[int], since: datetime
    ) -> selectors.ReconcileProgress:
        return selectors.reconcile_progress(cluster_ids, since)

    def plan(self, change: Change) -> list[ClusterPlan]:
        return planning.plan_change(change)

    def reconcile_for_grants(self, grant_ids: Iterable[int]) -> list[int]:
        return services.queue_reconcile_for_grants(grant_ids)

    def reconcile_for_subjects(
        self,
        team_ids: Iterable[int],
        person_ids: Iterable[int],
        membership_team_ids: Iterable[int] = (),
    ) -> list[int]:
        return services.queue_reconcile_for_subjects(team_ids, person_ids, membership_team_ids)
