"""Signing in through Dex's own login form with an HTTP client, as a browser would.

`sign_in` starts at an authorization URL, follows Dex's redirects to its LDAP login form,
posts the person's directory username and password, and returns the URL Dex finally sends the
browser back to (the client's redirect URI with `code` and `state`, or an error).
"""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import urljoin

import requests

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
