from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class AccessConfig(AppConfig):
    """People side: directory, teams, roles, grants, requests, approvals, audit."""

    name = "access"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from celery.signals import task_postrun, task_prerun, worker_ready
        from django.contrib.admin.models import LogEntry
        from django.contrib.auth.signals import (
            user_logged_in,
            user_logged_out,
            user_login_failed,
        )
        from django.db.backends.signals import connection_created
        from django.db.models.signals import post_save

        from access.services import sessions

        user_logged_in.connect(sessions.record_login, dispatch_uid="warden-audit-login")
        user_logged_out.connect(sessions.record_logout, dispatch_uid="warden-audit-logout")
        user_login_failed.connect(sessions.record_failed_login, dispatch_uid="warden-audit-failed")
        post_save.connect(
            sessions.record_admin_change, sender=LogEntry, dispatch_uid="warden-audit-admin"
        )

        connection_created.connect(_audit_guard, weak=False, dispatch_uid="warden-audit-guard")

        task_prerun.connect(_bind_task_id, weak=False, dispatch_uid="warden-task-id")
        task_postrun.connect(_unbind_task_id, weak=False, dispatch_uid="warden-task-id-end")
        worker_ready.connect(_expire_at_start, weak=False, dispatch_uid="warden-expire-at-start")


_tokens: dict[str, Any] = {}


def _audit_guard(sender: Any, connection: Any, **kwargs: Any) -> None:
    """SQLite's trigger against deleting audit events asks this connection whether it may."""
    if connection.vendor == "sqlite":
        from access.audit import may_empty

        connection.connection.create_function(
            "warden_audit_may_empty", 0, lambda: int(may_empty()), deterministic=False
        )


def _bind_task_id(task_id: str | None = None, **kwargs: Any) -> None:
    """Audit events and logs written by a Celery task carry the task's id.

    An eager task (run inside a web request) keeps the request's id: it is part of that request.
    """
    from access.audit import current_request_id

    if task_id and not current_request_id.get():
        _tokens[task_id] = current_request_id.set(task_id)


def _unbind_task_id(task_id: str | None = None, **kwargs: Any) -> None:
    from access.audit import current_request_id

    token = _tokens.pop(task_id or "", None)
    if token is not None:
        current_request_id.reset(token)


def _expire_at_start(**kwargs: Any) -> None:
    """After downtime, access that ran out meanwhile ends before anything else is done."""
    from access.tasks import expire_grants_task

    expire_grants_task.delay()
