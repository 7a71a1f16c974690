"""Who came in, who left, who was refused, and what the admin site changed: events in the audit
chain, from Django's login signals and the admin's change log. A password is never recorded (not
even a refused one: people type their password into the username field)."""

from __future__ import annotations

from typing import Any

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.http import HttpRequest

from access import audit, throttle

# How each backend is named in a login event.
BACKEND_WORDS = {
    "access.auth.DirectoryBackend": "directory password",
    "access.oidc.DirectoryOIDCBackend": "single sign-on",
    "access.auth.LocalAccountBackend": "local account (WARDEN_LOCAL_ACCOUNTS)",
}
ADMIN_ACTIONS = {ADDITION: "admin.added", CHANGE: "admin.changed", DELETION: "admin.deleted"}
# Longest username kept from a refused login (Django's own limit); the rest is cut.
MAX_TRIED_NAME = 150


def _where(request: HttpRequest | None) -> str:
    address = throttle.client_address(request) if request is not None else ""
    return f"from {address}" if address else ""


def record_login(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    backend = getattr(user, "backend", "") or ""
    how = BACKEND_WORDS.get(backend, backend.rsplit(".", 1)[-1] or "unknown")
    where = _where(request)
    audit.record("auth.login", actor=user, obj=user, reason=f"by {how} {where}".strip())


def record_logout(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    if user is None:  # a session that had already ended
        return
    audit.record("auth.logout", actor=user, obj=user, reason=_where(request))


def record_failed_login(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    tried = str(credentials.get("username") or "")[:MAX_TRIED_NAME]
    audit.record(
        "auth.login_failed",
        actor_name=tried or "(no username)",
        object_type="login",
        object_repr=tried,
        reason=_where(request),
    )


def record_admin_change(sender: Any, instance: LogEntry, created: bool, **kwargs: Any) -> None:
    """The admin site's own log of a change, in the audit chain too (in its transaction)."""
    if not created:
        return
    content_type = instance.content_type
    audit.record(
        ADMIN_ACTIONS.get(instance.action_flag, "admin.changed"),
        actor=instance.user,
        object_type=content_type.model if content_type else "",
        object_id=instance.object_id or "",
        object_repr=instance.object_repr,
        after={"change": instance.get_change_message()} if instance.change_message else None,
        reason="in the admin site",
    )
