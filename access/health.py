"""Health of Warden's dependencies, for /health/ (staff) and readiness checks."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.db import connection
from kombu import Connection

from access import directory, selectors
from access.directory import DirectoryConfig, DirectoryError

BROKER_TIMEOUT_S = 3


def check_database() -> dict[str, Any]:
    return _timed(lambda: connection.cursor().execute("SELECT 1"))


def check_broker() -> dict[str, Any]:
    url = settings.CELERY_BROKER_URL

    def probe() -> None:
        options = dict(getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}) or {})
        with Connection(url, connect_timeout=BROKER_TIMEOUT_S, transport_options=options) as conn:
            conn.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_S)

    result = _timed(probe)
    result["transport"] = url.split("://", 1)[0]
    return result


def check_directory() -> dict[str, Any]:
    config = DirectoryConfig.from_settings()
    if not config.configured:
        return {"ok": False, "error": "No directory is configured (LDAP_URI is empty)"}
    result = _timed(lambda: directory.ping(config))
    result["uri"] = config.uri
    return result


def last_sync_state() -> dict[str, Any] | None:
    run = selectors.last_sync()
    if run is None:
        return None
    return {
        "id": run.pk,
        "status": run.status,
        "trigger": run.trigger,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "duration_s": run.duration_s,
        "people_seen": run.people_seen,
        "teams_seen": run.teams_seen,
        "people_created": run.people_created,
        "people_deactivated": run.people_deactivated,
        "memberships_added": run.memberships_added,
        "memberships_removed": run.memberships_removed,
        "error": run.error,
        "guard": run.guard,
        "warnings": run.warnings,
    }


def report() -> dict[str, Any]:
    checks = {
        "database": check_database(),
        "broker": check_broker(),
        "directory": check_directory(),
    }
    return {
        "ok": all(c["ok"] for c in checks.values()),
        "checks": checks,
        "last_sync": last_sync_state(),
    }


def _timed(probe: Any) -> dict[str, Any]:
    started = time.monotonic()
    try:
        probe()
    except DirectoryError as exc:
        return {"ok": False, "error": str(exc), "ms": _ms(started)}
    except Exception as exc:
        # The class and message only: connection errors carry no secrets, tracebacks might.
        return {"ok": False, "error": f"{exc.__class__.__name__}: {exc}"[:300], "ms": _ms(started)}
    return {"ok": True, "ms": _ms(started)}


def _ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
