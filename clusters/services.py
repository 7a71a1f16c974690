"""State changes of the machine side. Views, API, tasks and commands call these."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from access import audit
from access.models import Grant, Membership, Person, Role, RoleDefinition, Team
from clusters import crypto, k8s, locks, signals
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
from clusters.models import Cluster, FleetReconcile, ManagedServiceAccount, ReconcileRun
from clusters.plan import object_key
from clusters.reconcile import Inputs, Outcome, key_text, reconcile, shadow_access
from core import outbound, queue
from core.types import Actor, account_of

if TYPE_CHECKING:
    from clusters.models import DiscoverySource

logger = logging.getLogger(__name__)


def endpoint_for(cluster: Cluster) -> Endpoint:
    return Endpoint(api_url=cluster.api_url, token=str(cluster.token), ca_pem=cluster.ca_bundle)


def role_specs() -> dict[str, RoleSpec]:
    """The catalogue as the compiler sees it (read as plain rows: every reconcile reads it)."""
    definitions: dict[int, list[RoleDefinitionSpec]] = defaultdict(list)
    rows = RoleDefinition.objects.order_by("id").values_list(
        "role_id", "environment", "tier", "cluster_role", "rules", "scope", "namespaces", "allowed"
    )
    for role_id, environment, tier, cluster_role, rules, scope, namespaces, allowed in rows:
        definitions[role_id].append(
            RoleDefinitionSpec(
                environment=environment,
                tier=tier,
                cluster_role=cluster_role,
                rules=tuple(rules or ()),
                cluster_wide=scope == "cluster",
                namespaces=tuple(namespaces or ()),
                allowed=allowed,
            )
        )
    return {
        name: RoleSpec(name, tuple(definitions.get(role_id, ())))
        for role_id, name in Role.objects.values_list("id", "name")
    }


SPEC_FIELDS = (
    "name",
    "environment",
    "tier",
    "labels",
    "user_prefix",
    "group_prefix",
    "bind_groups",
)


def live_cluster_specs() -> list[ClusterSpec]:
    """What the compiler knows of every cluster that is not retired (no credentials read)."""
    clusters = Cluster.objects.exclude(state=ClusterState.RETIRED).only(*SPEC_FIELDS)
    return [c.spec() for c in clusters.order_by("name")]


def grant_spec(grant: Grant) -> GrantSpec:
    return _grant_spec(
        grant.pk,
        grant.role.name,
        grant.team.name if grant.team is not None else None,
        grant.person.username if grant.person is not None else None,
        grant.environments,
        grant.tiers,
        grant.clusters,
        grant.cluster_selector,
        grant.namespaces,
        grant.starts_at,
        grant.expires_at,
        grant.covers,
    )


# The fields of a grant the compiler needs, in _grant_spec's order.
GRANT_SPEC_FIELDS = (
    "id",
    "role__name",
    "team__name",
    "person__username",
    "environments",
    "tiers",
    "clusters",
    "cluster_selector",
    "namespaces",
    "starts_at",
    "expires_at",
    "covers",
)


def _grant_spec(
    pk: int,
    role: str,
    team: str | None,
    person: str | None,
    environments: list[str] | None,
    tiers: list[str] | None,
    clusters: list[str] | None,
    selector: dict[str, str] | None,
    namespaces: list[str] | None,
    starts_at: datetime | None,
    expires_at: datetime | None,
    covers: list[str] | None = None,
) -> GrantSpec:
    return GrantSpec(
        id=pk,
        role=role,
        team=team,
        person=person,
        environments=tuple(environments or ()),
        tiers=tuple(tiers or ()),
        clusters=tuple(clusters or ()),
        selector=tuple(sorted((selector or {}).items())),
        namespaces=tuple(namespaces or ()),
        starts_at=starts_at,
        expires_at=expires_at,
        covers=None if covers is None else tuple(covers),
    )


def grant_specs_in_force(now: datetime, starting_by: datetime | None = None) -> list[GrantSpec]:
    """grant_spec() of every grant in force (and of those starting by `starting_by`), read as
    plain rows: every reconcile reads them."""
    grants = Grant.objects.in_force(now)
    if starting_by is not None:
        grants = Grant.objects.filter(
            Q(revoked_at__isnull=True),
            Q(starts_at__isnull=True) | Q(starts_at__lte=starting_by),
            Q(expires_at__isnull=True) | Q(expires_at__gt=now),
        )
    return [_grant_spec(*row) for row in grants.values_list(*GRANT_SPEC_FIELDS)]


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


def directory_snapshot(grants: Iterable[GrantSpec], expand: bool) -> DirectorySnapshot:
    """The directory facts these grants need: active teams and people, and the members of
    each team when some cluster binds users (expand) rather than groups."""
    grants = list(grants)
    team_names = {g.team for g in grants if g.team}
    usernames = {g.person for g in grants if g.person}
    active_teams = frozenset(
        Team.objects.filter(is_active=True, name__in=team_names).values_list("name", flat=True)
    )
    team_members: dict[str, set[str]] = defaultdict(set)
    if expand and active_teams:
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
    return DirectorySnapshot(
        team_members={team: frozenset(members) for team, members in team_members.items()},
        active_people=active_people,
        active_teams=active_teams,
    )


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
    run.finished_at = timezone.now()
    run.duration_s = round(time.monotonic() - started, 3)
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


# --- reading a cluster's roles ----------------------------------------------------------------

# A page that explains access reads built-in ClusterRoles (view, edit, admin, aggregated ones) as
# each cluster holds them; they change rarely, so a short cache spares the API on every view.
CLUSTER_ROLE_CACHE_S = 60
# A person is waiting: one short try, not the reconciler's patient back-off.
INTERACTIVE_TIMEOUT_S = 5.0


def cluster_role_rules(
    cluster: Cluster, names: Iterable[str]
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, str]]:
    """The rules of these ClusterRoles on `cluster` (one the cluster lacks is left out), and for
    each that could not be read, why (unreachable, refused). Cached per cluster for
    CLUSTER_ROLE_CACHE_S."""
    wanted = sorted(set(names))
    rules: dict[str, list[dict[str, Any]]] = {}
    errors: dict[str, str] = {}
    client: k8s.KubeClient | None = None
    try:
        for name in wanted:
            key = f"warden:clusterrole-rules:{cluster.pk}:{name}"
            cached = cache.get(key)
            if cached is not None:
                rules[name] = cached
                continue
            if client is None:
                endpoint = replace(endpoint_for(cluster), timeout_s=INTERACTIVE_TIMEOUT_S)
                client = k8s.KubeClient(endpoint, max_attempts=1)
            try:
                rules[name] = client.cluster_role_rules(name)
            except Unreachable as exc:
                # The other roles would fail the same way; say so once per role, quickly.
                for other in wanted:
                    errors.setdefault(other, f"{cluster.name} is unreachable ({exc.message})")
                break
            except KubeError as exc:
                if exc.status != 404:  # absent: left out of `rules`, which says just that
                    errors[name] = f"{cluster.name} answered {exc.status} {exc.reason}"
                continue
            cache.set(key, rules[name], CLUSTER_ROLE_CACHE_S)
    finally:
        if client is not None:
            client.close()
    for name in rules:
        errors.pop(name, None)
    return rules, errors


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
            "warden-manager ClusterRole (see docs/deploying.md, 'Least privilege on managed "
            "clusters')"
        ]
    return []


def read_identity(endpoint: Endpoint) -> str:
    """The cluster's identity (its kube-system namespace's uid); "" when it cannot be read."""
    client = k8s.KubeClient(endpoint, max_attempts=1)
    try:
        return client.cluster_identity()
    except KubeError:
        return ""
    finally:
        client.close()


def registered_as(
    identity: str, api_url: str = "", *, other_than: int | None = None
) -> Cluster | None:
    """The live registration of this cluster, if there is one (besides `other_than`): the
    same identity, or the same API URL."""
    url = api_url.rstrip("/")
    same = Q(api_url__in=[url, url + "/"]) if url else Q(pk__in=[])
    if identity:
        same |= Q(identity=identity)
    others = Cluster.objects.exclude(state=ClusterState.RETIRED).filter(same)
    if other_than is not None:
        others = others.exclude(pk=other_than)
    return others.order_by("pk").first()


def refuse_second_registration(identity: str, api_url: str, *, other_than: int | None) -> None:
    """A ValidationError naming the cluster's first registration, if it has one."""
    first = registered_as(identity, api_url, other_than=other_than)
    if first is not None:
        raise ValidationError(
            f"This API server is already registered as {first.name}: two registrations of one "
            f"cluster would undo each other's bindings. Edit {first.name} instead, or retire it "
            "first."
        )


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
    grants = Grant.objects.filter(pk__in=list(grant_ids)).select_related("role", "team", "person")
    cluster_ids = clusters_reached_by(grants, users_only=users_only)
    for cluster_id in cluster_ids:
        queue.send("clusters.tasks.reconcile_cluster_task", cluster_id, ReconcileTrigger.CHANGE)
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


# --- the cluster registry: register, edit, check, reconcile on request, retire ------------------

# The fields of a cluster an audit event shows before and after a change (never the token).
_AUDITED = (
    "name",
    "environment",
    "tier",
    "labels",
    "api_url",
    "user_prefix",
    "group_prefix",
    "bind_groups",
    "state",
)


def cluster_facts(cluster: Cluster) -> dict[str, Any]:
    """What an audit event records of a cluster: its metadata and a CA fingerprint."""
    facts = {field: getattr(cluster, field) for field in _AUDITED}
    facts["ca_sha256"] = (
        hashlib.sha256(cluster.ca_bundle.encode()).hexdigest()[:16] if cluster.ca_bundle else ""
    )
    if cluster.discovered_by_id:
        facts["discovered_by"] = cluster.discovered_by_id
    return facts


def normal_pem(text: str) -> str:
    """A PEM bundle as stored: LF line ends (browsers send CRLF), one final newline."""
    text = (text or "").replace("\r\n", "\n").strip()
    return text + "\n" if text else ""


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
    actor: Actor = None,
    discovered_by: DiscoverySource | None = None,
    discovered_key: str = "",
    update_existing: bool = True,
) -> Cluster:
    """Register (or re-register) a cluster after checking Warden can manage RBAC there.

    Nothing is saved when the check fails: the ValidationError's messages say what to fix.
    update_existing=False refuses a name already registered (the registration page), instead
    of replacing that cluster's settings (the command and the demo, which re-register).
    """
    existing = Cluster.objects.filter(name=name).first()
    if existing is not None and existing.state == ClusterState.RETIRED:
        raise ValidationError(f"Cluster {name!r} was retired; pick another name")
    if existing is not None and not update_existing:
        raise ValidationError(
            f"A cluster named {name!r} is already registered: edit it, or pick another name"
        )
    cluster = existing or Cluster(name=name)
    before = cluster_facts(cluster) if existing else None
    ca_bundle = normal_pem(ca_bundle)
    cluster.environment, cluster.tier = environment, tier
    cluster.api_url, cluster.token, cluster.ca_bundle = api_url, token, ca_bundle
    cluster.labels = labels or {}
    cluster.user_prefix, cluster.group_prefix = user_prefix, group_prefix
    cluster.bind_groups = bind_groups
    if discovered_by is not None:
        cluster.discovered_by, cluster.discovered_key = discovered_by, discovered_key
        cluster.missing_since = None
    # Cheap validation first, so a bad name or URL is named before any network call.
    cluster.full_clean(validate_unique=False)
    outbound.check_api_url(api_url)
    if check:
        endpoint = Endpoint(api_url=api_url, token=token, ca_pem=ca_bundle)
        problems = check_access(endpoint)
        if problems:
            raise ValidationError(problems)
        cluster.identity = read_identity(endpoint)
    try:
        with transaction.atomic():
            refuse_second_registration(cluster.identity, api_url, other_than=cluster.pk)
            cluster.save()
            audit.record(
                "cluster.updated" if existing else "cluster.registered",
                actor=actor,
                obj=cluster,
                before=before,
                after=cluster_facts(cluster),
                reason=f"discovered by {discovered_by.name}" if discovered_by else "",
            )
            _queue_on_commit(cluster.pk, ReconcileTrigger.CHANGE)
    except IntegrityError as exc:
        # Another registration of the same name committed between our read and write.
        raise ValidationError(f"A cluster named {name!r} is already registered") from exc
    return cluster


def update_cluster(
    cluster: Cluster,
    *,
    actor: Actor = None,
    environment: str,
    tier: str,
    labels: dict[str, str],
    user_prefix: str,
    group_prefix: str,
    bind_groups: bool,
    api_url: str,
    ca_bundle: str,
    token: str = "",
    reason: str = "",
) -> bool:
    """Change a cluster's metadata or credentials; True when something changed.

    New credentials (API URL, CA or token) are checked like a registration before anything is
    saved; an empty token keeps the current one only while the URL and the CA stay the same, so
    the stored token never goes to an address it was not given for. A change queues a
    reconcile of the cluster.
    """
    if cluster.state == ClusterState.RETIRED:
        raise ValidationError(f"Cluster {cluster.name} is retired; it can no longer be changed")
    ca_bundle = normal_pem(ca_bundle)
    if ca_bundle == normal_pem(cluster.ca_bundle):
        ca_bundle = cluster.ca_bundle  # the same CA, however it was written when stored
    require_token_for_new_address((cluster.api_url, cluster.ca_bundle), (api_url, ca_bundle), token)
    new_token = token or str(cluster.token)
    new_credentials = (
        api_url != cluster.api_url or ca_bundle != cluster.ca_bundle or new_token != cluster.token
    )
    identity = cluster.identity
    if new_credentials:
        outbound.check_api_url(api_url)
        endpoint = Endpoint(api_url=api_url, token=new_token, ca_pem=ca_bundle)
        problems = check_access(endpoint)
        if problems:
            raise ValidationError(problems)
        identity = read_identity(endpoint) or identity
    with transaction.atomic():
        if new_credentials:
            refuse_second_registration(identity, api_url, other_than=cluster.pk)
        current = Cluster.objects.select_for_update().get(pk=cluster.pk)
        current.identity = identity
        before = cluster_facts(current)
        current.environment, current.tier, current.labels = environment, tier, labels or {}
        current.user_prefix, current.group_prefix = user_prefix, group_prefix
        current.bind_groups = bind_groups
        current.api_url, current.ca_bundle, current.token = api_url, ca_bundle, new_token
        current.full_clean(validate_unique=False)
        after = cluster_facts(current)
        if after == before and not new_credentials:
            return False
        current.save()
        if new_credentials:
            reason = "; ".join(filter(None, [reason, "new credentials, access checked"]))
        audit.record(
            "cluster.updated", actor=actor, obj=current, before=before, after=after, reason=reason
        )
        _queue_on_commit(current.pk, ReconcileTrigger.CHANGE)
    cluster.refresh_from_db()
    return True


def require_token_for_new_address(
    stored: tuple[str, str], wanted: tuple[str, str], token: str
) -> None:
    """A new API URL or CA (stored and wanted: (url, CA)) needs the token given again: the
    stored token is only ever sent where it was given for (an operator could otherwise send
    the prod token to a host of their own)."""
    if token or stored == wanted:
        return
    what = "API URL" if stored[0] != wanted[0] else "CA bundle"
    raise ValidationError(
        f"A new {what} needs the token again: paste Warden's token for the cluster at the new "
        "address (the stored token is never sent anywhere else)."
    )


def check_connection(cluster: Cluster) -> list[str]:
    """Ask the cluster now whether Warden's stored credentials may manage RBAC there."""
    if cluster.state == ClusterState.RETIRED:
        return [f"Cluster {cluster.name} is retired; Warden no longer talks to it"]
    return check_access(endpoint_for(cluster))


@transaction.atomic
def request_reconcile(cluster: Cluster, *, actor: Actor = None) -> None:
    """Queue a reconcile of one cluster now (after this transaction commits)."""
    if cluster.state == ClusterState.RETIRED:
        raise ValidationError(f"Cluster {cluster.name} is retired; it is not reconciled")
    audit.record("cluster.reconcile_requested", actor=actor, obj=cluster)
    _queue_on_commit(cluster.pk, ReconcileTrigger.OPERATOR)


@transaction.atomic
def request_fleet_reconcile(*, actor: Actor = None) -> int:
    """Queue a reconcile of every live cluster; returns how many there are.

    A FleetReconcile row records the request, so the fleet page can follow it as runs finish.
    """
    fleet = start_fleet_reconcile(ReconcileTrigger.OPERATOR, actor=actor)
    count = len(fleet.cluster_ids)
    audit.record(
        "fleet.reconcile_requested",
        actor=actor,
        object_type="clusters.fleet",
        object_repr="fleet",
        after={"clusters": count, "fleet_reconcile": fleet.pk},
    )
    queue.send_on_commit(
        "clusters.tasks.reconcile_fleet_task",
        ReconcileTrigger.OPERATOR,
        fleet_reconcile_id=fleet.pk,
    )
    return count


# A fleet reconcile is kept this long for the fleet page; older rows are pruned as new ones come.
FLEET_RECONCILE_KEPT = timedelta(days=7)


def start_fleet_reconcile(trigger: str, *, actor: Actor = None) -> FleetReconcile:
    """Record a reconcile of every live cluster from now on (the caller fans it out)."""
    ids = sorted(Cluster.objects.exclude(state=ClusterState.RETIRED).values_list("id", flat=True))
    fleet = FleetReconcile.objects.create(
        trigger=trigger,
        requested_by=account_of(actor),
        cluster_ids=ids,
    )
    FleetReconcile.objects.filter(requested_at__lt=timezone.now() - FLEET_RECONCILE_KEPT).delete()
    return fleet


def _queue_on_commit(cluster_id: int, trigger: str) -> None:
    queue.send_on_commit("clusters.tasks.reconcile_cluster_task", cluster_id, trigger)


RETIRE_LOCK_WAIT_S = 30.0


def retire_cluster(
    cluster: Cluster, *, remove_owned: bool = True, actor: Actor = None, reason: str = ""
) -> ReconcileRun | None:
    """Retire a cluster; first remove every object Warden owns there, if asked and reachable.

    When removal fails the cluster is not retired, so nothing Warden wrote is left behind
    unnoticed; retire with remove_owned=False to give it up as it is. The record is kept.
    """
    if cluster.state == ClusterState.RETIRED:
        raise ValidationError(f"Cluster {cluster.name} is already retired")
    run = None
    if remove_owned:
        # Wait for a reconcile under way to finish, so that it does not write after the removal.
        with locks.cluster_lock(cluster.pk, wait_s=RETIRE_LOCK_WAIT_S) as held:
            if not held:
                raise ValidationError(
                    f"{cluster.name} is being reconciled right now; try again in a minute."
                )
            run = _remove_owned(cluster)
        if run.status != ReconcileStatus.SUCCEEDED:
            raise ValidationError(
                f"Could not remove Warden's objects from {cluster.name}: {run.error}. Retire "
                "without removing them, or fix the cluster's access first."
            )
    with transaction.atomic():
        before = cluster_facts(cluster)
        cluster.state = ClusterState.RETIRED
        cluster.retired_at = timezone.now()
        cluster.save(update_fields=["state", "retired_at", "updated_at"])
        audit.record(
            "cluster.retired",
            actor=actor,
            obj=cluster,
            before=before,
            after={
                **cluster_facts(cluster),
                "removed_owned": remove_owned,
                "deleted": run.deleted if run else 0,
            },
            reason=reason,
        )
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


# --- shadow access ----------------------------------------------------------------------------


def scan_shadow_access(cluster_id: int) -> list[dict[str, object]]:
    """Report bindings Warden does not own that name directory people or teams; touch nothing.

    Runs apart from the reconcile (it lists every binding, not only Warden's), on its own
    schedule. A scan that cannot reach the cluster keeps the last findings.
    """
    cluster = Cluster.objects.get(pk=cluster_id)
    if cluster.state == ClusterState.RETIRED:
        return []
    people = Person.objects.filter(is_active=True).values_list("username", flat=True)
    teams = Team.objects.filter(is_active=True).values_list("name", flat=True)
    subjects = {("User", cluster.user_prefix + u) for u in people.iterator(chunk_size=5000)}
    subjects |= {("Group", cluster.group_prefix + t) for t in teams.iterator(chunk_size=5000)}
    client = k8s.client_for(endpoint_for(cluster))
    found = shadow_access(client, subjects)
    previous = {_finding_key(f) for f in cluster.shadow_access or []}
    new = [f for f in found if _finding_key(f) not in previous]
    with transaction.atomic():
        cluster.shadow_access = found
        cluster.shadow_scanned_at = timezone.now()
        cluster.save(update_fields=["shadow_access", "shadow_scanned_at", "updated_at"])
        if new:
            audit.record(
                "cluster.shadow_access_found",
                obj=cluster,
                after={"new": new[:100], "total": len(found)},
                reason="bindings outside Warden give directory people access",
            )
    return found


def _finding_key(finding: dict[str, object]) -> tuple[object, ...]:
    return (
        finding.get("kind"),
        finding.get("namespace"),
        finding.get("name"),
        str(finding.get("subjects")),
    )


# --- secrets at rest ----------------------------------------------------------------------------


def rotate_encryption_key(
    *, batch_size: int = 500, dry_run: bool = False, actor: Actor = None
) -> list[crypto.RotationCount]:
    """Re-encrypt every stored secret with the newest WARDEN_ENCRYPTION_KEYS key, audited."""
    counts = crypto.reencrypt_all(batch_size=batch_size, dry_run=dry_run)
    if not dry_run:
        with transaction.atomic():
            audit.record(
                "encryption.secrets_reencrypted",
                actor=actor,
                object_type="clusters.crypto",
                object_repr="stored secrets",
                after=[dataclasses.asdict(c) for c in counts],
            )
    return counts


# --- namespaces a request names ---------------------------------------------------------------

NAMESPACES_CACHE_S = 60


def answering_clusters() -> dict[str, Cluster]:
    """Live clusters whose last reconcile succeeded, by name: the ones worth asking now."""
    clusters = Cluster.objects.filter(
        state=ClusterState.ACTIVE, last_reconcile_status=ReconcileStatus.SUCCEEDED
    )
    return {cluster.name: cluster for cluster in clusters}


def namespaces_missing(
    cluster_names: Iterable[str],
    wanted: Iterable[str],
    answering: dict[str, Cluster] | None = None,
) -> dict[str, list[str]]:
    """The namespaces named (not patterns) that do not exist on each cluster, so that people
    learn it before approving. Only clusters whose last reconcile succeeded are asked (one
    LIST, cached for a minute); a cluster that does not answer is left out."""
    names = sorted({n for n in wanted if not any(c in n for c in "*?[")})
    if not names:
        return {}
    answering = answering_clusters() if answering is None else answering
    missing: dict[str, list[str]] = {}
    for name in sorted(set(cluster_names) & set(answering)):
        cluster = answering[name]
        existing = _namespaces_of(cluster)
        absent = [n for n in names if existing is not None and n not in existing]
        if absent:
            missing[cluster.name] = absent
    return missing


def _namespaces_of(cluster: Cluster) -> set[str] | None:
    where = hashlib.sha256(cluster.api_url.encode()).hexdigest()[:16]
    key = f"warden:namespaces:{cluster.pk}:{where}"
    cached = cache.get(key)
    if cached is None:
        try:
            listed = k8s.client_for(endpoint_for(cluster)).list("Namespace")
            cached = [item["metadata"]["name"] for item in listed]
        except KubeError:
            return None
        cache.set(key, cached, NAMESPACES_CACHE_S)
    return set(cached)
