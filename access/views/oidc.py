"""Single sign-on pages: to the provider, back from it (or refused, saying why), and logout."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.core.exceptions import SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from access.auth import REFUSAL_ATTR
from access.oidc import oidc_setting, provider_logout_url


class SingleSignOnOnly:
    """The single sign-on pages exist only when it is configured (OIDC_ENABLED)."""

    def __init__(self, **kwargs: Any) -> None:
        if not settings.OIDC_ENABLED:
            raise Http404("single sign-on is not configured")
        super().__init__(**kwargs)


class AuthenticateView(SingleSignOnOnly, OIDCAuthenticationRequestView):
    """Sends the browser to the provider (state, nonce and a PKCE challenge in the session)."""

    @staticmethod
    def get_settings(attr: str, *default: Any) -> Any:
        return oidc_setting(attr, *default)


class CallbackView(SingleSignOnOnly, OIDCAuthenticationCallbackView):
    """The provider sends the browser back here; a refusal says why, with status 403."""

    @staticmethod
    def get_settings(attr: str, *default: Any) -> Any:
        return oidc_setting(attr, *default)

    def get(self, request: HttpRequest) -> HttpResponse:
        try:
            return super().get(request)  # type: ignore[no-any-return]
        except SuspiciousOperation:
            # An unknown state (replayed, forged, or another browser's) or a nonce that is not
            # the one this session sent: nobody is signed in.
            return self.refused("The sign-in answer did not match this browser's sign-in.")

    def login_failure(self) -> HttpResponse:
        reason = getattr(self.request, REFUSAL_ATTR, "") or "Single sign-on did not succeed."
        return self.refused(reason)

    def refused(self, reason: str) -> HttpResponse:
        return render(
            self.request, "registration/oidc_refused.html", {"reason": reason}, status=403
        )


class LogoutView(auth_views.LogoutView):
    """Logs out of Warden, then out of the provider too when the session came from it."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        provider = None
        if settings.OIDC_ENABLED and request.session.get("oidc_id_token"):
            provider = provider_logout_url(request)
        response = super().post(request, *args, **kwargs)
        return HttpResponseRedirect(provider) if provider else response
