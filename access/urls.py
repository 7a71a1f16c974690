from __future__ import annotations

from django.urls import path

from access import views
from access.views import audit, catalogue, oidc, operators, policies, requests, reviews, tokens

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", oidc.LogoutView.as_view(), name="logout"),
    # Single sign-on (OIDC_ENABLED): to the provider and back; 404 when it is off.
    path("oidc/authenticate/", oidc.AuthenticateView.as_view(), name="oidc_authentication_init"),
    path("oidc/callback/", oidc.CallbackView.as_view(), name="oidc_authentication_callback"),
    path("healthz", views.healthz, name="healthz"),
    path("health/", views.health_page, name="health"),
    path("health/json", views.health_json, name="health-json"),
    path("health/sync", views.sync_now, name="sync-now"),
    path("health/sync/progress", views.sync_progress, name="sync-progress"),
    path("health/sync/<int:pk>/confirm", views.confirm_sync, name="confirm-sync"),
    # the self-service
    path("requests/new", requests.request_new, name="request-new"),
    path("requests/preview", requests.request_preview, name="request-preview"),
    path("requests/clusters", requests.request_clusters, name="request-clusters"),
    path("requests/<int:pk>/", requests.request_detail, name="request-detail"),
    path("requests/<int:pk>/approve", requests.request_approve, name="request-approve"),
    path("requests/<int:pk>/deny", requests.request_deny, name="request-deny"),
    path("requests/<int:pk>/cancel", requests.request_cancel, name="request-cancel"),
    path("requests/<int:pk>/end", requests.request_end, name="request-end"),
    path("requests/<int:pk>/extend", requests.request_extend, name="request-extend"),
    path("requests/<int:pk>/review", requests.request_review, name="request-review"),
    path("inbox/", requests.inbox, name="inbox"),
    path("inbox/bulk", requests.inbox_bulk, name="inbox-bulk"),
    # personal API tokens
    path("tokens/", tokens.token_list, name="api-tokens"),
    path("tokens/<int:pk>/revoke", tokens.token_revoke, name="api-token-revoke"),
    # operators
    path("audit/", audit.audit_log, name="audit"),
    path("grants/", catalogue.grant_list, name="grant-list"),
    path("grants/new", catalogue.grant_new, name="grant-new"),
    path("grants/<int:pk>/", catalogue.grant_detail, name="grant-detail"),
    path("grants/<int:pk>/revoke", catalogue.grant_revoke, name="grant-revoke"),
    path("roles/", catalogue.role_list, name="role-list"),
    path("roles/<slug:name>/define", catalogue.role_define, name="role-define"),
    path("policies/", policies.policy_list, name="policy-list"),
    path("policies/new", policies.policy_new, name="policy-new"),
    path("policies/<int:pk>/", policies.policy_edit, name="policy-edit"),
    path("policies/<int:pk>/delete", policies.policy_delete, name="policy-delete"),
    path("people/", operators.people, name="people"),
    path("people/<int:pk>/", operators.person_detail, name="person-access"),
]

# Access reviews (access/views/reviews.py).
urlpatterns += [
    path("reviews/", reviews.mine, name="review-mine"),
    path("reviews/campaigns/new", reviews.start, name="review-start"),
    path("reviews/campaigns/<int:pk>/", reviews.campaign, name="review-campaign"),
    path("reviews/campaigns/<int:pk>/close", reviews.close, name="review-close"),
    path("reviews/items/<int:pk>/decide", reviews.decide, name="review-decide"),
]
