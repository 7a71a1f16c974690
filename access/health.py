"""Health of Warden's dependencies, for /health/ (staff) and readiness checks."""

from __future__ import annotations

import contextlib
import time
from typing import Any
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.db import connection
from kombu.connection import Connection

from access import directory, selectors
from access.directory import DirectoryConfig, DirectoryError
from access.models import DirectorySync

BROKER_TIMEOUT_S = 3


def check_database() -> dict[str, Any]:
    def probe() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")

    return _timed(probe)


def check_broker() -> dict[str, Any]:
    url = settings.CELERY_BROKER_URL

    def probe() -> None:
        options = dict(getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}) or {})
        with Connection(  # type: ignore[no-untyped-call]
            url, connect_timeout=BROKER_TIMEOUT_S, transport_options=options
        ) as conn:
            conn.ensure_connection(
                max_retries=1, interval_start=0.2, interval_step=0, timeout=BROKER_TIMEOUT_S
            )

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


def sync_state(run: DirectorySync | None) -> dict[str, Any] | None:
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
        "people_updated": run.people_updated,
        "people_deactivated": run.people_deactivated,
        "people_reactivated": run.people_reactivated,
        "teams_created": run.teams_created,
        "teams_deactivated": run.teams_deactivated,
        "memberships_added": run.memberships_added,
        "memberships_removed": run.memberships_removed,
        "leads_changed": run.leads_changed,
        "error": run.error,
        "guard": run.guard,
        "warnings": run.warnings,
        "confirms": run.confirms_id,
    }


def last_sync_state() -> dict[str, Any] | None:
    return sync_state(selectors.last_sync())


def report() -> dict[str, Any]:
    checks = {
        "database": check_database(),
        "broker": check_broker(),
        "directory": check_directory(),
    }
    last_success = selectors.last_successful_sync()
    return {
        "ok": all(c["ok"] for c in checks.values()),
        "checks": checks,
        "last_sync": last_sync_state(),
        "last_successful_sync_at": last_success.finished_at.isoformat()
        if last_success and last_success.finished_at
        else None,
        "recent_syncs": [sync_state(run) for run in selectors.recent_syncs(10)],
    }


def _timed(probe: Any) -> dict[str, Any]:
    started = time.monotonic()
    try:
        probe()
    except DirectoryError as exc:
        return {"ok": False, "error": _scrub(str(exc)), "ms": _ms(started)}
    except Exception as exc:
        # The class and message only (never a traceback), with any known secret blanked out.
        error = _scrub(f"{exc.__class__.__name__}: {exc}")[:300]
        return {"ok": False, "error": error, "ms": _ms(started)}
    return {"ok": True, "ms": _ms(started)}


def _scrub(text: str) -> str:
    """Blank out the secrets an error message could echo: the bind and broker passwords."""
    secrets = [str(settings.WARDEN_DIRECTORY.get("BIND_PASSWORD") or "")]
    broker = urlsplit(str(settings.CELERY_BROKER_URL))
    with contextlib.suppress(ValueError):
        secrets.append(unquote(broker.password or ""))
    for secret in secrets:
        if len(secret) >= 3:
            text = text.replace(secret, "***")
    return text


def _ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
