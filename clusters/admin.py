"""Admin site for the fleet: read and browse only.

Registering, editing and retiring a cluster go through Warden's own pages (clusters/views.py),
which call the services: the access check, the audit event and the reconcile happen there, and
nowhere else. The admin's add and change pages send the operator to those pages, so no second
form can save a cluster (or a discovery source's token) without them.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from clusters.models import Cluster, DiscoveryRun, DiscoverySource, ReconcileRun


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Cluster)
class ClusterAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = [
        "name",
        "environment",
        "tier",
        "state",
        "last_reconcile_status",
        "last_reconcile_at",
    ]
    list_filter = ["environment", "tier", "state"]
    search_fields = ["name", "api_url"]

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        return HttpResponseRedirect(reverse("cluster-register"))

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        return HttpResponseRedirect(reverse("cluster-detail", args=[int(object_id)]))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Clusters are retired (records kept, objects removed first), never deleted.
        return False


@admin.register(DiscoverySource)
class DiscoverySourceAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["name", "kind", "enabled", "grace_hours"]

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        return HttpResponseRedirect(reverse("cluster-discovery-new"))

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        return HttpResponseRedirect(reverse("cluster-discovery-detail", args=[int(object_id)]))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ReconcileRun)
class ReconcileRunAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "cluster",
        "trigger",
        "status",
        "created",
        "updated",
        "deleted",
        "drift",
        "api_calls",
        "duration_s",
    ]
    list_filter = ["status", "trigger"]


@admin.register(DiscoveryRun)
class DiscoveryRunAdmin(ReadOnlyAdmin):
    list_display = ["id", "source", "status", "found", "registered", "failed", "retired"]
    list_filter = ["status"]
