"""Directory sync: mirror people, teams and (nested) membership from LDAP/AD, safely.

The sync streams the directory a page at a time and writes only what changed. It runs in one
transaction: when the directory fails mid-way, or the guard finds that it would deactivate too
much (an outage, a wrong base DN, a filter typo), everything is rolled back and the run is
recorded with the reason instead.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from access import directory
from access.choices import InactiveReason
from access.directory import DirectoryConfig, DirectoryGroup, DirectoryPerson, PageStats
from access.models import DirectorySync, Membership, Person, Team, TeamNesting, TeamOwner

logger = logging.getLogger(__name__)
T = TypeVar("T")
CHUNK = 1000
SAMPLE = 20
# Unresolved manager/owner references named one by one in a run's warnings; the rest are counted.
LEAD_WARNINGS = 20


class SyncBlocked(Exception):
    """The sync would deactivate more than the configured share; nothing was changed."""

    def __init__(self, message: str, guard: dict[str, Any]) -> None:
        super().__init__(message)
        self.guard = guard


def chunks(items: Iterable[T], size: int = CHUNK) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass
class _KnownPerson:
    id: int
    entry_hash: str
    is_active: bool
    username: str
    external_id: str | None = None


@dataclass
class PeopleState:
    """What the database holds about people, and what this sync has seen of them."""

    by_external_id: dict[str, _KnownPerson] = field(default_factory=dict)
    by_dn: dict[str, _KnownPerson] = field(default_factory=dict)
    active_username_owner: dict[str, int] = field(default_factory=dict)
    active_before: set[int] = field(default_factory=set)
    seen: set[int] = field(default_factory=set)
    dn_to_id: dict[str, int] = field(default_factory=dict)
    username_to_id: dict[str, int] = field(default_factory=dict)
    member_of: dict[int, tuple[str, ...]] = field(default_factory=dict)
    # Leads: each mirrored person's manager DN as read now, the manager each has in the
    # database, and the DNs of people active after this sync (the only possible leads).
    manager_dn: dict[int, str] = field(default_factory=dict)
    manager_id: dict[int, int] = field(default_factory=dict)
    active_dn_to_id: dict[str, int] = field(default_factory=dict)
    newly_disabled: list[str] = field(default_factory=list)
    deferred: list[DirectoryPerson] = field(default_factory=list)

    @classmethod
    def load(cls) -> PeopleState:
        state = cls()
        # Oldest first, so where a DN was reused the newest record is the one remembered.
        rows = Person.objects.order_by("id").values_list(
            "id", "dn", "external_id", "entry_hash", "is_active", "username", "manager_id"
        )
        for pk, dn, external_id, entry_hash, is_active, username, manager_id in rows.iterator(
            chunk_size=5000
        ):
            known = _KnownPerson(pk, entry_hash, is_active, username, external_id)
            if manager_id is not None:
                state.manager_id[pk] = manager_id
            state.by_dn[dn] = known
            if external_id:
                state.by_external_id[external_id] = known
            if is_active:
                state.active_before.add(pk)
                state.active_username_owner[username] = pk
        return state

    def find(self, entry: DirectoryPerson) -> _KnownPerson | None:
        if entry.external_id and entry.external_id in self.by_external_id:
            return self.by_external_id[entry.external_id]
        known = self.by_dn.get(entry.dn)
        if known and known.external_id and entry.external_id:
            # Same DN, another entry (deleted and re-created, e.g. a rehire): a new Person, so
            # nothing granted to the leaver comes back.
            return None
        return known


class DirectorySyncer:
    """One sync run's work; counts go straight onto the DirectorySync record."""

    def __init__(self, run: DirectorySync, config: DirectoryConfig, allowance: dict[str, int]):
        self.run = run
        self.config = config
        self.allowance = allowance
        self.now = timezone.now()
        self.people = PeopleState.load()
        self.team_dn_to_id: dict[str, int] = {}
        self.stats = PageStats()
        # Whose access may have changed: the clusters their grants reach get reconciled.
        # Teams gone or renamed change every binding that names them; a change of members
        # only matters where clusters bind users instead of groups.
        self.changed_team_ids: set[int] = set()
        self.membership_changed_team_ids: set[int] = set()
        self.changed_person_ids: set[int] = set()

    # --- the whole run ----------------------------------------------------------------------

    def sync(self) -> None:
        conn = directory.connect(self.config)
        try:
            for page in directory.read_people(conn, self.config, self.stats):
                self._apply_people_page(page)
            names_before = dict(Team.objects.values_list("id", "name"))
            groups = self._read_groups(conn)
        finally:
            conn.unbind_s()
        self._keep_names_distinct(groups, names_before)
        self.run.references_skipped = self.stats.references_skipped
        removed = sorted(self.people.active_before - self.people.seen)
        teams_gone = list(
            Team.objects.filter(is_active=True)
            .exclude(id__in=self.team_dn_to_id.values())
            .values_list("id", flat=True)
        )
        desired_members, desired_nesting = self._desired_membership(groups)
        existing_members = load_memberships()
        members_removed = [v[0] for k, v in existing_members.items() if k not in desired_members]
        self._check_guard(removed, teams_gone, len(members_removed), len(existing_members))
        self.changed_person_ids.update(removed)
        self.changed_team_ids.update(teams_gone)
        self.membership_changed_team_ids.update(
            key[0] for key in existing_members if key not in desired_members
        )
        self.membership_changed_team_ids.update(
            key[0] for key in desired_members if key not in existing_members
        )
        self._deactivate_people(removed)
        self._apply_deferred()
        self._deactivate_teams(teams_gone)
        self._apply_membership(desired_members, existing_members, members_removed)
        self._apply_nesting(desired_nesting)
        self._apply_managers()
        self._apply_owners(groups)
        refresh_user_flags(self.config)

    # --- people -----------------------------------------------------------------------------

    def _apply_people_page(self, page: list[DirectoryPerson]) -> None:
        self.run.people_seen += len(page)
        creates: list[Person] = []
        updates: list[Person] = []
        for entry in page:
            known = self.people.find(entry)
            if known is not None and known.id in self.people.seen:
                self._warn(f"{entry.dn} is the same directory entry as one read before; skipped")
                continue
            if not entry.disabled and not self._username_free(entry, known):
                self.people.deferred.append(entry)
                continue
            person = self._person_change(entry, known)
            if person is None:
                continue
            (creates if person.pk is None else updates).append(person)
        Person.objects.bulk_create(creates, batch_size=CHUNK)
        for person in creates:
            self._remember(person)
        self.changed_person_ids.update(p.pk for p in updates)
        if updates:
            Person.objects.bulk_update(
                updates,
                [
                    "dn",
                    "external_id",
                    "username",
                    "email",
                    "display_name",
                    "is_active",
                    "inactive_reason",
                    "deactivated_at",
                    "entry_hash",
                    "updated_at",
                ],
                batch_size=CHUNK,
            )
        self._index_page(page)

    def _username_free(self, entry: DirectoryPerson, known: _KnownPerson | None) -> bool:
        owner = self.people.active_username_owner.get(entry.username)
        return owner is None or (known is not None and owner == known.id)

    def _person_change(self, entry: DirectoryPerson, known: _KnownPerson | None) -> Person | None:
        """The Person to write for this entry, or None when nothing changed."""
        active = not entry.disabled
        if known is not None:
            self.people.seen.add(known.id)
            if known.entry_hash == entry.entry_hash and known.is_active == active:
                return None
        person = Person(
            pk=known.id if known else None,
            dn=entry.dn,
            external_id=entry.external_id,
            username=entry.username,
            email=entry.email,
            display_name=entry.display_name,
            is_active=active,
            inactive_reason="" if active else InactiveReason.DISABLED,
            deactivated_at=None if active else self.now,
            entry_hash=entry.entry_hash,
            updated_at=self.now,
        )
        if known is None:
            self.run.people_created += 1
        elif known.is_active and not active:
            self.run.people_deactivated += 1
            self.people.newly_disabled.append(entry.username)
        elif not known.is_active and active:
            self.run.people_reactivated += 1
        else:
            self.run.people_updated += 1
        if known is not None:
            if (
                known.username != entry.username
                and self.people.active_username_owner.get(known.username) == known.id
            ):
                del self.people.active_username_owner[known.username]
            known.is_active, known.entry_hash, known.username = (
                active,
                entry.entry_hash,
                entry.username,
            )
        if active:
            self.people.active_username_owner[entry.username] = person.pk or -1
        return person

    def _remember(self, person: Person) -> None:
        known = _KnownPerson(
            person.pk, person.entry_hash, person.is_active, person.username, person.external_id
        )
        self.people.seen.add(person.pk)
        self.people.by_dn[person.dn] = known
        if person.external_id:
            self.people.by_external_id[person.external_id] = known
        if person.is_active:
            self.people.active_username_owner[person.username] = person.pk

    def _index_page(self, page: list[DirectoryPerson]) -> None:
        for entry in page:
            known = self.people.find(entry)
            if known is None or known.id not in self.people.seen:
                continue  # deferred or skipped
            self.people.dn_to_id[entry.dn] = known.id
            self.people.username_to_id.setdefault(entry.username, known.id)
            if entry.member_of:
                self.people.member_of[known.id] = entry.member_of
            if entry.manager_dn:
                self.people.manager_dn[known.id] = entry.manager_dn
            if not entry.disabled:
                self.people.active_dn_to_id[entry.dn] = known.id

    def _apply_deferred(self) -> None:
        """Entries whose username an active person held earlier in the run: now maybe freed."""
        deferred, self.people.deferred = self.people.deferred, []
        page: list[DirectoryPerson] = []
        for entry in deferred:
            known = self.people.find(entry)
            if not self._username_free(entry, known):
                owner = self.people.active_username_owner[entry.username]
                self._warn(
                    f"{entry.dn}: username {entry.username!r} is already used by another active "
                    f"person (#{owner}); skipped until one of them changes"
                )
                if known is not None:
                    self.people.seen.add(known.id)  # keep it as it is rather than deactivate
                continue
            page.append(entry)
        if page:
            self.run.people_seen -= len(page)  # counted when first read
            self._apply_people_page(page)

    def _deactivate_people(self, removed: list[int]) -> None:
        for batch in chunks(removed):
            Person.objects.filter(id__in=batch).update(
                is_active=False,
                inactive_reason=InactiveReason.REMOVED,
                deactivated_at=self.now,
                updated_at=self.now,
            )
        self.run.people_deactivated += len(removed)
        removed_set = set(removed)
        for username, owner in list(self.people.active_username_owner.items()):
            if owner in removed_set:
                del self.people.active_username_owner[username]

    # --- teams and membership ---------------------------------------------------------------

    def _read_groups(self, conn: Any) -> list[tuple[int, DirectoryGroup]]:
        """Upsert every group; returns (team id, group) with the member lists for later."""
        existing = {
            dn: (pk, external_id, entry_hash, is_active)
            for pk, dn, external_id, entry_hash, is_active in Team.objects.values_list(
                "id", "dn", "external_id", "entry_hash", "is_active"
            )
        }
        by_external_id = {v[1]: (dn, *v) for dn, v in existing.items() if v[1]}
        groups: list[tuple[int, DirectoryGroup]] = []
        for page in directory.read_groups(conn, self.config, self.stats):
            self.run.teams_seen += len(page)
            creates: list[Team] = []
            updates: list[Team] = []
            for group in page:
                match = by_external_id.get(group.external_id) if group.external_id else None
                row = match[1:] if match else existing.get(group.dn)
                if row is not None and row[0] in self.team_dn_to_id.values():
                    continue
                if row is not None and row[2] == group.entry_hash and row[3]:
                    self.team_dn_to_id[group.dn] = row[0]
                    groups.append((row[0], group))
                    continue
                team = Team(
                    pk=row[0] if row else None,
                    dn=group.dn,
                    external_id=group.external_id,
                    name=group.name,
                    description=group.description,
                    is_active=True,
                    deactivated_at=None,
                    entry_hash=group.entry_hash,
                    updated_at=self.now,
                )
                (updates if row else creates).append(team)
            self.changed_team_ids.update(t.pk for t in updates)
            Team.objects.bulk_create(creates, batch_size=CHUNK)
            Team.objects.bulk_update(
                updates,
                [
                    "dn",
                    "external_id",
                    "name",
                    "description",
                    "is_active",
                    "deactivated_at",
                    "entry_hash",
                    "updated_at",
                ],
                batch_size=CHUNK,
            )
            self.run.teams_created += len(creates)
            self.run.teams_updated += len(updates)
            by_dn = {g.dn: g for g in page}
            for team in (*creates, *updates):
                self.team_dn_to_id[team.dn] = team.pk
                groups.append((team.pk, by_dn[team.dn]))
        return groups

    def _keep_names_distinct(
        self, groups: list[tuple[int, DirectoryGroup]], names_before: dict[int, str]
    ) -> None:
        """One name, one team: a group whose name (cn) another team holds already, active or
        not, is named apart (`cn~<id>`, stable for its DN/id) and reported, so it never shares
        the other's Kubernetes group name, members, grants or operator rights. The team that
        held the name keeps it; where none did, no group of a shared name gets it."""
        holders: dict[str, list[int]] = defaultdict(list)
        for pk, name in names_before.items():
            holders[name].append(pk)
        claims: dict[str, list[tuple[int, DirectoryGroup]]] = defaultdict(list)
        for pk, group in groups:
            claims[group.name].append((pk, group))
        renames: dict[int, str] = {}
        for name, claimants in claims.items():
            held = sorted(holders.get(name, []))
            keeper = held[0] if held else (claimants[0][0] if len(claimants) == 1 else None)
            apart = [(pk, group) for pk, group in claimants if pk != keeper]
            for pk, group in apart:
                renames[pk] = distinct_team_name(group)
            if apart:
                dns = "; ".join(group.dn for _, group in apart)
                self._warn(
                    f"the group name {name!r} is another team's already (one name, one team): "
                    f"Warden names these groups apart, as {name}~<id>: {dns}; rename them in "
                    "the directory"
                )
        current = dict(Team.objects.filter(id__in=renames).values_list("id", "name"))
        for pk, name in renames.items():
            if current.get(pk) != name:
                Team.objects.filter(pk=pk).update(name=name, updated_at=self.now)
                self.changed_team_ids.add(pk)

    def _deactivate_teams(self, team_ids: list[int]) -> None:
        for batch in chunks(team_ids):
            Team.objects.filter(id__in=batch).update(
                is_active=False, deactivated_at=self.now, updated_at=self.now
            )
        self.run.teams_deactivated = len(team_ids)

    def _desired_membership(
        self, groups: list[tuple[int, DirectoryGroup]]
    ) -> tuple[dict[tuple[int, int], bool], set[tuple[int, int]]]:
        direct_people: dict[int, set[int]] = defaultdict(set)
        children: dict[int, set[int]] = defaultdict(set)
        team_ids = self.team_dn_to_id
        person_ids = self.people.dn_to_id
        for team_id, group in groups:
            for dn in group.member_dns:
                if dn in person_ids:
                    direct_people[team_id].add(person_ids[dn])
                elif dn in team_ids and team_ids[dn] != team_id:
                    children[team_id].add(team_ids[dn])
            for uid in group.member_uids:
                if uid in self.people.username_to_id:
                    direct_people[team_id].add(self.people.username_to_id[uid])
            for parent_dn in group.member_of:  # AD: the group's own memberOf
                if parent_dn in team_ids and team_ids[parent_dn] != team_id:
                    children[team_ids[parent_dn]].add(team_id)
        for person_id, parent_dns in self.people.member_of.items():  # AD: the user's memberOf
            for parent_dn in parent_dns:
                if parent_dn in team_ids:
                    direct_people[team_ids[parent_dn]].add(person_id)
        desired: dict[tuple[int, int], bool] = {}
        for team_id, _group in groups:
            for sub_id in descendants(team_id, children):
                for person_id in direct_people.get(sub_id, ()):
                    desired.setdefault((team_id, person_id), False)
            for person_id in direct_people.get(team_id, ()):
                desired[(team_id, person_id)] = True
        nesting = {(parent, child) for parent, kids in children.items() for child in kids}
        return desired, nesting

    def _apply_membership(
        self,
        desired: dict[tuple[int, int], bool],
        existing: dict[tuple[int, int], tuple[int, bool]],
        removed_ids: list[int],
    ) -> None:
        for batch in chunks(removed_ids):
            Membership.objects.filter(id__in=batch).delete()
        self.run.memberships_removed = len(removed_ids)
        rows = [
            (team_id, person_id, direct)
            for (team_id, person_id), direct in desired.items()
            if (team_id, person_id) not in existing
        ]
        insert_memberships(rows)
        self.run.memberships_added = len(rows)
        flips = [
            (existing[key][0], direct)
            for key, direct in desired.items()
            if key in existing and existing[key][1] != direct
        ]
        for direct in (True, False):
            ids = [pk for pk, d in flips if d is direct]
            for batch in chunks(ids):
                Membership.objects.filter(id__in=batch).update(is_direct=direct)

    def _apply_nesting(self, desired: set[tuple[int, int]]) -> None:
        existing = {
            (parent, child): pk
            for pk, parent, child in TeamNesting.objects.values_list("id", "parent_id", "child_id")
        }
        gone = [pk for key, pk in existing.items() if key not in desired]
        for batch in chunks(gone):
            TeamNesting.objects.filter(id__in=batch).delete()
        TeamNesting.objects.bulk_create(
            [TeamNesting(parent_id=p, child_id=c) for p, c in desired if (p, c) not in existing],
            batch_size=CHUNK,
        )

    # --- leads: managers and team owners -----------------------------------------------------

    def _apply_managers(self) -> None:
        """Point each mirrored person at their manager, by DN; only changed links are written.

        Runs after every person is read (a manager may come on a later page) and resolves
        against people active after this sync: a manager who left, is disabled or is outside
        the user base is unset, with a warning. Unchanged entries still resolve, so a manager
        who leaves is unset from the reports whose entries did not change.
        """
        people = self.people
        changes: dict[int | None, list[int]] = defaultdict(list)
        unresolved: list[str] = []
        for person_dn, person_id in people.dn_to_id.items():
            manager_dn = people.manager_dn.get(person_id, "")
            wanted = people.active_dn_to_id.get(manager_dn) if manager_dn else None
            if wanted == person_id:
                unresolved.append(f"{person_dn} names itself as its manager; left unset")
                wanted = None
            elif manager_dn and wanted is None:
                unresolved.append(
                    f"{person_dn}: manager {manager_dn} is not an active person of the user "
                    "base; left unset"
                )
            if people.manager_id.get(person_id) != wanted:
                changes[wanted].append(person_id)
                if wanted is None:
                    people.manager_id.pop(person_id, None)
                else:
                    people.manager_id[person_id] = wanted
        # One UPDATE per manager and its reports. Measured (bench/directory_sync.py --leads):
        # bulk_update's CASE over a thousand ids per statement took five times as long.
        for manager_id, report_ids in changes.items():
            for batch in chunks(report_ids):
                Person.objects.filter(id__in=batch).update(manager_id=manager_id)
        self.run.leads_changed += sum(len(ids) for ids in changes.values())
        self._warn_many(unresolved, "managers")

    def _apply_owners(self, groups: list[tuple[int, DirectoryGroup]]) -> None:
        """Mirror each group's owners (people only) as the team's leads; write the difference."""
        desired: set[tuple[int, int]] = set()
        unresolved: list[str] = []
        for team_id, group in groups:
            for owner_dn in group.owner_dns:
                owner_id = self.people.active_dn_to_id.get(owner_dn)
                if owner_id is None:
                    unresolved.append(
                        f"{group.dn}: owner {owner_dn} is not an active person of the user base "
                        "(a group, a leaver or outside LDAP_USER_BASE_DN); not a lead"
                    )
                else:
                    desired.add((team_id, owner_id))
        existing = {
            (team_id, person_id): pk
            for pk, team_id, person_id in TeamOwner.objects.values_list(
                "id", "team_id", "person_id"
            )
        }
        gone = [pk for key, pk in existing.items() if key not in desired]
        for batch in chunks(gone):
            TeamOwner.objects.filter(id__in=batch).delete()
        added = [TeamOwner(team_id=t, person_id=p) for t, p in desired if (t, p) not in existing]
        TeamOwner.objects.bulk_create(added, batch_size=CHUNK)
        self.run.leads_changed += len(gone) + len(added)
        self._warn_many(unresolved, "owners")

    def _warn_many(self, messages: list[str], what: str) -> None:
        """Name the first few problems one by one and count the rest, so a directory whose
        managers live outside the user base does not flood the log at every sync."""
        for message in messages[:LEAD_WARNINGS]:
            self._warn(message)
        if len(messages) > LEAD_WARNINGS:
            self._warn(
                f"{len(messages) - LEAD_WARNINGS} more {what} could not be resolved to active "
                "people; left unset"
            )

    # --- safety -----------------------------------------------------------------------------

    def _check_guard(
        self, removed: list[int], teams_gone: list[int], members_removed: int, members_before: int
    ) -> None:
        share = self.config.max_deactivate_share
        people_out = len(removed) + self.run.people_deactivated
        people_before = len(self.people.active_before)
        teams_before = Team.objects.filter(is_active=True).count()
        checks = [
            ("people", people_out, people_before),
            ("teams", len(teams_gone), teams_before),
            ("memberships", members_removed, members_before),
        ]
        guard: dict[str, Any] = {"max_share": share}
        exceeded = []
        for what, out, before in checks:
            guard[what] = {"before": before, "would_remove": out}
            allowed = self.allowance.get(what)
            too_many = before > 0 and out / before > share
            if too_many and (allowed is None or out > allowed):
                exceeded.append(f"{out} of {before} {what} ({out / before:.0%})")
        if removed or self.people.newly_disabled:
            sample = list(
                Person.objects.filter(id__in=removed[:SAMPLE]).values_list("username", flat=True)
            )
            guard["people"]["sample"] = sorted(sample + self.people.newly_disabled[:SAMPLE])[
                :SAMPLE
            ]
        self.run.guard = guard
        if exceeded:
            raise SyncBlocked(
                f"Stopped: this sync would deactivate {', '.join(exceeded)}, more than the "
                f"{share:.0%} allowed (DIRECTORY_SYNC_MAX_DEACTIVATE_SHARE). Nothing was changed. "
                "If the directory is right, an operator can confirm this sync.",
                guard,
            )

    def _warn(self, message: str) -> None:
        logger.warning("directory sync: %s", message)
        if len(self.run.warnings) < 100:
            self.run.warnings.append(message)


def load_memberships() -> dict[tuple[int, int], tuple[int, bool]]:
    """Every membership row as {(team, person): (id, is_direct)}.

    Measured hot path: read without the ORM's per-value converters, which took a third of a
    no-change sync of 330,000 memberships.
    """
    table = Membership._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id, team_id, person_id, is_direct FROM {table}")  # noqa: S608
        return {
            (team, person): (pk, bool(direct)) for pk, team, person, direct in cursor.fetchall()
        }


def insert_memberships(rows: list[tuple[int, int, bool]]) -> None:
    """Insert membership rows, a thousand to a multi-row INSERT.

    Measured hot path (bench/directory_sync.py): a first sync of a 100,000-person directory
    inserts ~330,000 rows; a model instance per row, or a statement per row, took most of it.
    """
    table = Membership._meta.db_table
    with connection.cursor() as cursor:
        for batch in chunks(rows, 1000):
            values = ", ".join(["(%s, %s, %s)"] * len(batch))
            sql = f"INSERT INTO {table} (team_id, person_id, is_direct) VALUES {values}"  # noqa: S608
            cursor.execute(sql, [value for row in batch for value in row])


def descendants(team_id: int, children: dict[int, set[int]]) -> set[int]:
    """Every group nested under team_id, however deep; cycles end where they close."""
    seen: set[int] = set()
    stack = list(children.get(team_id, ()))
    while stack:
        current = stack.pop()
        if current in seen or current == team_id:
            continue
        seen.add(current)
        stack.extend(children.get(current, ()))
    return seen


def distinct_team_name(group: DirectoryGroup) -> str:
    """The name of a group whose cn another team holds: the cn and a short digest of its stable
    id (objectGUID/entryUUID, else its DN)."""
    identity = (group.external_id or group.dn.lower()).encode()
    return f"{group.name}~{hashlib.sha256(identity).hexdigest()[:8]}"


def admin_teams_filter(config: DirectoryConfig) -> Q:
    """The teams WARDEN_ADMIN_TEAMS names: a DN names that group; a bare name only the team
    holding that name (names are kept distinct, see Sync._keep_names_distinct)."""
    wanted = Q(pk__in=[])
    for entry in config.admin_teams:
        wanted |= Q(dn__iexact=entry) if "=" in entry else Q(name=entry)
    return wanted


def refresh_user_flags(config: DirectoryConfig, user_ids: list[int] | None = None) -> None:
    """Login accounts follow their Person: inactive people cannot log in, admin teams are staff."""
    users = get_user_model().objects.filter(person__isnull=False)
    if user_ids is not None:
        users = users.filter(id__in=user_ids)
    users.filter(person__is_active=False, is_active=True).update(is_active=False)
    users.filter(person__is_active=True, is_active=False).update(is_active=True)
    admin_team_ids = Team.objects.filter(admin_teams_filter(config), is_active=True).values("id")
    admin_people = Membership.objects.filter(
        team__in=admin_team_ids, person__is_active=True
    ).values("person_id")
    is_admin = Q(person__id__in=admin_people)
    users.filter(is_admin).filter(Q(is_staff=False) | Q(is_superuser=False)).update(
        is_staff=True, is_superuser=True
    )
    users.exclude(is_admin).filter(Q(is_staff=True) | Q(is_superuser=True)).update(
        is_staff=False, is_superuser=False
    )
