"""Signing in through Dex's own login form with an HTTP client, as a browser would.

`sign_in` starts at an authorization URL, follows Dex's redirects to its LDAP login form,
posts the person's directory username and password, and returns the URL Dex finally sends the
browser back to (the client's redirect URI with `code` and `state`, or an error).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlparse

import requests

from access import oidc
from tests.dex.server import CLI_CLIENT_ID, WEB_CLIENT_ID, DexServer

FORM_ACTION = re.compile(r'<form[^>]*action="([^"]*)"', re.IGNORECASE)


def _text_of(page: str) -> str:
    """The words of an HTML page (Dex's error pages say what was wrong)."""
    body = page.split("<body", 1)[-1]
    return " ".join(re.sub(r"<[^>]+>", " ", body).split())[:500]


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
                f"Dex answered {answer.status_code} at {url}: {_text_of(answer.text)}"
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
        "access.auth.LocalAccountBackend",
    ]
    for name, value in overrides.items():
        setattr(settings, name, value)


def cli_tokens(dex: DexServer, username: str, password: str) -> dict[str, Any]:
    """What the kubectl credential plugin gets: Warden CLI's (public) client, a loopback
    redirect, PKCE; the token answer (id_token, refresh_token)."""
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    redirect = "http://127.0.0.1:8000/callback"
    query = {
        "client_id": CLI_CLIENT_ID,
        "redirect_uri": redirect,
        "response_type": "code",
        "scope": "openid email profile groups offline_access",
        "state": secrets.token_urlsafe(16),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    with requests.Session() as browser:
        back = sign_in(
            browser,
            f"{dex.issuer}/auth?{urlencode(query)}",
            username,
            password,
            stop_at=redirect,
            verify=str(dex.ca_path),
        )
        answer = browser.post(
            f"{dex.issuer}/token",
            data={
                "grant_type": "authorization_code",
                "client_id": CLI_CLIENT_ID,
                "code": parse_qs(urlparse(back).query)["code"][0],
                "redirect_uri": redirect,
                "code_verifier": verifier,
            },
            verify=str(dex.ca_path),
            timeout=10,
        )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())
