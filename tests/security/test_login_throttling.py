"""Issue 15, item 11: login throttling an attacker cannot step around.

Failures are counted in a cache every web process shares (the database by default), per username
and per client address separately, and `X-Forwarded-For` counts only when the connection comes
from a proxy Warden was told to trust.
"""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.core.cache.backends import locmem
from django.urls import reverse

from access import services

pytestmark = pytest.mark.django_db
THROTTLED = "Too many failed attempts"


@pytest.fixture(autouse=True)
def _fresh_throttle():
    cache.clear()


@pytest.fixture
def people(directory):
    for name in ("alice", "bob", "judy", "olivia"):
        directory.add_person(name, password=f"{name}-pw")
    directory.add_group("payments", people=["alice", "bob"])
    services.sync_directory()
    return directory


def another_worker() -> None:
    """The next request lands on another web process: nothing kept in this one's memory."""
    for memory in (*locmem._caches.values(), *locmem._expire_info.values()):
        memory.clear()


def login(client, username, password, addr="198.51.100.7", **headers):
    return client.post(
        reverse("login"),
        {"username": username, "password": password},
        REMOTE_ADDR=addr,
        **headers,
    )


def assert_refused(answer):
    assert answer.status_code == 200
    assert THROTTLED in answer.content.decode()


def assert_logged_in(answer):
    assert answer.status_code == 302, answer.content.decode()[:300]


@pytest.mark.parametrize("victim", ["alice", "judy", "olivia"])
def test_failures_spread_over_web_processes_still_lock_the_account(client, people, victim):
    # given an attacker guessing the victim's password, each guess on another gunicorn worker
    for _ in range(5):
        login(client, victim, "guess")
        another_worker()
    # then the sixth try is refused, even with the right password
    assert_refused(login(client, victim, f"{victim}-pw"))


def test_changing_address_for_every_guess_does_not_reset_the_count(client, people):
    # given an attacker with many addresses guessing olivia's (an operator's) password
    for n in range(5):
        login(client, "olivia", "guess", addr=f"203.0.113.{n + 1}")
    # then the account is locked from any address
    assert_refused(login(client, "olivia", "olivia-pw", addr="192.0.2.99"))


def test_one_address_spraying_many_usernames_is_locked_out(client, people, settings):
    settings.WARDEN_LOGIN_FAILURES_PER_ADDRESS = 8
    # given one address trying one password against many accounts (under 5 per account)
    for n in range(8):
        login(client, f"user{n}", "Summer2026!", addr="203.0.113.5")
    # then that address is refused, even for a correct password
    assert_refused(login(client, "alice", "alice-pw", addr="203.0.113.5"))
    # and a colleague at another address still logs in
    assert_logged_in(login(client, "bob", "bob-pw", addr="198.51.100.20"))


def test_a_forged_x_forwarded_for_is_ignored_from_an_untrusted_peer(client, people, settings):
    settings.WARDEN_LOGIN_FAILURES_PER_ADDRESS = 8
    settings.WARDEN_TRUSTED_PROXIES = ["10.0.0.1"]
    # given an attacker connecting directly, claiming a new address each time
    for n in range(8):
        login(client, f"user{n}", "guess", addr="203.0.113.5", HTTP_X_FORWARDED_FOR=f"192.0.2.{n}")
    # then they are counted at their own address
    assert_refused(login(client, "alice", "alice-pw", addr="203.0.113.5"))


def test_behind_a_trusted_proxy_each_client_is_counted_at_its_own_address(client, people, settings):
    settings.WARDEN_LOGIN_FAILURES_PER_ADDRESS = 8
    settings.WARDEN_TRUSTED_PROXIES = ["10.0.0.0/24"]
    # given an attacker behind the load balancer, forging the leftmost X-Forwarded-For entry
    for n in range(8):
        login(
            client,
            f"user{n}",
            "guess",
            addr="10.0.0.1",
            HTTP_X_FORWARDED_FOR=f"192.0.2.{n}, 203.0.113.5",
        )
    # then the address the proxy saw is locked
    assert_refused(
        login(client, "alice", "alice-pw", addr="10.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.5")
    )
    # and a colleague behind the same proxy is not
    assert_logged_in(
        login(client, "bob", "bob-pw", addr="10.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.20")
    )


def test_the_default_cache_is_shared_between_processes(settings):
    backend = settings.CACHES["default"]["BACKEND"]
    assert "locmem" not in backend and "dummy" not in backend
