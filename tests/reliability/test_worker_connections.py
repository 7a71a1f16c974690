"""A worker keeps each thread's database connection from task to task (Celery's Django fixup
alone would open a PostgreSQL session per task)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.db import connection

from clusters.choices import ReconcileTrigger
from clusters.tasks import reconcile_cluster_task
from tests.fixtures.services import needs_postgresql, needs_redis

ROOT = Path(__file__).resolve().parent.parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
TASKS = 40
THREADS = 2


def database_sessions() -> int:
    """Sessions PostgreSQL has opened on the test database so far (its own statistics)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        return int(cursor.fetchone()[0])


def test_a_worker_thread_keeps_its_database_connection_between_tasks(tmp_path):
    needs_postgresql("PostgreSQL sessions are counted")
    needs_redis("a real worker takes the tasks")
    from celery import current_app

    queue = f"warden-connections-{uuid.uuid4().hex[:8]}"
    database_url = (
        os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/" + connection.settings_dict["NAME"]
    )
    env = {
        **os.environ,
        "DEBUG": "1",
        "DATABASE_URL": database_url,
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "WARDEN_VAR_DIR": str(tmp_path),
    }
    log = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool=threads",
            f"--concurrency={THREADS}",
            f"--queues={queue}",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    conf = current_app.conf
    saved = (conf.task_always_eager, conf.task_default_queue)
    try:
        deadline = time.monotonic() + 60
        while " ready." not in log.read_text(errors="replace"):
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.2)
        before = database_sessions()
        conf.task_always_eager, conf.task_default_queue = False, queue
        # clusters that do not exist: each task takes its lock and reads the database, no more
        results = [
            reconcile_cluster_task.apply_async((10**9 + i, ReconcileTrigger.SCHEDULE))
            for i in range(TASKS)
        ]
        broker = current_app.connection_for_write().default_channel.client
        deadline = time.monotonic() + 60
        while broker.llen(queue) or log.read_text(errors="replace").count("succeeded") < TASKS:
            assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            time.sleep(0.2)
        assert len(results) == TASKS
        time.sleep(1.5)  # PostgreSQL publishes a session's statistics a moment after it ends
        opened = database_sessions() - before
        assert opened <= THREADS + 2, f"{opened} PostgreSQL sessions for {TASKS} tasks"
    finally:
        conf.task_always_eager, conf.task_default_queue = saved
        worker.terminate()
        worker.wait(timeout=30)
