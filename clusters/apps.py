from __future__ import annotations

from django.apps import AppConfig


class ClustersConfig(AppConfig):
    """Machine side: cluster registry, Kubernetes door, compiler, reconciler, service accounts."""

    name = "clusters"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_save

        from clusters.metrics import count_reconcile
        from clusters.models import ReconcileRun

        post_save.connect(
            count_reconcile, sender=ReconcileRun, dispatch_uid="warden-reconcile-metrics"
        )
