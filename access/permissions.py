"""Authorization of the people side: who may see and do what."""

from __future__ import annotations

from typing import Any, cast

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import Http404
from rest_framework.permissions import BasePermission

from access import leads
from access.choices import CampaignState
from access.models import (
    AccessRequest,
    ApiToken,
    Approval,
    Grant,
    Membership,
    Person,
    ReviewCampaign,
    ReviewItem,
)


def may_still_log_in(user: Any) -> bool:
    """An account that may act now: active, and not linked to a person who left the directory.

    Asked on every request, by session (access.middleware.LeaverMiddleware) and by API token
    (access.services.tokens.authenticate), so a leaver keeps no working login anywhere.
    """
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    return not Person.objects.filter(user_id=user.pk, is_active=False).exists()


def is_operator(user: Any) -> bool:
    """Operators are staff: members of WARDEN_ADMIN_TEAMS (or a local superuser)."""
    return bool(user.is_authenticated and user.is_active and user.is_staff)


def require_operator(user: Any) -> AbstractBaseUser:
    """The user, known to be an operator; PermissionDenied (403) for anyone else."""
    if not is_operator(user):
        raise PermissionDenied("Only Warden operators may do this.")
    return cast(AbstractBaseUser, user)


class IsOperator(BasePermission):
    """The API's form of `is_operator`: 403 for anyone else (401 when not logged in)."""

    message = "Only Warden operators may do this."

    def has_permission(self, request: Any, view: Any) -> bool:
        return is_operator(request.user)


# --- the person behind a login -----------------------------------------------------------------


def person_of(user: Any) -> Person | None:
    """The active directory person behind a login account: None for anonymous users, local
    accounts and people the directory has disabled or lost. Every "who is this?" asks here."""
    if not getattr(user, "is_authenticated", False):
        return None
    # RelatedObjectDoesNotExist is an AttributeError: a local account has no Person.
    person: Person | None = getattr(user, "person", None)
    return person if person is not None and person.is_active else None


def require_person(user: Any) -> Person:
    """person_of, or a 403 that says why (a page or API call only a directory person may make)."""
    person = person_of(user)
    if person is None:
        raise PermissionDenied(
            "Only active people from the directory can do this (this is a local account, or "
            "one the directory has disabled)."
        )
    return person


# --- access requests --------------------------------------------------------------------------


def requests_visible_to(user: Any) -> QuerySet[AccessRequest]:
    """Requests a user may see: their own, those they may decide or have decided; operators all."""
    requests = AccessRequest.objects.all()
    if is_operator(user):
        return requests
    if not getattr(user, "is_authenticated", False):
        return requests.none()
    person = person_of(user)
    decided = Approval.objects.filter(request_id=OuterRef("pk"), approver=user)
    visible = Q(Exists(decided))
    if person is not None:
        visible |= Q(requester=person) | Q(Exists(_approver_team_link(person)))
        visible |= Q(manager_may_approve=True, requester__manager=person)
    return requests.filter(visible)


def _approver_team_link(person: Any) -> QuerySet[Any]:
    """The request's approver teams include one of this person's (active) teams."""
    through = AccessRequest.approver_teams.through
    mine = Membership.objects.filter(person=person, team__is_active=True).values("team_id")
    return through.objects.filter(accessrequest_id=OuterRef("pk"), team_id__in=mine)


def people_who_may_approve(teams: list[Any], requester: Any = None) -> QuerySet[Person]:
    """The people a request's approver teams name (operators when it names none), whose inbox
    it reaches: the same rule as inbox_for, read from the other side."""
    people = Person.objects.filter(is_active=True)
    if teams:
        people = people.filter(memberships__team__in=teams, memberships__team__is_active=True)
    else:
        people = people.filter(user__is_staff=True, user__is_active=True)
    if requester is not None:
        people = people.exclude(pk=requester.pk)
    return people.distinct().order_by("display_name", "username")


def _decided_by(user: Any) -> Q:
    """Requests whose approvers include this user (their teams, their manager, operators)."""
    person = person_of(user)
    mine = Q(pk__in=[])
    if person is not None:
        mine |= Q(Exists(_approver_team_link(person)))
        mine |= Q(manager_may_approve=True, requester__manager=person)
    if is_operator(user):
        mine |= Q(approver_teams__isnull=True)
    return mine


def decidable_by(user: Any) -> Q:
    """The one rule of who may decide a request: its approver teams' members (operators when it
    names none), the requester's manager where the policy says so, never the requester where
    self-approval is forbidden. The inbox and may_approve both ask it."""
    person = person_of(user)
    rule = _decided_by(user)
    if person is not None:
        rule &= ~Q(requester=person, self_approval_forbidden=True)
    return rule


def inbox_for(user: Any) -> QuerySet[AccessRequest]:
    """Pending requests this user may decide now."""
    return AccessRequest.objects.pending().filter(decidable_by(user))


def after_reviews_for(user: Any) -> QuerySet[AccessRequest]:
    """Break-glass access granted at once, waiting for this user's look afterwards (not their
    own): the approvers who would have decided it, and operators."""
    person = person_of(user)
    mine = _decided_by(user) | (Q(pk__isnull=False) if is_operator(user) else Q(pk__in=[]))
    waiting = AccessRequest.objects.filter(
        break_glass=True, grant__isnull=False, reviewed_at__isnull=True
    ).filter(mine)
    if person is not None:
        waiting = waiting.exclude(requester=person)
    return waiting.distinct()


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


# --- access reviews -----------------------------------------------------------------------------


def may_decide_review(user: Any, grant: Grant) -> bool:
    """Whether the user may keep or revoke this grant in a review: its lead now, or an operator.

    Leads are read from the directory mirror at the moment of asking, so someone who stopped
    being the manager or the team owner since the campaign started may no longer decide.
    """
    if is_operator(user):
        return True
    reviewer = person_of(user)
    if reviewer is None:
        return False
    if grant.team is not None:
        return leads.is_team_lead(reviewer, grant.team)
    return grant.person is not None and leads.is_manager_of(reviewer, grant.person)


def review_items_for(user: Any) -> QuerySet[ReviewItem]:
    """Items of open campaigns that the user reviews: as a lead, and as an operator those with
    no lead in the directory (operators may decide any item, from the campaign page)."""
    items = ReviewItem.objects.filter(campaign__state=CampaignState.OPEN)
    mine = Q(pk__in=[])
    reviewer = person_of(user)
    if reviewer is not None:
        mine |= Q(grant__team_id__in=leads.owned_team_ids(reviewer)) | Q(
            grant__person__manager=reviewer
        )
    if is_operator(user):
        mine |= no_lead_q()
    return items.filter(mine)


def no_lead_q() -> Q:
    """Items whose grant nobody leads in the directory (they fall to the operators)."""
    team_led = leads.has_active_owner("grant__team_id")
    person_led = Q(grant__person__manager__isnull=False, grant__person__manager__is_active=True)
    return (Q(grant__team__isnull=False) & ~team_led) | (
        Q(grant__person__isnull=False) & ~person_led
    )


def get_review_item_for_reviewer(user: Any, pk: int) -> ReviewItem:
    """The item, if the user may decide it (its lead or an operator); 404 for anyone else, so
    that item ids reveal nothing."""
    item = (
        ReviewItem.objects.select_related(
            "campaign", "grant", "grant__team", "grant__person", "grant__person__manager"
        )
        .filter(pk=pk)
        .first()
    )
    if item is None or not may_decide_review(user, item.grant):
        raise Http404("No such review item.")
    return item


def get_campaign_for_operator(user: Any, pk: int) -> ReviewCampaign:
    """A campaign, for operators only (403 for anyone else, 404 if there is none)."""
    require_operator(user)
    campaign = ReviewCampaign.objects.filter(pk=pk).first()
    if campaign is None:
        raise Http404("No such campaign.")
    return campaign


# --- grants -------------------------------------------------------------------------------------


def grants_visible_to(user: Any) -> QuerySet[Grant]:
    """Grants a user may see: operators all; everyone else those they hold (personally or
    through one of their active teams)."""
    grants = Grant.objects.all()
    if is_operator(user):
        return grants
    person = person_of(user)
    if person is None:
        return grants.none()
    teams = Membership.objects.filter(person=person, team__is_active=True).values("team_id")
    return grants.filter(Q(person=person) | Q(team_id__in=teams))


def get_grant_for_viewer(user: Any, pk: int) -> Grant:
    """The grant if this user may see it; 404 otherwise (its existence is not revealed)."""
    grant = grants_visible_to(user).select_related("role", "team", "person").filter(pk=pk).first()
    if grant is None:
        raise Http404("No such grant.")
    return grant


def get_grant_for_operator(user: Any, pk: int) -> Grant:
    """A grant to change, for operators only (403 for anyone else, before any 404)."""
    require_operator(user)
    grant = Grant.objects.select_related("role", "team", "person").filter(pk=pk).first()
    if grant is None:
        raise Http404("No such grant.")
    return grant


# --- personal API tokens ------------------------------------------------------------------------


def api_tokens_visible_to(user: Any) -> QuerySet[ApiToken]:
    """A person sees their own tokens; operators see everyone's (to revoke one that leaked)."""
    tokens = ApiToken.objects.select_related("owner")
    if is_operator(user):
        return tokens
    if not getattr(user, "is_authenticated", False):
        return tokens.none()
    return tokens.filter(owner_id=user.pk)


def get_api_token_for_owner(user: Any, pk: int) -> ApiToken:
    """A token its owner (or an operator) may revoke; 404 for anyone else."""
    token = api_tokens_visible_to(user).filter(pk=pk).first()
    if token is None:
        raise Http404("No such token.")
    return token
