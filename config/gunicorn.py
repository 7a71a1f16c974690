"""Gunicorn's settings for the web container: `gunicorn -c config/gunicorn.py config.wsgi`.

Every value can be changed with an environment variable (WEB_CONCURRENCY, WEB_THREADS,
WEB_TIMEOUT, WEB_MAX_REQUESTS, WEB_MAX_REQUESTS_JITTER, PORT). Gunicorn logs through Warden's
logging (JSON or plain, secrets scrubbed); its access log is off because Warden logs one line
per request itself, with the request id.
"""

from __future__ import annotations

import os
from typing import Any

from config.logconfig import logging_config

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
worker_class = "gthread"
timeout = int(os.environ.get("WEB_TIMEOUT", "60"))
graceful_timeout = 30
keepalive = 5
# Heartbeat files in memory: the root file system is read-only in the manifests.
worker_tmp_dir = os.environ.get("WEB_WORKER_TMP_DIR", "/dev/shm")  # noqa: S108
# A worker restarts after this many requests (plus jitter), bounding any slow leak.
max_requests = int(os.environ.get("WEB_MAX_REQUESTS", "2000"))
max_requests_jitter = int(os.environ.get("WEB_MAX_REQUESTS_JITTER", "200"))
accesslog = None
# No control socket (gunicorn ≥ 25.1 makes one under $HOME, read-only in the image's pods): the
# orchestrator manages the processes.
control_socket_disable = True
logconfig_dict = logging_config(
    os.environ.get("LOG_LEVEL", "INFO"),
    os.environ.get("LOG_FORMAT", "plain"),
    # With a logging configuration gunicorn logs every request at INFO; Warden already does.
    {"gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": True}},
)
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def on_starting(server: Any) -> None:
    """The master starts: samples left by an earlier run of the container are dropped."""
    from config import metrics

    metrics.reset_multiprocess_dir()


def child_exit(server: Any, worker: Any) -> None:
    """A worker ended: its live gauges go with it (prometheus_client multiprocess mode)."""
    from config import metrics

    metrics.process_exited(worker.pid)
