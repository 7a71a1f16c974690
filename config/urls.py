"""Warden's URL map."""

from __future__ import annotations

from csp.constants import SELF, UNSAFE_INLINE
from csp.decorators import csp_update
from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from access import views as access_views

admin.site.site_header = "Warden administration"
admin.site.site_title = "Warden"
admin.site.index_title = "Operators"

# Swagger UI (served by Warden, its script a separate file, so scripts stay 'self' only) sets
# style attributes in its markup and draws icons from data: SVGs: this one page also allows
# inline styles and data: images, nothing more.
api_docs = csp_update({"style-src": [SELF, UNSAFE_INLINE], "img-src": [SELF, "data:"]})(
    SpectacularSwaggerSplitView.as_view(url_name="api-schema")
)

urlpatterns = [
    # Before admin.site.urls: the admin logs in through Warden's own login page.
    path("admin/login/", access_views.admin_login, name="admin-login"),
    path("admin/", admin.site.urls),
    # The REST API, its OpenAPI 3 schema, and Swagger UI served from Warden's own static files.
    path("api/v1/", include("config.api")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", api_docs, name="api-docs"),
    # Browsers ask for /favicon.ico whatever the page says: send them to the SVG one.
    path("favicon.ico", RedirectView.as_view(url=static("favicon.svg"), permanent=True)),
    path("", include("clusters.urls")),
    path("", include("access.urls")),
]

handler404 = "access.api.exceptions.not_found"
