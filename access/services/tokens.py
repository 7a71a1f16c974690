"""Personal API tokens: made (shown once), used, revoked. Only a digest is ever stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from access import audit
from access.models import ApiToken, Person
from access.permissions import may_still_log_in
from core.types import Actor, account_of

PREFIX = "wdn_"
DEFAULT_DAYS = 90
MAX_DAYS = 366
# last_used_at is written when it is older than this: one write a minute, not one per request.
TOUCH_EVERY = timedelta(minutes=1)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def token_facts(token: ApiToken) -> dict[str, Any]:
    """What the audit trail says of a token: never the secret, nor its digest."""
    return {
        "owner": token.owner.get_username(),
        "name": token.name,
        "key_id": token.key_id,
        "expires_at": token.expires_at,
    }


def create_api_token(
    *,
    owner: Any,
    name: str,
    days: int = DEFAULT_DAYS,
    actor: Actor = None,
    made_with: ApiToken | None = None,
) -> tuple[ApiToken, str]:
    """A new token for `owner`; returns it and the only copy of its secret text.

    `made_with`: the API token the request came with. A token made with a token ends no later
    than that one, so a stolen short-lived token cannot be turned into a year's access; only a
    logged-in session (or an operator's command) makes a token of any allowed length.
    """
    name = name.strip()
    if not name:
        raise ValidationError("Name the token after what will use it (e.g. ci-deploy, laptop).")
    if len(name) > 100:
        raise ValidationError("A token's name has at most 100 characters.")
    if not 1 <= days <= MAX_DAYS:
        raise ValidationError(f"A token lasts from 1 to {MAX_DAYS} days (you asked for {days}).")
    if not owner.is_active:
        raise ValidationError(f"{owner.get_username()} is not active: no token for them.")
    person = Person.objects.filter(user_id=owner.pk).first()
    if person is not None and not person.is_active:
        raise ValidationError(f"{owner.get_username()} has left the directory: no token for them.")
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    expires_at = timezone.now() + timedelta(days=days)
    facts: dict[str, Any] = {}
    if made_with is not None:
        expires_at = min(expires_at, made_with.expires_at)
        facts["made_with"] = made_with.key_id
    with transaction.atomic():
        token = ApiToken.objects.create(
            owner=owner,
            name=name,
            key_id=key_id,
            secret_hash=_digest(secret),
            expires_at=expires_at,
        )
        audit.record(
            "api_token.created",
            actor=actor or owner,
            obj=token,
            after={**token_facts(token), **facts},
        )
    return token, f"{PREFIX}{key_id}_{secret}"


def revoke_api_token(token: ApiToken, *, actor: Actor) -> ApiToken:
    """Revoke a token now; revoking twice is harmless."""
    with transaction.atomic():
        token = ApiToken.objects.select_for_update().select_related("owner").get(pk=token.pk)
        if token.revoked_at is not None:
            return token
        token.revoked_at = timezone.now()
        token.revoked_by = account_of(actor)
        token.save(update_fields=["revoked_at", "revoked_by"])
        audit.record("api_token.revoked", actor=actor, obj=token, before=token_facts(token))
    return token


def authenticate(raw: str, now: datetime | None = None) -> ApiToken | None:
    """The token a request presents, if it is genuine, unexpired, unrevoked and its owner may
    still log in (an active account, and an active person for directory accounts)."""
    now = now or timezone.now()
    if not raw.startswith(PREFIX):
        return None
    key_id, sep, secret = raw[len(PREFIX) :].partition("_")
    if not sep or not key_id or not secret:
        return None
    token = ApiToken.objects.select_related("owner").filter(key_id=key_id).first()
    if token is None or not hmac.compare_digest(token.secret_hash, _digest(secret)):
        return None
    if not token.is_usable(now) or not may_still_log_in(token.owner):
        return None
    if token.last_used_at is None or now - token.last_used_at > TOUCH_EVERY:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token
