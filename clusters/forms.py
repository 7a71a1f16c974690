"""Forms of the machine side: they parse and validate what a person typed (and never echo a
secret back); the services decide."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import yaml
from django import forms
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.utils.text import slugify

from access import durations, forbidden
from access.choices import Environment, Tier
from access.models import Role, Team
from clusters import discovery
from clusters.choices import ClusterState, DeliveryKind, DiscoveryKind
from clusters.kubeconfig import ClusterAccess, KubeconfigError, list_contexts, parse_kubeconfig
from clusters.models import Cluster, DiscoverySource, ManagedServiceAccount
from clusters.serviceaccounts import AccountInput
from core import yamltext

MAX_KUBECONFIG_BYTES = 1 << 20
_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_PREFIX = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
LABEL_KEY = re.compile(rf"^({_LABEL_PREFIX}/)?{_LABEL_NAME}$")
LABEL_VALUE = re.compile(rf"^({_LABEL_NAME})?$")


class SecretTextarea(forms.Textarea):
    """A textarea that never renders what was typed into it (a kubeconfig holds a token)."""

    def format_value(self, value: Any) -> None:
        return None


def parse_labels(text: str) -> dict[str, str]:
    """`key=value` lines (or comma-separated) into labels, validated as Kubernetes labels."""
    labels: dict[str, str] = {}
    errors = []
    for item in re.split(r"[\n,]", text or ""):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            errors.append(f"{item!r}: write key=value")
        elif not LABEL_KEY.match(key) or len(key) > 316:
            errors.append(f"{key!r} is not a valid label name (such as region or example.com/team)")
        elif not LABEL_VALUE.match(value):
            errors.append(
                f"{key}={value!r}: a label value has at most 63 letters, digits, '-', '_' or '.'"
            )
        else:
            labels[key] = value
    if errors:
        raise ValidationError(errors)
    return labels


def labels_text(labels: dict[str, Any]) -> str:
    return "\n".join(f"{k}={v}" for k, v in sorted((labels or {}).items()))


BINDING_CHOICES = [
    ("groups", "Bind directory groups (the cluster's OIDC sends group claims)"),
    ("users", "Expand teams to their members as users"),
]


class ClusterMetadataForm(forms.Form):
    """What a cluster is and how directory people appear on it."""

    environment = forms.ChoiceField(choices=Environment.choices)
    tier = forms.ChoiceField(choices=Tier.choices)
    labels = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "region=eu-west-1\nteam=payments"}),
        help_text="One key=value per line; grants can select clusters by label.",
    )
    user_prefix = forms.CharField(
        required=False,
        max_length=100,
        help_text="What the cluster's OIDC authenticator puts before user names (e.g. oidc:).",
    )
    group_prefix = forms.CharField(
        required=False, max_length=100, help_text="The same for group names."
    )
    binding = forms.ChoiceField(
        choices=BINDING_CHOICES, initial="groups", widget=forms.RadioSelect, label="Binding mode"
    )

    def clean_labels(self) -> dict[str, str]:
        return parse_labels(self.cleaned_data.get("labels") or "")

    def metadata(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "environment": data["environment"],
            "tier": data["tier"],
            "labels": data["labels"],
            "user_prefix": data["user_prefix"],
            "group_prefix": data["group_prefix"],
            "bind_groups": data["binding"] == "groups",
        }


class ClusterRegisterForm(ClusterMetadataForm):
    """Register a cluster from a kubeconfig context, or from API URL + CA + token."""

    field_order = ["source", "kubeconfig", "kubeconfig_file", "context", "api_url", "ca_bundle"]
    source = forms.ChoiceField(
        choices=[("kubeconfig", "A kubeconfig"), ("manual", "API URL, CA and token")],
        initial="kubeconfig",
        widget=forms.RadioSelect,
        label="Connect with",
    )
    kubeconfig = forms.CharField(
        required=False,
        widget=SecretTextarea(attrs={"rows": 8, "autocomplete": "off", "spellcheck": "false"}),
        help_text="Paste it here (it is never shown back), or upload the file below.",
    )
    kubeconfig_file = forms.FileField(required=False, label="or upload a kubeconfig file")
    context = forms.CharField(required=False, help_text="Empty: the kubeconfig's only context.")
    name = forms.SlugField(
        required=False,
        max_length=63,
        help_text="Warden's name for the cluster. Empty: the kubeconfig's cluster name.",
    )
    api_url = forms.URLField(
        required=False, assume_scheme="https", max_length=500, label="API server URL"
    )
    ca_bundle = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false"}),
        label="CA bundle (PEM)",
        help_text="Empty: the system's trusted CAs.",
    )
    token = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Warden's service-account token there; never shown back.",
    )

    def __init__(self, *args: Any, stashed_kubeconfig: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stashed_kubeconfig = stashed_kubeconfig
        self.kubeconfig_text = ""
        self.contexts: list[str] = []
        self.access: ClusterAccess | None = None
        if stashed_kubeconfig:
            self._offer_contexts(stashed_kubeconfig)

    def _offer_contexts(self, text: str) -> None:
        try:
            self.contexts, current = list_contexts(text)
        except KubeconfigError:
            return
        choices = [("", "— pick a context —")] + [(c, c) for c in self.contexts]
        self.fields["context"].widget = forms.Select(choices=choices)
        help_text = "Pick the context of the cluster to register."
        self.fields["context"].help_text = help_text
        self["context"].help_text = help_text  # the bound field copied the old one
        if current in self.contexts and not self.is_bound:
            self.initial.setdefault("context", current)

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if data.get("source") == "manual":
            self._clean_manual(data)
        elif data.get("source") == "kubeconfig":
            self._clean_kubeconfig(data)
        return data

    def _clean_manual(self, data: dict[str, Any]) -> None:
        for field, message in (
            ("name", "Name the cluster."),
            ("api_url", "Give the API server's URL (https://...)."),
            ("token", "Paste Warden's bearer token for this cluster."),
        ):
            if not data.get(field):
                self.add_error(field, message)

    def _clean_kubeconfig(self, data: dict[str, Any]) -> None:
        upload = data.get("kubeconfig_file")
        text = data.get("kubeconfig") or ""
        if upload is not None:
            if upload.size > MAX_KUBECONFIG_BYTES:
                self.add_error(
                    "kubeconfig_file", "That file is larger than 1 MiB: not a kubeconfig."
                )
                return
            try:
                text = upload.read().decode()
            except UnicodeDecodeError:
                self.add_error("kubeconfig_file", "That file is not text: upload a kubeconfig.")
                return
        text = text or self.stashed_kubeconfig
        if not text.strip():
            self.add_error("kubeconfig", "Paste or upload a kubeconfig.")
            return
        self.kubeconfig_text = text
        try:
            contexts, _current = list_contexts(text)
        except KubeconfigError as exc:
            self.add_error("kubeconfig", str(exc))
            return
        self._offer_contexts(text)
        context = data.get("context") or ""
        if not context:
            if len(contexts) > 1:
                self.add_error(
                    "context",
                    f"This kubeconfig has {len(contexts)} contexts: pick the cluster's.",
                )
                return
            context = contexts[0]
        elif context not in contexts:
            self.add_error(
                "context",
                f"The kubeconfig has no context {context!r}; it has: {', '.join(contexts)}.",
            )
            return
        try:
            access = parse_kubeconfig(text, context)
        except KubeconfigError as exc:
            self.add_error("kubeconfig", str(exc))
            return
        if access.insecure and not access.ca_pem:
            self.add_error(
                "kubeconfig",
                "This context turns TLS verification off (insecure-skip-tls-verify): embed the "
                "cluster's CA as certificate-authority-data instead.",
            )
            return
        self.access = access
        if not data.get("name"):
            data["name"] = slugify(access.cluster_name)[:63].strip("-")
            if not data["name"]:
                self.add_error("name", "The kubeconfig's cluster name is not usable: name it.")

    def registration(self) -> dict[str, Any]:
        """Keyword arguments of services.register_cluster."""
        data = self.cleaned_data
        if self.access is not None:
            where = {
                "api_url": self.access.api_url,
                "token": self.access.token,
                "ca_bundle": self.access.ca_pem,
            }
        else:
            where = {
                "api_url": data["api_url"],
                "token": data["token"],
                "ca_bundle": data["ca_bundle"],
            }
        return {"name": data["name"], **where, **self.metadata()}


class ClusterEditForm(ClusterMetadataForm):
    """Change a cluster's metadata, or its credentials (checked again before saving)."""

    api_url = forms.URLField(assume_scheme="https", max_length=500, label="API server URL")
    ca_bundle = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false"}),
        label="CA bundle (PEM)",
    )
    token = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        label="New token",
        help_text="Leave empty to keep the current token.",
    )

    @classmethod
    def initial_for(cls, cluster: Cluster) -> dict[str, Any]:
        return {
            "environment": cluster.environment,
            "tier": cluster.tier,
            "labels": labels_text(cluster.labels),
            "user_prefix": cluster.user_prefix,
            "group_prefix": cluster.group_prefix,
            "binding": "groups" if cluster.bind_groups else "users",
            "api_url": cluster.api_url,
            "ca_bundle": cluster.ca_bundle,
        }

    def changes(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            **self.metadata(),
            "api_url": data["api_url"],
            "ca_bundle": data["ca_bundle"],
            "token": data["token"],
        }


class RetireForm(forms.Form):
    """Retiring is final: the operator picks what happens to Warden's objects and types the name."""

    objects = forms.ChoiceField(
        choices=[
            ("remove", "Remove every RBAC object Warden wrote there first (recommended)"),
            ("leave", "Leave them on the cluster (it is gone, or someone else takes it over)"),
        ],
        initial="remove",
        widget=forms.RadioSelect,
        label="Warden's objects on the cluster",
    )
    confirm = forms.CharField(label="Type the cluster's name to confirm")
    reason = forms.CharField(required=False, max_length=500)

    def __init__(self, *args: Any, cluster: Cluster, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cluster = cluster

    def clean_confirm(self) -> str:
        value: str = self.cleaned_data["confirm"].strip()
        if value != self.cluster.name:
            raise ValidationError(f"Type {self.cluster.name} to confirm.")
        return value


STATE_FILTERS = [
    ("", "Live (not retired)"),
    *ClusterState.choices,
    ("all", "All"),
]


class FleetFilterForm(forms.Form):
    environment = forms.ChoiceField(
        required=False, choices=[("", "Any environment"), *Environment.choices]
    )
    tier = forms.ChoiceField(required=False, choices=[("", "Any tier"), *Tier.choices])
    state = forms.ChoiceField(required=False, choices=STATE_FILTERS)
    q = forms.CharField(required=False, max_length=63, label="Name contains")


class DiscoverySourceForm(forms.ModelForm):  # type: ignore[type-arg]
    """A discovery source; the management cluster's token is write-only."""

    token = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Cluster API only. Leave empty to keep the current token.",
    )
    rules_text = forms.CharField(
        required=False,
        label="Mapping rules (YAML)",
        widget=forms.Textarea(attrs={"rows": 8, "spellcheck": "false"}),
        help_text=(
            "Tried in order; the first that matches a cluster's labels (match) and name (a glob) "
            "gives its environment and tier. Example:<br><code>- match: {env: production}<br>"
            "&nbsp;&nbsp;environment: prod<br>&nbsp;&nbsp;tier: tier-0</code>"
        ),
    )
    api_url = forms.URLField(
        required=False, assume_scheme="https", max_length=500, label="Management cluster API URL"
    )

    class Meta:
        model = DiscoverySource
        fields = [
            "name",
            "kind",
            "enabled",
            "api_url",
            "ca_bundle",
            "namespace",
            "path",
            "default_environment",
            "default_tier",
            "user_prefix",
            "group_prefix",
            "bind_groups",
            "grace_hours",
        ]
        labels = {
            "ca_bundle": "Management cluster CA bundle (PEM)",
            "namespace": "Namespace of the Cluster objects",
            "path": "Folder of kubeconfig files",
            "bind_groups": "Discovered clusters bind directory groups (off: expand to users)",
            "grace_hours": "Grace period (hours) before a vanished cluster is retired",
        }
        help_texts = {
            "namespace": "Cluster API only. Empty: every namespace.",
            "path": "Kubeconfig folder only; read on the Celery workers (e.g. a mounted Secret).",
            "default_environment": "For clusters no rule matches. Empty: such clusters are "
            "not registered, and the run says so.",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.rules:
            self.initial["rules_text"] = yaml.safe_dump(
                self.instance.rules, sort_keys=False, default_flow_style=None
            )
        for name in ("ca_bundle",):
            self.fields[name].widget = forms.Textarea(attrs={"rows": 4, "spellcheck": "false"})

    def clean_rules_text(self) -> list[dict[str, Any]]:
        text = self.cleaned_data.get("rules_text") or ""
        try:
            rules = yamltext.safe_load(text) if text.strip() else []
        except yamltext.NotValidYAML as exc:
            raise ValidationError(f"The rules are {exc}.") from None
        return discovery.validate_rules(rules)

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if bool(data.get("default_environment")) != bool(data.get("default_tier")):
            self.add_error("default_tier", "Give both a default environment and tier, or neither.")
        if data.get("kind") == DiscoveryKind.KUBECONFIG_DIR and not data.get("path"):
            self.add_error("path", "Name the folder holding the kubeconfig files.")
        if data.get("kind") == DiscoveryKind.CLUSTER_API and not data.get("api_url"):
            self.add_error("api_url", "Give the management cluster's API URL.")
        return data

    def unsaved_source(self) -> DiscoverySource:
        """The source with the form's values, not yet saved (services.save_source saves it)."""
        source: DiscoverySource = self.save(commit=False)
        source.rules = self.cleaned_data["rules_text"]
        return source


# --- service accounts ---

_DURATION = re.compile(r"^\s*(\d+)\s*([dhm])\s*$")


def parse_duration(text: str) -> timedelta:
    match = _DURATION.match(text or "")
    if not match:
        raise forms.ValidationError(
            "Write a whole number of days, hours or minutes: 30d, 12h, 45m."
        )
    try:
        return durations.parse(text)
    except ValueError as exc:
        raise forms.ValidationError(str(exc)) from None


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return "0m" if not seconds else f"{seconds // 60}m"


def _names(text: str) -> list[str]:
    return [part.strip() for part in re.split(r"[,\s]+", text or "") if part.strip()]


class RoleChoices(forms.ModelMultipleChoiceField):  # type: ignore[type-arg]
    """Roles ticked by the names people read ("Cluster admin"), not their slugs."""

    def label_from_instance(self, obj: Any) -> str:
        return str(obj.display_name or obj.name)


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
    roles = RoleChoices(
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
        initial="35d",
        help_text="At least the rotation period plus the grace period, and at most the approval "
        "policy's longest duration (a token is access for its lifetime).",
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


# --- "Why forbidden?" and "Who can?" on one cluster ---------------------------------------


class AccessAttemptForm(forms.Form):
    """An action on a cluster, typed as kubectl names it: the fields "Why forbidden?" and
    "Who can?" share. `self.attempt` is the action read from them, once the form is valid."""

    verb = forms.CharField(max_length=40, help_text="get, list, create, delete, ...")
    resource = forms.CharField(
        required=False, max_length=253, help_text="pods, deployments.apps, pods/log"
    )
    api_group = forms.CharField(
        required=False, max_length=253, label="API group", help_text="empty for the core group"
    )
    namespace = forms.CharField(
        required=False, max_length=63, help_text="empty: cluster-wide (all namespaces at once)"
    )
    path = forms.CharField(
        required=False, max_length=500, label="Or a path", help_text="a non-resource URL: /metrics"
    )
    cluster = forms.ModelChoiceField(
        queryset=Cluster.objects.none(),
        to_field_name="name",
        empty_label="Choose a cluster",
        error_messages={"required": "Choose the cluster to ask about."},
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["cluster"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = Cluster.objects.exclude(state=ClusterState.RETIRED).order_by("name")
        self.attempt: forbidden.AccessAttempt | None = None

    def attempt_from(self, cleaned: dict[str, Any]) -> forbidden.AccessAttempt:
        return forbidden.attempt_from_fields(
            verb=cleaned.get("verb", ""),
            resource=cleaned.get("resource", ""),
            api_group=cleaned.get("api_group", ""),
            namespace=cleaned.get("namespace", ""),
            name=cleaned.get("name", ""),
            path=cleaned.get("path", ""),
        )


class ForbiddenForm(AccessAttemptForm):
    """The "Why forbidden?" question: a pasted message, or the refused request typed in."""

    message = forms.CharField(
        required=False,
        max_length=forbidden.MAX_MESSAGE,
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false"}),
        label="Kubernetes error message",
        help_text='Paste the whole line, e.g. pods is forbidden: User "alice" cannot list ...',
    )
    verb = forms.CharField(required=False, max_length=40)
    namespace = forms.CharField(required=False, max_length=63, help_text="empty: cluster scope")
    name = forms.CharField(required=False, max_length=253, label="Object name")
    cluster = forms.ModelChoiceField(
        queryset=Cluster.objects.none(),
        to_field_name="name",
        empty_label="Choose the cluster",
        error_messages={"required": "Choose the cluster the message came from."},
    )
    field_order = [
        "message", "verb", "resource", "api_group", "namespace", "name", "path", "cluster",
    ]  # fmt: skip

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        pasted = cleaned.get("message", "").strip()
        try:
            self.attempt = (
                forbidden.parse_message(cleaned["message"])
                if pasted
                else self.attempt_from(cleaned)
            )
        except forbidden.UnreadableMessage as exc:
            self.add_error("message" if pasted else None, str(exc))
        return cleaned


class WhoCanForm(AccessAttemptForm):
    """ "Who can do X on cluster Y?": the action, typed as kubectl names it, and the cluster."""

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if "verb" not in cleaned:
            return cleaned
        try:
            self.attempt = self.attempt_from(cleaned)
        except forbidden.UnreadableMessage as exc:
            self.add_error(None, str(exc))
        return cleaned
