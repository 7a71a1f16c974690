"""Single sign-on with an OpenID Connect provider: mozilla-django-oidc, matched to the directory.

The provider proves who is at the browser (authorization code flow with PKCE, the ID token's
signature checked against the provider's published keys, its nonce against the one this
session sent). The directory still decides who that is in Warden: the configured claim
(username, email or a stable id) must name a directory person, read live from the directory
as the password login does; a person the directory does not know, or has disabled, or whom
Warden holds as inactive, is refused and no account is made. Group claims are never read:
teams come from the directory only.

Endpoints come from the provider's discovery document ({OIDC_ISSUER}/.well-known/
openid-configuration), fetched once per issuer and process.
"""

from __future__ import annotations

import functools
from typing import Any

import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.http import HttpRequest
from django.shortcuts import resolve_url
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.utils import import_from_settings

from access import directory, selectors, services
from access.auth import DISABLED_MESSAGE, INACTIVE_MESSAGE, REFUSAL_ATTR
from access.directory import DirectoryConfig, DirectoryError, DirectoryPerson
from access.models import Person

MATCH_MODES = ("username", "email", "id")
DEFAULT_CLAIMS = {"username": "preferred_username", "email": "email", "id": "sub"}
UNKNOWN_MESSAGE = (
    "The company directory has no person matching your single sign-on account; "
    "Warden made no account. Ask an operator if you should have access."
)
NO_CLAIM_MESSAGE = (
    "Your identity provider sent no {claim!r} claim, which Warden uses to find you in the "
    "company directory; ask an operator to check OIDC_MATCH_CLAIM and the requested scopes."
)
UNAVAILABLE_MESSAGE = "The company directory cannot be reached; try again in a few minutes."
DISCOVERY_ENDPOINTS = {
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
    "OIDC_OP_TOKEN_ENDPOINT": "token_endpoint",
    "OIDC_OP_USER_ENDPOINT": "userinfo_endpoint",
    "OIDC_OP_JWKS_ENDPOINT": "jwks_uri",
}


class Refused(Exception):
    """Single sign-on succeeded at the provider, but Warden refuses this person."""


@functools.lru_cache(maxsize=8)
def _discover(issuer: str, verify: str | bool) -> dict[str, Any]:
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        answer = requests.get(url, verify=verify, timeout=10)
        answer.raise_for_status()
        document: dict[str, Any] = answer.json()
    except (requests.RequestException, ValueError) as exc:
        raise ImproperlyConfigured(f"OIDC_ISSUER: cannot read {url}: {exc}") from exc
    if document.get("issuer") != issuer:
        raise ImproperlyConfigured(
            f"OIDC_ISSUER={issuer!r}, but the discovery document names {document.get('issuer')!r}"
        )
    return document


def forget_discovery() -> None:
    """Read the discovery document again on next use (a provider's keys or endpoints moved)."""
    _discover.cache_clear()


def discovery() -> dict[str, Any]:
    """The provider's discovery document (cached per issuer)."""
    issuer = getattr(settings, "OIDC_ISSUER", "")
    if not getattr(settings, "OIDC_ENABLED", False) or not issuer:
        raise ImproperlyConfigured("single sign-on is off (OIDC_ENABLED, OIDC_ISSUER)")
    return _discover(issuer, settings.OIDC_VERIFY_SSL)


def oidc_setting(attr: str, *default: Any) -> Any:
    """A mozilla-django-oidc setting; the provider's endpoints come from discovery."""
    if attr in DISCOVERY_ENDPOINTS and not getattr(settings, attr, ""):
        return discovery()[DISCOVERY_ENDPOINTS[attr]]
    return import_from_settings(attr, *default)


def provider_logout_url(request: HttpRequest) -> str:
    """Where logout sends the browser: the provider's end_session_endpoint when it has one."""
    after = request.build_absolute_uri(resolve_url(settings.LOGOUT_REDIRECT_URL))
    end_session = discovery().get("end_session_endpoint")
    if not end_session:
        return after
    query = {"post_logout_redirect_uri": after}
    id_token = request.session.get("oidc_id_token")
    if id_token:
        query["id_token_hint"] = id_token
    return str(requests.Request("GET", end_session, params=query).prepare().url)


def _match() -> tuple[str, str]:
    mode = settings.OIDC_MATCH
    return mode, settings.OIDC_MATCH_CLAIM or DEFAULT_CLAIMS[mode]


def find_entry(config: DirectoryConfig, mode: str, value: str) -> DirectoryPerson | None:
    """The directory entry the claim names, read live (the sync's mirror finds its username)."""
    if mode == "username":
        return directory.find_person(config, value)
    people = Person.objects.all()
    if mode == "email":
        people = people.filter(email__iexact=value)
    else:
        people = people.filter(external_id=value)
    person = people.order_by("-is_active", "-id").first()
    if person is None:
        return None
    return directory.find_person(config, person.username)


class DirectoryOIDCBackend(OIDCAuthenticationBackend):
    """Signs a person in with the provider's ID token, as the directory person it names."""

    @staticmethod
    def get_settings(attr: str, *default: Any) -> Any:
        return oidc_setting(attr, *default)

    def verify_claims(self, claims: dict[str, Any]) -> bool:
        return True  # which claims matter is decided by the directory match below

    def get_or_create_user(self, access_token: str, id_token: str, payload: dict[str, Any]) -> Any:
        # The ID token, already verified (signature, audience, expiry, nonce), is what counts;
        # the userinfo endpoint adds nothing the directory does not know better.
        try:
            return self.directory_user(payload)
        except Refused as exc:
            if self.request is not None:
                setattr(self.request, REFUSAL_ATTR, str(exc))
            return None

    def directory_user(self, claims: dict[str, Any]) -> Any:
        mode, claim = _match()
        value = claims.get(claim)
        if not isinstance(value, str) or not value.strip():
            raise Refused(NO_CLAIM_MESSAGE.format(claim=claim))
        config = DirectoryConfig.from_settings()
        try:
            entry = find_entry(config, mode, value.strip())
        except DirectoryError as exc:
            raise Refused(UNAVAILABLE_MESSAGE) from exc
        if entry is None:
            raise Refused(UNKNOWN_MESSAGE)
        if entry.disabled:
            raise Refused(DISABLED_MESSAGE)
        known = selectors.person_for_entry(entry)
        if known is not None and not known.is_active:
            raise Refused(INACTIVE_MESSAGE)
        user, _ = get_user_model().objects.get_or_create(
            username=entry.username, defaults={"email": entry.email}
        )
        try:
            person = services.record_login_person(entry, user)
        except ValidationError as exc:
            raise Refused(" ".join(exc.messages)) from exc
        if not person.is_active:
            raise Refused(INACTIVE_MESSAGE)
        user.refresh_from_db()
        return user
