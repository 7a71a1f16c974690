"""`manage.py expire_grants`: end every grant whose time is up, now (the scheduled sweep)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from access import services
from access.words import count_of


class Command(BaseCommand):
    help = "End every grant whose time is up now, as the scheduled expiry sweep does."

    def handle(self, *args: Any, **options: Any) -> None:
        ended = services.expire_grants()
        if not ended:
            self.stdout.write("No grant's time was up: nothing to end.")
            return
        ids = ", ".join(f"#{pk}" for pk in ended)
        self.stdout.write(f"Ended {count_of(len(ended), 'grant')} whose time was up: {ids}.")
