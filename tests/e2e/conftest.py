"""Browser tests: the `page` fixture (tests/fixtures/browser.py) on the live app, with the real
slapd (`directory`) and kubesim clusters (`make_cluster`)."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.core.cache import cache
from django.test import Client

from access import services
from tests.clusters.conftest import catalogue, make_cluster, people  # noqa: F401


@pytest.fixture(autouse=True)
def _fresh_throttle() -> None:
    cache.clear()


@pytest.fixture
def developer(directory: Any) -> dict[str, str]:
    """alice, a developer in payments (inside engineering), in the directory and synced."""
    directory.add_person("alice", password="wonderland", display_name="Alice Liddell")
    directory.add_group("payments", people=["alice"])
    directory.add_group("engineering", groups=["payments"])
    services.sync_directory()
    return {"username": "alice", "password": "wonderland", "name": "Alice Liddell"}


def log_in(page: Any, username: str, password: str) -> None:
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def sign_in_as(page: Any, user: Any) -> None:
    """A session for `user` in the browser, as a login would make it: for tests of other pages
    whose people are records only (no directory entry to log in with)."""
    client = Client()
    client.force_login(user)
    page.goto("/login/")
    name, origin = settings.SESSION_COOKIE_NAME, page.url.split("/login/")[0]
    page.context.add_cookies([{"name": name, "value": client.cookies[name].value, "url": origin}])


# WCAG 2.x contrast of every visible piece of text on the page, against the background it is
# drawn on (the nearest ancestor with an opaque background; white at the top).
_CONTRAST_JS = """
() => {
  const rgb = (s) => (s.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const c = [r, g, b].map((v) => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  };
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0.5)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const failures = [];
  for (const el of document.body.querySelectorAll("*")) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own) continue;
    const style = getComputedStyle(el);
    const box = el.getBoundingClientRect();
    if (style.visibility !== "visible" || box.width === 0 || box.bottom < 0) continue;
    const [a, b] = [lum(rgb(style.color).slice(0, 3)), lum(background(el))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
    if (ratio < (large ? 3 : 4.5)) {
      failures.push(`${el.tagName} "${el.textContent.trim().slice(0, 40)}": ${ratio.toFixed(2)}`);
    }
  }
  return failures;
}
"""


def contrast_failures(page: Any) -> list[str]:
    """Text on the page whose contrast is below WCAG AA (4.5:1, or 3:1 for large text)."""
    return list(page.evaluate(_CONTRAST_JS))
