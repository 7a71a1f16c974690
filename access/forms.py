"""Forms of the people side."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm

from access import durations, throttle
from access.auth import DIRECTORY_ERROR_ATTR, NOT_CONFIGURED_ATTR, REFUSAL_ATTR
from access.choices import Environment, ReviewDecision, RoleScope, Tier
from access.fleet import fleet
from access.models import ApprovalPolicy, Person, Role, Team
from core import yamltext


class LoginForm(AuthenticationForm):
    """The directory login, with a clear word when the directory is down, and throttling."""

    error_messages = {
        **AuthenticationForm.error_messages,
        # The directory refuses a locked account's bind as it refuses a wrong password, and
        # saying which one it was would tell strangers which usernames exist: one answer.
        "invalid_login": (
            "Please enter a correct username and password. An account that is disabled in the "
            "company directory cannot log in either: ask your directory administrators."
        ),
        "directory_down": (
            "The company directory is not answering, so nobody can log in right now. "
            "Try again in a few minutes."
        ),
        "not_configured": (
            "Please enter a correct username and password of a local account: directory "
            "login is not set up on this Warden (LDAP_URI is empty)."
        ),
        "throttled": (
            "Too many failed attempts for this account or from this address; "
            "wait 15 minutes and try again."
        ),
    }

    def clean(self) -> dict[str, Any]:
        username = (self.cleaned_data.get("username") or "").strip().lower()
        address = throttle.client_address(self.request) if self.request is not None else ""
        if throttle.is_locked(username, address):
            raise forms.ValidationError(self.error_messages["throttled"], code="throttled")
        try:
            cleaned = super().clean()
        except forms.ValidationError:
            self._explain_refusal()
            throttle.record_failure(username, address)
            if self.request is not None and getattr(self.request, NOT_CONFIGURED_ATTR, False):
                raise forms.ValidationError(
                    self.error_messages["not_configured"], code="not_configured"
                ) from None
            raise
        throttle.record_success(username)
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


# --- requests, grants and roles ---------------------------------------------------------------

DURATIONS = [
    ("", "The policy's usual duration"),
    ("1h", "1 hour"),
    ("2h", "2 hours"),
    ("4h", "4 hours"),
    ("8h", "8 hours"),
    ("1d", "1 day"),
    ("3d", "3 days"),
    ("7d", "7 days"),
    ("14d", "14 days"),
    ("30d", "30 days"),
    ("90d", "90 days"),
]


_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta | None:
    """ "4h", "3d", "90m" -> timedelta; "" -> None (the policy's default)."""
    text = (text or "").strip().lower()
    if not text:
        return None
    match = re.fullmatch(r"(\d{1,4})\s*([mhd])", text)
    if not match:
        raise forms.ValidationError("Write a duration such as 90m, 4h or 3d.")
    amount, unit = int(match.group(1)), match.group(2)
    if amount == 0:
        raise forms.ValidationError("A duration of zero would end at once: write e.g. 4h or 3d.")
    value = timedelta(**{_UNITS[unit]: amount})
    if value > durations.LONGEST:
        raise forms.ValidationError(durations.TOO_LONG.format(text=text))
    return value


def split_words(text: str) -> list[str]:
    """Namespaces or cluster names typed with commas, spaces or new lines."""
    return [w for w in re.split(r"[\s,]+", text or "") if w]


class ScopeField(forms.CharField):
    """A list of names typed as text (commas or spaces)."""

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        return split_words(super().to_python(value) or "")


class RequestForm(forms.Form):
    """What a person asks for. Validation of the scope itself is the service's."""

    role = forms.ModelChoiceField(
        queryset=Role.objects.all(), empty_label=None, widget=forms.RadioSelect
    )
    environments = forms.MultipleChoiceField(
        choices=Environment.choices, required=False, widget=forms.CheckboxSelectMultiple
    )
    tiers = forms.MultipleChoiceField(
        choices=Tier.choices, required=False, widget=forms.CheckboxSelectMultiple
    )
    clusters = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every cluster of the environments and tiers.",
        error_messages={
            "invalid_choice": "%(value)s is not a live cluster (retired, or unknown): untick it."
        },
    )
    namespaces = ScopeField(
        required=False, help_text="Namespace names or patterns such as team-*; commas or spaces."
    )
    duration = forms.ChoiceField(choices=DURATIONS, required=False)
    justification = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="What you will do with this access. Approvers decide on it.",
    )
    ticket = forms.CharField(required=False, max_length=100, label="Ticket reference")
    break_glass = forms.BooleanField(
        required=False,
        label="Break glass: an emergency; grant at once, short, reviewed afterwards",
    )
    extends = forms.IntegerField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["clusters"]
        assert isinstance(field, forms.MultipleChoiceField)
        field.choices = [(c.name, c.name) for c in fleet().cluster_specs()]

    def clean_duration(self) -> timedelta | None:
        return parse_duration(self.cleaned_data.get("duration") or "")

    def scope(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "environments": data.get("environments") or [],
            "tiers": data.get("tiers") or [],
            "clusters": data.get("clusters") or [],
            "namespaces": data.get("namespaces") or [],
        }

    def picked(self, name: str) -> list[str]:
        """What is ticked in a multiple-choice field now: typed in, or prefilled."""
        if self.is_bound:
            return (
                [v for v in self.data.getlist(name) if v] if hasattr(self.data, "getlist") else []
            )
        value = self.initial.get(name) or []
        return list(value) if not isinstance(value, str) else split_words(value)


class DecisionForm(forms.Form):
    """An approver's decision, with optional narrowing."""

    comment = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    clusters = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, label="Only on these clusters"
    )
    namespaces = ScopeField(required=False, label="Only in these namespaces")
    duration = forms.ChoiceField(choices=DURATIONS, required=False, label="Shorten to")

    def __init__(self, *args: Any, clusters: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["clusters"]
        assert isinstance(field, forms.MultipleChoiceField)
        field.choices = [(c, c) for c in clusters or []]

    def clean_duration(self) -> timedelta | None:
        return parse_duration(self.cleaned_data.get("duration") or "")


class GrantForm(forms.Form):
    """A standing grant an operator gives a team or a person."""

    team = forms.ModelChoiceField(
        queryset=Team.objects.filter(is_active=True), required=False, empty_label="—"
    )
    person = forms.CharField(required=False, label="or person (username)")
    role = forms.ModelChoiceField(queryset=Role.objects.all(), empty_label=None)
    environments = forms.MultipleChoiceField(
        choices=Environment.choices, required=False, widget=forms.CheckboxSelectMultiple
    )
    tiers = forms.MultipleChoiceField(
        choices=Tier.choices, required=False, widget=forms.CheckboxSelectMultiple
    )
    clusters = ScopeField(required=False)
    cluster_selector = ScopeField(
        required=False, label="Cluster labels", help_text="key=value pairs, e.g. region=eu"
    )
    namespaces = ScopeField(required=False)
    expires_at = forms.DateTimeField(
        required=False, help_text="Empty: standing until revoked. UTC, e.g. 2027-01-31 18:00"
    )
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}))

    def clean_person(self) -> Person | None:
        username = (self.cleaned_data.get("person") or "").strip()
        if not username:
            return None
        person = Person.objects.filter(username=username, is_active=True).first()
        if person is None:
            raise forms.ValidationError(f"No active person {username!r} in the directory.")
        return person

    def clean_cluster_selector(self) -> dict[str, str]:
        selector = {}
        for pair in self.cleaned_data.get("cluster_selector") or []:
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise forms.ValidationError(f"{pair!r}: write key=value.")
            selector[key] = value
        return selector

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if bool(data.get("team")) == bool(data.get("person")):
            raise forms.ValidationError("Pick a team or a person (one of them).")
        return data

    def scope(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            name: data.get(name) or ([] if name != "cluster_selector" else {})
            for name in ("environments", "tiers", "clusters", "cluster_selector", "namespaces")
        }


class RoleDefinitionForm(forms.Form):
    """What a role becomes where environment and tier match."""

    environment = forms.ChoiceField(
        choices=[("", "any environment"), *Environment.choices], required=False
    )
    tier = forms.ChoiceField(choices=[("", "any tier"), *Tier.choices], required=False)
    cluster_role = forms.CharField(
        required=False, help_text="A built-in ClusterRole: view, edit, admin, cluster-admin, ..."
    )
    rules = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false"}),
        help_text='Or rules Warden manages, as YAML: - {apiGroups: [""], resources: [pods], '
        "verbs: [get, list]}",
    )
    scope = forms.ChoiceField(choices=RoleScope.choices)
    namespaces = ScopeField(required=False, help_text="Limit to these namespaces or patterns.")
    allowed = forms.BooleanField(required=False, initial=True, label="Offered here")
    reason = forms.CharField(required=False)

    def clean_rules(self) -> list[Any]:
        text = self.cleaned_data.get("rules") or ""
        if not text.strip():
            return []
        try:
            rules = yamltext.safe_load(text)
        except yamltext.NotValidYAML as exc:
            raise forms.ValidationError(f"The rules are {exc}.") from None
        return rules if isinstance(rules, list) else [rules]


class AuditFilterForm(forms.Form):
    action = forms.CharField(required=False, help_text="e.g. request. or grant.revoked")
    actor = forms.CharField(required=False)
    object_type = forms.CharField(required=False, label="Object type")
    object_id = forms.CharField(required=False, label="Object id")
    since = forms.DateTimeField(required=False, label="From (UTC)")
    until = forms.DateTimeField(required=False, label="To (UTC)")


def duration_text(value: timedelta | None) -> str:
    """A duration as the forms take it: "7d", "4h", "90m"."""
    if value is None:
        return ""
    seconds = int(value.total_seconds())
    if seconds and seconds % 86400 == 0:
        return f"{seconds // 86400}d"
    if seconds and seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    return f"{seconds // 60}m"


class DurationTextField(forms.CharField):
    """A duration typed as 90m, 4h or 3d."""

    def to_python(self, value: Any) -> timedelta | None:  # type: ignore[override]
        return parse_duration(super().to_python(value) or "")


def _teams_named(names: list[str]) -> list[Team]:
    teams: dict[str, Team] = {}
    for team in Team.objects.filter(name__in=names).order_by("-is_active", "pk"):
        teams.setdefault(team.name, team)  # an active team of that name first
    unknown = [n for n in names if n not in teams]
    if unknown:
        raise forms.ValidationError(f"No team named {', '.join(unknown)} in the directory.")
    return [teams[n] for n in dict.fromkeys(names)]


class PolicyForm(forms.Form):
    """An approval policy as an operator edits it. The rules are the service's."""

    name = forms.CharField(max_length=100)
    environment = forms.ChoiceField(
        choices=[("", "any environment"), *Environment.choices], required=False
    )
    tier = forms.ChoiceField(choices=[("", "any tier"), *Tier.choices], required=False)
    role = forms.ModelChoiceField(
        queryset=Role.objects.all(),
        required=False,
        empty_label="any role",
        help_text="Only for this role; a role-specific policy wins over a general one.",
    )
    approvals_required = forms.IntegerField(
        min_value=0,
        label="Approvals needed",
        help_text="0: granted at once, without approval.",
    )
    approver_teams = ScopeField(
        required=False,
        label="Approver teams",
        help_text="Directory team names, commas or spaces; empty: the Warden operators approve.",
    )
    manager_may_approve = forms.BooleanField(
        required=False, label="The requester's manager (from the directory) may approve too"
    )
    self_approval_forbidden = forms.BooleanField(
        required=False, initial=True, label="Nobody approves their own request"
    )
    default_duration = DurationTextField(label="Usual duration", help_text="e.g. 4h, 3d")
    max_duration = DurationTextField(label="Longest duration", help_text="e.g. 1d, 30d")
    self_extension = forms.BooleanField(
        required=False,
        label="The requester may extend in one click, without approval, up to the longest duration",
    )
    break_glass_allowed = forms.BooleanField(
        required=False, label="Break glass: immediate access in an emergency, reviewed afterwards"
    )
    break_glass_duration = DurationTextField(
        required=False, label="Break-glass duration", help_text="e.g. 1h"
    )
    break_glass_teams = ScopeField(
        required=False,
        label="Who may break glass",
        help_text="Directory team names, commas or spaces; their members alone may break glass.",
    )
    break_glass_roles = ScopeField(
        required=False,
        label="Roles break-glass may give",
        help_text="Role names, commas or spaces (e.g. operator).",
    )
    reason = forms.CharField(
        max_length=500, help_text="Why this change: it goes into the audit trail."
    )

    @staticmethod
    def initial_for(policy: Any) -> dict[str, Any]:
        return {
            "name": policy.name,
            "environment": policy.environment,
            "tier": policy.tier,
            "role": policy.role_id,
            "approvals_required": policy.approvals_required,
            "approver_teams": " ".join(
                sorted(policy.approver_teams.values_list("name", flat=True))
            ),
            "manager_may_approve": policy.manager_may_approve,
            "self_approval_forbidden": policy.self_approval_forbidden,
            "default_duration": duration_text(policy.default_duration),
            "max_duration": duration_text(policy.max_duration),
            "self_extension": policy.self_extension,
            "break_glass_allowed": policy.break_glass_allowed,
            "break_glass_duration": duration_text(policy.break_glass_duration),
            "break_glass_teams": " ".join(
                sorted(policy.break_glass_teams.values_list("name", flat=True))
            ),
            "break_glass_roles": " ".join(
                sorted(policy.break_glass_roles.values_list("name", flat=True))
            ),
        }

    def clean_approver_teams(self) -> list[Team]:
        return _teams_named(self.cleaned_data.get("approver_teams") or [])

    def clean_break_glass_teams(self) -> list[Team]:
        return _teams_named(self.cleaned_data.get("break_glass_teams") or [])

    def clean_break_glass_roles(self) -> list[Role]:
        names = self.cleaned_data.get("break_glass_roles") or []
        roles = {r.name: r for r in Role.objects.filter(name__in=names)}
        unknown = [n for n in names if n not in roles]
        if unknown:
            raise forms.ValidationError(f"No role named {', '.join(unknown)}.")
        return [roles[n] for n in dict.fromkeys(names)]

    def apply_to(self, policy: Any) -> Any:
        """Copy the typed values onto `policy` (not saved)."""
        data = self.cleaned_data
        many = (*ApprovalPolicy.TEAM_FIELDS, *ApprovalPolicy.ROLE_FIELDS)
        for name in ApprovalPolicy.SETTINGS:
            if name not in many:
                setattr(policy, name, data[name])
        if not policy.break_glass_allowed:
            policy.break_glass_duration = None
        return policy


# --- access reviews ---------------------------------------------------------------------------


class StartCampaignForm(forms.Form):
    """What an operator gives to start a campaign."""

    name = forms.CharField(max_length=200, help_text="e.g. “2025 Q3 production access”")
    due_on = forms.DateField(
        label="Due date", widget=forms.DateInput(attrs={"type": "date"}), input_formats=["%Y-%m-%d"]
    )
    environments = forms.MultipleChoiceField(
        choices=Environment.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Leave all unticked to review every standing grant.",
    )
    request_grants_older_than_days = forms.IntegerField(
        label="Also review grants from approved requests older than (days)",
        required=False,
        min_value=1,
        help_text="Empty: those expire on their own and are left out.",
    )


class ReviewDecisionForm(forms.Form):
    """A reviewer's keep-or-revoke, with a comment (required to revoke)."""

    decision = forms.ChoiceField(
        choices=[(ReviewDecision.KEPT, "Keep"), (ReviewDecision.REVOKED, "Revoke")]
    )
    comment = forms.CharField(required=False, max_length=2000, widget=forms.Textarea)
