"""Who leads whom, as the directory says: a person's manager, and a team's owners.

A lead is the person who vouches for someone's access: they review standing grants (access
reviews) and may approve requests where a policy asks for the requester's own lead. Leads come
only from the directory (see access/sync.py) and only active people are leads, so an answer here
is always about now: someone who stopped being a manager or an owner stops being a lead at the
next sync.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet

from access.models import Membership, Person, Team, TeamOwner


def manager_of(person: Person) -> Person | None:
    """The person's lead: their manager, if the directory names an active one."""
    manager = person.manager
    return manager if manager is not None and manager.is_active else None


def team_leads(team: Team) -> list[Person]:
    """The team's leads: its active owners (none for a team gone from the directory)."""
    if not team.is_active:
        return []
    return list(team.owners.filter(is_active=True).order_by("username"))


def is_manager_of(lead: Person, person: Person) -> bool:
    """Whether `lead` is `person`'s manager now."""
    return bool(lead.is_active and person.manager_id == lead.pk and lead.pk != person.pk)


def is_team_lead(lead: Person, team: Team) -> bool:
    """Whether `lead` owns `team` now."""
    return bool(
        lead.is_active
        and team.is_active
        and TeamOwner.objects.filter(team=team, person=lead).exists()
    )


def leads_of_person(person: Person) -> list[Person]:
    """Everyone who leads the person: their manager, and the owners of the teams they are in
    (directly or through nested groups). For approval rules such as "the requester's own
    manager or team lead"; the person is never their own lead."""
    in_teams = Membership.objects.filter(person=person, team__is_active=True).values("team_id")
    owners = TeamOwner.objects.filter(team_id__in=in_teams).values("person_id")
    leads = Person.objects.filter(is_active=True).filter(Q(pk=person.manager_id) | Q(pk__in=owners))
    return list(leads.exclude(pk=person.pk).order_by("username"))


def owned_team_ids(lead: Person) -> QuerySet[TeamOwner, Any]:
    """The ids (as a subquery) of the active teams this person leads."""
    return TeamOwner.objects.filter(person=lead, team__is_active=True).values("team_id")


def has_active_owner(team_ref: str = "pk") -> Exists:
    """An expression: the team named by the outer query's `team_ref` has an active owner."""
    return Exists(
        TeamOwner.objects.filter(
            team_id=OuterRef(team_ref), person__is_active=True, team__is_active=True
        )
    )
