"""The Celery application: the same code runs eagerly in tests, on a file broker in the demo and
on Redis or RabbitMQ in production.

Workers log through Django's LOGGING (JSON or plain, request/task ids, secrets scrubbed) instead
of Celery's own handlers, count every task in Prometheus metrics, and serve those on
WORKER_METRICS_PORT when it is set.
"""

from __future__ import annotations

import gc
import os
import time
from typing import Any

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("warden")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

_started: dict[str, float] = {}


@signals.setup_logging.connect
def _configure_logging(**kwargs: Any) -> None:
    """Connected, this stops Celery from installing its own log handlers; LOGGING rules."""
    from logging.config import dictConfig

    from django.conf import settings

    dictConfig(settings.LOGGING)


# A reconcile decodes and compiles thousands of small objects; with the interpreter's default
# threshold (700 allocations) the collector runs hundreds of times per reconcile, each time
# walking a heap that holds a pooled client per cluster. Fewer, larger young collections, and
# everything loaded at start (Django, the app) moved out of the collector's sight.
GC_THRESHOLD = (50_000, 20, 10)


@signals.worker_init.connect
@signals.worker_process_init.connect
def _tune_garbage_collector(**kwargs: Any) -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


@signals.worker_init.connect
def _worker_metrics(**kwargs: Any) -> None:
    """In the worker's main process, before the pool starts: fresh samples, and /metrics."""
    from django.conf import settings

    from config import metrics

    metrics.reset_multiprocess_dir()
    if settings.WORKER_METRICS_PORT:
        metrics.serve_worker_metrics(settings.WORKER_METRICS_PORT, settings.METRICS_TOKEN)


@signals.worker_process_shutdown.connect
def _child_gone(pid: int | None = None, **kwargs: Any) -> None:
    from config import metrics

    metrics.process_exited(pid or os.getpid())


def _recycle_connections(task: Any) -> None:
    """Keep a worker thread's database connection from task to task, as Django keeps one from
    request to request: closed only when broken or older than CONN_MAX_AGE. (Celery's own
    fixup would close it after every task: a new PostgreSQL backend per reconcile. Settings
    set CELERY_DB_REUSE_MAX so that the fixup leaves this to us.)"""
    if task is not None and not getattr(task.request, "is_eager", False):
        from django.db import close_old_connections

        close_old_connections()


@signals.task_prerun.connect
def _task_started(task_id: str | None = None, task: Any = None, **kwargs: Any) -> None:
    _recycle_connections(task)
    if task_id:
        _started[task_id] = time.monotonic()


@signals.task_postrun.connect
def _task_finished(
    task_id: str | None = None, task: Any = None, state: str | None = None, **kwargs: Any
) -> None:
    from config import metrics

    started = _started.pop(task_id or "", None)
    seconds = time.monotonic() - started if started is not None else None
    metrics.observe_task(getattr(task, "name", "unknown"), state or "UNKNOWN", seconds)
    _recycle_connections(task)
