"""The web security baseline every page stands on: CSP and security headers, cookie flags,
CSRF on every POST endpoint, no inline script or style, login throttling, vendored htmx."""

from __future__ import annotations

import re
import runpy
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.exceptions import Resolver404
from django.utils.regex_helper import normalize
from rest_framework.views import APIView

from access import services

pytestmark = pytest.mark.django_db
ROOT = Path(django_settings.BASE_DIR)


@pytest.fixture(autouse=True)
def _fresh_throttle():
    cache.clear()


@pytest.fixture
def operator(client):
    user = get_user_model().objects.create_superuser("olivia", password="operator-pw-1")
    client.force_login(user)
    return user


# --- headers ----------------------------------------------------------------------------------

PAGES_ANONYMOUS = ["/login/", "/no-such-page/", "/healthz"]
PAGES_OPERATOR = ["/", "/why-forbidden/", "/health/", "/admin/", "/admin/access/role/"]


def assert_baseline_headers(response: Any) -> None:
    csp = response["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";") if d.strip())
    assert directives["default-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["object-src"] == "'none'"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"


@pytest.mark.parametrize("path", PAGES_ANONYMOUS)
def test_every_public_page_carries_the_security_headers(client, path):
    assert_baseline_headers(client.get(path))


@pytest.mark.parametrize("path", PAGES_OPERATOR)
def test_every_signed_in_page_carries_the_security_headers(client, operator, path):
    response = client.get(path)
    assert response.status_code == 200
    assert_baseline_headers(response)


def test_a_refusal_page_carries_them_too(client):
    user = get_user_model().objects.create_user("dave", password="pw-dave-1")
    client.force_login(user)
    response = client.get("/health/")
    assert response.status_code == 403
    assert_baseline_headers(response)


# --- cookies ----------------------------------------------------------------------------------


def test_the_session_cookie_is_httponly_and_samesite(client, settings):
    settings.SESSION_COOKIE_SECURE = True
    settings.WARDEN_LOCAL_ACCOUNTS = ["dave"]
    get_user_model().objects.create_user("dave", password="pw-dave-1")
    client.get("/login/")

    response = client.post("/login/", {"username": "dave", "password": "pw-dave-1"})

    assert response.status_code == 302
    cookie = response.cookies[settings.SESSION_COOKIE_NAME]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert cookie["secure"] is True


def load_settings(monkeypatch, tmp_path, **env: str) -> dict[str, Any]:
    """config/settings.py as a fresh process would read it with this environment."""
    for name in ("SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WARDEN_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("SECRET_KEY", "x" * 50)
    monkeypatch.setenv("WARDEN_ENCRYPTION_KEYS", "OtSVsMAzsHnxfcSlfLjnxu19VXjB3t21RlJbIij8Pf4=")
    monkeypatch.setenv("WARDEN_AUDIT_KEYS", "a" * 32)
    monkeypatch.setenv("METRICS_TOKEN", "m" * 32)  # required when DEBUG is off
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(ROOT / "config" / "settings.py"))


def test_cookies_are_secure_unless_debug(monkeypatch, tmp_path):
    production = load_settings(monkeypatch, tmp_path, DEBUG="0")
    development = load_settings(monkeypatch, tmp_path, DEBUG="1")

    assert production["SESSION_COOKIE_SECURE"] is True
    assert production["CSRF_COOKIE_SECURE"] is True
    assert production["SESSION_COOKIE_HTTPONLY"] is True
    assert production["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert development["SESSION_COOKIE_SECURE"] is False


# --- CSRF on every form -----------------------------------------------------------------------

SAMPLES = ["1", "x", "access", "auth", str(uuid.uuid4())]


def _routes(
    patterns: list[Any], prefix: tuple[Any, ...] = ()
) -> Iterator[tuple[tuple[Any, ...], URLPattern]]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _routes(entry.url_patterns, (*prefix, entry.pattern))
        else:
            yield (*prefix, entry.pattern), entry


def _concrete_path(chain: tuple[Any, ...]) -> str | None:
    """A URL this chain of patterns matches, with sample values in its placeholders."""
    pieces = []
    for pattern in chain:
        regex = pattern.regex.pattern
        fmt, params = normalize(regex)[0]
        for values in [dict.fromkeys(params, s) for s in SAMPLES]:
            piece = fmt % values
            if re.fullmatch(regex.lstrip("^").rstrip("$").removesuffix(r"\Z"), piece):
                pieces.append(piece)
                break
        else:
            return None
    return "/" + "".join(pieces)


def post_endpoints() -> list[str]:
    """A concrete URL for every route; fails for a route the walk cannot build a URL for."""
    paths, unbuildable = [], []
    for chain, entry in _routes(get_resolver().url_patterns):
        path = _concrete_path(chain)
        try:
            reached = path is not None and resolve(path).func
        except Resolver404:
            reached = None
        if reached == entry.callback:
            paths.append(path)
        elif not (path and reached):  # else shadowed by an earlier route (admin/login/)
            unbuildable.append(entry.pattern.describe())
    assert unbuildable == [], "teach the walk these routes' placeholders (SAMPLES)"
    return sorted(set(paths))


def _is_api_view(callback: Any) -> bool:
    cls = getattr(callback, "cls", None)
    return isinstance(cls, type) and issubclass(cls, APIView)


def test_no_view_is_exempt_from_csrf():
    # DRF's views are exempt from Django's middleware check because DRF checks CSRF itself, in
    # SessionAuthentication, for requests that come with a session (a bearer token cannot be
    # sent by another site); the walk below shows those answer 403 without the token too.
    exempt = [
        entry.lookup_str
        for _, entry in _routes(get_resolver().url_patterns)
        if getattr(entry.callback, "csrf_exempt", False) and not _is_api_view(entry.callback)
    ]
    assert exempt == []


def test_every_api_view_checks_csrf_for_sessions():
    from rest_framework.authentication import SessionAuthentication

    from access.api.authentication import BearerTokenAuthentication

    for _, entry in _routes(get_resolver().url_patterns):
        if _is_api_view(entry.callback):
            classes = entry.callback.cls.authentication_classes
            assert all(
                issubclass(c, SessionAuthentication | BearerTokenAuthentication) for c in classes
            ), entry.lookup_str


def test_every_post_endpoint_refuses_a_post_without_the_csrf_token(operator):
    # given an operator's session (without the check, most of these would act)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(operator)
    endpoints = post_endpoints()
    # the walk must reach Warden's own forms, not just the admin's
    for known in ("/logout/", "/login/", "/health/sync", "/health/sync/1/confirm"):
        assert known in endpoints

    # when each is posted to without the token, then each answers 403
    answers = {path: browser.post(path, {"x": "1"}).status_code for path in endpoints}

    assert {path: code for path, code in answers.items() if code != 403} == {}
    assert len(answers) > 20


def test_the_same_post_with_the_token_goes_through(operator):
    # The control for the walk above: the 403s come from the missing token, nothing else.
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(operator)
    browser.get("/")
    token = browser.cookies[django_settings.CSRF_COOKIE_NAME].value

    response = browser.post("/logout/", {"csrfmiddlewaretoken": token})

    assert response.status_code == 302


def test_pages_hand_htmx_the_csrf_token_in_a_header(client, operator):
    page = client.get("/").content.decode()
    match = re.search(r"""hx-headers='\{"X-CSRFToken": "([^"]+)"\}'""", page)
    assert match
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(operator)
    browser.get("/")
    token = re.search(r'"X-CSRFToken": "([^"]+)"', browser.get("/").content.decode()).group(1)

    # an htmx POST carries only the header, no form field
    response = browser.post("/logout/", headers={"X-CSRFToken": token, "HX-Request": "true"})

    assert response.status_code == 302


# --- no inline script or style ----------------------------------------------------------------

INLINE = [
    (re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I), "an inline <script>"),
    (re.compile(r"<style\b", re.I), "a <style> element"),
    (re.compile(r"\sstyle\s*=", re.I), "a style attribute"),
    (re.compile(r"\son[a-z]+\s*=", re.I), "an event-handler attribute"),
    (re.compile(r"javascript:", re.I), "a javascript: URL"),
]


def _templates() -> list[Path]:
    return sorted((ROOT / "templates").rglob("*.html"))


@pytest.mark.parametrize("template", _templates(), ids=lambda p: str(p.relative_to(ROOT)))
def test_templates_hold_no_inline_script_or_style(template):
    text = template.read_text()
    text = re.sub(r"\{#.*?#\}", "", text, flags=re.S)
    text = re.sub(r"\{%\s*comment\s*%\}.*?\{%\s*endcomment\s*%\}", "", text, flags=re.S)
    found = [what for pattern, what in INLINE if pattern.search(text)]
    assert found == []


# --- htmx, vendored ---------------------------------------------------------------------------


def test_htmx_is_vendored_with_its_licence_and_served_from_self(client):
    assert (ROOT / "static" / "js" / "htmx.LICENSE.txt").read_text().startswith("Zero-Clause BSD")
    page = client.get("/login/").content.decode()
    src = re.search(r'<script src="([^"]+htmx\.min\.js)"', page).group(1)
    assert src.startswith("/static/")

    response = client.get(src)

    assert response.status_code == 200
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert b'version:"2.' in body


# --- login throttling (five failures per username and address, then 15 minutes) -------------


def login(client, username, password, address="10.0.0.1"):
    return client.post("/login/", {"username": username, "password": password}, REMOTE_ADDR=address)


def test_five_failures_lock_the_name_even_with_the_right_password(client, directory):
    directory.add_person("alice", password="wonderland")
    for _ in range(5):
        login(client, "alice", "nope")

    response = login(client, "alice", "wonderland")

    assert "Too many failed attempts" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_the_lock_counts_names_however_they_are_typed(client, directory):
    directory.add_person("alice", password="wonderland")
    for typed in ("alice", "ALICE", " Alice", "alice ", "aLiCe"):
        login(client, typed, "nope")

    assert "Too many failed attempts" in login(client, "alice", "wonderland").content.decode()


def test_the_name_lock_holds_from_every_address_and_spares_other_names(client, directory):
    directory.add_person("alice", password="wonderland")
    directory.add_person("bob", password="builder")
    for _ in range(5):
        login(client, "alice", "nope", address="10.0.0.1")

    assert login(Client(), "alice", "wonderland", address="10.0.0.2").status_code == 200
    assert login(Client(), "bob", "builder", address="10.0.0.1").status_code == 302


def test_a_successful_login_clears_earlier_failures(client, directory):
    directory.add_person("alice", password="wonderland")
    for _ in range(4):
        login(client, "alice", "nope")
    assert login(Client(), "alice", "wonderland").status_code == 302

    for _ in range(4):
        login(client, "alice", "nope")

    assert login(Client(), "alice", "wonderland").status_code == 302


def test_locked_out_people_are_not_even_checked_against_the_directory(client, directory, settings):
    directory.add_person("alice", password="wonderland")
    services.sync_directory()
    for _ in range(5):
        login(client, "alice", "nope")
    # the directory goes away: a locked name is refused by the throttle, before any bind
    settings.WARDEN_DIRECTORY = directory.settings(URI="ldap://127.0.0.1:9")

    response = login(client, "alice", "wonderland")

    page = response.content.decode()
    assert "Too many failed attempts" in page
    assert "not answering" not in page
