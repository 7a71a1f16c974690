"""`make run`'s demo, started as a user would: real slapd, worker, beat and web server."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import ldap
import psutil
import pytest

from access.localslapd import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


class Browser:
    """Just enough of a browser: cookies, CSRF tokens from forms, redirects."""

    def __init__(self, base: str, log: Path | None = None):
        self.base = base
        self.log = log
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def get(self, path: str) -> str:
        with self.opener.open(self.base + path, timeout=10) as response:
            return response.read().decode()

    def post_form(self, path: str, form_page: str, data: dict[str, str]) -> str:
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', self.get(form_page))
        assert token, "no CSRF token on the page"
        body = urllib.parse.urlencode({**data, "csrfmiddlewaretoken": token.group(1)}).encode()
        request = urllib.request.Request(self.base + path, data=body)
        request.add_header("Referer", self.base + form_page)
        try:
            with self.opener.open(request, timeout=20) as response:
                return response.read().decode()
        except urllib.error.HTTPError as exc:
            tail = self.log.read_text()[-3000:] if self.log and self.log.exists() else ""
            raise AssertionError(
                f"POST {path} answered {exc.code}; the demo said:\n{tail}"
            ) from exc


def wait_for(
    url: str,
    timeout: float = 60,
    process: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> None:
    """Wait for the demo's web server; on failure, say what the demo printed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (process is None or process.poll() is None):
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.3)
    tail = log.read_text(errors="replace")[-4000:] if log and log.exists() else ""
    state = f"exited with {process.returncode}" if process and process.poll() is not None else ""
    raise AssertionError(f"{url} did not answer within {timeout}s {state}; the demo said:\n{tail}")


def start_demo(var: Path, log: Path) -> tuple[str, subprocess.Popen[bytes]]:
    """`manage.py rundemo` as `make run` starts it, on a free port, its output in `log`."""
    port = free_port()
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DATABASE_URL", "CELERY_", "LDAP_", "DEBUG", "SECRET_KEY"))
        },
        "WARDEN_VAR_DIR": str(var),
        "DJANGO_SETTINGS_MODULE": "config.demo_settings",  # as `make run` sets it
    }
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "rundemo", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    return f"http://127.0.0.1:{port}", process


def stop_demo(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def still_running(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Processes that still run (an orphan's zombie, waiting for init to reap it, does not)."""
    running = []
    for proc in processes:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                running.append(proc)
        except psutil.NoSuchProcess:
            pass
    return running


@pytest.fixture
def demo(tmp_path):
    var, log = tmp_path / "var", tmp_path / "demo.log"
    base, process = start_demo(var, log)
    try:
        wait_for(base + "/healthz", process=process, log=log)
        yield base, process, str(var), log
    finally:
        stop_demo(process)


def test_the_demo_serves_logins_and_its_worker_runs_tasks(demo):
    base, process, demo_var, log = demo
    me = psutil.Process(process.pid)
    browser = Browser(base, log)

    # a demo person logs in with the LDAP password and sees their teams, nested ones too
    home = browser.post_form("/login/", "/login/", {"username": "erin", "password": "demo-erin"})
    assert "Erin Evans" in home
    assert "sre" in home and "platform" in home and "through a nested group" in home

    # the operator asks for a sync: the web app queues it, the demo's worker runs it
    operator = Browser(base, log)
    operator.post_form("/login/", "/login/", {"username": "olivia", "password": "demo-olivia"})
    operator.post_form("/health/sync", "/health/", {})
    deadline = time.monotonic() + 30
    state = {}
    while time.monotonic() < deadline:
        state = json.loads(operator.get("/health/?format=json"))
        last = state.get("last_sync") or {}
        if last.get("trigger") == "operator" and last.get("status") != "running":
            break
        time.sleep(0.5)
    assert state["last_sync"]["trigger"] == "operator", state
    assert state["last_sync"]["status"] == "succeeded"
    assert state["checks"]["directory"]["ok"]

    # the worker has written the demo teams' standing grants into the demo clusters
    from kubernetes import client, config

    kubeconfig = str(Path(demo_var) / "demo-kubeconfig")
    rbac = client.RbacAuthorizationV1Api(config.new_client_from_config(kubeconfig, context="dev-1"))
    subjects: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "engineering" not in subjects:
        bindings = {b.metadata.name: b for b in rbac.list_namespaced_role_binding("default").items}
        viewer = bindings.get("warden-viewer")
        subjects = [s.name for s in (viewer.subjects or [])] if viewer else []
        time.sleep(0.5)
    assert subjects == ["engineering"]

    # links in emails point at this demo's own host and port, and a person can log in to the
    # demo directory as its admin (to try a leaver or a mover)
    web = [p for p in me.children() if "runserver" in p.cmdline()]
    assert web and web[0].environ()["WARDEN_BASE_URL"] == base
    said = log.read_text(errors="replace")
    found = re.search(
        r"The demo directory: (ldap://\S+), its admin (\S+) with password (\S+)", said
    )
    assert found, said[-2000:]
    uri, admin_dn, admin_password = found.groups()
    directory = ldap.initialize(uri)
    directory.simple_bind_s(admin_dn, admin_password)
    directory.modify_s(
        "uid=frank,ou=people,dc=demo,dc=warden",
        [(ldap.MOD_ADD, "pwdAccountLockedTime", [b"000001010000Z"])],
    )
    directory.unbind_s()
    refused = Browser(base, log).post_form(
        "/login/", "/login/", {"username": "frank", "password": "demo-frank"}
    )
    assert "Frank Fischer" not in refused and "Log in" in refused

    # stopping the demo stops every process it started
    children = me.children(recursive=True)
    assert len(children) == 5  # slapd, kubesim, worker (threads, no pool processes), beat, web
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
    _gone, alive = psutil.wait_procs(children, timeout=20)
    assert alive == [], [p.cmdline()[:4] for p in alive]


def test_a_killed_demo_takes_its_processes_along_and_the_next_run_keeps_the_data(tmp_path):
    var, log = tmp_path / "var", tmp_path / "demo.log"

    # given a demo where erin has logged in, killed with no chance to clean up
    base, first = start_demo(var, log)
    try:
        wait_for(base + "/healthz", process=first, log=log)
        home = Browser(base, log).post_form(
            "/login/", "/login/", {"username": "erin", "password": "demo-erin"}
        )
        assert "Erin Evans" in home
        children = psutil.Process(first.pid).children(recursive=True)
        names = sorted(" ".join(p.cmdline()[1:5]) for p in children)
        assert len(children) == 5, names  # slapd, kubesim, worker, beat, web server
        first.kill()
        first.wait()
    finally:
        stop_demo(first)

    # then its slapd, kubesim, worker, beat and web server go with it at once: the kernel kills
    # each when its parent dies (the wait is for the signals to be delivered, not a shutdown)
    _gone, alive = psutil.wait_procs(children, timeout=5)
    assert still_running(alive) == [], [p.cmdline()[:6] for p in still_running(alive)]

    # and when the demo runs again on the same var/
    base, second = start_demo(var, log)
    try:
        wait_for(base + "/healthz", process=second, log=log)

        # erin logs in to the same account, on a fresh directory with the same people
        home = Browser(base, log).post_form(
            "/login/", "/login/", {"username": "erin", "password": "demo-erin"}
        )
        assert "Erin Evans" in home and "sre" in home
    finally:
        stop_demo(second)
    with sqlite3.connect(var / "warden.sqlite3") as db:
        erins = db.execute("SELECT count(*) FROM auth_user WHERE username = 'erin'").fetchone()
        assert erins == (1,)
        # a sync at each start, and the reseeded directory is the same one: nothing blocked
        statuses = [row[0] for row in db.execute("SELECT status FROM access_directorysync")]
        assert statuses.count("succeeded") >= 2 and "blocked" not in statuses, statuses


def test_make_run_works_as_the_readme_says_from_an_emptied_environment(tmp_path):
    # given a new user's shell: nothing set but PATH and HOME (no DEBUG, no SECRET_KEY)
    port = free_port()
    var, log = tmp_path / "var", tmp_path / "make-run.log"
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", str(tmp_path))}
    env["WARDEN_VAR_DIR"] = str(var)  # the suite's own var/, not the checkout's
    if "WARDEN_TEST_SESSION" in os.environ:  # so the suite's end check can see leftovers
        env["WARDEN_TEST_SESSION"] = os.environ["WARDEN_TEST_SESSION"]
    with log.open("wb") as output:
        make = subprocess.Popen(
            ["make", "run", f"PORT={port}"],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        # when it has started, /healthz answers and a demo person logs in
        wait_for(base + "/healthz", timeout=90, process=make, log=log)
        home = Browser(base, log).post_form(
            "/login/", "/login/", {"username": "erin", "password": "demo-erin"}
        )
        assert "Erin Evans" in home

        # and a page that does not exist is Warden's own 404, not Django's debug page
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(base + "/no-such-page/", timeout=10)
        page = missing.value.read().decode()
        assert missing.value.code == 404
        assert "There is no such page" in page
        assert "URLconf" not in page and "urlpatterns" not in page and "DEBUG" not in page

        # and the demo's secrets were made for it and kept, readable by their owner only
        for name in (
            "demo-secret-key",
            "demo-encryption-key",
            "demo-audit-key",
            "demo-metrics-token",
        ):
            assert (var / name).stat().st_mode & 0o077 == 0
    finally:
        # Ctrl-C, as the user stops it: the whole process group gets SIGINT
        os.killpg(make.pid, signal.SIGINT)
        try:
            make.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait()
    assert "Warden demo stopped." in log.read_text()
