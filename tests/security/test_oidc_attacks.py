"""Single sign-on cannot make an account for someone the directory refuses, nor be replayed or
forged, and a provider's group claim grants nothing."""

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


def _signed_in(client: Any) -> bool:
    return bool(client.get("/").status_code == 200)


def test_someone_the_directory_does_not_know_is_refused_and_gets_no_account(
    client: Any, sso: DexServer, directory: Any, settings: Any
) -> None:
    # given: the provider knows outsider, but Warden matches by a stable id that no directory
    # person has
    directory.add_person("outsider", password="pw")
    settings.OIDC_MATCH = "id"

    path, query = through_dex(client, sso, "outsider", "pw")
    answer = client.get(path, query)

    assert answer.status_code == 403
    assert "no person matching" in answer.content.decode()
    assert not get_user_model().objects.filter(username="outsider").exists()
    assert not _signed_in(client)


def test_a_person_disabled_in_the_directory_is_refused(
    client: Any, sso: DexServer, directory: Any
) -> None:
    # given: mallory signs in at the provider, and is disabled before she comes back
    directory.add_person("mallory", password="pw")
    path, query = through_dex(client, sso, "mallory", "pw")
    directory.disable("mallory")

    answer = client.get(path, query)

    assert answer.status_code == 403
    assert "disabled" in answer.content.decode()
    assert not get_user_model().objects.filter(username="mallory").exists()
    assert not _signed_in(client)


def test_a_person_warden_holds_as_inactive_is_refused(
    client: Any, sso: DexServer, directory: Any
) -> None:
    directory.add_person("leaver", password="pw")
    Person.objects.create(dn=directory.person_dn("leaver"), username="leaver", is_active=False)

    path, query = through_dex(client, sso, "leaver", "pw")
    answer = client.get(path, query)

    assert answer.status_code == 403
    assert not _signed_in(client)


def test_a_tampered_state_signs_nobody_in(client: Any, sso: DexServer, directory: Any) -> None:
    directory.add_person("erin", password="pw")
    path, query = through_dex(client, sso, "erin", "pw")

    answer = client.get(path, {**query, "state": "forged-" + query["state"]})

    assert answer.status_code == 403
    assert not _signed_in(client)


def test_a_code_from_another_browser_is_refused(
    client: Any, sso: DexServer, directory: Any
) -> None:
    # given: the attacker's own browser session, and a code issued to erin's browser
    directory.add_person("erin", password="pw")
    path, query = through_dex(client, sso, "erin", "pw")
    attacker = type(client)()

    answer = attacker.get(path, query)

    assert answer.status_code == 403
    assert attacker.get("/").status_code == 302


def test_a_replayed_callback_is_refused(client: Any, sso: DexServer, directory: Any) -> None:
    directory.add_person("erin", password="pw")
    path, query = through_dex(client, sso, "erin", "pw")
    client.get(path, query)
    client.post("/logout/")

    again = client.get(path, query)

    assert again.status_code == 403
    assert not _signed_in(client)


def test_a_nonce_other_than_the_sessions_is_refused(
    client: Any, sso: DexServer, directory: Any
) -> None:
    # given: the session's nonce for this state is swapped after the provider signed the token
    directory.add_person("erin", password="pw")
    path, query = through_dex(client, sso, "erin", "pw")
    session = client.session
    session["oidc_states"][query["state"]]["nonce"] = "not-the-one-in-the-token"
    session.save()

    answer = client.get(path, query)

    assert answer.status_code == 403
    assert not _signed_in(client)


def test_a_group_claim_naming_warden_admins_grants_nothing(
    client: Any, sso: DexServer, directory: Any, settings: Any
) -> None:
    # given: the provider puts erin in warden-admins (a group in the directory she is in, but
    # Warden's admin teams say otherwise), and erin is not in Warden's admin team
    settings.WARDEN_DIRECTORY = {**settings.WARDEN_DIRECTORY, "ADMIN_TEAMS": ["operators"]}
    directory.add_person("erin", password="pw")
    directory.add_group("warden-admins", people=["erin"])
    directory.add_group("operators", people=[])

    path, query = through_dex(client, sso, "erin", "pw")
    client.get(path, query)

    user = get_user_model().objects.get(username="erin")
    assert not user.is_staff
    assert not user.is_superuser
    assert client.get("/admin/").status_code in (302, 403)
