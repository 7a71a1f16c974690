"""Access requests: ask, preview, decide, grant, end — the self-service at the heart of Warden.

pending -> active (approved: a grant exists) | denied | cancelled; active -> expired | revoked.
Every transition happens under a row lock on the request, so two approvers clicking at once are
counted once and a request decided by one cannot be decided again by the other. Each one writes
an audit event in the same transaction and notifies after commit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from access import audit, notify
from access import namespace_patterns as patterns
from access.choices import Decision, Environment, GrantSource, RequestState, Tier
from access.fleet import NamespaceCheck, fleet
from access.models import (
    AccessRequest,
    Approval,
    ApprovalPolicy,
    Grant,
    Membership,
    Person,
    Role,
    Team,
)
from access.permissions import decidable_by, is_operator, people_who_may_approve
from access.services.grants import clean_scope, grant_access, revoke_grant
from access.signals import service_account_request_decided
from access.specs import ClusterSpec, GrantSpec, RoleDefinitionSpec, RoleSpec, place_of, role_specs
from access.words import duration_in_words, moment
from core.types import Actor, account_of

logger = logging.getLogger(__name__)
MIN_JUSTIFICATION = 10
APPROVERS_NAMED = 5


@dataclass(frozen=True)
class Reach:
    """What a request would give on one cluster."""

    cluster: str
    environment: str
    tier: str
    # None: the role is not offered there (and the request gives nothing there).
    definition: RoleDefinitionSpec | None
    namespaces: tuple[str, ...]

    @property
    def what(self) -> str:
        d = self.definition
        if d is None:
            return "not offered here"
        return f"ClusterRole {d.cluster_role}" if d.cluster_role else "rules managed by Warden"

    @property
    def where(self) -> str:
        if self.definition is None:
            return "—"
        if not self.namespaces:
            if self.definition.cluster_wide and not self.definition.namespaces:
                return "every namespace, and the cluster's own resources"
            return "no namespace yet: name the namespaces you need"
        return ", ".join(self.namespaces)


@dataclass
class Preview:
    """Everything a requester sees before submitting, and every reason it would be refused."""

    role: Role
    reach: list[Reach] = field(default_factory=list)
    policy: ApprovalPolicy | None = None
    approvals_required: int = 1
    approver_teams: list[Team] = field(default_factory=list)
    manager_may_approve: bool = False
    self_approval_forbidden: bool = True
    max_duration: timedelta | None = None
    default_duration: timedelta | None = None
    duration: timedelta | None = None
    # For this requester, this role, on every cluster of the scope; else why not.
    break_glass_allowed: bool = False
    break_glass_duration: timedelta | None = None
    break_glass_refusal: str = ""
    # Every governing policy lets the requester extend in one click (up to max_duration in all).
    self_extension: bool = False
    # Every "environment/tier" the scope can ever reach where the role exists (clusters that
    # join later included): the policies of all of them govern, and the grant covers only them.
    covers: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # What to know before submitting that does not stop it (a namespace not there yet).
    notes: list[str] = field(default_factory=list)
    # Who would see it in their inbox, by name (the first few).
    approver_people: list[Person] = field(default_factory=list)
    more_approvers: int = 0

    @property
    def clusters(self) -> list[Reach]:
        return [r for r in self.reach if r.definition is not None]

    @property
    def auto_approved(self) -> bool:
        return self.approvals_required == 0

    @property
    def approvers(self) -> str:
        if self.approvals_required == 0:
            return "nobody: granted at once"
        teams = ", ".join(t.name for t in self.approver_teams)
        names = [p.display_name or p.username for p in self.approver_people]
        if self.more_approvers:
            names.append(f"{self.more_approvers} more")
        who = ", ".join(names) or "nobody yet: ask an operator to add approvers"
        who += f" (team {teams})" if teams else " (Warden operators)"
        if self.manager_may_approve:
            who += ", or your manager"
        count = self.approvals_required
        return f"{count} approval{'s' if count != 1 else ''} by {who}"


def preview_request(
    person: Person,
    role: Role,
    *,
    duration: timedelta | None = None,
    break_glass: bool = False,
    exclude_request: int | None = None,
    service_account: str = "",
    **scope: Any,
) -> Preview:
    """What a request would grant where, who approves it, and why it would be refused.

    `service_account`: the access is for that managed service account, not for the person
    (its own namespace applies when no namespace is named; what the person holds is moot)."""
    preview = Preview(role=role)
    try:
        scope = clean_scope(**scope)
    except ValidationError as exc:
        preview.problems.extend(exc.messages)
        return preview
    clusters, roles = fleet().cluster_specs(), role_specs()
    unknown = unknown_clusters(scope["clusters"], clusters)
    if unknown:
        preview.problems.append(
            f"No cluster is called {', '.join(unknown)}: name registered clusters (the fleet "
            "page lists them), or ask by environment and tier."
        )
        return preview
    preview.reach = reach_of(role.name, scope, clusters, roles)
    if not preview.reach:
        preview.problems.append(
            "No cluster matches this scope: widen the environments, tiers or clusters."
        )
        return preview
    if not preview.clusters:
        preview.problems.append(
            f"{role.display_name} is not offered on any cluster of this scope: pick another role "
            "or scope."
        )
        return preview
    if (
        not service_account
        and not scope["namespaces"]
        and any(
            not r.definition.cluster_wide and not r.definition.namespaces
            for r in preview.clusters
            if r.definition
        )
    ):
        preview.problems.append(
            f"{role.display_name} is granted in namespaces: name the namespaces you need."
        )
    preview.covers = coverage(role.name, scope, clusters, roles)
    preview.notes = missing_namespace_notes([r.cluster for r in preview.clusters], scope)
    _apply_policy(preview, role, person)
    if preview.policy is None:
        return preview
    approvers = people_who_may_approve(
        preview.approver_teams, person if preview.self_approval_forbidden else None
    )
    preview.approver_people = list(approvers[:APPROVERS_NAMED])
    preview.more_approvers = max(0, approvers.count() - APPROVERS_NAMED)
    limit = preview.break_glass_duration if break_glass else preview.max_duration
    # Zero is an answer to refuse with a reason, not a blank to fill with the default.
    if duration is None:
        duration = limit if break_glass else preview.default_duration
    preview.duration = duration
    if break_glass and service_account:
        preview.problems.append("A service account's access is never break-glass.")
    elif break_glass and not preview.break_glass_allowed:
        preview.problems.append(preview.break_glass_refusal)
    if preview.duration is not None and preview.duration <= timedelta(0):
        preview.problems.append("The duration must be positive: write e.g. 4h or 3d.")
    elif preview.duration and limit and preview.duration > limit:
        preview.problems.append(
            f"At most {_human(limit)} can be asked for here (you asked for "
            f"{_human(preview.duration)})."
        )
    if not service_account:
        preview.problems.extend(
            _duplicates(person, role, scope, preview, clusters, roles, exclude_request)
        )
    return preview


def unknown_clusters(names: Iterable[str], clusters: Iterable[ClusterSpec]) -> list[str]:
    """The names no registered (not retired) cluster has."""
    known = {c.name for c in clusters}
    return sorted(set(names) - known)


def coverage(
    role_name: str,
    scope: Mapping[str, Any],
    clusters: Iterable[ClusterSpec],
    roles: Mapping[str, RoleSpec],
) -> list[str]:
    """Every "environment/tier" a scope can ever reach where the role exists (pure).

    Named clusters reach their own; otherwise every pair of the environments and tiers named
    (none named: all of them), whether a cluster is there yet or not: a cluster that joins
    later, or whose environment or tier is edited, is covered only if the approval covered it.
    """
    spec = roles.get(role_name)
    if spec is None:
        return []
    environments = list(scope.get("environments") or Environment.values)
    tiers = list(scope.get("tiers") or Tier.values)
    named = set(scope.get("clusters") or ())
    if named:
        places = {(c.environment, c.tier) for c in clusters if c.name in named}
        places = {(e, t) for e, t in places if e in environments and t in tiers}
    else:
        places = {(e, t) for e in environments for t in tiers}
    return sorted(
        place_of(probe)
        for probe in (ClusterSpec(name="", environment=e, tier=t) for e, t in places)
        if spec.definition_for(probe) is not None
    )


def _reach(role: Role, scope: dict[str, Any]) -> list[Reach]:
    return reach_of(role.name, scope, fleet().cluster_specs(), role_specs())


def missing_namespace_notes(
    clusters: list[str], scope: Mapping[str, Any], check: NamespaceCheck | None = None
) -> list[str]:
    """Sentences about namespaces a request names that a cluster does not have (yet); `check`
    may be one fleet().namespace_check() shared by a page of requests."""
    check = check or fleet().namespace_check()
    missing = check(clusters, scope.get("namespaces") or [])
    return [
        f"{', '.join(names)} does not exist on {cluster} yet: nothing is granted there until "
        "someone creates it."
        if len(names) == 1
        else f"{', '.join(names)} do not exist on {cluster} yet: nothing is granted there "
        "until someone creates them."
        for cluster, names in missing.items()
    ]


def reach_of(
    role_name: str,
    scope: Mapping[str, Any],
    clusters: Iterable[ClusterSpec],
    roles: Mapping[str, RoleSpec],
) -> list[Reach]:
    """What a role over a scope would give on each cluster the scope reaches (pure)."""
    probe = GrantSpec(
        id=0,
        role=role_name,
        person="-",
        environments=tuple(scope.get("environments") or ()),
        tiers=tuple(scope.get("tiers") or ()),
        clusters=tuple(scope.get("clusters") or ()),
    )
    wanted_ns = tuple(scope.get("namespaces") or ())
    spec = roles.get(role_name)
    reach = []
    for cluster in clusters:
        if not probe.reaches(cluster):
            continue
        definition = spec.definition_for(cluster) if spec else None
        namespaces: tuple[str, ...] = ()
        if definition is not None:
            namespaces = wanted_ns or (() if definition.cluster_wide else definition.namespaces)
        reach.append(Reach(cluster.name, cluster.environment, cluster.tier, definition, namespaces))
    return reach


def _policies() -> list[ApprovalPolicy]:
    return list(
        ApprovalPolicy.objects.prefetch_related(
            "approver_teams", "break_glass_teams", "break_glass_roles"
        ).order_by("pk")
    )


def break_glass_refusal(policy: ApprovalPolicy, person: Person, role: Role) -> str:
    """Why this person may not break glass for this role under this policy ("" if they may):
    it must be allowed there, for this role, and they must be in one of its break-glass teams."""
    where = f"the policy “{policy.name}”"
    if not policy.break_glass_allowed:
        return f"Break-glass access is not allowed under {where}."
    roles = sorted(r.name for r in policy.break_glass_roles.all())
    if role.name not in roles:
        return (
            f"Break-glass access is not allowed for {role.name} under {where} (only for "
            f"{', '.join(roles) or 'no role'})."
        )
    teams = {t.pk: t.name for t in policy.break_glass_teams.all() if t.is_active}
    member = Membership.objects.filter(
        person=person, team_id__in=list(teams), team__is_active=True
    ).exists()
    if not member:
        return (
            f"Break-glass access is not allowed for you under {where}: only members of "
            f"{', '.join(sorted(teams.values())) or 'no team'} may break glass there."
        )
    return ""


def _apply_policy(preview: Preview, role: Role, person: Person) -> None:
    """The strictest of the policies governing every environment/tier the request can reach."""
    policies = _policies()
    governing = []
    for place in preview.covers:
        environment, _, tier = place.partition("/")
        matching = [p for p in policies if p.matches(environment, tier, role.pk)]
        policy = max(matching, key=ApprovalPolicy.specificity, default=None)
        if policy is None:
            where = ", ".join(r.cluster for r in preview.clusters if place_of_reach(r) == place)
            preview.problems.append(
                f"No approval policy covers {where + ' ' if where else ''}({place}): ask an "
                "operator to add one."
            )
            return
        governing.append(policy)
    if not governing:
        preview.problems.append(f"{role.display_name} is not offered anywhere in this scope.")
        return
    strictest = max(governing, key=lambda p: (p.approvals_required, -p.max_duration, p.pk))
    preview.policy = strictest
    preview.approvals_required = strictest.approvals_required
    preview.approver_teams = list(strictest.approver_teams.all())
    preview.manager_may_approve = strictest.manager_may_approve
    preview.self_approval_forbidden = any(p.self_approval_forbidden for p in governing)
    preview.max_duration = min(p.max_duration for p in governing)
    preview.default_duration = min(min(p.default_duration for p in governing), preview.max_duration)
    preview.self_extension = all(p.self_extension for p in governing)
    distinct = {p.pk: p for p in governing}.values()
    refusals = [why for p in distinct if (why := break_glass_refusal(p, person, role))]
    preview.break_glass_allowed = not refusals
    preview.break_glass_refusal = refusals[0] if refusals else ""
    if preview.break_glass_allowed:
        preview.break_glass_duration = min(
            p.break_glass_duration or timedelta(hours=1) for p in governing
        )


def place_of_reach(reach: Reach) -> str:
    return f"{reach.environment}/{reach.tier}"


def _duplicates(
    person: Person,
    role: Role,
    scope: dict[str, Any],
    preview: Preview,
    clusters: list[ClusterSpec],
    roles: Mapping[str, RoleSpec],
    exclude_request: int | None = None,
) -> list[str]:
    """Why this request would only repeat access already held or already asked for."""
    pending = AccessRequest.objects.filter(
        requester=person, role=role, state=RequestState.PENDING, for_service_account=""
    )
    if exclude_request:
        pending = pending.exclude(pk=exclude_request)
    wanted = {r.cluster for r in preview.clusters}
    for other in pending:
        theirs = reach_of(role.name, _scope_of(other), clusters, roles)
        overlap = wanted & {r.cluster for r in theirs if r.definition}
        if overlap and _namespaces_overlap(scope["namespaces"], other.namespaces):
            return [
                f"You already asked for {role.name} on {', '.join(sorted(overlap))} in request "
                f"#{other.pk}, which is waiting for approval."
            ]
    until = timezone.now() + (preview.duration or timedelta(0))
    held = _grants_held(person, role)
    if not held:
        return []
    by_name = {c.name: c for c in clusters}
    for grant in held:
        if grant.expires_at is not None and grant.expires_at < until:
            continue  # ends sooner: asking for longer is an extension, not a duplicate
        spec = _spec(grant)
        covered = all(
            spec.reaches(by_name[r.cluster])
            and (spec.covers is None or place_of(by_name[r.cluster]) in spec.covers)
            and _covers(spec.namespaces, r.namespaces)
            for r in preview.clusters
        )
        if covered:
            via = f"team {grant.team.name}" if grant.team is not None else "you personally"
            until_text = (
                f"until {grant.expires_at:%Y-%m-%d %H:%M} UTC" if grant.expires_at else "standing"
            )
            return [
                f"You already hold {role.name} on every cluster and namespace of this request "
                f"(grant #{grant.pk}, through {via}, {until_text})."
            ]
    return []


def _grants_held(person: Person, role: Role) -> list[Grant]:
    teams = Membership.objects.filter(person=person, team__is_active=True).values("team_id")
    return list(
        Grant.objects.in_force(timezone.now())
        .filter(Q(person=person) | Q(team_id__in=teams), role=role)
        .select_related("team", "role")
    )


def _spec(grant: Grant) -> GrantSpec:
    return GrantSpec(
        id=grant.pk,
        role=grant.role.name,
        person="-",
        environments=tuple(grant.environments or ()),
        tiers=tuple(grant.tiers or ()),
        clusters=tuple(grant.clusters or ()),
        selector=tuple(sorted((grant.cluster_selector or {}).items())),
        namespaces=tuple(grant.namespaces or ()),
        covers=None if grant.covers is None else tuple(grant.covers),
    )


def _covers(held: Iterable[str], wanted: Iterable[str]) -> bool:
    """Every namespace the wanted patterns reach is reached by the held ones (a true subset,
    not fnmatch of one pattern's text by another); no patterns held = the role's default."""
    held, wanted = tuple(held), tuple(wanted)
    if not held:
        return True
    if not wanted:
        return False
    return all(patterns.is_subset(w, held) for w in wanted)


def _namespaces_overlap(a: Iterable[str], b: Iterable[str]) -> bool:
    a, b = tuple(a), tuple(b)
    if not a or not b:
        return True
    return patterns.overlap(a, b)


def _scope_of(req: AccessRequest) -> dict[str, Any]:
    return {
        "environments": req.environments,
        "tiers": req.tiers,
        "clusters": req.clusters,
        "cluster_selector": {},
        "namespaces": req.namespaces,
    }


def _human(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    if hours >= 48 and hours % 24 == 0:
        return f"{int(hours // 24)} days"
    if hours >= 1 and hours == int(hours):
        return f"{int(hours)} hour{'s' if hours != 1 else ''}"
    return f"{int(delta.total_seconds() // 60)} minutes"


def request_facts(req: AccessRequest) -> dict[str, Any]:
    return {
        "requester": req.requester.username,
        "role": req.role.name,
        "environments": req.environments,
        "tiers": req.tiers,
        "clusters": req.clusters,
        "namespaces": req.namespaces,
        "duration_s": int(req.duration.total_seconds()),
        "ticket": req.ticket,
        "break_glass": req.break_glass,
        "state": req.state,
        "approvals_required": req.approvals_required,
        "for_service_account": req.for_service_account,
        "covers": req.covers,
    }


# --- submitting -------------------------------------------------------------------------------


def submit_request(
    *,
    requester: Person,
    role: Role,
    justification: str,
    duration: timedelta | None = None,
    ticket: str = "",
    break_glass: bool = False,
    actor: Actor = None,
    extends: AccessRequest | None = None,
    service_account: str = "",
    **scope: Any,
) -> AccessRequest:
    """File a request after the same checks the preview shows; auto-approve or break glass.

    With `service_account`, the access is asked for that managed service account (which the
    requester declared): the same policy decides, and approval changes the account instead of
    granting the requester anything."""
    justification = justification.strip()
    if not requester.is_active:
        raise ValidationError(f"{requester.username} is not active in the directory.")
    if len(justification) < MIN_JUSTIFICATION:
        raise ValidationError(
            "Say why you need this access (at least a sentence): approvers decide on it."
        )
    if extends is not None and extends.requester_id != requester.pk:
        raise PermissionDenied("Only the requester can extend their own access.")
    with transaction.atomic():
        # One person's requests are filed one at a time, so two clicks make one request.
        Person.objects.select_for_update().filter(pk=requester.pk).first()
        preview = preview_request(
            requester,
            role,
            duration=duration,
            break_glass=break_glass,
            service_account=service_account,
            **scope,
        )
        if preview.problems:
            raise ValidationError(preview.problems)
        assert preview.duration is not None
        cleaned = clean_scope(**scope)
        req = AccessRequest.objects.create(
            requester=requester,
            role=role,
            environments=cleaned["environments"],
            tiers=cleaned["tiers"],
            clusters=cleaned["clusters"],
            namespaces=cleaned["namespaces"],
            duration=preview.duration,
            justification=justification,
            ticket=ticket.strip()[:100],
            break_glass=break_glass,
            for_service_account=service_account,
            covers=preview.covers,
            policy=preview.policy,
            approvals_required=preview.approvals_required,
            manager_may_approve=preview.manager_may_approve,
            self_approval_forbidden=preview.self_approval_forbidden,
            created_by=account_of(actor),
            extends=extends,
        )
        req.approver_teams.set(preview.approver_teams)
        audit.record(
            "request.submitted",
            actor=actor,
            obj=req,
            after=request_facts(req),
            reason=justification,
        )
        if break_glass:
            logger.warning(
                "BREAK-GLASS access: %s takes %s on %s (request #%s)",
                requester.username,
                role.name,
                ", ".join(r.cluster for r in preview.clusters),
                req.pk,
            )
            _activate(req, actor, action="request.break_glass", comment="break-glass")
            notify.later("break_glass", req.pk)
        elif preview.auto_approved:
            _activate(req, actor, action="request.auto_approved", comment="policy: auto-approve")
            notify.later("decided", req.pk)
        else:
            notify.later("submitted", req.pk)
    return req


def _activate(req: AccessRequest, actor: Actor, *, action: str, comment: str) -> None:
    """Approved: the grant exists from now until the request's duration is up (for a service
    account: the account is told, and changes when all it asked for is approved)."""
    now = timezone.now()
    if req.for_service_account:
        req.state = RequestState.ACTIVE
        req.decided_at = now
        req.decision_comment = req.decision_comment or comment
        req.save(update_fields=["state", "decided_at", "decision_comment"])
        audit.record(action, actor=actor, obj=req, after={"state": req.state}, reason=comment)
        service_account_request_decided.send(sender=AccessRequest, request=req, actor=actor)
        return
    grant = grant_access(
        role=req.role,
        person=req.requester,
        actor=actor,
        reason=f"request #{req.pk}: {req.justification}",
        source=GrantSource.REQUEST,
        expires_at=now + req.duration,
        covers=list(req.covers),
        environments=req.environments,
        tiers=req.tiers,
        clusters=req.clusters,
        namespaces=req.namespaces,
    )
    req.grant = grant
    req.state = RequestState.ACTIVE
    req.decided_at = now
    req.expires_at = grant.expires_at
    req.decision_comment = req.decision_comment or comment
    req.save(update_fields=["grant", "state", "decided_at", "expires_at", "decision_comment"])
    audit.record(
        action,
        actor=actor,
        obj=req,
        after={"state": req.state, "grant": grant.pk, "expires_at": req.expires_at},
        reason=comment,
    )


# --- deciding ---------------------------------------------------------------------------------


def may_approve(user: Any, req: AccessRequest) -> tuple[bool, str]:
    """Whether this user may decide this request now (the inbox's rule, permissions.decidable_by),
    and if not, why (said to them)."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False, "Log in to decide requests."
    rule = decidable_by(user)
    if AccessRequest.objects.filter(pk=req.pk).filter(rule).exists():
        return True, ""
    person: Person | None = getattr(user, "person", None)
    if person is not None and not person.is_active:
        return False, "Your account is no longer active in the directory."
    if person is not None and person.pk == req.requester_id and req.self_approval_forbidden:
        return False, "You cannot approve your own request."
    names = ", ".join(t.name for t in req.approver_teams.all()) or "Warden operators"
    return False, f"Only {names} may decide this request."


def approve_request(
    req: AccessRequest,
    approver: Any,
    *,
    comment: str = "",
    clusters: Iterable[str] | None = None,
    namespaces: Iterable[str] | None = None,
    duration: timedelta | None = None,
) -> AccessRequest:
    """One approval, optionally narrowing the scope or shortening the duration.

    When enough distinct approvers have approved, the grant is made and the request is active.
    """
    with transaction.atomic():
        req = _locked(req.pk)
        _must_be_pending(req)
        allowed, why = may_approve(approver, req)
        if not allowed:
            raise PermissionDenied(why)
        if req.approvals.filter(approver=approver).exists():
            raise ValidationError("You have already approved this request.")
        narrowed = _narrow(req, clusters, namespaces, duration)
        try:
            with transaction.atomic():
                Approval.objects.create(
                    request=req,
                    approver=approver,
                    decision=Decision.APPROVE,
                    comment=comment,
                    narrowed=narrowed,
                )
        except IntegrityError:
            raise ValidationError("You have already approved this request.") from None
        count = req.approvals.filter(decision=Decision.APPROVE).count()
        audit.record(
            "request.approved",
            actor=approver,
            obj=req,
            before={k: v[0] for k, v in narrowed.items()} or None,
            after={
                **{k: v[1] for k, v in narrowed.items()},
                "approvals": count,
                "approvals_required": req.approvals_required,
            },
            reason=comment,
        )
        if count >= max(1, req.approvals_required):
            req.decision_comment = comment
            _activate(req, approver, action="request.activated", comment=comment)
            notify.later("decided", req.pk)
        else:
            notify.later("approval", req.pk)
    return req


def _narrow(
    req: AccessRequest,
    clusters: Iterable[str] | None,
    namespaces: Iterable[str] | None,
    duration: timedelta | None,
) -> dict[str, list[Any]]:
    """Apply an approver's narrowing to the request; returns field -> [before, after]."""
    changed: dict[str, list[Any]] = {}
    asked_clusters = sorted({c.strip() for c in clusters or () if c.strip()})
    asked_namespaces = sorted({n.strip() for n in namespaces or () if n.strip()})
    if req.for_service_account and (
        (asked_clusters and asked_clusters != sorted(req.clusters))
        or (asked_namespaces and asked_namespaces != sorted(req.namespaces))
    ):
        # The account is declared as a whole: approve it as asked, or deny with what to change.
        raise ValidationError(
            f"A request for service account {req.for_service_account} cannot be narrowed: "
            "approve it as it is, or deny it saying which clusters or namespaces to drop."
        )
    reached = {r.cluster for r in _reach(req.role, _scope_of(req)) if r.definition}
    if clusters is not None:
        chosen = sorted({c.strip() for c in clusters if c.strip()})
        if chosen and chosen != sorted(req.clusters or reached):
            outside = sorted(set(chosen) - reached)
            if outside:
                raise ValidationError(
                    f"{', '.join(outside)} is not part of this request: an approver can only "
                    "narrow it."
                )
            changed["clusters"] = [req.clusters, chosen]
            req.clusters = chosen
            kept = {place_of_reach(r) for r in _reach(req.role, _scope_of(req)) if r.definition}
            req.covers = [place for place in req.covers if place in kept]
    if namespaces is not None:
        chosen = sorted({n.strip() for n in namespaces if n.strip()})
        if chosen and chosen != sorted(req.namespaces):
            if req.namespaces:
                wider = [
                    (n, example)
                    for n in chosen
                    if (example := patterns.outside(n, req.namespaces)) is not None
                ]
                if wider:
                    pattern, example = wider[0]
                    raise ValidationError(
                        "Those namespaces are not all part of this request: an approver can only "
                        f"narrow it ({pattern} would also reach {example or 'an empty name'}, "
                        "which the request does not)."
                    )
            clean_scope(namespaces=chosen)
            changed["namespaces"] = [req.namespaces, chosen]
            req.namespaces = chosen
    if duration is not None and duration != req.duration:
        if duration <= timedelta(0) or duration > req.duration:
            raise ValidationError(
                f"An approver can shorten the duration, not lengthen it (at most "
                f"{_human(req.duration)})."
            )
        changed["duration_s"] = [int(req.duration.total_seconds()), int(duration.total_seconds())]
        req.duration = duration
    if changed:
        req.save(update_fields=["clusters", "namespaces", "duration", "covers"])
    return changed


def deny_request(req: AccessRequest, approver: Any, *, comment: str) -> AccessRequest:
    """One eligible approver's "no" ends the request."""
    comment = comment.strip()
    if not comment:
        raise ValidationError("Say why you deny it: the requester reads it.")
    with transaction.atomic():
        req = _locked(req.pk)
        _must_be_pending(req)
        allowed, why = may_approve(approver, req)
        if not allowed:
            raise PermissionDenied(why)
        Approval.objects.update_or_create(
            request=req,
            approver=approver,
            defaults={"decision": Decision.DENY, "comment": comment},
        )
        req.state = RequestState.DENIED
        req.decided_at = timezone.now()
        req.decision_comment = comment
        req.save(update_fields=["state", "decided_at", "decision_comment"])
        audit.record(
            "request.denied", actor=approver, obj=req, after={"state": req.state}, reason=comment
        )
        tell_service_account(req, approver)
        notify.later("decided", req.pk)
    return req


def cancel_request(req: AccessRequest, user: Any, *, reason: str = "") -> AccessRequest:
    """The requester (or an operator) withdraws a request still waiting for approval."""
    with transaction.atomic():
        req = _locked(req.pk)
        if not _is_requester(user, req) and not is_operator(user):
            raise PermissionDenied("Only the requester or an operator can cancel a request.")
        _must_be_pending(req)
        req.state = RequestState.CANCELLED
        req.ended_at = timezone.now()
        req.ended_by = user
        req.save(update_fields=["state", "ended_at", "ended_by"])
        audit.record(
            "request.cancelled", actor=user, obj=req, after={"state": req.state}, reason=reason
        )
        tell_service_account(req, user)
    return req


def withdraw_service_account_requests(
    requests: Iterable[AccessRequest], *, reason: str, actor: Actor = None
) -> None:
    """A service account's change was replaced, denied or retired: its requests still waiting
    are cancelled (audited), so nobody approves what no longer exists."""
    for req in requests:
        req = _locked(req.pk)
        if req.state != RequestState.PENDING:
            continue
        req.state = RequestState.CANCELLED
        req.ended_at = timezone.now()
        req.save(update_fields=["state", "ended_at"])
        audit.record(
            "request.cancelled", actor=actor, obj=req, after={"state": req.state}, reason=reason
        )


def tell_service_account(req: AccessRequest, actor: Actor) -> None:
    if req.for_service_account:
        service_account_request_decided.send(sender=AccessRequest, request=req, actor=actor)


def end_access(req: AccessRequest, user: Any, *, reason: str = "") -> AccessRequest:
    """Revoke active access early: "I'm done" from the requester, or an approver or operator."""
    with transaction.atomic():
        req = _locked(req.pk)
        if req.state != RequestState.ACTIVE:
            raise ValidationError(
                f"This request is {req.get_state_display().lower()}: no access to end."
            )
        if req.for_service_account:
            raise ValidationError(
                f"This access belongs to service account {req.for_service_account}: change or "
                "retire the account instead."
            )
        if not (_is_requester(user, req) or is_operator(user) or may_approve(user, req)[0]):
            raise PermissionDenied(
                "Only the requester, an approver of this request or an operator can end it."
            )
        req.state = RequestState.REVOKED
        req.ended_at = timezone.now()
        req.ended_by = user
        req.save(update_fields=["state", "ended_at", "ended_by"])
        if req.grant is not None:
            revoke_grant(req.grant, actor=user, reason=reason or f"request #{req.pk} ended")
        audit.record(
            "request.revoked", actor=user, obj=req, after={"state": req.state}, reason=reason
        )
        notify.later("ended", req.pk)
    return req


@dataclass(frozen=True)
class ExtensionOffer:
    """Whether the requester may extend this access in one click, until when at most, and the
    usual new end (one more usual duration); else why not, said to them."""

    latest: datetime | None = None
    usual: datetime | None = None
    refusal: str = ""


def extension_offer(req: AccessRequest, now: datetime | None = None) -> ExtensionOffer:
    """What the policies governing this access now allow its requester to extend by themselves:
    only where every one of them says so (self_extension), and never to last longer in all than
    the strictest one's longest duration (what an approver could have given at the start)."""
    now = now or timezone.now()
    grant = req.grant
    if req.state != RequestState.ACTIVE or grant is None or grant.expires_at is None:
        return ExtensionOffer(refusal="Only access in force can be extended.")
    if req.for_service_account or req.break_glass:
        what = "A service account's access" if req.for_service_account else "Break-glass access"
        return ExtensionOffer(refusal=f"{what} is not extended in one click: ask again.")
    if req.approvals.filter(narrowed__has_key="duration_s").exists():
        return ExtensionOffer(
            refusal=f"An approver gave this access {duration_in_words(req.duration)}: ask for "
            "more time, and it goes to the approvers again."
        )
    preview = preview_request(
        req.requester,
        req.role,
        duration=req.duration,
        exclude_request=req.pk,
        environments=req.environments,
        tiers=req.tiers,
        clusters=req.clusters,
        namespaces=req.namespaces,
    )
    if preview.policy is None or preview.max_duration is None:
        return ExtensionOffer(refusal="No approval policy covers this access any more: ask again.")
    if not preview.self_extension:
        return ExtensionOffer(
            refusal="Its approval policy sends every extension to the approvers: ask for more "
            "time, and it goes to them again."
        )
    latest = (grant.starts_at or grant.created_at) + preview.max_duration
    if latest <= max(grant.expires_at, now):
        return ExtensionOffer(
            refusal=f"It already lasts the longest its policy allows "
            f"({duration_in_words(preview.max_duration)}): ask again for more."
        )
    usual = min(latest, grant.expires_at + (preview.default_duration or preview.max_duration))
    return ExtensionOffer(latest=latest, usual=usual)


def extend_access(req: AccessRequest, user: Any, *, until: datetime | None = None) -> AccessRequest:
    """The requester extends their access in force in one click, where its policies allow it:
    to `until` (default: one more usual duration), never past the policy's longest duration."""
    with transaction.atomic():
        req = _locked(req.pk)
        if not _is_requester(user, req):
            raise PermissionDenied("Only the requester can extend their own access.")
        offer = extension_offer(req)
        if offer.latest is None or offer.usual is None:
            raise ValidationError(offer.refusal)
        until = until or offer.usual
        if until > offer.latest:
            raise ValidationError(
                f"Its policy allows this access until {moment(offer.latest)} at the latest."
            )
        if req.grant_id is None:
            raise ValidationError(offer.refusal or "This request has no access to extend.")
        grant = Grant.objects.select_for_update(of=("self",)).get(pk=req.grant_id)
        if grant.expires_at is None:
            raise ValidationError("This access has no end to extend.")
        if until <= grant.expires_at:
            raise ValidationError(
                "Pick a new end later than the current one: the access already lasts until "
                f"{moment(grant.expires_at)}."
            )
        before = grant.expires_at
        grant.expires_at = req.expires_at = until
        grant.save(update_fields=["expires_at"])
        # Reminded again before the new end, as before the first.
        req.reminded_at = None
        req.save(update_fields=["expires_at", "reminded_at"])
        audit.record(
            "request.extended",
            actor=user,
            obj=req,
            before={"expires_at": before},
            after={"expires_at": until},
            reason="extended by the requester in one click, as its approval policy allows",
        )
    return req


def review_break_glass(req: AccessRequest, reviewer: Any, *, comment: str) -> AccessRequest:
    """An approver looks back at break-glass access and says what they found."""
    comment = comment.strip()
    if not comment:
        raise ValidationError("Write what the review found.")
    with transaction.atomic():
        req = _locked(req.pk)
        if not req.break_glass:
            raise ValidationError("Only break-glass access is reviewed after the fact.")
        if req.reviewed_at is not None:
            raise ValidationError("This break-glass access has already been reviewed.")
        if _is_requester(reviewer, req):
            raise PermissionDenied("You cannot review your own break-glass access.")
        if not (may_approve(reviewer, req)[0] or is_operator(reviewer)):
            raise PermissionDenied("Only an approver or an operator can review it.")
        req.reviewed_at = timezone.now()
        req.reviewed_by = reviewer
        req.review_comment = comment
        req.save(update_fields=["reviewed_at", "reviewed_by", "review_comment"])
        audit.record("request.reviewed", actor=reviewer, obj=req, reason=comment)
    return req


def send_expiry_reminders(now: datetime | None = None) -> list[int]:
    """Remind requesters whose access ends soon, once each; returns the requests reminded."""
    now = now or timezone.now()
    window = timedelta(hours=settings.WARDEN_REMINDER_HOURS)
    due = AccessRequest.objects.filter(
        state=RequestState.ACTIVE,
        reminded_at__isnull=True,
        expires_at__gt=now,
        expires_at__lte=now + window,
    ).only("pk", "duration", "expires_at")
    reminded = []
    for req in due:
        # A short grant is reminded in its last quarter, not from its first minute.
        assert req.expires_at is not None
        if req.expires_at - now > min(window, req.duration / 4):
            continue
        updated = AccessRequest.objects.filter(pk=req.pk, reminded_at__isnull=True).update(
            reminded_at=now
        )
        if updated:
            reminded.append(req.pk)
            notify.later("expiring", req.pk)
    return reminded


def _locked(pk: int) -> AccessRequest:
    # Lock the request row only (not the grant it may join to).
    return (
        AccessRequest.objects.select_for_update(of=("self",))
        .select_related("requester", "role", "grant")
        .get(pk=pk)
    )


def _must_be_pending(req: AccessRequest) -> None:
    if req.state != RequestState.PENDING:
        raise ValidationError(
            f"This request is {req.get_state_display().lower()}; it can no longer be decided."
        )


def _is_requester(user: Any, req: AccessRequest) -> bool:
    person = getattr(user, "person", None) if getattr(user, "is_authenticated", False) else None
    return person is not None and person.pk == req.requester_id
