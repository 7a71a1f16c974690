"""Forms of the access-review pages: parse input; the rules live in access.reviews."""

from __future__ import annotations

from django import forms

from access.choices import Environment, ReviewDecision


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


class DecisionForm(forms.Form):
    """A reviewer's keep-or-revoke, with a comment (required to revoke)."""

    decision = forms.ChoiceField(
        choices=[(ReviewDecision.KEPT, "Keep"), (ReviewDecision.REVOKED, "Revoke")]
    )
    comment = forms.CharField(required=False, max_length=2000, widget=forms.Textarea)
