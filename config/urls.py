"""Warden's URL map."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from access import views as access_views

admin.site.site_header = "Warden administration"
admin.site.site_title = "Warden"
admin.site.index_title = "Operators"

urlpatterns = [
    # Before admin.site.urls: the admin logs in through Warden's own login page.
    path("admin/login/", access_views.admin_login, name="admin-login"),
    path("admin/", admin.site.urls),
    path("", include("clusters.urls")),
    path("", include("access.urls")),
]
