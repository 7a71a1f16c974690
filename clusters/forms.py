"""Forms of the machine side: they parse what a person typed; the services decide."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django import forms
from django.db.models import QuerySet

from access.models import Role, Team
from clusters.choices import ClusterState, DeliveryKind
from clusters.models import Cluster, ManagedServiceAccount
from clusters.serviceaccounts import AccountInput

_DURATION = re.compile(r"^\s*(\d+)\s*([dhm])\s*$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def parse_duration(text: str) -> timedelta:
    match = _DURATION.match(text or "")
    if not match:
        raise forms.ValidationError(
            "Write a whole number of days, hours or minutes: 30d, 12h, 45m."
        )
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return "0m" if not seconds else f"{seconds // 60}m"


def _names(text: str) -> list[str]:
    return [part.strip() for part in re.split(r"[,\s]+", text or "") if part.strip()]


class DurationInput(forms.CharField):
    def to_python(self, value: Any) -> timedelta:  # type: ignore[override]
        return parse_duration(str(value or ""))

    def prepare_value(self, value: Any) -> Any:
        return format_duration(value) if isinstance(value, timedelta) else value


class AccountForm(forms.Form):
    """Declare or change a managed service account."""

    name = forms.CharField(max_length=48, help_text="The ServiceAccount's name (a DNS label).")
    namespace = forms.CharField(max_length=63, help_text="Where it lives on each cluster.")
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    owner_team = forms.ModelChoiceField(queryset=Team.objects.none())
    roles = forms.ModelMultipleChoiceField(
        queryset=Role.objects.all(), required=False, widget=forms.CheckboxSelectMultiple
    )
    namespaces = forms.CharField(
        required=False,
        help_text="Where its roles apply, comma-separated (team-* patterns work). Empty: its "
        "own namespace (cluster-wide roles: the whole cluster).",
    )
    clusters = forms.CharField(required=False, help_text="Cluster names, comma-separated.")
    cluster_selector = forms.CharField(
        required=False, help_text="Or clusters by label: region=eu, ci=yes"
    )
    rotation_period = DurationInput(initial="30d", help_text="How often: 30d, 12h, 45m.")
    grace_period = DurationInput(initial="2d", help_text="How long the previous token works on.")
    token_lifetime = DurationInput(
        initial="35d", help_text="At least the rotation period plus the grace period."
    )
    show_to_owner = forms.BooleanField(
        required=False, initial=True, label="Show each new token once to the owner team"
    )

    def __init__(self, *args: Any, teams: QuerySet[Team], **kwargs: Any):
        super().__init__(*args, **kwargs)
        owner_team = self.fields["owner_team"]
        assert isinstance(owner_team, forms.ModelChoiceField)
        owner_team.queryset = teams

    def clean_cluster_selector(self) -> dict[str, str]:
        selector = {}
        for part in _names(self.cleaned_data.get("cluster_selector", "")):
            key, sep, value = part.partition("=")
            if not sep or not key or not value:
                raise forms.ValidationError(f"{part!r} is not key=value.")
            selector[key] = value
        return selector

    def to_input(self) -> AccountInput:
        data = self.cleaned_data
        return AccountInput(
            name=data["name"],
            namespace=data["namespace"],
            description=data["description"],
            owner_team=data["owner_team"],
            roles=list(data["roles"]),
            namespaces=_names(data["namespaces"]),
            clusters=_names(data["clusters"]),
            cluster_selector=data["cluster_selector"],
            rotation_period=data["rotation_period"],
            grace_period=data["grace_period"],
            token_lifetime=data["token_lifetime"],
            show_to_owner=data["show_to_owner"],
        )

    @staticmethod
    def initial_for(account: ManagedServiceAccount) -> dict[str, Any]:
        return {
            "name": account.name,
            "namespace": account.namespace,
            "description": account.description,
            "owner_team": account.owner_team,
            "roles": list(account.roles.all()),
            "namespaces": ", ".join(account.namespaces or []),
            "clusters": ", ".join(account.clusters or []),
            "cluster_selector": ", ".join(f"{k}={v}" for k, v in account.cluster_selector.items()),
            "rotation_period": account.rotation_period,
            "grace_period": account.grace_period,
            "token_lifetime": account.token_lifetime,
            "show_to_owner": account.show_to_owner,
        }


class TargetForm(forms.Form):
    """Where new tokens go: a consumer's Secret, or a webhook of an external secret store."""

    kind = forms.ChoiceField(choices=DeliveryKind.choices)
    cluster = forms.ModelChoiceField(
        queryset=Cluster.objects.exclude(state=ClusterState.RETIRED), required=False
    )
    namespace = forms.CharField(max_length=63, required=False)
    secret_name = forms.CharField(max_length=253, required=False)
    url = forms.URLField(required=False, assume_scheme="https", max_length=500)
    ca_bundle = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 2}), label="CA bundle (PEM)"
    )
    signing_key = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Shared with the receiver; at least 32 characters. Never shown again.",
    )


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))


class MigrateForm(AccountForm):
    """Put a legacy token's ServiceAccount under managed rotation (operators)."""

    reason = forms.CharField(
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Recorded in the audit: Warden takes over a ServiceAccount it did not make.",
    )
