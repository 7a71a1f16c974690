"""`manage.py verify_audit`: check the hash chain of the audit trail; exit 1 if it is broken."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from access import audit
from access.words import count_of


class Command(BaseCommand):
    help = "Verify that no audit event was edited, inserted or removed."

    def handle(self, *args: Any, **options: Any) -> None:
        result = audit.verify()
        if not result.ok:
            for problem in result.problems:
                self.stderr.write(problem)
            raise CommandError(
                f"The audit trail is broken in {count_of(len(result.problems), 'place')} "
                f"({result.checked} events checked)."
            )
        self.stdout.write(f"The audit trail is intact: {result.checked} events checked.")
        if result.unkeyed:
            self.stdout.write(
                f"{result.unkeyed} events, the newest #{result.last_unkeyed}, were written before "
                "the audit key (plain SHA-256); once every process runs with the key, set "
                f"WARDEN_AUDIT_UNKEYED_UNTIL={result.last_unkeyed} so that no later event may be."
            )
