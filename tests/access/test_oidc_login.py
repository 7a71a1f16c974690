"""Single sign-on through a real OpenID Connect provider (Dex, LDAP connector on the test slapd).

The provider says who is at the browser; the directory says who that is in Warden.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model

from access.models import Person
from tests.dex.login import configure_warden, through_dex
from tests.dex.server import DexServer

pytestmark = pytest.mark.django_db


@pytest.fixture
def sso(settings: Any, dex: DexServer) -> DexServer:
    configure_warden(settings, dex)
    return dex


def test_a_directory_person_signs_in_through_the_provider_and_is_linked(
    client: Any, sso: DexServer, directory: Any
) -> None:
    # given
    directory.add_person("erin", password="erin-pw", email="erin@example.com")

    # when
    path, query = through_dex(client, sso, "erin", "erin-pw")
    answer = client.get(path, query)

    # then
    assert answer.status_code == 302
    assert answer["Location"] == "/"
    home = client.get("/")
    assert home.status_code == 200
    person = Person.objects.get(username="erin")
    assert person.user is not None
    assert person.user.username == "erin"
    assert home.wsgi_request.user == person.user


def test_the_login_page_offers_single_sign_on_beside_the_directory_form(
    client: Any, sso: DexServer, settings: Any
) -> None:
    settings.OIDC_PROVIDER_NAME = "Dex"

    page = client.get("/login/").content.decode()

    assert "Sign in with Dex" in page
    assert 'name="password"' in page


def test_directory_login_can_be_turned_off(client: Any, sso: DexServer, settings: Any) -> None:
    settings.DIRECTORY_LOGIN = False

    page = client.get("/login/").content.decode()

    assert "/oidc/authenticate/" in page
    assert 'name="password"' not in page


def test_the_sign_in_request_uses_pkce_and_a_nonce(client: Any, sso: DexServer) -> None:
    to_dex = client.get("/oidc/authenticate/")

    location = to_dex["Location"]
    assert location.startswith(sso.issuer + "/auth?")
    assert "code_challenge_method=S256" in location
    assert "code_challenge=" in location
    assert "nonce=" in location


def test_a_person_can_be_matched_by_email(
    client: Any, sso: DexServer, directory: Any, settings: Any
) -> None:
    # given: the sync knows erin; the provider's username for her would differ
    directory.add_person("erin", password="erin-pw", email="Erin@Example.com")
    Person.objects.create(dn=directory.person_dn("erin"), username="erin", email="erin@example.com")
    settings.OIDC_MATCH = "email"

    path, query = through_dex(client, sso, "erin", "erin-pw")
    answer = client.get(path, query)

    assert answer.status_code == 302
    assert Person.objects.get(username="erin").user is not None


def test_single_sign_on_pages_do_not_exist_when_it_is_off(client: Any, settings: Any) -> None:
    settings.OIDC_ENABLED = False

    assert client.get("/oidc/authenticate/").status_code == 404
    assert client.get("/oidc/callback/?code=x&state=y").status_code == 404


def test_logout_ends_the_warden_session(client: Any, sso: DexServer, directory: Any) -> None:
    directory.add_person("erin", password="erin-pw")
    path, query = through_dex(client, sso, "erin", "erin-pw")
    client.get(path, query)

    answer = client.post("/logout/")

    assert answer.status_code == 302
    assert client.get("/").status_code == 302  # back to the login page
    assert get_user_model().objects.filter(username="erin").exists()
