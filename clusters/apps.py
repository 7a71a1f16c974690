from __future__ import annotations

from django.apps import AppConfig


class ClustersConfig(AppConfig):
    """Machine side: cluster registry, Kubernetes door, compiler, reconciler, service accounts."""

    name = "clusters"
    default_auto_field = "django.db.models.BigAutoField"
