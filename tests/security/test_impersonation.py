"""Issue 15, item 8: an operator must not be able to become someone else.

People log in through the directory (or single sign-on) only. A password set on a directory
person's Warden account, by the admin site or any other way, opens nothing; a local account logs
in with a password only when WARDEN_LOCAL_ACCOUNTS names it. Every login, logout, failed login and
change made in the admin site is an event in the audit chain."""

from __future__ import annotations

import json

import pytest
from django.contrib import auth
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from access import audit
from access.models import AuditEvent, Role
from access.services import sync_directory

pytestmark = pytest.mark.django_db
STOLEN = "chosen-by-the-operator-1"


def log_in(client: Client, username: str, password: str):
    return client.post(reverse("login"), {"username": username, "password": password})


def logged_in_as(client: Client) -> str:
    """Who the client's session is now, as the next request would find it ("" for nobody)."""
    user = auth.get_user(client)  # type: ignore[arg-type]
    return str(user.username) if user.is_authenticated else ""


@pytest.fixture
def operator_client(company) -> Client:
    olivia = company.users["olivia"]
    olivia.is_superuser = True  # what a sync makes of a WARDEN_ADMIN_TEAMS member
    olivia.save(update_fields=["is_superuser"])
    client = Client()
    client.force_login(olivia)
    return client


def test_the_admin_site_cannot_set_a_password_on_an_approvers_account(company, operator_client):
    judy = company.users["judy"]

    page = operator_client.get(f"/admin/auth/user/{judy.pk}/password/", follow=True)
    posted = operator_client.post(
        f"/admin/auth/user/{judy.pk}/password/",
        {"password1": STOLEN, "password2": STOLEN, "usable_password": "true"},
        follow=True,
    )

    # At most the account's read-only page: no password form to fill in, and nothing changed.
    for response in (page, posted):
        assert response.status_code in (200, 403, 404)
        assert 'name="password1"' not in response.content.decode()
    judy.refresh_from_db()
    assert not judy.check_password(STOLEN)


def test_a_password_on_a_directory_persons_account_opens_nothing(company):
    judy = company.users["judy"]
    judy.set_password(STOLEN)  # however it got there (a shell, the database, an old admin)
    judy.save()
    client = Client()

    response = log_in(client, "judy", STOLEN)

    assert response.status_code == 200  # the form again, with its error
    assert logged_in_as(client) == ""


def test_the_admin_site_cannot_make_a_local_account_or_an_operator(company, operator_client):
    alice = company.users["alice"]

    added = operator_client.post(
        "/admin/auth/user/add/",
        {"username": "sockpuppet", "password1": STOLEN, "password2": STOLEN},
    )
    promoted = operator_client.post(
        f"/admin/auth/user/{alice.pk}/change/",
        {"username": "alice", "is_staff": "on", "is_superuser": "on", "is_active": "on"},
    )

    assert added.status_code in (403, 404) and promoted.status_code in (403, 404)
    assert not get_user_model().objects.filter(username="sockpuppet").exists()
    alice.refresh_from_db()
    assert not alice.is_staff and not alice.is_superuser


def test_a_local_account_logs_in_only_when_configuration_names_it(company, settings):
    get_user_model().objects.create_user("breakglass", password="a-long-local-password-1")

    settings.WARDEN_LOCAL_ACCOUNTS = []
    refused = Client()
    log_in(refused, "breakglass", "a-long-local-password-1")
    assert logged_in_as(refused) == ""

    settings.WARDEN_LOCAL_ACCOUNTS = ["breakglass"]
    named = Client()
    assert log_in(named, "breakglass", "a-long-local-password-1").status_code == 302
    assert logged_in_as(named) == "breakglass"

    # Taken off the list: the session it had opens nothing any more.
    settings.WARDEN_LOCAL_ACCOUNTS = []
    assert logged_in_as(named) == ""


def test_naming_a_directory_persons_username_does_not_make_it_a_local_account(company, settings):
    judy = company.users["judy"]
    judy.set_password(STOLEN)
    judy.save()
    settings.WARDEN_LOCAL_ACCOUNTS = ["judy"]
    client = Client()

    log_in(client, "judy", STOLEN)

    assert logged_in_as(client) == ""


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("seq"))


def test_logins_logouts_and_failed_logins_are_in_the_audit_chain(directory, settings):
    directory.add_person("alice", password="wonderland")
    directory.add_group("payments", people=["alice"])
    sync_directory()
    client = Client()

    log_in(client, "alice", "not-her-password-42")
    log_in(client, "alice", "wonderland")
    client.post(reverse("logout"))

    (failed,) = events("auth.login_failed")
    assert failed.actor_name == "alice"
    assert "not-her-password-42" not in json.dumps([failed.before, failed.after, failed.reason])
    (login,) = events("auth.login")
    assert login.actor_name == "alice" and "directory" in login.reason
    (logout,) = events("auth.logout")
    assert logout.actor_name == "alice"
    assert audit.verify().ok


def test_a_failed_login_by_a_stranger_names_what_was_typed_and_not_the_password(db):
    client = Client()

    log_in(client, "<script>nobody</script>" + "x" * 400, "s3cret-typed-by-a-stranger")

    (failed,) = events("auth.login_failed")
    assert len(failed.actor_name) <= 150
    assert "s3cret-typed-by-a-stranger" not in json.dumps(
        [failed.actor_name, failed.object_repr, failed.before, failed.after, failed.reason]
    )


def test_a_change_in_the_admin_site_is_in_the_audit_chain(company, operator_client):
    role = Role.objects.get(name="viewer")

    response = operator_client.post(
        f"/admin/access/role/{role.pk}/change/",
        {**_role_form(role), "description": "Reads everything, changes nothing (edited)"},
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    changed = [e for e in events("admin.changed") if e.object_repr == str(role)]
    assert changed and changed[-1].actor_name == "olivia"
    assert "description" in json.dumps(changed[-1].after).lower()


def _role_form(role: Role) -> dict[str, str]:
    """The admin's change form for a role as the browser would post it back unchanged."""
    client_page = {
        "name": role.name,
        "display_name": role.display_name,
        "description": role.description,
        "rank": str(role.rank),
    }
    prefix = "definitions"
    definitions = list(role.definitions.all())
    client_page.update(
        {
            f"{prefix}-TOTAL_FORMS": str(len(definitions)),
            f"{prefix}-INITIAL_FORMS": str(len(definitions)),
            f"{prefix}-MIN_NUM_FORMS": "0",
            f"{prefix}-MAX_NUM_FORMS": "1000",
        }
    )
    for number, definition in enumerate(definitions):
        for field in ("environment", "tier", "cluster_role", "scope"):
            client_page[f"{prefix}-{number}-{field}"] = str(getattr(definition, field) or "")
        client_page[f"{prefix}-{number}-id"] = str(definition.pk)
        client_page[f"{prefix}-{number}-role"] = str(role.pk)
    return client_page
