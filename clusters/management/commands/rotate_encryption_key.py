"""`manage.py rotate_encryption_key`: re-encrypt every stored secret with the newest key."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from access.words import count_of
from clusters import services


class Command(BaseCommand):
    help = (
        "Re-encrypt every encrypted field with the first key of WARDEN_ENCRYPTION_KEYS; the other "
        "keys still decrypt. Run it after adding the new key in front, before removing the old."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=500, help="rows per transaction")
        parser.add_argument("--dry-run", action="store_true", help="count, change nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        counts = services.rotate_encryption_key(
            batch_size=options["batch_size"], dry_run=options["dry_run"]
        )
        verb = "would re-encrypt" if options["dry_run"] else "re-encrypted"
        for count in counts:
            self.stdout.write(
                f"{count.field}: {count.checked} checked, {verb} {count.reencrypted}, "
                f"{count.current} already under the newest key"
                + (f", {count.raced} changed meanwhile (already new)" if count.raced else "")
                + (f", {count.unreadable} UNREADABLE" if count.unreadable else "")
            )
        unreadable = sum(c.unreadable for c in counts)
        if unreadable:
            raise CommandError(
                f"{count_of(unreadable, 'secret')} cannot be decrypted with any key of "
                "WARDEN_ENCRYPTION_KEYS: put back the key they were written with (they were left "
                "unchanged), then run this again"
            )
        total = sum(c.reencrypted for c in counts)
        self.stdout.write(self.style.SUCCESS(f"done: {verb} {count_of(total, 'secret')}"))
