"""manage.py create_api_token USERNAME --name NAME [--days N]: prints a new token, once."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from access.services import tokens


class Command(BaseCommand):
    help = "Make a personal API token for an account and print it (it is never shown again)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", help="the account the token acts as")
        parser.add_argument("--name", required=True, help="what will use it, e.g. ci-deploy")
        parser.add_argument(
            "--days", type=int, default=tokens.DEFAULT_DAYS, help="valid for (1-366, default 90)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(
                f"No account {options['username']!r}: people get one when they first log in."
            )
        try:
            token, secret = tokens.create_api_token(
                owner=user, name=options["name"], days=options["days"]
            )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        self.stderr.write(
            f"Token “{token.name}” for {user.get_username()}, valid until "
            f"{token.expires_at:%Y-%m-%d %H:%M} UTC. Copy it now; it is not shown again:"
        )
        self.stdout.write(secret)
