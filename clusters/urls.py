"""URLs of the machine side's service-account pages (names start with sa-)."""

from __future__ import annotations

from django.urls import path

from clusters import views

urlpatterns = [
    path("service-accounts/", views.account_list, name="sa-list"),
    path("service-accounts/new", views.account_create, name="sa-create"),
    path("service-accounts/legacy/", views.legacy_list, name="sa-legacy"),
    path("service-accounts/legacy/scan", views.legacy_scan, name="sa-legacy-scan"),
    path(
        "service-accounts/legacy/<int:pk>/migrate", views.legacy_migrate, name="sa-legacy-migrate"
    ),
    path("service-accounts/legacy/<int:pk>/delete", views.legacy_delete, name="sa-legacy-delete"),
    path("service-accounts/<int:pk>/", views.account_detail, name="sa-detail"),
    path("service-accounts/<int:pk>/edit", views.account_edit, name="sa-edit"),
    path("service-accounts/<int:pk>/rotate", views.account_rotate, name="sa-rotate"),
    path("service-accounts/<int:pk>/retire", views.account_retire, name="sa-retire"),
    path("service-accounts/<int:pk>/targets", views.target_add, name="sa-target-add"),
    path(
        "service-accounts/<int:pk>/targets/<int:target_id>/remove",
        views.target_remove,
        name="sa-target-remove",
    ),
    path(
        "service-accounts/<int:pk>/generations/<int:number>/token",
        views.reveal,
        name="sa-reveal",
    ),
]
