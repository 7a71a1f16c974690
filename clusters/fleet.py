"""The machine side's answers to the people side's questions about the fleet (access.fleet).

Connected when the clusters app is ready; each answer is a thin call of the selectors, lookups,
planning and queueing the machine side's own pages use.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from access.fleet import Change, ClusterPicker, ClusterPlan, NamespaceCheck, PickerCluster, Rollout
from access.specs import ClusterSpec
from clusters import planning, selectors, services
from clusters.choices import ClusterState
from clusters.models import Cluster
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
        live = Cluster.objects.exclude(state=ClusterState.RETIRED)
        chosen = set(selected)
        matching = live
        if environments:
            matching = matching.filter(environment__in=environments)
        if tiers:
            matching = matching.filter(tier__in=tiers)
        search = search.strip()
        if search:
            matching = matching.filter(name__icontains=search)
        ordered = matching.annotate(env_rank=selectors.environment_rank()).order_by(
            "env_rank", "tier", "name"
        )
        fields = ("name", "environment", "tier")
        shown = list(ordered.values_list(*fields)[:limit])
        total = matching.count() if len(shown) == limit else len(shown)
        ticked = list(live.filter(name__in=chosen).order_by("name").values_list(*fields))
        rows = [PickerCluster(name, env, tier, checked=True) for name, env, tier in ticked]
        rows += [
            PickerCluster(name, env, tier, checked=False)
            for name, env, tier in shown
            if name not in chosen
        ]
        return ClusterPicker(
            clusters=rows, more=max(total - len(shown), 0), search=search, matching=total
        )

    def namespace_check(self) -> NamespaceCheck:
        answering: dict[str, Cluster] = {}
        asked = False

        def check(clusters: Iterable[str], wanted: Iterable[str]) -> dict[str, list[str]]:
            nonlocal asked
            names = lookups.plain_names(wanted)
            if not names:
                return {}
            if not asked:  # which clusters answer: read once, and only when a name is asked
                answering.update(services.answering_clusters())
                asked = True
            return services.namespaces_missing(clusters, names, answering)

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
