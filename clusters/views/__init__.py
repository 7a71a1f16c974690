"""The operators' fleet pages: thin callers of services, selectors and permissions.

Secrets typed into these pages (tokens, kubeconfigs) are never rendered back. A kubeconfig that
must survive a failed attempt (to pick a context, or fix a field) is kept in the session,
Fernet-encrypted like every stored secret, until the registration succeeds or starts over.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST, require_safe
from kombu.exceptions import OperationalError

from access.permissions import require_operator
from access.views.sorting import sorting_of
from access.words import count_of
from clusters import crypto, discovery, selectors, services
from clusters.choices import ClusterState, ReconcileStatus
from clusters.forms import (
    ClusterEditForm,
    ClusterRegisterForm,
    DiscoverySourceForm,
    FleetFilterForm,
    RetireForm,
)
from clusters.k8s import KubeError
from clusters.models import DiscoverySource, ReconcileRun
from clusters.permissions import get_cluster_for_operator, get_source_for_operator
from core.types import AuthenticatedRequest

FLEET_PAGE_SIZE = 50
HISTORY_PAGE_SIZE = 25
STASH = "warden.register-kubeconfig"
BROKER_DOWN = "could not be queued: the broker is not answering (see the health page)"


# --- fleet ------------------------------------------------------------------------------------


# The fleet table's sortable columns and what each sorts by.
FLEET_COLUMNS = {
    "name": ("name",),
    "environment": ("env_rank", "tier", "name"),
    "state": ("state", "name"),
    "reconciled": ("last_reconcile_at", "name"),
}


@login_required
@require_safe
def fleet_overview(request: AuthenticatedRequest) -> HttpResponse:
    require_operator(request.user)
    filters = FleetFilterForm(request.GET or None)
    values = filters.cleaned_data if filters.is_valid() else {}
    clusters = selectors.fleet_clusters(
        environment=values.get("environment", ""),
        tier=values.get("tier", ""),
        state=values.get("state", ""),
        search=values.get("q", ""),
    )
    sorting = sorting_of(request, FLEET_COLUMNS, default="environment")
    page = Paginator(sorting.apply(clusters), FLEET_PAGE_SIZE).get_page(request.GET.get("page"))
    rows = selectors.fleet_rows(list(page.object_list))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "clusters/fleet.html",
        {
            "filters": filters,
            "page": page,
            "rows": rows,
            "summary": selectors.fleet_summary(),
            "history": selectors.history_chart(selectors.fleet_history()),
            "query": query.urlencode(),
            "sorting": sorting,
            **_fleet_progress_context(),
        },
    )


def _fleet_progress_context() -> dict[str, Any]:
    latest = selectors.latest_fleet_reconcile()
    if latest is None:
        return {"fleet": None, "progress": None, "polling": False}
    fleet, progress = latest
    return {
        "fleet": fleet,
        "progress": progress,
        "polling": not progress.finished and not progress.stalled,
    }


@login_required
@require_safe
@never_cache
def fleet_reconcile_progress(request: AuthenticatedRequest) -> HttpResponse:
    """The newest fleet reconcile, as a fragment the fleet page polls (htmx) until it is done."""
    require_operator(request.user)
    return render(request, "clusters/_fleet_progress.html", _fleet_progress_context())


@login_required
@require_POST
def fleet_reconcile(request: AuthenticatedRequest) -> HttpResponse:
    operator = require_operator(request.user)
    try:
        count = services.request_fleet_reconcile(actor=operator)
    except OperationalError:
        messages.error(request, f"The fleet reconcile {BROKER_DOWN}.")
    else:
        messages.info(request, f"A reconcile of all {count} live clusters has been queued.")
    return redirect("fleet-overview")


# --- one cluster ------------------------------------------------------------------------------


@login_required
@require_safe
def cluster_detail(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    cluster = get_cluster_for_operator(request.user, pk)
    runs = ReconcileRun.objects.filter(cluster=cluster).order_by("-started_at", "-id")
    history = Paginator(runs, HISTORY_PAGE_SIZE).get_page(request.GET.get("page"))
    latest = runs.filter(dry_run=False).exclude(status=ReconcileStatus.RUNNING).first()
    return render(
        request,
        "clusters/detail.html",
        {
            "cluster": cluster,
            "history": history,
            "latest": latest,
            "pending": selectors.pending_grants(latest),
            "shadow": cluster.shadow_access or [],
            "labels": sorted((cluster.labels or {}).items()),
            "retired": cluster.state == ClusterState.RETIRED,
        },
    )


@login_required
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def cluster_register(request: AuthenticatedRequest) -> HttpResponse:
    operator = require_operator(request.user)
    if request.method != "POST":
        request.session.pop(STASH, None)  # a fresh start forgets a kubeconfig kept earlier
        return render(request, "clusters/register.html", {"form": ClusterRegisterForm()})
    form = ClusterRegisterForm(request.POST, request.FILES, stashed_kubeconfig=_stashed(request))
    if form.is_valid():
        try:
            cluster = services.register_cluster(
                **form.registration(), actor=operator, update_existing=False
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        except OperationalError:
            # Registered and committed; only the first reconcile could not be queued.
            messages.warning(request, f"Registered, but its first reconcile {BROKER_DOWN}.")
            request.session.pop(STASH, None)
            return redirect("fleet-overview")
        else:
            request.session.pop(STASH, None)
            messages.success(
                request, f"{cluster.name} is registered; its first reconcile is queued."
            )
            return redirect("cluster-detail", pk=cluster.pk)
    if form.kubeconfig_text:
        request.session[STASH] = crypto.encrypt(form.kubeconfig_text)
    return render(
        request,
        "clusters/register.html",
        {"form": form, "kept": bool(form.kubeconfig_text)},
        status=400,
    )


def _stashed(request: HttpRequest) -> str:
    value = request.session.get(STASH)
    if not value:
        return ""
    try:
        return crypto.decrypt(value)
    except crypto.SecretUnreadable:
        request.session.pop(STASH, None)
        return ""


@login_required
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def cluster_edit(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    cluster = get_cluster_for_operator(request.user, pk)
    if cluster.state == ClusterState.RETIRED:
        messages.error(request, f"{cluster.name} is retired; it can no longer be changed.")
        return redirect("cluster-detail", pk=cluster.pk)
    if request.method != "POST":
        form = ClusterEditForm(initial=ClusterEditForm.initial_for(cluster))
        return render(request, "clusters/edit.html", {"form": form, "cluster": cluster})
    form = ClusterEditForm(request.POST)
    if form.is_valid():
        try:
            changed = services.update_cluster(cluster, actor=request.user, **form.changes())
        except ValidationError as exc:
            form.add_error(None, exc)
        except OperationalError:
            messages.warning(request, f"Saved, but the reconcile {BROKER_DOWN}.")
            return redirect("cluster-detail", pk=cluster.pk)
        else:
            if changed:
                messages.success(request, f"{cluster.name} is updated; a reconcile is queued.")
            else:
                messages.info(request, "Nothing changed.")
            return redirect("cluster-detail", pk=cluster.pk)
    return render(request, "clusters/edit.html", {"form": form, "cluster": cluster}, status=400)


@login_required
@require_POST
def cluster_check(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    cluster = get_cluster_for_operator(request.user, pk)
    problems = services.check_connection(cluster)
    if problems:
        for problem in problems:
            messages.error(request, problem)
    else:
        messages.success(
            request, f"{cluster.name} answers, and Warden's credentials may manage RBAC there."
        )
    return redirect("cluster-detail", pk=cluster.pk)


@login_required
@require_POST
def cluster_shadow_scan(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    """Look for access outside Warden on this cluster now (the hourly scan, at once)."""
    cluster = get_cluster_for_operator(request.user, pk)
    try:
        found = services.scan_shadow_access(cluster.pk)
    except KubeError as exc:
        messages.error(request, f"{cluster.name} could not be scanned: {exc}")
    else:
        messages.success(
            request,
            f"{cluster.name} has {count_of(len(found), 'binding')} outside Warden that name "
            "directory people or teams.",
        )
    return redirect("cluster-detail", pk=cluster.pk)


@login_required
@require_POST
def cluster_reconcile(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    cluster = get_cluster_for_operator(request.user, pk)
    try:
        services.request_reconcile(cluster, actor=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    except OperationalError:
        messages.error(request, f"The reconcile {BROKER_DOWN}.")
    else:
        messages.info(request, f"A reconcile of {cluster.name} has been queued.")
    return redirect("cluster-detail", pk=cluster.pk)


@login_required
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def cluster_retire(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    cluster = get_cluster_for_operator(request.user, pk)
    if cluster.state == ClusterState.RETIRED:
        messages.info(request, f"{cluster.name} is already retired.")
        return redirect("cluster-detail", pk=cluster.pk)
    form = RetireForm(request.POST or None, cluster=cluster)
    if request.method == "POST" and form.is_valid():
        remove = form.cleaned_data["objects"] == "remove"
        try:
            run = services.retire_cluster(
                cluster,
                remove_owned=remove,
                actor=request.user,
                reason=form.cleaned_data["reason"],
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            removed = (
                f" after removing {count_of(run.deleted, 'object')} Warden owned" if run else ""
            )
            messages.success(request, f"{cluster.name} is retired{removed}; its record is kept.")
            return redirect("cluster-detail", pk=cluster.pk)
    status = 400 if request.method == "POST" else 200
    return render(
        request, "clusters/retire.html", {"form": form, "cluster": cluster}, status=status
    )


# --- discovery --------------------------------------------------------------------------------


@login_required
@require_safe
def discovery_sources(request: AuthenticatedRequest) -> HttpResponse:
    require_operator(request.user)
    return render(request, "clusters/discovery.html", {"rows": selectors.discovery_overview()})


@login_required
@require_safe
def discovery_source_detail(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    source = get_source_for_operator(request.user, pk)
    runs = Paginator(source.runs.all(), HISTORY_PAGE_SIZE).get_page(request.GET.get("page"))
    clusters = source.clusters.all().annotate(env_rank=selectors.environment_rank())
    return render(
        request,
        "clusters/discovery_detail.html",
        {
            "source": source,
            "runs": runs,
            "clusters": clusters.order_by("env_rank", "tier", "name"),
        },
    )


@login_required
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def discovery_source_new(request: AuthenticatedRequest) -> HttpResponse:
    operator = require_operator(request.user)
    return _source_form(request, DiscoverySource(), operator)


@login_required
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def discovery_source_edit(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    source = get_source_for_operator(request.user, pk)
    return _source_form(request, source, request.user)


def _source_form(request: HttpRequest, source: DiscoverySource, operator: Any) -> HttpResponse:
    form = DiscoverySourceForm(request.POST or None, instance=source)
    if request.method == "POST" and form.is_valid():
        try:
            saved = discovery.save_source(
                form.unsaved_source(), token=form.cleaned_data["token"], actor=operator
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, f"Discovery source {saved.name} is saved.")
            return redirect("cluster-discovery-detail", pk=saved.pk)
    status = 400 if request.method == "POST" else 200
    return render(
        request,
        "clusters/discovery_form.html",
        {"form": form, "source": source if source.pk else None},
        status=status,
    )


@login_required
@require_POST
def discovery_source_run(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    source = get_source_for_operator(request.user, pk)
    try:
        discovery.request_discovery(source, actor=request.user)
    except OperationalError:
        messages.error(request, f"The discovery run {BROKER_DOWN}.")
    else:
        messages.info(request, f"A discovery run of {source.name} has been queued.")
    return redirect("cluster-discovery-detail", pk=source.pk)
