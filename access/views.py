"""Pages of the people side: thin callers of services, selectors and permissions."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from access import health, selectors, services
from access.choices import SyncTrigger
from access.forms import LoginForm
from access.models import DirectorySync, Membership, Person
from access.permissions import require_operator
from access.tasks import sync_directory_task


class LoginView(auth_views.LoginView):
    form_class = LoginForm
    redirect_authenticated_user = True


@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness: the process answers. No database, no authentication."""
    return HttpResponse("ok", content_type="text/plain")


@login_required
def home(request: HttpRequest) -> HttpResponse:
    person = Person.objects.filter(user=request.user).first()
    memberships = (
        Membership.objects.filter(person=person, team__is_active=True)
        .select_related("team")
        .order_by("team__name")
        if person
        else Membership.objects.none()
    )
    return render(request, "access/home.html", {"person": person, "memberships": memberships})


@login_required
@never_cache
def health_page(request: HttpRequest) -> HttpResponse:
    require_operator(request.user)
    state = health.report()
    if request.GET.get("format") == "json":
        return JsonResponse(state)
    return render(
        request, "access/health.html", {"state": state, "runs": selectors.recent_syncs(20)}
    )


@login_required
@require_POST
def sync_now(request: HttpRequest) -> HttpResponse:
    require_operator(request.user)
    transaction.on_commit(lambda: sync_directory_task.delay(SyncTrigger.OPERATOR))
    messages.info(request, "A directory sync has been queued.")
    return redirect("health")


@login_required
@require_POST
def confirm_sync(request: HttpRequest, pk: int) -> HttpResponse:
    require_operator(request.user)
    blocked = get_object_or_404(DirectorySync, pk=pk)
    try:
        run = services.confirm_blocked_sync(blocked, request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("health")
    if run.status == "succeeded":
        messages.success(request, f"Confirmed: sync #{run.pk} applied the changes.")
    else:
        messages.error(request, f"Sync #{run.pk} {run.status}: {run.error}")
    return redirect("health")
