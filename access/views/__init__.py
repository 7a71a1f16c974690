"""Pages of the people side: thin callers of services, selectors and permissions."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST, require_safe
from kombu.exceptions import OperationalError

from access import health, selectors, services
from access.choices import SyncTrigger
from access.forms import LoginForm
from access.models import AccessRequest, DirectorySync, Person
from access.permissions import is_operator, require_operator
from access.tasks import sync_directory_task
from core.types import AuthenticatedRequest


class LoginView(auth_views.LoginView):
    form_class = LoginForm
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context: dict[str, Any] = super().get_context_data(**kwargs)
        context.update(
            directory_login=settings.DIRECTORY_LOGIN,
            oidc_enabled=settings.OIDC_ENABLED,
            oidc_provider_name=settings.OIDC_PROVIDER_NAME,
        )
        return context


def admin_login(request: HttpRequest) -> HttpResponse:
    """The admin site logs in through Warden's login (directory, throttling), not its own."""
    if not request.user.is_authenticated:
        return auth_views.redirect_to_login(
            request.GET.get("next") or reverse("admin:index"), login_url=reverse("login")
        )
    if not is_operator(request.user):
        raise PermissionDenied("Only Warden operators may open the admin site.")
    return redirect("admin:index")


@require_safe
def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness: the process answers. No database, no authentication."""
    return HttpResponse("ok", content_type="text/plain")


@login_required
def home(request: AuthenticatedRequest) -> HttpResponse:
    # RelatedObjectDoesNotExist is an AttributeError: a local account has no Person.
    person: Person | None = getattr(request.user, "person", None)
    context: dict[str, Any] = {"person": person}
    if person is not None:
        mine = (
            AccessRequest.objects.filter(requester=person)
            .select_related("role")
            .order_by("-created_at", "-id")
        )
        context.update(
            teams=selectors.teams_of(person),
            held=selectors.person_access(person),
            page=Paginator(mine, HOME_REQUESTS_PAGE_SIZE).get_page(request.GET.get("requests")),
        )
    return render(request, "access/home.html", context)


HOME_REQUESTS_PAGE_SIZE = 20


HEALTH_SYNCS_PAGE_SIZE = 20
# The moment this operator queued a sync: the health page shows it as waiting until it starts.
SYNC_QUEUED_AT = "warden.sync-queued-at"


@login_required
@never_cache
def health_page(request: AuthenticatedRequest) -> HttpResponse:
    require_operator(request.user)
    state = health.report()
    if request.GET.get("format") == "json":
        return JsonResponse(state)
    runs = Paginator(DirectorySync.objects.order_by("-started_at", "-id"), HEALTH_SYNCS_PAGE_SIZE)
    return render(
        request,
        "access/health.html",
        {"state": state, "page": runs.get_page(request.GET.get("page")), **_sync_progress(request)},
    )


@login_required
@require_safe
@never_cache
def sync_progress(request: AuthenticatedRequest) -> HttpResponse:
    """The newest directory sync as a fragment the health page polls (htmx) while it runs."""
    require_operator(request.user)
    return render(request, "access/_sync_progress.html", _sync_progress(request))


def _sync_progress(request: HttpRequest) -> dict[str, Any]:
    queued_at = parse_datetime(request.session.get(SYNC_QUEUED_AT) or "")
    progress = selectors.sync_progress(queued_at)
    if queued_at is not None and (progress.queued_at is None or progress.queue_stalled):
        request.session.pop(SYNC_QUEUED_AT, None)  # started, or given up on
    return {
        "progress": progress,
        "sync": progress.sync,
        "last_success": selectors.last_successful_sync(),
    }


@login_required
@never_cache
def health_json(request: AuthenticatedRequest) -> HttpResponse:
    require_operator(request.user)
    return JsonResponse(health.report())


@login_required
@require_POST
def sync_now(request: AuthenticatedRequest) -> HttpResponse:
    require_operator(request.user)
    request.session[SYNC_QUEUED_AT] = timezone.now().isoformat()
    try:
        # No transaction is open here, so this queues at once and a broker error shows now.
        transaction.on_commit(lambda: sync_directory_task.delay(SyncTrigger.OPERATOR))
    except OperationalError:
        request.session.pop(SYNC_QUEUED_AT, None)
        messages.error(
            request, "The sync could not be queued: the broker is not answering (see below)."
        )
    else:
        messages.info(request, "A directory sync has been queued; its progress shows below.")
    return redirect("health")


@login_required
@require_POST
def confirm_sync(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    operator = require_operator(request.user)
    blocked = get_object_or_404(DirectorySync, pk=pk)
    try:
        run = services.confirm_blocked_sync(blocked, operator)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("health")
    if run.status == "succeeded":
        messages.success(request, f"Confirmed: sync #{run.pk} applied the changes.")
    else:
        messages.error(request, f"Sync #{run.pk} {run.status}: {run.error}")
    return redirect("health")
