"""manage.py warden export [-o FILE] | apply -f FILE [--dry-run] [--prune] [--no-plan] [--as USER]

Access as code (ascode/): export what Warden holds as YAML, or apply a reviewed file.
Apply shows the diff (and each affected cluster's RBAC plan) first, then applies everything in
one transaction, or nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ascode import files as ascode


class Command(BaseCommand):
    help = "Access as code: export Warden's roles, policies, standing grants, clusters and "
    help += "service accounts as "
    help += "YAML, or apply such a file (diff and per-cluster plan shown first)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True)
        export = sub.add_parser("export", help="write Warden's declared state as YAML")
        export.add_argument("-o", "--output", help="file to write (default: standard output)")
        apply = sub.add_parser("apply", help="apply a file: diff, plan, then all or nothing")
        apply.add_argument("-f", "--file", required=True, help="the YAML file ('-' for stdin)")
        apply.add_argument(
            "--dry-run", action="store_true", help="show the diff and plan; change nothing"
        )
        apply.add_argument(
            "--prune",
            action="store_true",
            help="also remove what the file lacks: revoke standing grants, delete role "
            "definitions and policies, retire service accounts (roles and clusters are never "
            "removed)",
        )
        apply.add_argument(
            "--no-plan", action="store_true", help="do not read the clusters for the RBAC plan"
        )
        apply.add_argument(
            "--as",
            dest="actor",
            default="",
            help="the account the audit trail names (default: Warden itself)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["subcommand"] == "export":
            self._export(options.get("output"))
        else:
            self._apply(options)

    def _export(self, output: str | None) -> None:
        text = ascode.export()
        if output:
            Path(output).write_text(text, encoding="utf-8")
            self.stderr.write(f"Wrote {output}.")
        else:
            self.stdout.write(text, ending="")

    def _apply(self, options: dict[str, Any]) -> None:
        name = options["file"]
        try:
            text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"{name}: cannot be read ({exc.strerror})") from None
        actor = None
        if options["actor"]:
            actor = get_user_model().objects.filter(username=options["actor"]).first()
            if actor is None:
                raise CommandError(f"No account {options['actor']!r} to name in the audit trail.")
        try:
            wanted = ascode.load(text, filename=name)
        except ascode.AsCodeError as exc:
            raise CommandError("The file cannot be applied:\n" + str(exc)) from None
        changes = ascode.diff(wanted, ascode.current(), prune=options["prune"])
        self.stdout.write("Changes in Warden:")
        self.stdout.write(_indent(changes.text()))
        if changes.empty:
            return
        if not options["no_plan"]:
            self.stdout.write("RBAC plan per cluster:")
            self.stdout.write(_indent(ascode.plan_text(ascode.rbac_plan(changes, wanted))))
        if options["dry_run"]:
            self.stdout.write("Dry run: nothing was changed.")
            return
        try:
            applied = ascode.apply(wanted, actor=actor, prune=options["prune"])
        except ascode.AsCodeError as exc:
            raise CommandError("Nothing was changed:\n" + str(exc)) from None
        counts = applied.counts()
        self.stdout.write(
            self.style.SUCCESS(
                f"Applied: {counts.get('add', 0)} added, {counts.get('change', 0)} changed, "
                f"{counts.get('remove', 0)} removed; the clusters they reach reconcile now."
            )
        )


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())
