"""URLs of the machine side's pages: the fleet (`fleet-*`), clusters and discovery (`cluster-*`),
service accounts (`sa-*`), and what a cluster answers about access
(`why-forbidden`, `who-can`)."""

from __future__ import annotations

from django.urls import path

from clusters import views
from clusters.views import answers, service_accounts

urlpatterns = [
    path("why-forbidden/", answers.why_forbidden, name="why-forbidden"),
    path("who-can/", answers.who_can, name="who-can"),
    path("clusters/", views.fleet_overview, name="fleet-overview"),
    path("clusters/reconcile", views.fleet_reconcile, name="fleet-reconcile"),
    path(
        "clusters/reconcile/progress",
        views.fleet_reconcile_progress,
        name="fleet-reconcile-progress",
    ),
    path("clusters/register/", views.cluster_register, name="cluster-register"),
    path("clusters/<int:pk>/", views.cluster_detail, name="cluster-detail"),
    path("clusters/<int:pk>/edit/", views.cluster_edit, name="cluster-edit"),
    path("clusters/<int:pk>/check", views.cluster_check, name="cluster-check"),
    path("clusters/<int:pk>/reconcile", views.cluster_reconcile, name="cluster-reconcile"),
    path("clusters/<int:pk>/shadow-scan", views.cluster_shadow_scan, name="cluster-shadow-scan"),
    path("clusters/<int:pk>/retire/", views.cluster_retire, name="cluster-retire"),
    path("clusters/discovery/", views.discovery_sources, name="cluster-discovery"),
    path("clusters/discovery/new/", views.discovery_source_new, name="cluster-discovery-new"),
    path(
        "clusters/discovery/<int:pk>/",
        views.discovery_source_detail,
        name="cluster-discovery-detail",
    ),
    path(
        "clusters/discovery/<int:pk>/edit/",
        views.discovery_source_edit,
        name="cluster-discovery-edit",
    ),
    path(
        "clusters/discovery/<int:pk>/run", views.discovery_source_run, name="cluster-discovery-run"
    ),
    path("service-accounts/", service_accounts.account_list, name="sa-list"),
    path("service-accounts/new", service_accounts.account_create, name="sa-create"),
    path("service-accounts/legacy/", service_accounts.legacy_list, name="sa-legacy"),
    path("service-accounts/legacy/scan", service_accounts.legacy_scan, name="sa-legacy-scan"),
    path(
        "service-accounts/legacy/<int:pk>/migrate",
        service_accounts.legacy_migrate,
        name="sa-legacy-migrate",
    ),
    path(
        "service-accounts/legacy/<int:pk>/delete",
        service_accounts.legacy_delete,
        name="sa-legacy-delete",
    ),
    path("service-accounts/<int:pk>/", service_accounts.account_detail, name="sa-detail"),
    path("service-accounts/<int:pk>/edit", service_accounts.account_edit, name="sa-edit"),
    path("service-accounts/<int:pk>/rotate", service_accounts.account_rotate, name="sa-rotate"),
    path("service-accounts/<int:pk>/retire", service_accounts.account_retire, name="sa-retire"),
    path("service-accounts/<int:pk>/targets", service_accounts.target_add, name="sa-target-add"),
    path(
        "service-accounts/<int:pk>/targets/<int:target_id>/remove",
        service_accounts.target_remove,
        name="sa-target-remove",
    ),
    path(
        "service-accounts/<int:pk>/generations/<int:number>/token",
        service_accounts.reveal,
        name="sa-reveal",
    ),
]
