"""URLs of the machine side's pages: the fleet (`fleet-*`), clusters and discovery (`cluster-*`)."""

from __future__ import annotations

from django.urls import path

from clusters import views

urlpatterns = [
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
]
