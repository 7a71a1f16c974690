"""Pages of the self-service: request access, decide, end it. Thin callers of the services."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from access import permissions, selectors
from access.forms import DecisionForm, RequestForm
from access.models import AccessRequest, Approval, Person, Role
from access.services import requests

PAGE_SIZE = 25


def _person_or_403(request: HttpRequest) -> Person:
    person: Person | None = getattr(request.user, "person", None)
    if person is None:
        raise PermissionDenied(
            "Only people from the directory can ask for access (this is a local account)."
        )
    return person


def _initial(request: HttpRequest, person: Person) -> dict[str, Any]:
    """Prefill from the query: ?role=&cluster=&namespace= (the forbidden explainer), or
    ?extend=<id> (a reminder's one-click extend)."""
    initial: dict[str, Any] = {}
    extend = request.GET.get("extend", "")
    if extend.isdigit():
        old = AccessRequest.objects.filter(pk=int(extend), requester=person).first()
        if old is not None:
            initial.update(
                role=old.role,
                environments=old.environments,
                tiers=old.tiers,
                clusters=" ".join(old.clusters),
                namespaces=" ".join(old.namespaces),
                justification=old.justification,
                ticket=old.ticket,
                extends=old.pk,
            )
            return initial
    role = Role.objects.filter(name=request.GET.get("role", "")).first()
    if role is not None:
        initial["role"] = role
    for key, field in (("cluster", "clusters"), ("namespace", "namespaces")):
        values = request.GET.getlist(key)
        if values:
            initial[field] = " ".join(values)
    return initial


@login_required
def request_new(request: HttpRequest) -> HttpResponse:
    """Ask for access: the form, a preview of exactly what it grants, then submit."""
    person = _person_or_403(request)
    preview = None
    if request.method == "POST":
        form = RequestForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            preview = requests.preview_request(
                person,
                data["role"],
                duration=data["duration"],
                break_glass=data["break_glass"],
                **form.scope(),
            )
            if "submit" in request.POST and not preview.problems:
                return _submit(request, form, person)
    else:
        form = RequestForm(initial=_initial(request, person))
    return render(
        request,
        "access/requests/new.html",
        {"form": form, "preview": preview, "roles": Role.objects.prefetch_related("definitions")},
    )


def _submit(request: HttpRequest, form: RequestForm, person: Person) -> HttpResponse:
    data = form.cleaned_data
    extends = None
    if data.get("extends"):
        extends = AccessRequest.objects.filter(pk=data["extends"], requester=person).first()
    try:
        req = requests.submit_request(
            requester=person,
            role=data["role"],
            justification=data["justification"],
            duration=data["duration"],
            ticket=data["ticket"],
            break_glass=data["break_glass"],
            actor=request.user,  # type: ignore[arg-type]
            extends=extends,
            **form.scope(),
        )
    except ValidationError as exc:
        for message in exc.messages:
            form.add_error(None, message)
        return render(request, "access/requests/new.html", {"form": form, "preview": None})
    if req.state == "active":
        messages.success(request, f"Granted at once: request #{req.pk} is active.")
    else:
        messages.success(request, f"Request #{req.pk} is waiting for approval.")
    return redirect("request-detail", pk=req.pk)


@login_required
@require_POST
def request_preview(request: HttpRequest) -> HttpResponse:
    """The live preview beside the form (htmx), the same as the page's own preview."""
    person = _person_or_403(request)
    form = RequestForm(request.POST)
    preview = None
    if form.is_valid():
        data = form.cleaned_data
        preview = requests.preview_request(
            person,
            data["role"],
            duration=data["duration"],
            break_glass=data["break_glass"],
            **form.scope(),
        )
    return render(request, "access/requests/_preview.html", {"form": form, "preview": preview})


@login_required
def request_detail(request: HttpRequest, pk: int) -> HttpResponse:
    req = permissions.get_request_for_viewer(request.user, pk)
    rows = selectors.inbox_rows([req])
    may_decide, why_not = requests.may_approve(request.user, req)
    form = DecisionForm(
        clusters=[r.cluster for r in rows[0].clusters],
        initial={"namespaces": " ".join(req.namespaces)},
    )
    context = {
        "req": req,
        "row": rows[0],
        "approvals": req.approvals.select_related("approver").all(),
        "may_decide": may_decide and req.is_open,
        "why_not": why_not,
        "is_requester": getattr(request.user, "person", None) == req.requester,
        "form": form,
    }
    return render(request, "access/requests/detail.html", context)


def _act(request: HttpRequest, pk: int, action: Any, success: str) -> HttpResponse:
    """Run one decision service on a request the user can see; errors become messages."""
    req = permissions.get_request_for_viewer(request.user, pk)
    try:
        action(req)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, success.format(pk=req.pk))
    if request.POST.get("next") == "inbox":
        return redirect("inbox")
    return redirect("request-detail", pk=req.pk)


@login_required
@require_POST
def request_approve(request: HttpRequest, pk: int) -> HttpResponse:
    req = permissions.get_request_for_viewer(request.user, pk)
    reached = [r.cluster for r in selectors.inbox_rows([req])[0].clusters]
    form = DecisionForm(request.POST, clusters=reached)
    if not form.is_valid():
        messages.error(request, " ".join(m for ms in form.errors.values() for m in ms))
        return redirect("request-detail", pk=pk)
    data = form.cleaned_data
    return _act(
        request,
        pk,
        lambda r: requests.approve_request(
            r,
            request.user,
            comment=data["comment"],
            clusters=data["clusters"] or None,
            namespaces=data["namespaces"] or None,
            duration=data["duration"],
        ),
        "You approved request #{pk}.",
    )


@login_required
@require_POST
def request_deny(request: HttpRequest, pk: int) -> HttpResponse:
    comment = request.POST.get("comment", "")
    return _act(
        request,
        pk,
        lambda r: requests.deny_request(r, request.user, comment=comment),
        "You denied request #{pk}.",
    )


@login_required
@require_POST
def request_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    return _act(
        request,
        pk,
        lambda r: requests.cancel_request(r, request.user),
        "Request #{pk} is cancelled.",
    )


@login_required
@require_POST
def request_end(request: HttpRequest, pk: int) -> HttpResponse:
    reason = request.POST.get("reason", "")
    return _act(
        request,
        pk,
        lambda r: requests.end_access(r, request.user, reason=reason),
        "The access of request #{pk} is revoked; it leaves the clusters within moments.",
    )


@login_required
@require_POST
def request_review(request: HttpRequest, pk: int) -> HttpResponse:
    comment = request.POST.get("comment", "")
    return _act(
        request,
        pk,
        lambda r: requests.review_break_glass(r, request.user, comment=comment),
        "Your review of request #{pk} is recorded.",
    )


@login_required
def inbox(request: HttpRequest) -> HttpResponse:
    """Pending requests this person may decide, oldest first, with what each would allow."""
    pending = (
        permissions.inbox_for(request.user)
        .select_related("requester", "role")
        .prefetch_related("approver_teams")
        .order_by("created_at", "id")
    )
    page = Paginator(pending, PAGE_SIZE).get_page(request.GET.get("page"))
    selectors.count_approvals(page.object_list)
    decided = (
        Approval.objects.filter(approver=request.user)
        .select_related("request__requester", "request__role")
        .order_by("-created_at")[:10]
    )
    return render(
        request,
        "access/requests/inbox.html",
        {"page": page, "rows": selectors.inbox_rows(page.object_list), "decided": decided},
    )


@login_required
@require_POST
def inbox_bulk(request: HttpRequest) -> HttpResponse:
    """Approve (or deny, with one comment) many requests at once; each is decided on its own."""
    ids = [int(i) for i in request.POST.getlist("ids") if i.isdigit()]
    deny = request.POST.get("decision") == "deny"
    comment = request.POST.get("comment", "")
    done, failed = [], []
    for pk in ids:
        try:
            req = permissions.get_request_for_viewer(request.user, pk)
            if deny:
                requests.deny_request(req, request.user, comment=comment)
            else:
                requests.approve_request(req, request.user, comment=comment)
            done.append(pk)
        except (ValidationError, PermissionDenied) as exc:
            failed.append(f"#{pk}: {' '.join(getattr(exc, 'messages', [str(exc)]))}")
    if done:
        verb = "denied" if deny else "approved"
        messages.success(request, f"You {verb} {len(done)} request(s).")
    for failure in failed:
        messages.error(request, failure)
    return redirect("inbox")
