"""Authorization of the people side: who may see and do what."""

from __future__ import annotations

from typing import Any, cast

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import Http404

from access.models import AccessRequest, Approval, Membership


def is_operator(user: Any) -> bool:
    """Operators are staff: members of WARDEN_ADMIN_TEAMS (or a local superuser)."""
    return bool(user.is_authenticated and user.is_active and user.is_staff)


def require_operator(user: Any) -> AbstractBaseUser:
    """The user, known to be an operator; PermissionDenied (403) for anyone else."""
    if not is_operator(user):
        raise PermissionDenied("Only Warden operators may do this.")
    return cast(AbstractBaseUser, user)


# --- access requests --------------------------------------------------------------------------


def _person(user: Any) -> Any:
    return getattr(user, "person", None) if getattr(user, "is_authenticated", False) else None


def requests_visible_to(user: Any) -> QuerySet[AccessRequest]:
    """Requests a user may see: their own, those they may decide or have decided; operators all."""
    requests = AccessRequest.objects.all()
    if is_operator(user):
        return requests
    if not getattr(user, "is_authenticated", False):
        return requests.none()
    person = _person(user)
    decided = Approval.objects.filter(request_id=OuterRef("pk"), approver=user)
    visible = Q(Exists(decided))
    if person is not None:
        visible |= Q(requester=person) | Q(Exists(_approver_team_link(person)))
    return requests.filter(visible)


def _approver_team_link(person: Any) -> QuerySet[Any]:
    """The request's approver teams include one of this person's (active) teams."""
    through = AccessRequest.approver_teams.through
    mine = Membership.objects.filter(person=person, team__is_active=True).values("team_id")
    return through.objects.filter(accessrequest_id=OuterRef("pk"), team_id__in=mine)


def inbox_for(user: Any) -> QuerySet[AccessRequest]:
    """Pending requests this user may decide now (not their own)."""
    person = _person(user)
    pending = AccessRequest.objects.pending()
    mine = Q(pk__in=[])
    if person is not None:
        mine |= Q(Exists(_approver_team_link(person)))
    if is_operator(user):
        mine |= Q(approver_teams__isnull=True)
    inbox = pending.filter(mine)
    if person is not None:
        inbox = inbox.exclude(requester=person, self_approval_forbidden=True)
    return inbox


def get_request_for_viewer(user: Any, pk: int) -> AccessRequest:
    """The request if this user may see it; 404 otherwise (its existence is not revealed)."""
    req = (
        requests_visible_to(user)
        .select_related("requester", "role", "grant", "policy")
        .filter(pk=pk)
        .first()
    )
    if req is None:
        raise Http404("No such request.")
    return req
