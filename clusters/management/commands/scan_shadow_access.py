"""`manage.py scan_shadow_access`: look for access outside Warden now (the scheduled scan)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from access.words import count_of
from clusters import services
from clusters.choices import ClusterState
from clusters.k8s import KubeError
from clusters.models import Cluster


class Command(BaseCommand):
    help = (
        "List each live cluster's bindings that Warden does not own and that name directory "
        "people or teams (shadow access); report only, nothing is changed on a cluster."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("clusters", nargs="*", help="cluster names (default: every live one)")

    def handle(self, *args: Any, **options: Any) -> None:
        live = Cluster.objects.exclude(state=ClusterState.RETIRED).order_by("name")
        if options["clusters"]:
            live = live.filter(name__in=options["clusters"])
            unknown = set(options["clusters"]) - set(live.values_list("name", flat=True))
            if unknown:
                raise CommandError(f"No live cluster is called {', '.join(sorted(unknown))}.")
        failed = 0
        for cluster in live:
            try:
                found = services.scan_shadow_access(cluster.pk)
            except KubeError as exc:
                failed += 1
                self.stderr.write(f"{cluster.name}: not scanned ({exc})")
                continue
            self.stdout.write(
                f"{cluster.name}: {count_of(len(found), 'binding')} outside Warden "
                "naming directory people or teams"
            )
        if failed:
            raise CommandError(f"{count_of(failed, 'cluster')} could not be scanned.")
