"""`manage.py register_cluster`: add a cluster to the fleet from a kubeconfig context."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from access.choices import Environment, Tier
from clusters import services
from clusters.kubeconfig import KubeconfigError, parse_kubeconfig


class Command(BaseCommand):
    help = "Register a cluster from a kubeconfig context, after checking Warden's access there."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--kubeconfig", required=True, type=Path)
        parser.add_argument("--context", default="")
        parser.add_argument("--name", default="", help="defaults to the context's cluster name")
        parser.add_argument("--environment", required=True, choices=Environment.values)
        parser.add_argument("--tier", required=True, choices=Tier.values)
        parser.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
        parser.add_argument("--user-prefix", default="")
        parser.add_argument("--group-prefix", default="")
        parser.add_argument("--expand-users", action="store_true", help="bind users, not groups")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            access = parse_kubeconfig(options["kubeconfig"].read_text(), options["context"])
        except (OSError, KubeconfigError) as exc:
            raise CommandError(f"{options['kubeconfig']}: {exc}") from exc
        labels = {}
        for item in options["label"]:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise CommandError(f"--label {item!r}: write KEY=VALUE")
            labels[key] = value
        try:
            cluster = services.register_cluster(
                name=options["name"] or access.cluster_name,
                environment=options["environment"],
                tier=options["tier"],
                api_url=access.api_url,
                token=access.token,
                ca_bundle=access.ca_pem,
                labels=labels,
                user_prefix=options["user_prefix"],
                group_prefix=options["group_prefix"],
                bind_groups=not options["expand_users"],
            )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        self.stdout.write(f"registered {cluster.name} ({cluster.environment}/{cluster.tier})")
