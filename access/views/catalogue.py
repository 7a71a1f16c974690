"""Standing grants and the role catalogue: plan before apply, then apply through the services."""

from __future__ import annotations

from typing import Any

import yaml
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from access import fleet, selectors, services
from access.choices import GrantSource
from access.forms import GrantForm, RoleDefinitionForm
from access.models import Grant, Role, RoleDefinition
from access.permissions import require_operator
from access.role_words import role_words
from access.services.grants import clean_definition, clean_scope
from access.views.sorting import sorting_of
from core.types import AuthenticatedRequest

PAGE_SIZE = 50


@login_required
def grant_list(request: AuthenticatedRequest) -> HttpResponse:
    require_operator(request.user)
    grants = Grant.objects.select_related("role", "team", "person").order_by("-created_at", "-id")
    show = request.GET.get("show", "in-force")
    if show == "in-force":
        grants = grants.in_force(timezone.now())
    source = request.GET.get("source", "")
    if source in GrantSource.values:
        grants = grants.filter(source=source)
    query = request.GET.get("q", "").strip()
    if query:
        grants = grants.filter(team__name__icontains=query) | grants.filter(
            person__username__icontains=query
        )
    sorting = sorting_of(request, GRANT_COLUMNS, default="-id")
    page = Paginator(sorting.apply(grants), PAGE_SIZE).get_page(request.GET.get("page"))
    kept = request.GET.copy()
    kept.pop("page", None)
    return render(
        request,
        "access/catalogue/grants.html",
        {
            "page": page,
            "show": show,
            "source": source,
            "q": query,
            "sorting": sorting,
            "query": kept.urlencode(),
        },
    )


# The grants table's sortable columns and what each sorts by.
GRANT_COLUMNS = {
    "id": ("id",),
    "subject": ("team__name", "person__username"),
    "role": ("role__rank", "role__name"),
    "source": ("source",),
    "until": ("expires_at",),
}


@login_required
def grant_new(request: AuthenticatedRequest) -> HttpResponse:
    """A standing grant: fill in, see the plan per cluster, then apply."""
    require_operator(request.user)
    plans = None
    form = GrantForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            scope = clean_scope(**form.scope())
        except ValidationError as exc:
            for message in exc.messages:
                form.add_error(None, message)
        else:
            if "apply" in request.POST:
                return _apply_grant(request, form, scope)
            plans = fleet.plan_new_grant(
                role=data["role"],
                team=data["team"],
                person=data["person"],
                expires_at=data["expires_at"],
                **scope,
            )
    return render(request, "access/catalogue/grant_new.html", {"form": form, "plans": plans})


def _apply_grant(request: HttpRequest, form: GrantForm, scope: dict[str, Any]) -> HttpResponse:
    data = form.cleaned_data
    try:
        grant = services.grant_access(
            role=data["role"],
            team=data["team"],
            person=data["person"],
            actor=request.user,
            reason=data["reason"],
            expires_at=data["expires_at"],
            **scope,
        )
    except ValidationError as exc:
        for message in exc.messages:
            form.add_error(None, message)
        return render(request, "access/catalogue/grant_new.html", {"form": form, "plans": None})
    messages.success(
        request, f"Grant #{grant.pk} is in force; the clusters it reaches reconcile now."
    )
    return redirect("grant-detail", pk=grant.pk)


@login_required
def grant_detail(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    """A grant, where it is in force, pending or failed, and (on request) its revoke plan."""
    require_operator(request.user)
    grant = get_object_or_404(Grant.objects.select_related("role", "team", "person"), pk=pk)
    rollout = selectors.grant_rollout(grant)
    plans = fleet.plan_revoke(grant) if request.GET.get("plan") == "revoke" else None
    return render(
        request,
        "access/catalogue/grant_detail.html",
        {"grant": grant, "rollout": rollout, "plans": plans},
    )


@login_required
@require_POST
def grant_revoke(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    operator = require_operator(request.user)
    grant = get_object_or_404(Grant, pk=pk)
    reason = request.POST.get("reason", "").strip()
    if not reason:
        messages.error(request, "Say why the grant is revoked: it goes into the audit trail.")
        return redirect("grant-detail", pk=pk)
    services.revoke_grant(grant, actor=operator, reason=reason)
    messages.success(request, f"Grant #{pk} is revoked; its bindings leave the clusters now.")
    return redirect("grant-detail", pk=pk)


@login_required
def role_list(request: AuthenticatedRequest) -> HttpResponse:
    """The role catalogue, in plain words, for everyone who can log in."""
    roles = Role.objects.prefetch_related("definitions").order_by("rank", "name")
    rows = [(role, zip(_ordered(role), role_words(role), strict=True)) for role in roles]
    return render(request, "access/catalogue/roles.html", {"rows": rows})


def _ordered(role: Role) -> list[RoleDefinition]:
    """A role's definitions as role_words lists them: general ones first."""
    return sorted(role.definitions.all(), key=lambda d: (bool(d.environment), bool(d.tier), d.pk))


@login_required
def role_define(request: AuthenticatedRequest, name: str) -> HttpResponse:
    """Redefine what a role is for an environment/tier: plan first, then apply."""
    operator = require_operator(request.user)
    role = get_object_or_404(Role, name=name)
    initial: dict[str, Any] = {"scope": "namespaces", "allowed": True}
    existing = RoleDefinition.objects.filter(
        role=role, environment=request.GET.get("environment", ""), tier=request.GET.get("tier", "")
    ).first()
    if existing is not None:
        initial = {
            "environment": existing.environment,
            "tier": existing.tier,
            "cluster_role": existing.cluster_role,
            "rules": _rules_text(existing.rules),
            "scope": existing.scope,
            "namespaces": " ".join(existing.namespaces),
            "allowed": existing.allowed,
        }
    form = RoleDefinitionForm(request.POST or None, initial=initial)
    plans = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        where = {"environment": data["environment"], "tier": data["tier"]}
        try:
            values = clean_definition(
                cluster_role=data["cluster_role"],
                rules=data["rules"],
                scope=data["scope"],
                namespaces=data["namespaces"],
                allowed=data["allowed"],
            )
            if "apply" in request.POST:
                services.set_role_definition(
                    role, actor=operator, reason=data["reason"], **where, **values
                )
                messages.success(
                    request, f"{role.display_name} is redefined; its clusters reconcile."
                )
                return redirect("role-list")
            plans = fleet.plan_role_definition(role, **where, **values)
        except ValidationError as exc:
            for message in exc.messages:
                form.add_error(None, message)
    return render(
        request, "access/catalogue/role_define.html", {"role": role, "form": form, "plans": plans}
    )


def _rules_text(rules: list[Any]) -> str:
    return yaml.safe_dump(rules, default_flow_style=None, sort_keys=False) if rules else ""
