"""Signing in through Dex's own login form with an HTTP client, as a browser would.

`sign_in` starts at an authorization URL, follows Dex's redirects to its LDAP login form,
posts the person's directory username and password, and returns the URL Dex finally sends the
browser back to (the client's redirect URI with `code` and `state`, or an error).
"""

from __future__ import annotations

import re
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urljoin, urlparse

import requests

from access import oidc
from tests.dex.server import WEB_CLIENT_ID, DexServer

FORM_ACTION = re.compile(r'<form[^>]*action="([^"]*)"', re.IGNORECASE)


class LoginRefused(Exception):
    """Dex showed its login form again (wrong password, or no such person)."""


def sign_in(
    session: requests.Session,
    authorize_url: str,
    username: str,
    password: str,
    *,
    stop_at: str,
    verify: str,
) -> str:
    """Follow Dex from `authorize_url` to the first redirect that starts with `stop_at`."""
    url = authorize_url
    for _ in range(10):
        answer = session.get(url, allow_redirects=False, verify=verify, timeout=10)
        if answer.is_redirect:
            url = urljoin(url, answer.headers["Location"])
            if url.startswith(stop_at):
                return url
            continue
        found = FORM_ACTION.search(answer.text)
        if answer.status_code != 200 or found is None:
            raise AssertionError(
                f"Dex answered {answer.status_code} at {url}:\n{answer.text[:500]}"
            )
        action = urljoin(url, unescape(found.group(1)) or url)
        posted = session.post(
            action,
            data={"login": username, "password": password},
            allow_redirects=False,
            verify=verify,
            timeout=10,
        )
        if not posted.is_redirect:
            raise LoginRefused(f"Dex refused {username!r} ({posted.status_code})")
        url = urljoin(action, posted.headers["Location"])
        if url.startswith(stop_at):
            return url
    raise AssertionError(f"too many redirects from {authorize_url}")


def through_dex(
    client: Any, dex: DexServer, username: str, password: str, *, start: str = "/oidc/authenticate/"
) -> tuple[str, dict[str, str]]:
    """Warden's login page to Dex and back: the callback path and query Dex sends back."""
    to_dex = client.get(start)
    assert to_dex.status_code == 302, to_dex
    with requests.Session() as browser:
        back = sign_in(
            browser,
            to_dex["Location"],
            username,
            password,
            stop_at="http://testserver/",
            verify=str(dex.ca_path),
        )
    parsed = urlparse(back)
    return parsed.path, {k: v[0] for k, v in parse_qs(parsed.query).items()}


def configure_warden(settings: Any, dex: DexServer, **overrides: Any) -> None:
    """Point Warden's single sign-on at this Dex (its web client), directory login kept."""
    oidc.forget_discovery()
    settings.OIDC_ENABLED = True
    settings.OIDC_ISSUER = dex.issuer
    settings.OIDC_RP_CLIENT_ID = WEB_CLIENT_ID
    settings.OIDC_RP_CLIENT_SECRET = dex.web_client_secret
    settings.OIDC_RP_SCOPES = "openid email profile groups"
    settings.OIDC_VERIFY_SSL = str(dex.ca_path)
    settings.OIDC_MATCH = "username"
    settings.OIDC_MATCH_CLAIM = ""
    settings.AUTHENTICATION_BACKENDS = [
        "access.auth.DirectoryBackend",
        "access.oidc.DirectoryOIDCBackend",
        "django.contrib.auth.backends.ModelBackend",
    ]
    for name, value in overrides.items():
        setattr(settings, name, value)
