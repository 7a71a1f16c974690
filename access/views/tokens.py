"""The "API tokens" page: make a personal token (shown once), see them, revoke one."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from access import permissions
from access.services import tokens
from core.types import AuthenticatedRequest


class TokenForm(forms.Form):
    name = forms.CharField(
        max_length=100, help_text="What will use it: ci-deploy, laptop, the warden CLI…"
    )
    days = forms.IntegerField(
        min_value=1,
        max_value=tokens.MAX_DAYS,
        initial=tokens.DEFAULT_DAYS,
        label="Valid for (days)",
    )


@login_required
@never_cache
def token_list(request: AuthenticatedRequest) -> HttpResponse:
    """The user's tokens, and a form for a new one; its secret is shown in this answer only."""
    form = TokenForm(request.POST or None)
    secret = ""
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                _, secret = tokens.create_api_token(
                    owner=request.user,
                    name=form.cleaned_data["name"],
                    days=form.cleaned_data["days"],
                    actor=request.user,
                )
            except ValidationError as exc:
                form.add_error(None, exc)
                status = 400
            else:
                form = TokenForm()
        else:
            status = 400
    mine = (
        permissions.api_tokens_visible_to(request.user)
        .filter(owner_id=request.user.pk)
        .order_by("-created_at", "-id")
    )
    return render(
        request,
        "access/tokens.html",
        {
            "form": form,
            "tokens": mine,
            "secret": secret,
            "now": timezone.now(),
            "base_url": request.build_absolute_uri("/"),
        },
        status=status,
    )


@login_required
@require_POST
def token_revoke(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    token = permissions.get_api_token_for_owner(request.user, pk)
    tokens.revoke_api_token(token, actor=request.user)
    messages.success(request, f"The token “{token.name}” is revoked; it no longer works.")
    return redirect("api-tokens")
