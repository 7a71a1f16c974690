"""The approval-policy editor (operators): list, create, change and delete, each audited."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from access.forms import PolicyForm
from access.models import ApprovalPolicy
from access.permissions import require_operator
from access.services import policies
from core.types import Actor, AuthenticatedRequest

PAGE_SIZE = 50


@login_required
@require_http_methods(["GET", "HEAD"])
def policy_list(request: AuthenticatedRequest) -> HttpResponse:
    require_operator(request.user)
    all_policies = (
        ApprovalPolicy.objects.select_related("role")
        .prefetch_related("approver_teams", "break_glass_teams", "break_glass_roles")
        .order_by("environment", "tier", "role__rank", "name")
    )
    page = Paginator(all_policies, PAGE_SIZE).get_page(request.GET.get("page"))
    catch_all = ApprovalPolicy.objects.filter(environment="", tier="", role=None).exists()
    return render(request, "access/policies/list.html", {"page": page, "catch_all": catch_all})


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def policy_new(request: AuthenticatedRequest) -> HttpResponse:
    operator = require_operator(request.user)
    return _edit(request, ApprovalPolicy(), operator)


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def policy_edit(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    operator = require_operator(request.user)
    policy = get_object_or_404(ApprovalPolicy, pk=pk)
    return _edit(request, policy, operator)


def _edit(request: HttpRequest, policy: ApprovalPolicy, operator: Actor) -> HttpResponse:
    if request.method == "POST":
        form = PolicyForm(request.POST)
        if form.is_valid():
            try:
                saved = policies.save_policy(
                    form.apply_to(policy),
                    approver_teams=form.cleaned_data["approver_teams"],
                    break_glass_teams=form.cleaned_data["break_glass_teams"],
                    break_glass_roles=form.cleaned_data["break_glass_roles"],
                    actor=operator,
                    reason=form.cleaned_data["reason"],
                )
            except ValidationError as exc:
                _add_errors(form, exc)
            else:
                messages.success(
                    request, f"Policy “{saved.name}” is saved; it governs requests made from now."
                )
                return redirect("policy-list")
        status = 400
    else:
        form = PolicyForm(initial=PolicyForm.initial_for(policy) if policy.pk else None)
        status = 200
    return render(
        request,
        "access/policies/edit.html",
        {"form": form, "policy": policy if policy.pk else None},
        status=status,
    )


@login_required
@require_POST
def policy_delete(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    operator = require_operator(request.user)
    policy = get_object_or_404(ApprovalPolicy, pk=pk)
    reason = request.POST.get("reason", "").strip()
    if not reason:
        messages.error(request, "Say why the policy goes: it goes into the audit trail.")
        return redirect("policy-edit", pk=pk)
    policies.delete_policy(policy, actor=operator, reason=reason)
    messages.success(request, f"Policy “{policy.name}” is deleted.")
    return redirect("policy-list")


def _add_errors(form: PolicyForm, exc: ValidationError) -> None:
    if hasattr(exc, "error_dict"):
        for field, errors in exc.message_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        for message in exc.messages:
            form.add_error(None, message)
