"""/api/v1/: the REST API of both apps under one router (its root lists every collection)."""

from __future__ import annotations

from django.urls import path
from rest_framework.routers import DefaultRouter

from access.api import views
from clusters.api import answers, service_accounts
from clusters.api import views as cluster_views

# No ".json" suffix routes: one URL per thing (and the CSRF walk of tests builds every route).
router = DefaultRouter()
router.include_format_suffixes = False
router.register("people", views.PersonViewSet, basename="api-person")
router.register("teams", views.TeamViewSet, basename="api-team")
router.register("roles", views.RoleViewSet, basename="api-role")
router.register("policies", views.ApprovalPolicyViewSet, basename="api-policy")
router.register("grants", views.GrantViewSet, basename="api-grant")
router.register("requests", views.AccessRequestViewSet, basename="api-request")
router.register("audit-events", views.AuditEventViewSet, basename="api-audit")
router.register("review-campaigns", views.ReviewCampaignViewSet, basename="api-campaign")
router.register("review-items", views.ReviewItemViewSet, basename="api-review-item")
router.register("tokens", views.ApiTokenViewSet, basename="api-token")
router.register("clusters", cluster_views.ClusterViewSet, basename="api-cluster")
router.register(
    "service-accounts", service_accounts.ServiceAccountViewSet, basename="api-service-account"
)
router.register("reconcile-runs", cluster_views.ReconcileRunViewSet, basename="api-reconcile-run")

urlpatterns = [
    path("me/", views.MeView.as_view(), name="api-me"),
    path("me/access/", views.MyAccessView.as_view(), name="api-my-access"),
    path("me/clusters/", answers.MyClustersView.as_view(), name="api-my-clusters"),
    path("why-forbidden/", answers.WhyForbiddenView.as_view(), name="api-why-forbidden"),
    *router.urls,
]
