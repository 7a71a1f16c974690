"""Work handed to the Celery workers, by task name.

Tasks are the top layer: a task imports the services it runs, and nothing below imports a task
module. Services queue work through here instead, naming the task as it is registered
(`@shared_task(name=...)` in each app's tasks.py, which Celery's autodiscovery loads), so the
import graph stays one-way. `tests/architecture/test_layers.py` checks both halves.
"""

from __future__ import annotations

import importlib
from typing import Any

from celery import current_app
from django.db import transaction


def task(name: str) -> Any:
    """The task registered as `name`: "<module>.<function>", its module loaded on first use
    (a web process may not have loaded every app's tasks yet)."""
    if name not in current_app.tasks:
        importlib.import_module(name.rpartition(".")[0])
    return current_app.tasks[name]


def send(name: str, *args: Any, **kwargs: Any) -> None:
    """Queue the task registered as `name` now (run at once where tasks are eager)."""
    task(name).delay(*args, **kwargs)


def send_on_commit(name: str, *args: Any, **kwargs: Any) -> None:
    """Queue it when the current transaction commits (not at all if it rolls back)."""
    transaction.on_commit(lambda: send(name, *args, **kwargs))
