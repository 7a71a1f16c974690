"""Per-cluster locks: one reconcile per cluster at a time, and a dead holder never blocks."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import psycopg
import pytest
from django.db import connection

from access.models import Grant
from clusters import locks, services
from tests.fixtures.services import needs_postgresql

pytestmark = pytest.mark.django_db


def postgres_only():
    needs_postgresql("advisory locks are PostgreSQL's (CI runs it)")


def test_a_cluster_held_by_another_worker_is_skipped_then_reconciled_when_it_dies(
    make_cluster, catalogue, people, rbac
):
    postgres_only()
    cluster, sim = make_cluster()
    Grant.objects.create(person=people["alice"], role=catalogue["viewer"])
    # another worker's database session holds the cluster's lock
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    other = psycopg.connect(**params, autocommit=True)
    other.execute("SELECT pg_advisory_lock(%s, %s)", (locks.LOCK_CLASS, cluster.pk))

    assert services.reconcile_cluster(cluster.pk) is None
    assert rbac.bindings(sim).get("warden-viewer") is None

    other.close()  # the worker dies: PostgreSQL ends its session and its locks
    deadline = time.monotonic() + 10  # the server notices the closed session a moment later
    run = services.reconcile_cluster(cluster.pk)
    while run is None and time.monotonic() < deadline:
        time.sleep(0.1)
        run = services.reconcile_cluster(cluster.pk)

    assert run is not None and run.created == 1
    assert rbac.subjects(sim, "warden-viewer") == ["alice"]


def test_a_file_lock_is_exclusive_and_released_when_its_process_dies(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    first, second = locks.FileLock(7), locks.FileLock(7)
    assert first.acquire()
    assert not second.acquire()
    first.release()
    assert second.acquire()
    second.release()

    # a process that takes the lock and is killed before it lets go
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import fcntl, os, sys, time
                fd = os.open({str(first.path)!r}, os.O_RDWR)
                fcntl.flock(fd, fcntl.LOCK_EX)
                print("held", flush=True)
                time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
    )
    assert holder.stdout.readline().strip() == b"held"
    assert not first.acquire()
    holder.kill()
    holder.wait()
    assert first.acquire()
    first.release()
