"""Forms of the people side."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import cache

from access import forbidden
from access.auth import DIRECTORY_ERROR_ATTR, NOT_CONFIGURED_ATTR, REFUSAL_ATTR
from clusters.choices import ClusterState
from clusters.models import Cluster

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


class ForbiddenForm(forms.Form):
    """The "Why forbidden?" question: a pasted message, or the refused request typed in."""

    message = forms.CharField(
        required=False,
        max_length=forbidden.MAX_MESSAGE,
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false"}),
        label="Kubernetes error message",
        help_text='Paste the whole line, e.g. pods is forbidden: User "alice" cannot list ...',
    )
    verb = forms.CharField(required=False, max_length=40)
    resource = forms.CharField(
        required=False, max_length=253, help_text="pods, deployments.apps, pods/log"
    )
    api_group = forms.CharField(
        required=False, max_length=253, label="API group", help_text="empty for the core group"
    )
    namespace = forms.CharField(required=False, max_length=63, help_text="empty: cluster scope")
    name = forms.CharField(required=False, max_length=253, label="Object name")
    path = forms.CharField(
        required=False, max_length=500, label="Or a path", help_text="a non-resource URL: /metrics"
    )
    cluster = forms.ModelChoiceField(
        queryset=Cluster.objects.none(),
        to_field_name="name",
        empty_label="Choose the cluster",
        error_messages={"required": "Choose the cluster the message came from."},
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["cluster"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = Cluster.objects.exclude(state=ClusterState.RETIRED).order_by("name")
        self.attempt: forbidden.AccessAttempt | None = None

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        try:
            if cleaned.get("message", "").strip():
                self.attempt = forbidden.parse_message(cleaned["message"])
            else:
                self.attempt = forbidden.attempt_from_fields(
                    verb=cleaned.get("verb", ""),
                    resource=cleaned.get("resource", ""),
                    api_group=cleaned.get("api_group", ""),
                    namespace=cleaned.get("namespace", ""),
                    name=cleaned.get("name", ""),
                    path=cleaned.get("path", ""),
                )
        except forbidden.UnreadableMessage as exc:
            field_name = "message" if cleaned.get("message", "").strip() else None
            self.add_error(field_name, str(exc))
        return cleaned
