"""What the fleet and rotation benchmarks share: kubesim and Celery workers in processes of
their own, on a fresh test database, and the small helpers around them.

Imported as `bench.harness` by a benchmark that has put the project root first on sys.path and
taken bench/ off it (bench/requests.py would stand in for the `requests` library).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def control(base: str, method: str, path: str) -> dict:
    """A call to kubesim's control API (/_kubesim/...)."""
    request = urllib.request.Request(base + path, method=method)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"{}")


def wait_until(
    check: Callable[[], bool],
    timeout: float,
    what: str,
    progress: Callable[[], str] | None = None,
    poll_s: float = 0.1,
) -> float:
    """Seconds until check() is true; `progress` is logged every 5 s meanwhile."""
    started = time.perf_counter()
    last_report = started
    while time.perf_counter() - started < timeout:
        if check():
            return time.perf_counter() - started
        if progress is not None and time.perf_counter() - last_report >= 5:
            last_report = time.perf_counter()
            log(progress())
        time.sleep(poll_s)
    raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")


@contextlib.contextmanager
def fleet(
    name: str, kubesim_options: list[str], workers: int, concurrency: int
) -> Iterator[tuple[str, list[int]]]:
    """kubesim (`python -m kubesim OPTIONS`) and `workers` Celery workers of `concurrency`
    threads, on a test database created for the run and an emptied broker database; yields
    kubesim's URL and the pids of kubesim and the workers. Everything is gone afterwards.

    Needs PostgreSQL and Redis (DATABASE_URL, CELERY_BROKER_URL; default: `make services`).
    """
    work = Path(tempfile.mkdtemp(prefix=f"warden-bench-{name}-"))
    os.environ.setdefault("DATABASE_URL", "postgres://warden:warden@127.0.0.1:5432/warden")
    os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
    os.environ.update(DEBUG="1", WARDEN_VAR_DIR=str(work), DJANGO_SETTINGS_MODULE="config.settings")
    # kubesim serves plain HTTP here (TLS would be measured too): allowed for local testing only.
    os.environ.update(WARDEN_ALLOW_HTTP_API_URLS="1")
    children: list[subprocess.Popen[bytes]] = []
    try:
        import django

        django.setup()
        from celery import current_app
        from django.conf import settings
        from django.db import connection

        # Plain HTTP, as asked for: the figures measure Warden and kubesim, not TLS handshakes,
        # and stay comparable with earlier runs.
        sim = subprocess.Popen(
            [sys.executable, "-m", "kubesim", "--http", *kubesim_options],
            stdout=subprocess.PIPE,
            cwd=ROOT,
        )
        children.append(sim)
        ready = sim.stdout.readline().decode() if sim.stdout else ""
        base = ready.split(" on ")[1].split()[0]
        log(ready.strip())

        old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
        test_db = settings.DATABASES["default"]["NAME"]
        try:
            current_app.connection_for_write().default_channel.client.flushdb()  # a clean queue
            database_url = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/" + test_db
            worker_env = {**os.environ, "DATABASE_URL": database_url}
            for i in range(workers):
                command = [sys.executable, "-m", "celery", "-A", "config", "worker"]
                command += ["--pool", "threads", "--concurrency", str(concurrency)]
                command += ["--loglevel", "ERROR", "-n", f"{name}{i}@%h"]
                children.append(subprocess.Popen(command, env=worker_env, cwd=ROOT))
            yield base, [child.pid for child in children]
        finally:
            for child in children[1:]:
                child.send_signal(signal.SIGTERM)
            for child in children[1:]:
                child.wait(timeout=30)
            connection.creation.destroy_test_db(old_name, verbosity=0)
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
        shutil.rmtree(work, ignore_errors=True)
