"""Pages of the machine side: service accounts and legacy tokens. Thin callers of
clusters.serviceaccounts, with every object checked through clusters.permissions."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_http_methods, require_POST
from kombu.exceptions import OperationalError

from clusters import permissions, serviceaccounts
from clusters.choices import AccountState, DeliveryKind, GenerationState, LegacyTokenState
from clusters.forms import AccountForm, MigrateForm, ReasonForm, TargetForm
from clusters.models import DeliveryTarget, LegacyToken, ManagedServiceAccount, TokenGeneration
from clusters.tasks import scan_fleet_legacy_tokens_task
from core.types import AuthenticatedRequest


def _errors(exc: ValidationError) -> str:
    return " ".join(exc.messages)


@login_required
def account_list(request: AuthenticatedRequest) -> HttpResponse:
    accounts = (
        permissions.accounts_visible_to(request.user)
        .prefetch_related(
            "roles",
            Prefetch(
                "generations",
                queryset=TokenGeneration.objects.filter(state=GenerationState.ACTIVE),
                to_attr="active_generations",
            ),
        )
        .order_by("state", "namespace", "name")
    )
    return render(
        request,
        "clusters/sa_list.html",
        {
            "accounts": accounts,
            "may_declare": permissions.teams_user_may_own(request.user).exists(),
            "operator": permissions.is_operator(request.user),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def account_create(request: AuthenticatedRequest) -> HttpResponse:
    teams = permissions.teams_user_may_own(request.user)
    if not teams.exists():
        raise PermissionDenied("You are in no team that could own a service account.")
    form = AccountForm(request.POST or None, teams=teams)
    if request.method == "POST" and form.is_valid():
        data = form.to_input()
        permissions.check_may_declare(request.user, data.owner_team, data.roles)
        try:
            account = serviceaccounts.declare_service_account(data, actor=request.user)
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            if account.state == AccountState.PENDING:
                messages.success(
                    request,
                    f"{account} is declared and waits for approval (its requests are in the "
                    "approvers' inbox): nothing reaches a cluster and no token is issued until "
                    "then.",
                )
            else:
                messages.success(
                    request,
                    f"{account} is declared: Warden puts it on its clusters and issues its first "
                    "token now. Add where its tokens go below.",
                )
            return redirect("sa-detail", pk=account.pk)
    return render(request, "clusters/sa_form.html", {"form": form, "account": None})


@login_required
@require_http_methods(["GET", "POST"])
def account_edit(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    account = permissions.get_account_for_user(request.user, pk)
    teams = permissions.teams_user_may_own(request.user)
    form = AccountForm(request.POST or None, teams=teams, initial=AccountForm.initial_for(account))
    form.fields["name"].disabled = form.fields["namespace"].disabled = True
    if request.method == "POST" and form.is_valid():
        data = form.to_input()
        permissions.check_may_declare(request.user, account.owner_team, account.roles.all())
        permissions.check_may_declare(request.user, data.owner_team, data.roles)
        try:
            changed = serviceaccounts.declare_service_account(
                data, actor=request.user, account=account
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            if changed.pending_change is not None or changed.state == AccountState.PENDING:
                messages.success(
                    request,
                    f"The change to {account} widens what it may do: it waits for approval, and "
                    "the account stays as it is until then.",
                )
            else:
                messages.success(request, f"{account} is changed; its clusters reconcile now.")
            return redirect("sa-detail", pk=account.pk)
    return render(request, "clusters/sa_form.html", {"form": form, "account": account})


@login_required
def account_detail(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    account = permissions.get_account_for_user(request.user, pk)
    generations = list(account.generations.all()[:20])
    return render(
        request,
        "clusters/sa_detail.html",
        {
            "account": account,
            "clusters": serviceaccounts.reached_clusters(account),
            "generations": generations,
            "to_reveal": [g for g in generations if g.reveal_pending],
            "targets": account.targets.select_related("cluster"),
            "runs": account.rotations.select_related("generation")[:20],
            "target_form": TargetForm(),
            "reason_form": ReasonForm(),
            "now": timezone.now(),
        },
    )


def _queue_message(request: HttpRequest, action: Any, done: str) -> bool:
    """Run a service that queues work on commit; say so if the broker is down."""
    try:
        with transaction.atomic():
            action()
    except OperationalError:
        messages.error(request, "Recorded, but the broker is not answering: beat will pick it up.")
        return False
    except ValidationError as exc:
        messages.error(request, _errors(exc))
        return False
    messages.success(request, done)
    return True


@login_required
@require_POST
def account_rotate(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    account = permissions.get_account_for_user(request.user, pk)
    _queue_message(
        request,
        lambda: serviceaccounts.request_rotation(
            account, actor=request.user, reason=request.POST.get("reason", "")
        ),
        "A new token generation is on its way; the current one stays valid until the new one "
        "is delivered and its grace period ends.",
    )
    return redirect("sa-detail", pk=account.pk)


@login_required
@require_POST
def account_retire(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    account = permissions.get_account_for_user(request.user, pk)
    form = ReasonForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Say why the account is retired.")
        return redirect("sa-detail", pk=account.pk)
    _queue_message(
        request,
        lambda: serviceaccounts.retire_service_account(
            account, actor=request.user, reason=form.cleaned_data["reason"]
        ),
        f"{account} is retired: its tokens are revoked and it leaves its clusters.",
    )
    return redirect("sa-detail", pk=account.pk)


@sensitive_post_parameters("signing_key")
@login_required
@require_POST
def target_add(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    account = permissions.get_account_for_user(request.user, pk)
    form = TargetForm(request.POST)
    if not form.is_valid():
        messages.error(request, "The delivery target is incomplete: " + form.errors.as_text())
        return redirect("sa-detail", pk=account.pk)
    data = form.cleaned_data
    try:
        target = serviceaccounts.add_delivery_target(
            account,
            actor=request.user,
            kind=data["kind"],
            cluster=data["cluster"],
            namespace=data["namespace"],
            secret_name=data["secret_name"],
            url=data["url"],
            ca_bundle=data["ca_bundle"],
            signing_key=data["signing_key"],
        )
    except ValidationError as exc:
        messages.error(request, _errors(exc))
    else:
        messages.success(request, f"New tokens now also go to {target}. Rotate to send one now.")
    return redirect("sa-detail", pk=account.pk)


@login_required
@require_POST
def target_remove(request: AuthenticatedRequest, pk: int, target_id: int) -> HttpResponse:
    account = permissions.get_account_for_user(request.user, pk)
    target = get_object_or_404(DeliveryTarget, pk=target_id, account=account)
    try:
        serviceaccounts.remove_delivery_target(target, actor=request.user)
    except ValidationError as exc:
        messages.error(request, _errors(exc))
    else:
        messages.success(request, "That target gets no new tokens any more.")
    return redirect("sa-detail", pk=account.pk)


@sensitive_variables("kubeconfig")
@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def reveal(request: AuthenticatedRequest, pk: int, number: int) -> HttpResponse:
    """GET asks to confirm; POST shows the token once. The page is never cached."""
    account = permissions.get_account_for_user(request.user, pk)
    generation = permissions.get_generation_to_reveal(request.user, account, number)
    context: dict[str, Any] = {"account": account, "generation": generation}
    if request.method == "POST":
        try:
            context["kubeconfig"] = serviceaccounts.reveal(generation.pk, actor=request.user)
        except serviceaccounts.AlreadyShown as exc:
            context["gone"] = str(exc)
            response = render(request, "clusters/sa_reveal.html", context, status=410)
        else:
            response = render(request, "clusters/sa_reveal.html", context)
    else:
        if not generation.reveal_pending:
            context["gone"] = (
                "This token was already shown, or is no longer in force; Warden keeps no copy."
            )
        response = render(
            request, "clusters/sa_reveal.html", context, status=410 if "gone" in context else 200
        )
    response["Cache-Control"] = "no-store"
    return response


# --- legacy tokens (operators) -------------------------------------------------------------


@login_required
def legacy_list(request: AuthenticatedRequest) -> HttpResponse:
    permissions.require_operator(request.user)
    tokens = LegacyToken.objects.filter(
        state__in=(LegacyTokenState.FOUND, LegacyTokenState.MIGRATED)
    ).select_related("cluster", "migrated_to")
    return render(
        request,
        "clusters/sa_legacy.html",
        {"tokens": tokens, "now": timezone.now(), "reason_form": ReasonForm()},
    )


@login_required
@require_POST
def legacy_scan(request: AuthenticatedRequest) -> HttpResponse:
    permissions.require_operator(request.user)

    _queue_message(
        request,
        lambda: transaction.on_commit(scan_fleet_legacy_tokens_task.delay),
        "Every cluster is being searched for legacy token Secrets.",
    )
    return redirect("sa-legacy")


@login_required
@require_http_methods(["GET", "POST"])
def legacy_migrate(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    operator = permissions.require_operator(request.user)
    legacy = get_object_or_404(LegacyToken.objects.select_related("cluster"), pk=pk)
    initial = {
        "name": legacy.service_account,
        "namespace": legacy.namespace,
        "clusters": legacy.cluster.name,
        "rotation_period": "30d",
        "grace_period": "2d",
        "token_lifetime": "35d",
        "show_to_owner": True,
    }
    form = MigrateForm(
        request.POST or None, teams=permissions.teams_user_may_own(operator), initial=initial
    )
    form.fields["name"].disabled = form.fields["namespace"].disabled = True
    form.fields["clusters"].disabled = True
    if request.method == "POST" and form.is_valid():
        try:
            account = serviceaccounts.migrate_legacy_token(
                legacy, form.to_input(), actor=operator, reason=form.cleaned_data["reason"]
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(
                request,
                f"{account} is now managed: its first rotated token is on its way. Move its "
                "consumers to it, then delete the legacy Secret here.",
            )
            return redirect("sa-detail", pk=account.pk)
    return render(request, "clusters/sa_legacy_migrate.html", {"form": form, "legacy": legacy})


@login_required
@require_POST
def legacy_delete(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    operator = permissions.require_operator(request.user)
    legacy = get_object_or_404(LegacyToken.objects.select_related("cluster"), pk=pk)
    form = ReasonForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Say why the legacy token is deleted.")
        return redirect("sa-legacy")
    try:
        serviceaccounts.delete_legacy_token(
            legacy, actor=operator, reason=form.cleaned_data["reason"]
        )
    except ValidationError as exc:
        messages.error(request, _errors(exc))
    else:
        messages.success(
            request, f"Deleted {legacy.namespace}/{legacy.name} on {legacy.cluster.name}."
        )
    return redirect("sa-legacy")


__all__ = ["DeliveryKind", "ManagedServiceAccount"]
