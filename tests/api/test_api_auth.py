"""Personal API tokens: made once, digested, expiring, revocable, audited; and session + CSRF."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from access.models import ApiToken, AuditEvent
from access.services import tokens

pytestmark = pytest.mark.django_db


def bearer(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def test_a_token_acts_as_its_owner_and_only_its_digest_is_stored(company):
    token, secret = tokens.create_api_token(owner=company.alice, name="laptop")

    me = bearer(secret).get("/api/v1/me/")

    assert me.status_code == 200
    assert me.json()["username"] == "alice"
    stored = ApiToken.objects.get(pk=token.pk)
    # wdn_<key id>_<secret>: the secret part may itself hold "_" (url-safe base64)
    assert secret.removeprefix(tokens.PREFIX).partition("_")[2] not in stored.secret_hash
    assert secret not in str(list(AuditEvent.objects.values_list("after", flat=True)))
    assert stored.last_used_at is not None


def test_no_token_and_a_wrong_token_are_refused_with_401(company):
    _, secret = tokens.create_api_token(owner=company.alice, name="laptop")

    assert APIClient().get("/api/v1/me/").status_code == 401
    assert bearer(secret[:-2] + "xx").get("/api/v1/me/").status_code == 401
    assert bearer("wdn_nope").get("/api/v1/me/").status_code == 401
    assert bearer("not-a-warden-token").get("/api/v1/me/").status_code == 401


def test_an_expired_or_revoked_token_stops_working(company):
    expired, expired_secret = tokens.create_api_token(owner=company.alice, name="old")
    ApiToken.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(1))
    revoked, revoked_secret = tokens.create_api_token(owner=company.alice, name="leaked")
    tokens.revoke_api_token(revoked, actor=company.alice)

    assert bearer(expired_secret).get("/api/v1/me/").status_code == 401
    assert bearer(revoked_secret).get("/api/v1/me/").status_code == 401
    assert AuditEvent.objects.filter(action="api_token.revoked").count() == 1


def test_a_leavers_token_stops_working_when_the_directory_says_they_left(company):
    _, secret = tokens.create_api_token(owner=company.bob, name="ci")
    company.people["bob"].is_active = False
    company.people["bob"].save()

    assert bearer(secret).get("/api/v1/me/").status_code == 401


def test_people_make_list_and_revoke_their_own_tokens_over_the_api(api, company):
    alice = api("alice")

    made = alice.post("/api/v1/tokens/", {"name": "deploy", "days": 7}, format="json")
    assert made.status_code == 201
    secret = made.json()["token"]
    assert bearer(secret).get("/api/v1/me/").json()["username"] == "alice"
    listed = alice.get("/api/v1/tokens/").json()["results"]
    assert {t["name"] for t in listed} == {"tests", "deploy"}
    assert all("token" not in t and "secret_hash" not in t for t in listed)

    assert alice.delete(f"/api/v1/tokens/{made.json()['id']}/").status_code == 204
    assert bearer(secret).get("/api/v1/me/").status_code == 401


def test_nobody_sees_or_revokes_anothers_token_but_an_operator_may(api, company):
    bobs, _ = tokens.create_api_token(owner=company.bob, name="bob-ci")

    assert api("alice").delete(f"/api/v1/tokens/{bobs.pk}/").status_code == 404
    assert bobs.pk not in [t["id"] for t in api("alice").get("/api/v1/tokens/").json()["results"]]
    assert api("olivia").delete(f"/api/v1/tokens/{bobs.pk}/").status_code == 204


def test_a_token_lasts_at_most_a_year_and_needs_a_name(api):
    alice = api("alice")

    assert (
        alice.post("/api/v1/tokens/", {"name": "x", "days": 400}, format="json").status_code == 400
    )
    assert alice.post("/api/v1/tokens/", {"name": " ", "days": 4}, format="json").status_code == 400


def test_the_browser_session_works_but_a_post_without_the_csrf_token_is_refused(client, company):
    client.force_login(company.alice)
    assert client.get("/api/v1/me/").json()["username"] == "alice"

    strict = APIClient(enforce_csrf_checks=True)
    strict.force_login(company.alice)
    refused = strict.post("/api/v1/tokens/", {"name": "x"}, format="json")
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]


def test_create_api_token_prints_the_token_once_and_audits_it(company, capsys):
    call_command("create_api_token", "alice", "--name", "ci", "--days", "30")

    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert printed.startswith("wdn_")
    assert bearer(printed).get("/api/v1/me/").json()["username"] == "alice"
    event = AuditEvent.objects.get(action="api_token.created")
    assert event.after["name"] == "ci" and printed not in str(event.after)


def test_the_api_tokens_page_shows_a_new_token_once_and_revokes(client, company):
    client.force_login(company.alice)

    made = client.post("/tokens/", {"name": "laptop", "days": "30"})
    secret = re.search(r"wdn_[0-9a-f]+_[-\w]{20,}", made.content.decode()).group(0)
    assert bearer(secret).get("/api/v1/me/").json()["username"] == "alice"
    later = client.get("/tokens/").content.decode()
    assert "laptop" in later and secret not in later

    token = ApiToken.objects.get(name="laptop")
    client.post(f"/tokens/{token.pk}/revoke")
    assert bearer(secret).get("/api/v1/me/").status_code == 401
