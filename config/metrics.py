"""Prometheus metrics: what each process counts, and what the database and broker say now.

Two kinds of metric:
- **Counted in the process** (this module's Counters and Histograms): HTTP requests and their
  latency (web), Celery tasks and their durations and failures, reconciles and their durations
  (workers). Gunicorn runs several worker processes and Celery's prefork pool several children:
  with PROMETHEUS_MULTIPROC_DIR set (the manifests set it), prometheus_client writes each
  process's samples to files there and `process_registry()` adds them up.
- **Read at scrape time** ("state" metrics): per-cluster reconcile duration, drift, errors and
  pending grants, clusters per state, pending access requests, the last directory sync, the
  Celery queue length. They come from PostgreSQL and the broker, so every web replica reports
  the same values (aggregate them with max(), not sum()). Each app lists its own in its
  `metrics.py` with the `@state_metrics` decorator; adding one (e.g. service-account token
  ages) is a function that yields metric families:

      @state_metrics
      def token_ages() -> Iterator[Metric]:
          ages = GaugeMetricFamily("warden_sa_token_age_seconds", "…", labels=["account"])
          for account, issued in ...:
              ages.add_metric([account], (now - issued).total_seconds())
          yield ages

A provider that fails (database down) is left out of that scrape and counted in
`warden_metrics_provider_errors_total`; the rest is still served.
"""

from __future__ import annotations

import hmac
import logging
import os
import shutil
import socketserver
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from wsgiref import simple_server

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
TASK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)

if os.environ.get(MULTIPROC_ENV):
    # prometheus_client writes there as soon as a metric without labels is made.
    Path(os.environ[MULTIPROC_ENV]).mkdir(parents=True, exist_ok=True)

HTTP_REQUESTS = Counter(
    "warden_http_requests_total",
    "HTTP requests answered, by method, URL name and status code",
    ["method", "view", "status"],
)
HTTP_LATENCY = Histogram(
    "warden_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and URL name",
    ["method", "view"],
    buckets=LATENCY_BUCKETS,
)
TASKS = Counter(
    "warden_celery_tasks_total",
    "Celery tasks finished, by task and state (SUCCESS, FAILURE, RETRY, ...)",
    ["task", "state"],
)
TASK_DURATION = Histogram(
    "warden_celery_task_duration_seconds",
    "Time a Celery task ran, by task",
    ["task"],
    buckets=TASK_BUCKETS,
)
RECONCILES = Counter(
    "warden_reconcile_runs_total",
    "Cluster reconciles recorded, by status (succeeded, failed)",
    ["status"],
)
RECONCILE_DURATION = Histogram(
    "warden_reconcile_duration_seconds",
    "Time one cluster's reconcile took (per cluster: warden_cluster_reconcile_duration_seconds)",
    buckets=TASK_BUCKETS,
)
RECONCILE_WRITES = Counter(
    "warden_reconcile_objects_written_total",
    "Objects reconciles wrote to clusters, by action (created, updated, recreated, deleted)",
    ["action"],
)
PROVIDER_ERRORS = Counter(
    "warden_metrics_provider_errors_total",
    "Scrapes in which a state-metrics provider failed (its metrics were left out)",
    ["provider"],
)

_providers: list[Callable[[], Iterable[Metric]]] = []


def state_metrics(provider: Callable[[], Iterable[Metric]]) -> Callable[[], Iterable[Metric]]:
    """Register a function that yields metric families read at scrape time."""
    if provider not in _providers:
        _providers.append(provider)
    return provider


def forget_state_metrics(provider: Callable[[], Iterable[Metric]]) -> None:
    """Stop reading a provider at scrape time (one registered for a while, as in tests)."""
    if provider in _providers:
        _providers.remove(provider)


class StateCollector(Collector):
    """Runs every registered provider; one that fails is logged, counted and left out."""

    def collect(self) -> Iterator[Metric]:
        from django.utils.module_loading import autodiscover_modules

        autodiscover_modules("metrics")  # each app's metrics.py registers its providers once
        for provider in list(_providers):
            started = time.monotonic()
            try:
                families = list(provider())
            except Exception:
                PROVIDER_ERRORS.labels(provider.__name__).inc()
                logger.warning("metrics provider %s failed", provider.__name__, exc_info=True)
                continue
            yield from families
            logger.debug(
                "metrics provider %s: %.3fs", provider.__name__, time.monotonic() - started
            )


def multiprocess_dir() -> Path | None:
    value = os.environ.get(MULTIPROC_ENV, "")
    return Path(value) if value else None


def process_registry() -> CollectorRegistry:
    """The samples of this process — or, in multiprocess mode, of every process of the pod."""
    if multiprocess_dir() is None:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def exposition(include_state: bool = True) -> bytes:
    """The text a scrape gets: process samples, then the state read now."""
    state_body = b""
    if include_state:  # first, so that a provider's failure is counted in this very scrape
        state = CollectorRegistry(auto_describe=False)
        state.register(StateCollector())
        state_body = generate_latest(state)
    return generate_latest(process_registry()) + state_body


def reset_multiprocess_dir() -> None:
    """Empty the samples folder when a pod's main process starts (a restarted container keeps
    its emptyDir, and stale files of dead processes would be added up forever)."""
    folder = multiprocess_dir()
    if folder is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    for entry in folder.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def process_exited(pid: int) -> None:
    """A gunicorn worker or Celery child ended: drop its live gauges (counters are kept)."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def gauge(name: str, documentation: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    """A gauge family for a state provider (shorthand)."""
    return GaugeMetricFamily(name, documentation, labels=list(labels))


def observe_task(task: str, state: str, seconds: float | None) -> None:
    TASKS.labels(task, state or "UNKNOWN").inc()
    if seconds is not None:
        TASK_DURATION.labels(task).observe(seconds)


def observe_http(method: str, view: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(method, view, str(status)).inc()
    HTTP_LATENCY.labels(method, view).observe(seconds)


def observe_reconcile(status: str, seconds: float | None, written: dict[str, int]) -> None:
    RECONCILES.labels(status).inc()
    if seconds is not None:
        RECONCILE_DURATION.observe(seconds)
    for action, count in written.items():
        if count:
            RECONCILE_WRITES.labels(action).inc(count)


@state_metrics
def celery_queue() -> Iterator[Metric]:
    """Tasks waiting in the broker for a worker (the queue's length), and whether it answers."""
    from django.conf import settings
    from kombu.connection import Connection
    from kombu.exceptions import ChannelError

    queue = settings.CELERY_TASK_DEFAULT_QUEUE
    up = gauge("warden_broker_up", "1 when the Celery broker answered this scrape")
    length = gauge("warden_celery_queue_length", "Tasks waiting in the queue", ["queue"])
    options = dict(getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}) or {})
    try:
        with Connection(  # type: ignore[no-untyped-call]
            settings.CELERY_BROKER_URL, connect_timeout=3, transport_options=options
        ) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0.2, interval_step=0, timeout=3)
            try:
                _name, waiting, _consumers = conn.default_channel.queue_declare(
                    queue=queue, passive=True
                )
            except ChannelError:  # never declared yet: nothing has been queued
                waiting = 0
    except Exception as exc:
        logger.warning("the broker did not answer the queue-length scrape: %s", exc)
        up.add_metric([], 0.0)
        yield up
        return
    up.add_metric([], 1.0)
    length.add_metric([queue], float(waiting))
    yield up
    yield length


def serve_worker_metrics(port: int, token: str = "") -> Any:
    """A Celery worker's own /metrics on `port` (its process samples; state comes from web),
    wanting the bearer `token` as the web's /metrics does (METRICS_TOKEN; none: local use)."""
    from prometheus_client import make_wsgi_app

    exposition = make_wsgi_app(process_registry())
    expected = f"Bearer {token}".encode()

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        offered = str(environ.get("HTTP_AUTHORIZATION", "")).encode()
        if token and not hmac.compare_digest(offered, expected):
            start_response(
                "401 Unauthorized",
                [
                    ("Content-Type", "text/plain"),
                    ("WWW-Authenticate", 'Bearer realm="warden-metrics"'),
                ],
            )
            return [b"metrics need the bearer token\n"]
        return exposition(environ, start_response)  # type: ignore[no-any-return]

    class Server(socketserver.ThreadingMixIn, simple_server.WSGIServer):
        daemon_threads = True

    class Quiet(simple_server.WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = simple_server.make_server("", port, app, Server, handler_class=Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    logger.info("worker metrics on port %s", port)
    return server
