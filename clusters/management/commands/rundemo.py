"""`manage.py rundemo`: the whole of Warden on one machine, for `make run`.

A real slapd with the demo directory, one directory sync, then a Celery worker, Celery beat and
the web server as child processes, all on embedded defaults. Ctrl-C stops everything.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from access import services
from access.choices import SyncTrigger
from access.demo import directory as demo
from access.localslapd import LocalSlapd, SlapdError
from access.models import ApprovalPolicy, Grant, Role, Team
from access.words import count_of
from clusters.kubeconfig import parse_kubeconfig
from clusters.services import register_cluster

DEMO_CLUSTERS = [
    ("dev-1", "dev", "tier-3"),
    ("staging-1", "staging", "tier-2"),
    ("prod-1", "prod", "tier-0"),
]
# team, role, environments ([] = all), namespaces ([] = the role's own scope)
DEMO_GRANTS = [
    ("engineering", "viewer", [], ["default"]),
    ("payments", "developer", ["dev", "staging"], ["default"]),
    ("sre", "operator", [], ["kube-system"]),
]


PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In a child, before exec: be killed when rundemo dies, even by SIGKILL (Linux).

    SIGKILL, not SIGTERM: a rundemo that stops normally stops its children gracefully itself;
    one that was killed had no chance to, and a child shutting down gracefully (beat saving its
    schedule, the worker finishing tasks) would race the next run for the SQLite write lock and
    outlive it by the busy timeout. Tasks are acknowledged late, so a killed one runs again.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def stop_stale_slapd(workdir: Path) -> None:
    """A demo killed without cleaning up leaves its slapd running: stop it before reseeding."""
    try:
        pid = int((workdir / "slapd.pid").read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if str(workdir / "slapd.conf").encode() not in cmdline:
        return  # the pid has been reused by something else
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.1)


def _running(pid: int) -> bool:
    """Whether a process runs (a zombie, exited but not yet reaped by init, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def seed_demo_policies() -> None:
    """Demo approvers (judy, peggy) decide where a policy names no approver team yet."""
    approvers = Team.objects.filter(name=demo.APPROVER_TEAM, is_active=True).first()
    if approvers is None:
        return
    for policy in ApprovalPolicy.objects.filter(approver_teams__isnull=True):
        policy.approver_teams.add(approvers)


def seed_demo_grants() -> None:
    """Standing grants for the demo teams, once."""
    for team_name, role_name, environments, namespaces in DEMO_GRANTS:
        team = Team.objects.filter(name=team_name, is_active=True).first()
        role = Role.objects.filter(name=role_name).first()
        if team is None or role is None:
            continue
        if not Grant.objects.filter(team=team, role=role, revoked_at__isnull=True).exists():
            services.grant_access(
                role=role,
                team=team,
                environments=environments,
                namespaces=namespaces,
                reason="demo standing grant",
            )


class Command(BaseCommand):
    help = "Run the Warden demo: directory, worker, beat and web server on this machine."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args: Any, **options: Any) -> None:
        var = Path(settings.VAR_DIR)
        var.mkdir(parents=True, exist_ok=True)
        call_command("migrate", interactive=False, verbosity=0)
        # Access that ran out while the demo was stopped ends before anything else starts.
        expired = services.expire_grants()
        if expired:
            self.stdout.write(
                f"Ended {count_of(len(expired), 'grant')} that expired while stopped."
            )
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
            children = [self._start_demo_clusters(var)]
            children += self._start_children(env, options["host"], options["port"])
            self._announce(options["host"], options["port"], slapd)
            # Seen at once also when the output goes to a file or a pipe (make run | tee).
            self.stdout.flush()
            while not stopping:
                for child in children:
                    if child.poll() is not None:
                        name = " ".join(cast(list[str], child.args)[2:4])
                        raise CommandError(f"{name} exited with {child.returncode}")
                time.sleep(0.5)
        finally:
            self._stop(children)
            slapd.destroy()
            self.stdout.write("Warden demo stopped.")

    def _start_directory(self, slapd: LocalSlapd) -> dict[str, str]:
        stop_stale_slapd(slapd.workdir)
        slapd.destroy()  # a fresh directory every run; the database is kept
        try:
            slapd.configure()
            slapd.load(demo.demo_ldif())
            uri = slapd.start(preexec_fn=die_with_parent)
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

    def _start_demo_clusters(self, var: Path) -> subprocess.Popen[bytes]:
        """kubesim with a dev, a staging and a prod cluster, registered and granted to."""
        kubeconfig = var / "demo-kubeconfig"
        kubeconfig.unlink(missing_ok=True)
        names = [name for name, _env, _tier in DEMO_CLUSTERS]
        process = subprocess.Popen(  # noqa: S603 - our own module
            [
                sys.executable,
                "-m",
                "kubesim",
                "--clusters",
                ",".join(names),
                "--kubeconfig",
                str(kubeconfig),
            ],
            stdout=subprocess.PIPE,
            cwd=settings.BASE_DIR,
            preexec_fn=die_with_parent,  # rundemo starts no threads, so this is safe
        )
        ready = process.stdout.readline().decode() if process.stdout else ""
        if "ready" not in ready:
            raise CommandError(f"kubesim did not start: {ready}")
        text = kubeconfig.read_text()
        for name, environment, tier in DEMO_CLUSTERS:
            access = parse_kubeconfig(text, context=name)
            register_cluster(
                name=name,
                environment=environment,
                tier=tier,
                api_url=access.api_url,
                token=access.token,
                ca_bundle=access.ca_pem,
                labels={"region": "demo"},
            )
        seed_demo_grants()
        seed_demo_policies()
        self.stdout.write(
            f"Demo clusters ({', '.join(names)}) on kubesim; kubeconfig: {kubeconfig}"
        )
        return process

    def _start_children(
        self, env: dict[str, str], host: str, port: int
    ) -> list[subprocess.Popen[bytes]]:
        # The children read the same settings module (DJANGO_SETTINGS_MODULE is inherited).
        child_env = {**os.environ, **env, "WARDEN_VAR_DIR": str(settings.VAR_DIR)}
        # Links in emails point at this demo, whatever its host and port.
        shown_host = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104 - a comparison
        child_env.setdefault("WARDEN_BASE_URL", f"http://{shown_host}:{port}")
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
                # Threads, as in production: no pool processes that could outlive the worker.
                "--pool",
                "threads",
                "--concurrency",
                "2",
            ],
            [python, "-m", "celery", "-A", "config", "beat", "--loglevel", "WARNING"],
            [python, "manage.py", "runserver", "--noreload", f"{host}:{port}"],
        ]
        return [
            subprocess.Popen(  # noqa: S603 - our own programs
                cmd, env=child_env, cwd=settings.BASE_DIR, preexec_fn=die_with_parent
            )
            for cmd in commands
        ]

    def _announce(self, host: str, port: int, slapd: LocalSlapd) -> None:
        people = ", ".join(f"{u} / {demo.password_for(u)}" for u, _ in demo.PEOPLE[:3])
        self.stdout.write(
            f"\nWarden is running on http://{host}:{port}/\n"
            f"Log in as a demo person (password demo-<username>): {people}, ...\n"
            f"Operator: olivia / {demo.password_for('olivia')}. "
            f"Approvers: judy, peggy. Disabled: mallory.\n"
            # A person trying Warden can play a leaver or a mover in the demo directory, e.g.
            # ldapmodify -x -H <uri> -D <dn> -w <password> (see README, "Two commands").
            f"The demo directory: {slapd.uri}, its admin {slapd.admin_dn} with password "
            f"{slapd.admin_password} (this run only).\nPress Ctrl-C to stop.\n"
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
