"""Read queries of the people side."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Prefetch, QuerySet

from access.directory import DirectoryPerson
from access.models import DirectorySync, Membership, Person, Team, TeamNesting


def last_sync() -> DirectorySync | None:
    return DirectorySync.objects.order_by("-started_at", "-id").first()


def last_successful_sync() -> DirectorySync | None:
    return DirectorySync.objects.filter(status="succeeded").order_by("-started_at", "-id").first()


def recent_syncs(limit: int = 20) -> QuerySet[DirectorySync]:
    return DirectorySync.objects.order_by("-started_at", "-id")[:limit]


def people_deactivated_since(since: datetime) -> QuerySet[Person]:
    """Leavers and disabled accounts since a moment: one index range scan."""
    return Person.objects.filter(is_active=False, deactivated_at__gte=since)


def person_for_entry(entry: DirectoryPerson) -> Person | None:
    """The Person a directory entry is: by its stable id, else by DN (an active one first)."""
    if entry.external_id:
        person = Person.objects.filter(external_id=entry.external_id).first()
        if person is not None:
            return person
    return Person.objects.filter(dn=entry.dn).order_by("-is_active", "-id").first()


@dataclass(frozen=True)
class TeamOfPerson:
    """A team a person is in, directly or through the nested teams named in `via`."""

    team: Team
    is_direct: bool
    via: tuple[str, ...] = ()


def teams_of(person: Person) -> list[TeamOfPerson]:
    """A person's effective teams; for a nested membership, the child teams it comes through.

    Each team carries `leads`: its active owners, as the directory names them.
    """
    memberships = list(
        Membership.objects.filter(person=person, team__is_active=True)
        .select_related("team")
        .prefetch_related(
            Prefetch(
                "team__owners",
                queryset=Person.objects.filter(is_active=True).order_by("username"),
                to_attr="leads",
            )
        )
        .order_by("team__name")
    )
    indirect = [m.team_id for m in memberships if not m.is_direct]
    mine = {m.team_id for m in memberships}
    via: dict[int, list[str]] = {}
    links = TeamNesting.objects.filter(parent_id__in=indirect, child_id__in=mine).values_list(
        "parent_id", "child__name"
    )
    for parent_id, child_name in links.order_by("child__name"):
        via.setdefault(parent_id, []).append(child_name)
    return [TeamOfPerson(m.team, m.is_direct, tuple(via.get(m.team_id, ()))) for m in memberships]
