"""The directory side of the people services: sync, confirmation of a blocked sync, logins."""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import Iterator
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from access import audit
from access.choices import InactiveReason, SyncStatus, SyncTrigger
from access.directory import DirectoryConfig, DirectoryError, DirectoryPerson
from access.fleet import fleet
from access.models import DirectorySync, Person, SyncLock
from access.services import leavers
from access.sync import DirectorySyncer, SyncBlocked, refresh_user_flags
from core.types import Actor

logger = logging.getLogger(__name__)
SYNC_LOCK = "directory-sync"
COUNTERS = (
    "people_created",
    "people_updated",
    "people_deactivated",
    "people_reactivated",
    "teams_created",
    "teams_updated",
    "teams_deactivated",
    "memberships_added",
    "memberships_removed",
    "leads_changed",
)


def sync_directory(
    *,
    trigger: str = SyncTrigger.SCHEDULE,
    requested_by: Any = None,
    confirms: DirectorySync | None = None,
    config: DirectoryConfig | None = None,
) -> DirectorySync:
    """Mirror the directory into Person/Team/Membership; returns the recorded run.

    All or nothing: a directory error or a tripped guard rolls every write back and is recorded
    on the run (status failed/blocked) rather than raised.
    """
    config = config or DirectoryConfig.from_settings()
    run = DirectorySync.objects.create(
        trigger=trigger, requested_by=requested_by, confirms=confirms
    )
    started = time.monotonic()
    allowance = _allowance(confirms)
    try:
        with transaction.atomic(), _no_cyclic_gc():
            if _claim_lock():
                syncer = DirectorySyncer(run, config, allowance)
                syncer.sync()
                # Leavers past their grace (at once by default) lose what they held, in the
                # sync's own transaction: all or nothing with the sync that saw them go.
                leavers.end_leavers_access()
                run.status = SyncStatus.SUCCEEDED
                teams, people = set(syncer.changed_team_ids), set(syncer.changed_person_ids)
                members = set(syncer.membership_changed_team_ids)
                if teams or people or members:
                    transaction.on_commit(
                        lambda: _reconcile_for_subjects(run, teams, people, members)
                    )
                if run.changed_anything:
                    _audit_sync(run, syncer, requested_by)
            else:
                run.status = SyncStatus.SKIPPED
    except SyncBlocked as blocked:
        _discard_counts(run)
        run.status = SyncStatus.BLOCKED
        run.guard = blocked.guard
        run.error = str(blocked)
        logger.error("directory sync #%s blocked: %s", run.pk, blocked)
        audit.record(
            "directory.sync_blocked",
            actor=requested_by,
            obj=run,
            after=blocked.guard,
            reason=str(blocked),
        )
    except DirectoryError as exc:
        _discard_counts(run)
        run.status = SyncStatus.FAILED
        run.error = str(exc)
        logger.error("directory sync #%s failed: %s", run.pk, exc)
    except Exception as exc:
        _discard_counts(run)
        run.status = SyncStatus.FAILED
        run.error = f"Internal error ({exc.__class__.__name__}); see the worker log"
        _finish(run, started)
        raise
    _finish(run, started)
    return run


def _audit_sync(run: DirectorySync, syncer: DirectorySyncer, actor: Actor) -> None:
    """One event per sync that changed something; leavers by name (they lose access)."""
    leavers = Person.objects.filter(is_active=False, deactivated_at=syncer.now).order_by("username")
    audit.record(
        "directory.synced",
        actor=actor,
        obj=run,
        after={
            **{name: getattr(run, name) for name in COUNTERS if getattr(run, name)},
            "deactivated": list(leavers.values_list("username", flat=True)[:1000]),
        },
        reason=f"trigger: {run.trigger}",
    )


def confirm_blocked_sync(run: DirectorySync, operator: Any) -> DirectorySync:
    """An operator says the directory is right: sync again, allowing what the blocked run saw."""
    if run.status != SyncStatus.BLOCKED:
        raise ValidationError("Only a sync blocked by the safety guard can be confirmed.")
    if DirectorySync.objects.filter(confirms=run, status=SyncStatus.SUCCEEDED).exists():
        raise ValidationError("This blocked sync has already been confirmed.")
    newer = DirectorySync.objects.filter(
        started_at__gt=run.started_at, status=SyncStatus.SUCCEEDED
    ).exists()
    if newer:
        raise ValidationError("A later sync has succeeded since; there is nothing to confirm.")
    return sync_directory(trigger=SyncTrigger.CONFIRMATION, requested_by=operator, confirms=run)


def record_login_person(entry: DirectoryPerson, user: Any) -> Person:
    """Link the login account to its Person, creating the Person if no sync has seen it yet."""
    with transaction.atomic():
        person = None
        if entry.external_id:
            person = Person.objects.filter(external_id=entry.external_id).first()
        person = person or Person.objects.filter(dn=entry.dn).first()
        if person is None:
            person = Person(
                dn=entry.dn,
                external_id=entry.external_id,
                username=entry.username,
                email=entry.email,
                display_name=entry.display_name,
                is_active=not entry.disabled,
                inactive_reason=InactiveReason.DISABLED if entry.disabled else "",
                deactivated_at=timezone.now() if entry.disabled else None,
            )
            try:
                with transaction.atomic():
                    person.save()
            except IntegrityError:
                # Another active person holds the username: the directory is inconsistent.
                raise ValidationError(
                    f"The username {entry.username!r} belongs to another person in Warden; "
                    "ask an operator to run a directory sync."
                ) from None
        if person.user_id != user.pk:
            Person.objects.filter(user=user).exclude(pk=person.pk).update(user=None)
            person.user = user
            person.save(update_fields=["user", "updated_at"])
        refresh_user_flags(DirectoryConfig.from_settings(), user_ids=[user.pk])
        return person


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while a sync builds its large, acyclic indexes.

    Measured (bench/directory_sync.py): with ~700,000 live dict entries and tuples, Python's
    generation-2 collections re-scanned them again and again.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _claim_lock() -> bool:
    """Hold the sync lock row for the rest of the transaction; False if another sync has it."""
    SyncLock.objects.get_or_create(name=SYNC_LOCK)
    locked = SyncLock.objects.select_for_update(skip_locked=True).filter(name=SYNC_LOCK)
    return bool(list(locked.values_list("id", flat=True)))


def _allowance(confirms: DirectorySync | None) -> dict[str, int]:
    if confirms is None:
        return {}
    return {
        what: int(values.get("would_remove", 0))
        for what, values in confirms.guard.items()
        if isinstance(values, dict)
    }


def _discard_counts(run: DirectorySync) -> None:
    # The transaction was rolled back: the record must not claim changes that did not happen.
    for name in COUNTERS:
        setattr(run, name, 0)


def _finish(run: DirectorySync, started: float) -> None:
    run.mark_finished(started)
    run.save()


def _reconcile_for_subjects(
    run: DirectorySync, team_ids: set[int], person_ids: set[int], membership_team_ids: set[int]
) -> None:
    """Queue the reconciles a sync's changes call for, and note on the run which clusters (the
    health page follows them)."""

    ids = fleet().reconcile_for_subjects(team_ids, person_ids, membership_team_ids)
    # On the object for the save that finishes the run, and in the row in case that save came
    # first (when the sync ran inside an outer transaction, this runs at its commit).
    run.reconcile_cluster_ids = ids
    DirectorySync.objects.filter(pk=run.pk).update(reconcile_cluster_ids=ids)
