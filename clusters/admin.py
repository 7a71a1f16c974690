"""Admin site for the fleet. The token is write-only: never shown back."""

from __future__ import annotations

from django import forms
from django.contrib import admin

from clusters.models import Cluster, ReconcileRun


class ClusterForm(forms.ModelForm):
    api_url = forms.URLField(assume_scheme="https", max_length=500)
    token = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Leave empty to keep the current token.",
    )

    class Meta:
        model = Cluster
        fields = [
            "name",
            "environment",
            "tier",
            "labels",
            "api_url",
            "ca_bundle",
            "token",
            "user_prefix",
            "group_prefix",
            "bind_groups",
            "state",
        ]

    def clean_token(self) -> str:
        token = self.cleaned_data.get("token") or ""
        if not token and self.instance.pk:
            return str(self.instance.token)
        if not token:
            raise forms.ValidationError("A new cluster needs Warden's bearer token.")
        return token


@admin.register(Cluster)
class ClusterAdmin(admin.ModelAdmin):
    form = ClusterForm
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


@admin.register(ReconcileRun)
class ReconcileRunAdmin(admin.ModelAdmin):
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

    def has_add_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False
