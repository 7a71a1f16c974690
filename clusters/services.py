"""State changes of the machine side. Views, API, tasks and commands call these."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from access.models import Grant, Membership, Person, Role, Team
from clusters import k8s
from clusters.choices import AccountState, ClusterState, ReconcileStatus, ReconcileTrigger
from clusters.compiler import (
    ClusterSpec,
    DesiredState,
    DirectorySnapshot,
    GrantSpec,
    RoleDefinitionSpec,
    RoleSpec,
    ServiceAccountSpec,
)
from clusters.k8s import Endpoint, KubeError, Unreachable
from clusters.models import Cluster, ClusterLock, ManagedServiceAccount, ReconcileRun
from clusters.plan import object_key
from clusters.reconcile import Inputs, Outcome, reconcile

logger = logging.getLogger(__name__)


def endpoint_for(cluster: Cluster) -> Endpoint:
    return Endpoint(api_url=cluster.api_url, token=str(cluster.token), ca_pem=cluster.ca_bundle)


def role_specs() -> dict[str, RoleSpec]:
    roles = Role.objects.prefetch_related("definitions")
    return {
        role.name: RoleSpec(
            role.name,
            tuple(
                RoleDefinitionSpec(
                    environment=d.environment,
                    tier=d.tier,
                    cluster_role=d.cluster_role,
                    rules=tuple(d.rules or ()),
                    cluster_wide=d.scope == "cluster",
                    namespaces=tuple(d.namespaces or ()),
                    allowed=d.allowed,
                )
                for d in role.definitions.all()
            ),
        )
        for role in roles
    }


def grant_spec(grant: Grant) -> GrantSpec:
    return GrantSpec(
        id=grant.pk,
        role=grant.role.name,
        team=grant.team.name if grant.team_id else None,
        person=grant.person.username if grant.person_id else None,
        environments=tuple(grant.environments or ()),
        tiers=tuple(grant.tiers or ()),
        clusters=tuple(grant.clusters or ()),
        selector=tuple(sorted((grant.cluster_selector or {}).items())),
        namespaces=tuple(grant.namespaces or ()),
        starts_at=grant.starts_at,
        expires_at=grant.expires_at,
    )


def load_inputs(clusters: Iterable[Cluster]) -> Inputs:
    """Grants in force, roles and just the directory facts those grants need."""
    now = timezone.now()
    grants = [
        grant_spec(g) for g in Grant.objects.in_force(now).select_related("role", "team", "person")
    ]
    specs = [c.spec() for c in clusters]
    grants = [g for g in grants if any(g.reaches(spec) for spec in specs)]
    team_names = {g.team for g in grants if g.team}
    usernames = {g.person for g in grants if g.person}
    active_teams = frozenset(
        Team.objects.filter(is_active=True, name__in=team_names).values_list("name", flat=True)
    )
    team_members: dict[str, set[str]] = defaultdict(set)
    if any(not spec.bind_groups for spec in specs) and active_teams:
        rows = Membership.objects.filter(
            team__is_active=True, team__name__in=active_teams, person__is_active=True
        ).values_list("team__name", "person__username")
        for team, username in rows:
            team_members[team].add(username)
    wanted_people = usernames | {u for members in team_members.values() for u in members}
    active_people = frozenset(
        Person.objects.filter(is_active=True, username__in=wanted_people).values_list(
            "username", flat=True
        )
    )
    directory = DirectorySnapshot(
        team_members={team: frozenset(members) for team, members in team_members.items()},
        active_people=active_people,
        active_teams=active_teams,
    )
    return Inputs(
        grants=grants,
        roles=role_specs(),
        directory=directory,
        now=now,
        service_accounts=account_specs(specs),
    )


def account_specs(clusters: list[ClusterSpec]) -> list[ServiceAccountSpec]:
    """Active managed service accounts that reach any of these clusters."""
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
        if any(spec.reaches(cluster) for cluster in clusters):
            out.append(spec)
    return out


def reconcile_cluster(
    cluster_id: int, trigger: str = ReconcileTrigger.SCHEDULE, dry_run: bool = False
) -> ReconcileRun | None:
    """Reconcile one cluster under its lock; None when another worker holds it (normal)."""
    ClusterLock.objects.get_or_create(cluster_id=cluster_id)
    with transaction.atomic():
        locked = ClusterLock.objects.select_for_update(skip_locked=True).filter(
            cluster_id=cluster_id
        )
        if not list(locked.values_list("id", flat=True)):
            return None
        cluster = Cluster.objects.get(pk=cluster_id)
        if cluster.state == ClusterState.RETIRED:
            return None
        return _reconcile_locked(cluster, trigger, dry_run)


def _reconcile_locked(cluster: Cluster, trigger: str, dry_run: bool) -> ReconcileRun:
    started = time.monotonic()
    run = ReconcileRun(cluster=cluster, trigger=trigger, dry_run=dry_run)
    client = k8s.client_for(endpoint_for(cluster))
    calls_before = client.calls
    last = (
        ReconcileRun.objects.filter(cluster=cluster, dry_run=False)
        .exclude(status=ReconcileStatus.RUNNING)
        .order_by("-started_at", "-id")
        .values_list("desired_digests", flat=True)
        .first()
    )
    outcome: Outcome | None = None
    try:
        outcome = reconcile(
            cluster.spec(), client, load_inputs([cluster]), last_desired=last, dry_run=dry_run
        )
        run.status = ReconcileStatus.FAILED if outcome.errors else ReconcileStatus.SUCCEEDED
        run.error = "\n".join(outcome.errors[:20])
        cluster.state = ClusterState.ACTIVE
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
    else:
        # Nothing was compiled: Warden's intent is what it was, and the next run must still
        # know which kinds it owned here (e.g. ServiceAccounts to remove).
        run.desired_digests = last or {}
    run.api_calls = client.calls - calls_before
    run.finished_at = timezone.now()
    run.duration_s = round(time.monotonic() - started, 3)
    run.save()
    if outcome is not None and not dry_run and outcome.plan.create:
        from clusters.serviceaccounts import after_reconcile

        created = [object_key(obj) for obj in outcome.plan.create]
        after_reconcile(cluster, created)
    if not dry_run:
        cluster.last_reconcile_at = run.finished_at
        cluster.last_reconcile_status = run.status
        cluster.last_error = run.error
        cluster.save(
            update_fields=[
                "state",
                "last_reconcile_at",
                "last_reconcile_status",
                "last_error",
                "updated_at",
            ]
        )
    return run


# --- registering clusters ---------------------------------------------------------------------

# What Warden must be allowed to do on a cluster it manages: (verb, resource). `bind` and
# `escalate` let it reference and write roles it does not itself hold (RBAC escalation rules).
REQUIRED_ACCESS = [
    (verb, resource)
    for resource in ("clusterroles", "clusterrolebindings", "rolebindings")
    for verb in ("list", "get", "create", "update", "delete")
] + [("list", "namespaces"), ("bind", "clusterroles"), ("escalate", "clusterroles")]


def check_access(endpoint: Endpoint) -> list[str]:
    """Problems that stop Warden from managing RBAC there, each saying what to fix; [] if none."""
    client = k8s.KubeClient(endpoint, max_attempts=1)
    try:
        client.version()
        missing = [
            f"{verb} {resource}"
            for verb, resource in REQUIRED_ACCESS
            if not client.self_subject_access_review(verb, resource, _api_group(resource))
        ]
    except Unreachable as exc:
        return [exc.message]
    except KubeError as exc:
        if exc.status == 401:
            return ["The cluster does not accept this token (401): paste a current token"]
        return [f"The cluster answered {exc}"]
    finally:
        client.close()
    if missing:
        return [
            "Warden's credentials may not " + ", ".join(missing) + ": bind them to the "
            "warden-manager ClusterRole (see README, 'Least privilege on managed clusters')"
        ]
    return []


def _api_group(resource: str) -> str:
    return "" if resource == "namespaces" else "rbac.authorization.k8s.io"


# --- what to reconcile after a change ---------------------------------------------------------


def clusters_reached_by(grants: Iterable[Grant], users_only: bool = False) -> list[int]:
    """Ids of the live clusters any of these grants reaches (in force or not: revokes count).

    users_only: just the clusters that expand teams to users (a change of members matters
    nowhere else, since elsewhere the binding names the group).
    """
    specs = [grant_spec(g) for g in grants]
    if not specs:
        return []
    live = Cluster.objects.exclude(state=ClusterState.RETIRED)
    if users_only:
        live = live.filter(bind_groups=False)
    return [c.pk for c in live if any(g.reaches(c.spec()) for g in specs)]


def queue_reconcile_for_grants(grant_ids: Iterable[int], users_only: bool = False) -> list[int]:
    """Queue a reconcile of just the clusters these grants reach; returns their ids."""
    from clusters.tasks import reconcile_cluster_task

    grants = Grant.objects.filter(pk__in=list(grant_ids)).select_related("role", "team", "person")
    cluster_ids = clusters_reached_by(grants, users_only=users_only)
    for cluster_id in cluster_ids:
        reconcile_cluster_task.delay(cluster_id, ReconcileTrigger.CHANGE)
    return cluster_ids


def queue_reconcile_for_subjects(
    team_ids: Iterable[int],
    person_ids: Iterable[int],
    membership_team_ids: Iterable[int] = (),
) -> list[int]:
    """After a directory change: reconcile where it changes what the clusters must hold.

    Grants of changed (renamed, gone) teams and of changed people matter everywhere they reach;
    grants of teams whose members changed, or that changed people belong to, matter only on
    clusters that bind users.
    """
    from django.db.models import Q

    team_ids, person_ids = list(team_ids), list(person_ids)
    member_teams = set(membership_team_ids) | set(
        Membership.objects.filter(person_id__in=person_ids).values_list("team_id", flat=True)
    )
    live = Grant.objects.filter(revoked_at__isnull=True)
    everywhere = live.filter(Q(team_id__in=team_ids) | Q(person_id__in=person_ids))
    queued = queue_reconcile_for_grants(everywhere.values_list("id", flat=True))
    users_only = live.filter(team_id__in=member_teams).exclude(team_id__in=team_ids)
    expand = queue_reconcile_for_grants(users_only.values_list("id", flat=True), users_only=True)
    return sorted(set(queued) | set(expand))


def register_cluster(
    *,
    name: str,
    environment: str,
    tier: str,
    api_url: str,
    token: str,
    ca_bundle: str = "",
    labels: dict[str, str] | None = None,
    user_prefix: str = "",
    group_prefix: str = "",
    bind_groups: bool = True,
    check: bool = True,
) -> Cluster:
    """Register (or update) a cluster after checking Warden can manage RBAC there."""
    from django.core.exceptions import ValidationError

    if check:
        problems = check_access(Endpoint(api_url=api_url, token=token, ca_pem=ca_bundle))
        if problems:
            raise ValidationError(problems)
    with transaction.atomic():
        cluster = Cluster.objects.filter(name=name).first() or Cluster(name=name)
        if cluster.state == ClusterState.RETIRED:
            raise ValidationError(f"Cluster {name!r} was retired; pick another name")
        cluster.environment, cluster.tier = environment, tier
        cluster.api_url, cluster.token, cluster.ca_bundle = api_url, token, ca_bundle
        cluster.labels = labels or {}
        cluster.user_prefix, cluster.group_prefix = user_prefix, group_prefix
        cluster.bind_groups = bind_groups
        cluster.full_clean()
        cluster.save()
        ClusterLock.objects.get_or_create(cluster=cluster)
        cluster_id = cluster.pk
        transaction.on_commit(lambda: _queue_one(cluster_id))
    return cluster


def _queue_one(cluster_id: int) -> None:
    from clusters.tasks import reconcile_cluster_task

    reconcile_cluster_task.delay(cluster_id, ReconcileTrigger.CHANGE)


def retire_cluster(cluster: Cluster, *, remove_owned: bool = True) -> ReconcileRun | None:
    """Retire a cluster; first remove every object Warden owns there, if asked and reachable.

    When removal fails the cluster is not retired, so nothing Warden wrote is left behind
    unnoticed; retire with remove_owned=False to give it up as it is.
    """
    from django.core.exceptions import ValidationError

    run = None
    if remove_owned:
        with transaction.atomic():
            ClusterLock.objects.get_or_create(cluster=cluster)
            ClusterLock.objects.select_for_update().filter(cluster=cluster).first()
            run = _remove_owned(cluster)
        if run.status != ReconcileStatus.SUCCEEDED:
            raise ValidationError(
                f"Could not remove Warden's objects from {cluster.name}: {run.error}. Retire "
                "without removing them, or fix the cluster's access first."
            )
    cluster.state = ClusterState.RETIRED
    cluster.retired_at = timezone.now()
    cluster.save(update_fields=["state", "retired_at", "updated_at"])
    return run


def _remove_owned(cluster: Cluster) -> ReconcileRun:
    from clusters.plan import Plan
    from clusters.reconcile import ACCOUNT_KIND, MANAGED_KINDS, Outcome, apply, read_actual

    started = time.monotonic()
    run = ReconcileRun(cluster=cluster, trigger=ReconcileTrigger.RETIRE)
    client = k8s.client_for(endpoint_for(cluster))
    calls_before = client.calls
    try:
        actual = read_actual(client, (*MANAGED_KINDS, ACCOUNT_KIND))
        plan = Plan(delete=sorted(actual))
        outcome = Outcome(plan=plan, desired=DesiredState())
        apply(client, plan, actual, outcome)
        run.deleted = outcome.deleted
        run.status = ReconcileStatus.FAILED if outcome.errors else ReconcileStatus.SUCCEEDED
        run.error = "\n".join(outcome.errors[:20])
    except KubeError as exc:
        run.status, run.error = ReconcileStatus.FAILED, str(exc)
    run.api_calls = client.calls - calls_before
    run.finished_at = timezone.now()
    run.duration_s = round(time.monotonic() - started, 3)
    run.save()
    return run
