"""Dex, built from its Go module, signs in the people of the test directory over OIDC."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
import requests

from tests.dex.login import LoginRefused, cli_tokens, sign_in
from tests.dex.server import WEB_CLIENT_ID, AdConnector, DexServer
from tests.fixtures.samba_ad import PASSWORD as AD_PASSWORD
from tests.fixtures.samba_ad import SERVICE_DN as AD_SERVICE_DN
from tests.fixtures.samba_ad import SERVICE_PASSWORD as AD_SERVICE_PASSWORD
from tests.fixtures.slapd import TestDirectory as Directory

REDIRECT = "http://testserver/oidc/callback/"


def _claims(id_token: str) -> dict[str, object]:
    payload = id_token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def _authorize_url(dex: DexServer, state: str, nonce: str, verifier: str) -> str:
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    query = {
        "client_id": WEB_CLIENT_ID,
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": "openid email profile groups",
        "state": state,
        "nonce": nonce,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    return f"{dex.issuer}/auth?{urlencode(query)}"


def test_it_publishes_a_discovery_document_with_pkce(dex: DexServer) -> None:
    found = dex.discovery()

    assert found["issuer"] == dex.issuer
    assert "S256" in found["code_challenge_methods_supported"]  # type: ignore[operator]
    assert str(found["jwks_uri"]).startswith(dex.issuer)


def test_a_directory_person_signs_in_and_gets_an_id_token_naming_them(
    dex: DexServer, directory: Directory
) -> None:
    # given
    directory.add_person("erin", password="erin-pw", email="erin@example.com")
    directory.add_group("team-a", people=["erin"])
    state, nonce, verifier = secrets.token_urlsafe(16), secrets.token_urlsafe(16), "v" * 64

    # when
    with requests.Session() as session:
        back = sign_in(
            session,
            _authorize_url(dex, state, nonce, verifier),
            "erin",
            "erin-pw",
            stop_at=REDIRECT,
            verify=str(dex.ca_path),
        )
        query = parse_qs(urlparse(back).query)
        tokens = session.post(
            f"{dex.issuer}/token",
            data={
                "grant_type": "authorization_code",
                "code": query["code"][0],
                "redirect_uri": REDIRECT,
                "code_verifier": verifier,
            },
            auth=(WEB_CLIENT_ID, dex.web_client_secret),
            verify=str(dex.ca_path),
            timeout=10,
        )

    # then
    assert query["state"] == [state]
    assert tokens.status_code == 200, tokens.text
    claims = _claims(tokens.json()["id_token"])
    assert claims["iss"] == dex.issuer
    assert claims["aud"] == WEB_CLIENT_ID
    assert claims["nonce"] == nonce
    assert claims["email"] == "erin@example.com"
    assert claims["preferred_username"] == "erin"
    assert claims["groups"] == ["team-a"]


def test_it_refuses_a_wrong_password(dex: DexServer, directory: Directory) -> None:
    directory.add_person("mallory", password="right")

    with requests.Session() as session, pytest.raises(LoginRefused):
        sign_in(
            session,
            _authorize_url(dex, "s", "n", "v" * 64),
            "mallory",
            "wrong",
            stop_at=REDIRECT,
            verify=str(dex.ca_path),
        )


def test_a_code_is_refused_without_its_pkce_verifier(dex: DexServer, directory: Directory) -> None:
    directory.add_person("erin", password="erin-pw")

    with requests.Session() as session:
        back = sign_in(
            session,
            _authorize_url(dex, "s", "n", "right-verifier-" + "x" * 50),
            "erin",
            "erin-pw",
            stop_at=REDIRECT,
            verify=str(dex.ca_path),
        )
        tokens = session.post(
            f"{dex.issuer}/token",
            data={
                "grant_type": "authorization_code",
                "code": parse_qs(urlparse(back).query)["code"][0],
                "redirect_uri": REDIRECT,
                "code_verifier": "wrong-verifier-" + "y" * 50,
            },
            auth=(WEB_CLIENT_ID, dex.web_client_secret),
            verify=str(dex.ca_path),
            timeout=10,
        )

    assert tokens.status_code in (400, 401)


def test_a_person_of_the_active_directory_domain_signs_in_through_dex(
    dex_bin: Path, samba_ad: Any, tmp_path: Path
) -> None:
    # given: erin in a team of the test's own OU of the Samba AD domain, and a Dex on it
    erin, team = samba_ad.account("erin"), samba_ad.account("team-a")
    samba_ad.add_person(erin, password=AD_PASSWORD)
    samba_ad.add_person(samba_ad.account("gone"), password=AD_PASSWORD, disabled=True)
    samba_ad.add_group(team, people=[erin])
    connector = AdConnector(
        host=samba_ad.server.ldaps_uri.removeprefix("ldaps://") + ":636",
        ca_path=str(samba_ad.server.ca_path),
        bind_dn=AD_SERVICE_DN,
        bind_password=AD_SERVICE_PASSWORD,
        people_dn=samba_ad.people_dn,
        groups_dn=samba_ad.groups_dn,
    )
    server = DexServer(dex_bin, tmp_path, connector, redirect_uris=[REDIRECT]).start()
    try:
        # when she signs in, then her ID token names her and her team from the directory
        claims = _claims(cli_tokens(server, erin, AD_PASSWORD)["id_token"])
        assert claims["preferred_username"] == erin
        assert team in claims["groups"]  # type: ignore[operator]
        # and a disabled account is refused
        with pytest.raises(LoginRefused):
            cli_tokens(server, samba_ad.account("gone"), AD_PASSWORD)
    finally:
        server.stop()
