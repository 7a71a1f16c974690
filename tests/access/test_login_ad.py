"""Logging in with Active Directory credentials (a real Samba AD DC), through the login form."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.urls import reverse

from access.models import Person
from tests.fixtures.samba_ad import AD_TESTS, PASSWORD, REALM, ad_settings

pytestmark = AD_TESTS


@pytest.fixture(autouse=True)
def _fresh_throttle():
    cache.clear()


def login(client, username, password):
    return client.post(reverse("login"), {"username": username, "password": password})


def logged_in_as(client) -> str | None:
    user_id = client.session.get("_auth_user_id")
    return get_user_model().objects.get(pk=user_id).username if user_id else None


def test_a_person_logs_in_with_the_sam_account_name_and_is_linked(client, seeded_ad):
    assert login(client, "alice", PASSWORD).status_code == 302

    assert logged_in_as(client) == "alice"
    assert Person.objects.get(username="alice").user.username == "alice"


@pytest.mark.parametrize("typed", [f"alice@{REALM}", f"alice@{REALM.lower()}"])
def test_user_at_realm_logs_in_as_the_same_account(client, seeded_ad, typed):
    login(client, "alice", PASSWORD)
    client.post(reverse("logout"))

    assert login(client, typed, PASSWORD).status_code == 302

    assert logged_in_as(client) == "alice"
    assert list(get_user_model().objects.values_list("username", flat=True)) == ["alice"]


def test_a_wrong_password_is_refused(client, seeded_ad):
    login(client, "alice", "not-her-password")
    assert logged_in_as(client) is None


def test_a_disabled_account_cannot_log_in(client, seeded_ad):
    login(client, "erin", PASSWORD)

    assert logged_in_as(client) is None
    assert not get_user_model().objects.filter(username="erin").exists()


def test_a_password_changed_in_ad_takes_effect_at_once(client, samba_ad):
    # given: bob logged in once with his first password
    bob = samba_ad.account("bob")
    samba_ad.add_person(bob, password="First-Passw0rd!")
    assert login(client, bob, "First-Passw0rd!").status_code == 302
    client.post(reverse("logout"))

    # when: the password is changed in AD
    samba_ad.set_password(bob, "Second-Passw0rd!")

    # then: the old one is refused and the new one works, with no sync in between
    login(client, bob, "First-Passw0rd!")
    assert logged_in_as(client) is None
    cache.clear()
    assert login(client, bob, "Second-Passw0rd!").status_code == 302
    assert logged_in_as(client) == bob


def test_start_tls_with_the_dc_certificate_verified_logs_in(client, seeded_ad, settings):
    settings.WARDEN_DIRECTORY = ad_settings(seeded_ad, URI=seeded_ad.uri, START_TLS=True)

    assert login(client, "bob", PASSWORD).status_code == 302
    assert logged_in_as(client) == "bob"
