from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from access import review_views, views

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", views.healthz, name="healthz"),
    path("health/", views.health_page, name="health"),
    path("health/json", views.health_json, name="health-json"),
    path("health/sync", views.sync_now, name="sync-now"),
    path("health/sync/<int:pk>/confirm", views.confirm_sync, name="confirm-sync"),
]

# Access reviews (access/review_views.py).
urlpatterns += [
    path("reviews/", review_views.mine, name="review-mine"),
    path("reviews/campaigns/new", review_views.start, name="review-start"),
    path("reviews/campaigns/<int:pk>/", review_views.campaign, name="review-campaign"),
    path("reviews/campaigns/<int:pk>/close", review_views.close, name="review-close"),
    path("reviews/items/<int:pk>/decide", review_views.decide, name="review-decide"),
]
