"""Forms of the people side."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import cache

from access.auth import DIRECTORY_ERROR_ATTR, NOT_CONFIGURED_ATTR, REFUSAL_ATTR

MAX_FAILURES = 5
LOCKOUT_S = 15 * 60


class LoginForm(AuthenticationForm):
    """The directory login, with a clear word when the directory is down, and throttling."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "directory_down": (
            "The company directory is not answering, so nobody can log in right now. "
            "Try again in a few minutes."
        ),
        "not_configured": (
            "Please enter a correct username and password of a local account: directory "
            "login is not set up on this Warden (LDAP_URI is empty)."
        ),
        "throttled": "Too many failed attempts for this account; wait 15 minutes and try again.",
    }

    def clean(self) -> dict[str, Any]:
        username = (self.cleaned_data.get("username") or "").strip().lower()
        key = f"login-failures:{username}:{self._client_ip()}"
        if username and (cache.get(key) or 0) >= MAX_FAILURES:
            raise forms.ValidationError(self.error_messages["throttled"], code="throttled")
        try:
            cleaned = super().clean()
        except forms.ValidationError:
            self._explain_refusal()
            if username:
                self._count_failure(key)
            if self.request is not None and getattr(self.request, NOT_CONFIGURED_ATTR, False):
                raise forms.ValidationError(
                    self.error_messages["not_configured"], code="not_configured"
                ) from None
            raise
        cache.delete(key)
        return cleaned

    def _explain_refusal(self) -> None:
        """Say why, when it was not the password: the directory failed, or refused the person."""
        request = self.request
        if request is None:
            return
        if getattr(request, DIRECTORY_ERROR_ATTR, None) is not None:
            raise forms.ValidationError(
                self.error_messages["directory_down"], code="directory_down"
            ) from None
        if getattr(request, REFUSAL_ATTR, None):
            raise forms.ValidationError(getattr(request, REFUSAL_ATTR), code="refused") from None

    @staticmethod
    def _count_failure(key: str) -> None:
        cache.add(key, 0, LOCKOUT_S)
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, LOCKOUT_S)

    def _client_ip(self) -> str:
        request = self.request
        return str(request.META.get("REMOTE_ADDR", "")) if request is not None else ""
