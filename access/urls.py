from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from access import views

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("why-forbidden/", views.why_forbidden, name="why-forbidden"),
    path("healthz", views.healthz, name="healthz"),
    path("health/", views.health_page, name="health"),
    path("health/json", views.health_json, name="health-json"),
    path("health/sync", views.sync_now, name="sync-now"),
    path("health/sync/<int:pk>/confirm", views.confirm_sync, name="confirm-sync"),
]
