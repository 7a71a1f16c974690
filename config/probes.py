"""Endpoints for machines (probes, Prometheus) and the middleware that measures every request.

`/healthz` (liveness: the process answers), `/readyz` (readiness: the database and the broker
answer; to the metrics token the body says which does not) and `/metrics` (Prometheus; the bearer
token METRICS_TOKEN) are answered by `ProbeMiddleware`, before Django checks the Host header
(CommonMiddleware) and exempt from the HTTPS redirect: kubelet and Prometheus call pods by IP over
plain HTTP. They write nothing and render no URL, so the Host header does not matter to them.
Their responses still carry the request id and the security headers of every response.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404, resolve

from config import metrics

logger = logging.getLogger("warden.http")
MACHINE_PATHS = ("/healthz", "/readyz", "/metrics")


def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness: the process answers. No database, no broker, no authentication."""
    return HttpResponse("ok", content_type="text/plain")


def _has_metrics_token(request: HttpRequest) -> bool:
    """The request carries METRICS_TOKEN (always true when none is set: local use only, since
    production settings require one)."""
    token = settings.METRICS_TOKEN
    if not token:
        return True
    offered = request.headers.get("Authorization", "")
    return hmac.compare_digest(offered.encode(), f"Bearer {token}".encode())


def readyz(request: HttpRequest) -> HttpResponse:
    """Readiness: 200 when the database and the broker answer, else 503; what is down and why
    only to the metrics token (kubelet needs the status, not the error text)."""
    from access import health

    checks = {"database": health.check_database(), "broker": health.check_broker()}
    down = [name for name, check in checks.items() if not check["ok"]]
    if down:
        logger.warning("not ready: %s down", ", ".join(down), extra={"checks": checks})
    body: dict[str, object] = {"ok": not down}
    if _has_metrics_token(request):
        body.update(down=down, checks=checks)
    return JsonResponse(body, status=503 if down else 200)


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus text exposition; 401 without the bearer token METRICS_TOKEN."""
    if not _has_metrics_token(request):
        response = HttpResponse("metrics need the bearer token\n", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="warden-metrics"'
        return response
    return HttpResponse(
        metrics.exposition(), content_type="text/plain; version=0.0.4; charset=utf-8"
    )


_HANDLERS: dict[str, Callable[[HttpRequest], HttpResponse]] = {
    "/healthz": healthz,
    "/readyz": readyz,
    "/metrics": metrics_view,
}


class ProbeMiddleware:
    """Answer /healthz, /readyz and /metrics (GET or HEAD) before anything else runs."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        handler = _HANDLERS.get(request.path_info)
        if handler is None or request.method not in ("GET", "HEAD"):
            return self.get_response(request)
        response = handler(request)
        response["Cache-Control"] = "no-store"
        return response


class RequestMetricsMiddleware:
    """Count and time every request by URL name, and log one line per request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = self.get_response(request)
            status = response.status_code
            return response
        finally:
            seconds = time.perf_counter() - started
            view = _view_name(request)
            metrics.observe_http(request.method or "", view, status, seconds)
            # The path only: a query string can hold what a person pasted.
            logger.info(
                "%s %s %s %.0fms",
                request.method,
                request.path,
                status,
                seconds * 1000,
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 1),
                    "view": view,
                },
            )


def _view_name(request: HttpRequest) -> str:
    """The URL's name (a bounded set of labels), or a fixed word for what has none."""
    if request.path.startswith("/" + settings.STATIC_URL.lstrip("/")):
        return "static"
    match = getattr(request, "resolver_match", None)
    if match is None:
        try:
            match = resolve(request.path_info)
        except Resolver404:
            return "unmatched"
    return match.view_name or "other"
