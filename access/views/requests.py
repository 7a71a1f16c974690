"""Pages of the self-service: request access, decide, end it. Thin callers of the services."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from access import permissions, selectors
from access.fleet import ClusterPicker
from access.forms import DecisionForm, RequestForm, split_words
from access.models import AccessRequest, Approval, Person, Role
from access.role_words import role_words
from access.services import requests
from access.words import count_of
from core.types import AuthenticatedRequest

PAGE_SIZE = 25
HISTORY_PAGE_SIZE = 10


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
                clusters=list(old.clusters),
                namespaces=" ".join(old.namespaces),
                justification=old.justification,
                ticket=old.ticket,
                extends=old.pk,
            )
            return initial
    # The role asked for (the forbidden explainer), else the smallest: least access first.
    role = Role.objects.filter(name=request.GET.get("role", "")).first()
    initial["role"] = role or Role.objects.order_by("rank", "name").first()
    clusters = request.GET.getlist("cluster")
    if clusters:
        initial["clusters"] = clusters
    namespaces = request.GET.getlist("namespace")
    if namespaces:
        initial["namespaces"] = " ".join(namespaces)
    return initial


def _page(
    request: HttpRequest, form: RequestForm, preview: Any = None, status: int = 200
) -> HttpResponse:
    """The request page: the form, each role in plain words, the cluster picker, the preview."""
    roles = list(Role.objects.prefetch_related("definitions"))
    context = {
        "form": form,
        "preview": preview,
        "roles": roles,
        "role_info": {role.pk: (role, role_words(role)) for role in roles},
        "picker": _picker(request, form),
    }
    return render(request, "access/requests/new.html", context, status=status)


def _picker(request: HttpRequest, form: RequestForm) -> ClusterPicker:
    data = request.POST if request.method == "POST" else request.GET
    return selectors.cluster_picker(
        form.picked("environments"),
        form.picked("tiers"),
        data.get("cluster_search", ""),
        form.picked("clusters"),
    )


@login_required
def request_new(request: AuthenticatedRequest) -> HttpResponse:
    """Ask for access: the form, a preview of exactly what it grants, then submit."""
    person = permissions.require_person(request.user)
    preview = None
    if request.method == "POST":
        form = RequestForm(request.POST)
        preview = _preview_of(form, person)
        if "submit" in request.POST and form.is_valid() and preview and not preview.problems:
            return _submit(request, form, person)
    else:
        initial = _initial(request, person)
        form = RequestForm(initial=initial)
        preview = _initial_preview(initial, person)
    return _page(request, form, preview)


def _initial_preview(initial: dict[str, Any], person: Person) -> requests.Preview | None:
    """What the prefilled form would grant, shown on load (not only after a change)."""
    if initial.get("role") is None:
        return None
    return requests.preview_request(
        person,
        initial["role"],
        environments=list(initial.get("environments") or []),
        tiers=list(initial.get("tiers") or []),
        clusters=list(initial.get("clusters") or []),
        namespaces=split_words(initial.get("namespaces") or ""),
    )


# What the preview does not need: it shows what a role over a scope gives before the reason is
# written (submitting still needs everything).
_NOT_FOR_PREVIEW = {"justification", "ticket"}


def _preview_of(form: RequestForm, person: Person) -> requests.Preview | None:
    """The preview of what the form asks for so far; None while the role or scope is invalid."""
    form.is_valid()
    if set(form.errors) - _NOT_FOR_PREVIEW or "role" not in form.cleaned_data:
        return None
    data = form.cleaned_data
    return requests.preview_request(
        person,
        data["role"],
        duration=data.get("duration"),
        break_glass=data.get("break_glass", False),
        **form.scope(),
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
            actor=request.user,
            extends=extends,
            **form.scope(),
        )
    except ValidationError as exc:
        for message in exc.messages:
            form.add_error(None, message)
        return _page(request, form)
    if req.state == "active":
        messages.success(request, f"Granted at once: request #{req.pk} is active.")
    else:
        messages.success(request, f"Request #{req.pk} is waiting for approval.")
    return redirect("request-detail", pk=req.pk)


@login_required
@require_POST
def request_preview(request: AuthenticatedRequest) -> HttpResponse:
    """The live preview beside the form (htmx), the same as the page's own preview."""
    person = permissions.require_person(request.user)
    form = RequestForm(request.POST)
    preview = _preview_of(form, person)
    return render(request, "access/requests/_preview.html", {"form": form, "preview": preview})


@login_required
@require_POST
def request_clusters(request: AuthenticatedRequest) -> HttpResponse:
    """The cluster picker (htmx), for the environments, tiers and search typed so far."""
    permissions.require_person(request.user)
    form = RequestForm(request.POST)
    return render(
        request, "access/requests/_cluster_picker.html", {"picker": _picker(request, form)}
    )


@login_required
def request_detail(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    req = permissions.get_request_for_viewer(request.user, pk)
    rows = selectors.inbox_rows([req])
    may_decide, why_not = requests.may_approve(request.user, req)
    form = DecisionForm(
        clusters=[r.cluster for r in rows[0].clusters],
        initial={"namespaces": " ".join(req.namespaces)},
    )
    approvers = permissions.people_who_may_approve(
        list(req.approver_teams.all()), req.requester if req.self_approval_forbidden else None
    )
    context = {
        "req": req,
        "row": rows[0],
        "approvers": approvers[: requests.APPROVERS_NAMED],
        "approvals": req.approvals.select_related("approver").all(),
        "may_decide": may_decide and req.is_open,
        "why_not": why_not,
        "is_requester": getattr(request.user, "person", None) == req.requester,
        "form": form,
        "extension": requests.extension_offer(req),
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
    # Acting from a list (the inbox, My access) keeps the person there.
    if request.POST.get("next") in ("inbox", "home"):
        return redirect(request.POST["next"])
    return redirect("request-detail", pk=req.pk)


@login_required
@require_POST
def request_approve(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    req = permissions.get_request_for_viewer(request.user, pk)
    reached = [r.cluster for r in selectors.inbox_rows([req])[0].clusters]
    form = DecisionForm(request.POST, clusters=reached)
    if not form.is_valid():
        messages.error(request, " ".join(str(m) for ms in form.errors.values() for m in ms))
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
def request_deny(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    comment = request.POST.get("comment", "")
    return _act(
        request,
        pk,
        lambda r: requests.deny_request(r, request.user, comment=comment),
        "You denied request #{pk}.",
    )


@login_required
@require_POST
def request_cancel(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    return _act(
        request,
        pk,
        lambda r: requests.cancel_request(r, request.user),
        "Request #{pk} is cancelled.",
    )


@login_required
@require_POST
def request_end(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    reason = request.POST.get("reason", "")
    return _act(
        request,
        pk,
        lambda r: requests.end_access(r, request.user, reason=reason),
        "The access of request #{pk} is revoked; it leaves the clusters within moments.",
    )


@login_required
@require_POST
def request_extend(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    """One click: the requester extends their access by the usual duration, where its policy
    allows it (else the page says the request goes to the approvers again)."""
    return _act(
        request,
        pk,
        lambda r: requests.extend_access(r, request.user),
        "Request #{pk} is extended; nothing changes on the clusters until it ends.",
    )


@login_required
@require_POST
def request_review(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    comment = request.POST.get("comment", "")
    return _act(
        request,
        pk,
        lambda r: requests.review_break_glass(r, request.user, comment=comment),
        "Your review of request #{pk} is recorded.",
    )


@login_required
def inbox(request: AuthenticatedRequest) -> HttpResponse:
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
        Approval.objects.filter(approver_id=request.user.pk)
        .select_related("request__requester", "request__role")
        .order_by("-created_at", "-id")
    )
    history = Paginator(decided, HISTORY_PAGE_SIZE).get_page(request.GET.get("history"))
    return render(
        request,
        "access/requests/inbox.html",
        {
            "page": page,
            "rows": selectors.inbox_rows(page.object_list),
            "after_reviews": permissions.after_reviews_for(request.user)
            .select_related("requester", "role")
            .order_by("created_at", "id")[:PAGE_SIZE],
            "history": history,
            "history_query": _other_pages(request, "history"),
            "page_query": _other_pages(request, "page"),
        },
    )


def _other_pages(request: HttpRequest, param: str) -> str:
    """The query string without `param`: paging one list keeps the other list's page."""
    query = request.GET.copy()
    query.pop(param, None)
    return query.urlencode()


@login_required
@require_POST
def inbox_bulk(request: AuthenticatedRequest) -> HttpResponse:
    """Approve (or deny, with one comment) many requests at once; each is decided on its own."""
    one = request.POST.get("approve_one") or request.POST.get("deny_one") or ""
    if one:  # a row's own button: just that request, whatever else is ticked
        ids = [int(one)] if one.isdigit() else []
        deny = "deny_one" in request.POST
    else:
        ids = [int(i) for i in request.POST.getlist("ids") if i.isdigit()]
        deny = request.POST.get("decision") == "deny"
    comment = request.POST.get("comment", "")
    if not ids:
        messages.error(request, "Tick the requests to decide first.")
        return redirect("inbox")
    done, failed = [], []
    for pk in ids:
        try:
            req = permissions.get_request_for_viewer(request.user, pk)
            if deny:
                requests.deny_request(req, request.user, comment=comment)
            else:
                requests.approve_request(req, request.user, comment=comment)
            done.append(pk)
        except Http404:
            failed.append(f"#{pk}: no such request waits for you.")
        except (ValidationError, PermissionDenied) as exc:
            failed.append(f"#{pk}: {' '.join(getattr(exc, 'messages', [str(exc)]))}")
    if done:
        verb = "denied" if deny else "approved"
        messages.success(request, f"You {verb} {count_of(len(done), 'request')}.")
    for failure in failed:
        messages.error(request, failure)
    return redirect("inbox")
