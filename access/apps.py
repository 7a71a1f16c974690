from __future__ import annotations

from django.apps import AppConfig


class AccessConfig(AppConfig):
    """People side: directory, teams, roles, grants, requests, approvals, audit."""

    name = "access"
    default_auto_field = "django.db.models.BigAutoField"
