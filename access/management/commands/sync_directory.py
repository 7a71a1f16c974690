"""`manage.py sync_directory`: mirror people and teams from the directory now."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from access import selectors, services
from access.choices import SyncStatus, SyncTrigger


class Command(BaseCommand):
    help = "Mirror people, teams and membership from LDAP/AD into Warden."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--confirm-blocked",
            action="store_true",
            help="Confirm the last sync the safety guard blocked and apply it.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["confirm_blocked"]:
            blocked = selectors.last_sync()
            if blocked is None or blocked.status != SyncStatus.BLOCKED:
                raise CommandError("The last sync was not blocked; there is nothing to confirm.")
            try:
                run = services.confirm_blocked_sync(blocked, operator=None)
            except ValidationError as exc:
                raise CommandError(" ".join(exc.messages)) from exc
        else:
            run = services.sync_directory(trigger=SyncTrigger.COMMAND)
        summary = (
            f"sync #{run.pk} {run.status} in {run.duration_s}s: "
            f"{run.people_seen} people and {run.teams_seen} teams read; "
            f"people +{run.people_created} ~{run.people_updated} -{run.people_deactivated} "
            f"(reactivated {run.people_reactivated}); teams +{run.teams_created} "
            f"~{run.teams_updated} -{run.teams_deactivated}; memberships "
            f"+{run.memberships_added} -{run.memberships_removed}; "
            f"managers and owners changed {run.leads_changed}"
        )
        for warning in run.warnings:
            self.stderr.write(f"warning: {warning}")
        if run.status in (SyncStatus.SUCCEEDED, SyncStatus.SKIPPED):
            self.stdout.write(summary)
            return
        raise CommandError(f"{summary}\n{run.error}")
