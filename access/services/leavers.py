"""When someone leaves: their personal grants and their requests end, audited with the reason,
once WARDEN_LEAVER_GRACE_HOURS have passed since the directory disabled or lost them (0, the
default: at the sync that saw it). Their access is ended, not hidden, so that someone who comes
back (a rehire, or a disable by mistake found after the grace) starts from nothing but their
teams' standing grants. A disable undone within the grace keeps everything. Team grants are
never touched here: a team that is gone is the sync's business."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from access import audit, notify
from access.choices import InactiveReason, RequestState
from access.models import AccessRequest, Grant, Person
from access.services.grants import revoke_grant
from access.services.requests import tell_service_account

# Requests that still mean something for the person: waiting, or granted to them and in force
# (a service account's approved change is the account's, and stays with its owner team).
OPEN = Q(state=RequestState.PENDING) | Q(state=RequestState.ACTIVE, for_service_account="")


def grace() -> timedelta:
    return timedelta(hours=settings.WARDEN_LEAVER_GRACE_HOURS)


def reason_for(person: Person) -> str:
    why = (
        "no longer in the directory"
        if person.inactive_reason == InactiveReason.REMOVED
        else "disabled in the directory"
    )
    return f"{person.username} left ({why})"


def leavers_due(now: datetime) -> list[Person]:
    """People whose grace has run out and who still hold personal grants or open requests."""
    live_grant = Grant.objects.filter(person=OuterRef("pk"), revoked_at__isnull=True)
    open_request = AccessRequest.objects.filter(OPEN, requester=OuterRef("pk"))
    return list(
        Person.objects.filter(is_active=False, deactivated_at__lte=now - grace())
        .filter(Q(Exists(live_grant)) | Q(Exists(open_request)))
        .order_by("pk")
    )


def end_leavers_access(now: datetime | None = None) -> list[int]:
    """End what every leaver past the grace still holds; returns their ids. Safe to run twice
    at once and again later: each person is ended under a lock of their row, and only once."""
    now = now or timezone.now()
    ended = []
    for person in leavers_due(now):
        with transaction.atomic():
            locked = Person.objects.select_for_update().filter(pk=person.pk).first()
            if locked is None or locked.is_active:
                continue  # came back meanwhile
            end_access_of(locked)
        ended.append(person.pk)
    return ended


def end_access_of(person: Person) -> None:
    """Cancel the person's waiting requests, revoke what was granted to them personally."""
    reason = reason_for(person)
    now = timezone.now()
    for req in AccessRequest.objects.select_for_update().filter(OPEN, requester=person):
        req.state = (
            RequestState.CANCELLED if req.state == RequestState.PENDING else RequestState.REVOKED
        )
        req.ended_at = now
        req.save(update_fields=["state", "ended_at"])
        action = "request.cancelled" if req.state == RequestState.CANCELLED else "request.revoked"
        audit.record(action, obj=req, after={"state": req.state}, reason=reason)
        tell_service_account(req, None)
        if req.state == RequestState.REVOKED:
            notify.later("ended", req.pk)
    for grant in Grant.objects.filter(person=person, revoked_at__isnull=True).order_by("pk"):
        revoke_grant(grant, reason=reason)
