"""`manage.py rundemo`: the whole of Warden on one machine, for `make run`.

A real slapd with the demo directory, one directory sync, then a Celery worker, Celery beat and
the web server as child processes, all on embedded defaults. Ctrl-C stops everything.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from access import services
from access.choices import SyncTrigger
from access.demo import directory as demo
from access.localslapd import LocalSlapd, SlapdError


class Command(BaseCommand):
    help = "Run the Warden demo: directory, worker, beat and web server on this machine."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args: Any, **options: Any) -> None:
        var = Path(settings.VAR_DIR)
        var.mkdir(parents=True, exist_ok=True)
        call_command("migrate", interactive=False, verbosity=0)
        slapd = LocalSlapd(var / "demo-slapd", suffix=demo.SUFFIX)
        children: list[subprocess.Popen[bytes]] = []
        stopping = False

        def stop(signum: int, frame: Any) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        try:
            env = self._start_directory(slapd)
            env.update(self._start_demo_clusters())
            children = self._start_children(env, options["host"], options["port"])
            self._announce(options["host"], options["port"])
            while not stopping:
                for child in children:
                    if child.poll() is not None:
                        raise CommandError(f"{child.args[2:4]} exited with {child.returncode}")
                time.sleep(0.5)
        finally:
            self._stop(children)
            slapd.destroy()
            self.stdout.write("Warden demo stopped.")

    def _start_directory(self, slapd: LocalSlapd) -> dict[str, str]:
        slapd.destroy()  # a fresh directory every run; the database is kept
        try:
            slapd.configure()
            slapd.load(demo.demo_ldif())
            uri = slapd.start()
        except SlapdError as exc:
            raise CommandError(f"The demo directory could not start: {exc}") from exc
        env = demo.environment(uri)
        settings.WARDEN_DIRECTORY.update(
            URI=uri,
            BIND_DN=env["LDAP_BIND_DN"],
            BIND_PASSWORD=env["LDAP_BIND_PASSWORD"],
            USER_BASE_DN=env["LDAP_USER_BASE_DN"],
            GROUP_BASE_DN=env["LDAP_GROUP_BASE_DN"],
            ADMIN_TEAMS=demo.ADMIN_TEAMS,
        )
        run = services.sync_directory(trigger=SyncTrigger.COMMAND)
        self.stdout.write(
            f"Demo directory on {uri}: sync {run.status}, {run.people_seen} people, "
            f"{run.teams_seen} teams"
        )
        return env

    def _start_demo_clusters(self) -> dict[str, str]:
        """Demo Kubernetes clusters (kubesim) join here once the emulator is part of Warden."""
        return {}

    def _start_children(
        self, env: dict[str, str], host: str, port: int
    ) -> list[subprocess.Popen[bytes]]:
        child_env = {**os.environ, **env, "DEBUG": "1", "WARDEN_VAR_DIR": str(settings.VAR_DIR)}
        python = sys.executable
        commands = [
            [
                python,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--loglevel",
                "WARNING",
                "--concurrency",
                "2",
            ],
            [python, "-m", "celery", "-A", "config", "beat", "--loglevel", "WARNING"],
            [python, "manage.py", "runserver", "--noreload", f"{host}:{port}"],
        ]
        return [
            subprocess.Popen(cmd, env=child_env, cwd=settings.BASE_DIR)  # noqa: S603
            for cmd in commands
        ]

    def _announce(self, host: str, port: int) -> None:
        people = ", ".join(f"{u} / {demo.password_for(u)}" for u, _ in demo.PEOPLE[:3])
        self.stdout.write(
            f"\nWarden is running on http://{host}:{port}/\n"
            f"Log in as a demo person (password demo-<username>): {people}, ...\n"
            f"Operator: olivia / {demo.password_for('olivia')}. "
            f"Approvers: judy, peggy. Disabled: mallory.\nPress Ctrl-C to stop.\n"
        )

    def _stop(self, children: list[subprocess.Popen[bytes]]) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
