from __future__ import annotations

from django.apps import AppConfig


class ClustersConfig(AppConfig):
    """Machine side: cluster registry, Kubernetes door, compiler, reconciler, service accounts."""

    name = "clusters"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_save

        from access import fleet
        from access.signals import service_account_request_decided
        from clusters.fleet import ClusterFleet
        from clusters.metrics import count_reconcile
        from clusters.models import ReconcileRun
        from clusters.serviceaccounts.approvals import on_request_decided
        from clusters.serviceaccounts.rotation import rotate_for_created_accounts
        from clusters.signals import objects_created

        # The people side's questions about the fleet are answered here (access never imports
        # clusters).
        fleet.connect(ClusterFleet())
        post_save.connect(
            count_reconcile, sender=ReconcileRun, dispatch_uid="warden-reconcile-metrics"
        )
        # A service account's access is decided by the people side's approvals.
        service_account_request_decided.connect(
            on_request_decided, dispatch_uid="warden-service-account-approvals"
        )
        # A ServiceAccount the reconciler (re)created needs tokens there.
        objects_created.connect(
            rotate_for_created_accounts, dispatch_uid="warden-service-account-recreated"
        )
