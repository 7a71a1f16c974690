"""One worker per cluster at a time, without holding a database transaction open meanwhile.

A reconcile talks to a Kubernetes API for seconds (longer when it is slow or retrying); holding a
row lock inside a transaction for that long would keep a PostgreSQL transaction open and, on
SQLite, the whole database's write lock — every web request that writes would wait behind it.

- PostgreSQL: a session-level advisory lock (`pg_try_advisory_lock`). The server releases it
  when the holder's connection ends, so a worker that crashes or is killed never leaves a
  cluster locked, and a lock that cannot be given back ends its session. (A pooler in
  transaction mode, such as PgBouncer's, must not sit between the workers and PostgreSQL:
  session locks need session pooling.)
- Other databases (SQLite: one machine): an exclusive `flock` on a file under WARDEN_VAR_DIR,
  which the kernel releases when the process ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, connection

# The first key of Warden's advisory locks ("WARD"); the second is the cluster's id.
LOCK_CLASS = 0x57415244
POLL_S = 0.2


@contextlib.contextmanager
def cluster_lock(cluster_id: int, wait_s: float = 0.0) -> Iterator[bool]:
    """Hold the cluster's lock for the block; yields False when another worker holds it
    (after waiting up to `wait_s`), which is a normal outcome, not an error."""
    lock = _PostgresLock(cluster_id) if connection.vendor == "postgresql" else FileLock(cluster_id)
    deadline = time.monotonic() + wait_s
    held = lock.acquire()
    while not held and time.monotonic() < deadline:
        time.sleep(POLL_S)
        held = lock.acquire()
    try:
        yield held
    finally:
        if held:
            lock.release()


class _PostgresLock:
    def __init__(self, cluster_id: int):
        self.key = (LOCK_CLASS, int(cluster_id))

    def acquire(self) -> bool:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", self.key)
            return bool(cursor.fetchone()[0])

    def release(self) -> None:
        # Workers keep their connection from task to task (config/celery.py): a lock that could
        # not be given back must not outlive its task, so the session that holds it ends.
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", self.key)
        except DatabaseError:
            connection.close()
            raise


class FileLock:
    def __init__(self, cluster_id: int):
        # Per database: cluster ids of two databases (two installations sharing WARDEN_VAR_DIR,
        # or two test processes each with its in-memory database) are different clusters.
        database = str(connection.settings_dict.get("NAME") or "")
        if getattr(connection, "is_in_memory_db", lambda: False)():
            database += f"#pid{os.getpid()}"  # only this process can see that database
        digest = hashlib.sha256(database.encode()).hexdigest()[:12]
        folder = Path(settings.VAR_DIR) / "locks" / digest
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"cluster-{int(cluster_id)}.lock"
        self.fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
