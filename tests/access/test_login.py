"""Logging in with a directory password, against a real slapd, through the real login form."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.urls import reverse
from django.utils.html import strip_tags

from access import services
from access.models import Person

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_throttle():
    cache.clear()


def login(client, username, password):
    return client.post(reverse("login"), {"username": username, "password": password})


def test_a_person_logs_in_with_the_directory_password_and_is_linked(client, directory):
    directory.add_person("alice", password="wonderland", display_name="Alice Liddell")
    directory.add_group("payments", people=["alice"])
    services.sync_directory()

    response = login(client, "alice", "wonderland")

    assert response.status_code == 302
    user = get_user_model().objects.get(username="alice")
    assert Person.objects.get(username="alice").user == user
    home = client.get(reverse("home"))
    assert "Alice Liddell" in home.content.decode()
    assert "payments" in home.content.decode()


def test_a_first_login_before_any_sync_creates_the_person(client, directory):
    directory.add_person("bob", password="builder")

    assert login(client, "bob", "builder").status_code == 302
    assert Person.objects.get(username="bob").is_active


def test_a_wrong_password_is_refused(client, directory):
    directory.add_person("alice", password="wonderland")

    response = login(client, "alice", "looking-glass")

    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_an_empty_password_is_refused_before_any_bind(client, directory):
    directory.add_person("alice", password="wonderland")
    response = client.post(reverse("login"), {"username": "alice", "password": ""})
    assert "_auth_user_id" not in client.session
    assert response.status_code == 200


def test_a_locked_openldap_account_cannot_log_in(client, directory):
    directory.add_person("mallory", password="secret", disabled=True)
    response = login(client, "mallory", "secret")
    assert "_auth_user_id" not in client.session
    assert "disabled in the company directory cannot log in" in response.content.decode()


def test_a_locked_account_and_an_unknown_name_get_the_same_answer(client, directory):
    # the page tells nobody which usernames exist
    directory.add_person("mallory", password="secret", disabled=True)

    locked = login(client, "mallory", "secret").content.decode()
    unknown = login(client, "nobody-here", "secret").content.decode()

    def answer(page):
        return page[page.index('role="alert"') :].split("</")[0]

    assert answer(locked) == answer(unknown)


def test_a_disabled_ad_account_cannot_log_in(client, ad_directory):
    # slapd does not know AD's disabled bit, so the bind succeeds: Warden must refuse it
    ad_directory.add_person("mallory", password="secret", disabled=True)

    response = login(client, "mallory", "secret")

    assert "_auth_user_id" not in client.session
    assert "disabled in the company directory" in response.content.decode()


def test_an_ad_account_logs_in_with_its_sam_account_name(client, ad_directory):
    ad_directory.add_person("alice", password="wonderland")
    assert login(client, "alice", "wonderland").status_code == 302


def test_a_person_warden_holds_as_inactive_cannot_log_in(client, directory):
    directory.add_person("alice", password="wonderland")
    services.sync_directory()
    Person.objects.filter(username="alice").update(is_active=False)

    response = login(client, "alice", "wonderland")

    assert "_auth_user_id" not in client.session
    assert "inactive" in response.content.decode()


def test_when_the_directory_is_down_the_page_says_so_without_secrets(client, directory, settings):
    settings.WARDEN_DIRECTORY = directory.settings(URI="ldap://127.0.0.1:9")

    response = login(client, "alice", "wonderland")

    page = response.content.decode()
    assert response.status_code == 200
    assert "directory is not answering" in page
    assert "service-secret" not in page and "Traceback" not in page


@pytest.mark.parametrize(
    "username", ["*", "al*", "alice)(uid=*", "alice\\", "(uid=alice)", "alice\x00"]
)
def test_filter_characters_in_a_username_match_nobody_else(client, directory, username):
    directory.add_person("alice", password="wonderland")

    response = login(client, username, "wonderland")

    assert response.status_code == 200
    assert "_auth_user_id" not in client.session


def test_repeated_failures_are_throttled(client, directory):
    directory.add_person("alice", password="wonderland")
    for _ in range(5):
        login(client, "alice", "nope")

    response = login(client, "alice", "wonderland")

    assert "Too many failed attempts" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_members_of_the_admin_team_can_open_the_admin_site_and_others_cannot(
    client, directory, settings
):
    directory.add_person("olivia", password="operator-pw")
    directory.add_person("dev", password="dev-pw")
    directory.add_group("warden-admins", people=["olivia"])
    settings.WARDEN_DIRECTORY = directory.settings(ADMIN_TEAMS=["warden-admins"])
    services.sync_directory()

    login(client, "dev", "dev-pw")
    assert client.get("/admin/").status_code == 302  # sent to the admin login
    client.post(reverse("logout"))

    login(client, "olivia", "operator-pw")
    assert client.get("/admin/").status_code == 200


def test_logout_needs_a_post(client, directory):
    directory.add_person("alice", password="wonderland")
    login(client, "alice", "wonderland")
    assert client.get(reverse("logout")).status_code == 405
    client.post(reverse("logout"))
    assert "_auth_user_id" not in client.session


def test_pages_need_a_login(client):
    response = client.get(reverse("home"))
    assert response.status_code == 302 and reverse("login") in response["Location"]


def test_direct_bind_with_a_dn_template_logs_in(client, directory, settings):
    directory.add_person("alice", password="wonderland")
    settings.WARDEN_DIRECTORY = directory.settings(
        USER_DN_TEMPLATE=f"uid=%(user)s,{directory.people_dn}"
    )

    assert login(client, "alice", "wonderland").status_code == 302
    assert Person.objects.get(username="alice").user is not None
    client.post(reverse("logout"))
    login(client, "alice", "wrong")
    assert "_auth_user_id" not in client.session


@pytest.fixture(scope="module")
def tls_slapd(tmp_path_factory):
    from access.localslapd import LocalSlapd, base_ldif
    from tests.fixtures.slapd import SERVICE_DN, SERVICE_PASSWORD, SUFFIX

    server = LocalSlapd(tmp_path_factory.mktemp("tls-slapd"), suffix=SUFFIX, tls=True)
    server.configure()
    server.load(base_ldif(SUFFIX, SERVICE_DN, SERVICE_PASSWORD))
    server.start()
    yield server
    server.destroy()


@pytest.fixture
def tls_directory(tls_slapd, settings):
    from tests.fixtures.slapd import make_subtree

    tree = make_subtree(tls_slapd, "openldap")
    tree.add_person("alice", password="wonderland")
    yield tree
    tree.close()


def test_start_tls_with_the_directory_ca_logs_in(client, tls_directory, settings):
    settings.WARDEN_DIRECTORY = tls_directory.settings(
        START_TLS=True, CA_CERT_FILE=str(tls_directory.server.ca_path)
    )
    assert login(client, "alice", "wonderland").status_code == 302
    assert services.sync_directory().status == "succeeded"


def test_ldaps_with_the_directory_ca_logs_in(client, tls_directory, settings):
    settings.WARDEN_DIRECTORY = tls_directory.settings(
        URI=tls_directory.server.ldaps_uri, CA_CERT_FILE=str(tls_directory.server.ca_path)
    )
    assert login(client, "alice", "wonderland").status_code == 302


def test_start_tls_with_an_unknown_ca_is_refused_and_says_why(
    client, tls_directory, settings, tmp_path
):
    from kubesim.server import make_tls_files

    other_ca, _cert, _key = make_tls_files(tmp_path / "other")
    (tmp_path / "other-ca.pem").write_bytes(other_ca)
    settings.WARDEN_DIRECTORY = tls_directory.settings(
        START_TLS=True, CA_CERT_FILE=str(tmp_path / "other-ca.pem")
    )

    response = login(client, "alice", "wonderland")

    assert "_auth_user_id" not in client.session
    assert "directory is not answering" in response.content.decode()
    run = services.sync_directory()
    assert run.status == "failed" and "TLS" in run.error


def test_a_refused_account_gets_no_django_account(client, ad_directory):
    ad_directory.add_person("mallory", password="secret", disabled=True)

    login(client, "mallory", "secret")

    assert not get_user_model().objects.filter(username__iexact="mallory").exists()


def test_the_account_is_named_as_the_directory_names_the_person(client, directory):
    directory.add_person("alice", password="wonderland")
    assert login(client, "alice", "wonderland").status_code == 302
    client.post(reverse("logout"))

    assert login(client, " ALICE ", "wonderland").status_code == 302

    assert list(get_user_model().objects.values_list("username", flat=True)) == ["alice"]
    assert Person.objects.get(username="alice").user.username == "alice"


@pytest.mark.parametrize(
    "misconfiguration",
    [{"BIND_PASSWORD": "not-the-service-secret"}, {"USER_BASE_DN": "ou=nowhere,dc=warden,dc=test"}],
    ids=["wrong service password", "missing user base DN"],
)
def test_a_misconfigured_directory_is_reported_as_not_answering(
    client, directory, settings, misconfiguration
):
    directory.add_person("alice", password="wonderland")
    settings.WARDEN_DIRECTORY = directory.settings(**misconfiguration)

    response = login(client, "alice", "wonderland")

    page = response.content.decode()
    assert response.status_code == 200
    assert "directory is not answering" in page
    assert "not-the-service-secret" not in page and "service-secret" not in page


def test_without_a_directory_only_local_accounts_log_in(client, settings):
    settings.WARDEN_DIRECTORY = {**settings.WARDEN_DIRECTORY, "URI": ""}
    settings.WARDEN_LOCAL_ACCOUNTS = ["breakglass"]
    get_user_model().objects.create_user("breakglass", password="a-long-local-password")

    refused = login(client, "alice", "wonderland")
    assert "directory login is not set up" in refused.content.decode()

    assert login(client, "breakglass", "a-long-local-password").status_code == 302


def test_direct_bind_without_a_service_account_reads_the_persons_own_entry(
    client, directory, settings
):
    directory.add_person("alice", password="wonderland", display_name="Alice Liddell")
    settings.WARDEN_DIRECTORY = directory.settings(
        USER_DN_TEMPLATE=f"uid=%(user)s,{directory.people_dn}", BIND_DN="", BIND_PASSWORD=""
    )

    assert login(client, "alice", "wonderland").status_code == 302
    assert Person.objects.get(username="alice").display_name == "Alice Liddell"


def test_a_successful_login_forgets_earlier_failures(client, directory):
    directory.add_person("alice", password="wonderland")
    for _ in range(4):
        login(client, "alice", "nope")
    login(client, "alice", "wonderland")
    client.post(reverse("logout"))

    for _ in range(4):
        login(client, "alice", "nope")

    assert login(client, "alice", "wonderland").status_code == 302


def test_the_admin_site_logs_in_through_the_directory_login(client, directory, settings):
    directory.add_person("olivia", password="operator-pw")
    directory.add_person("dev", password="dev-pw")
    directory.add_group("warden-admins", people=["olivia"])
    settings.WARDEN_DIRECTORY = directory.settings(ADMIN_TEAMS=["warden-admins"])
    services.sync_directory()

    # given nobody logged in, the admin sends them to Warden's login page
    response = client.get("/admin/", follow=True)
    assert response.redirect_chain[-1][0].startswith(reverse("login") + "?next=")

    # a developer who is logged in is told the admin site is for operators
    login(client, "dev", "dev-pw")
    response = client.get("/admin/", follow=True)
    assert response.status_code == 403
    assert "Only Warden operators" in response.content.decode()
    client.post(reverse("logout"))

    # an operator lands on the admin site, which shows the directory read-only
    client.post(
        reverse("login") + "?next=/admin/",
        {"username": "olivia", "password": "operator-pw", "next": "/admin/"},
    )
    assert client.get("/admin/").status_code == 200
    people = client.get("/admin/access/person/").content.decode()
    assert "olivia" in people and "Add person" not in people
    assert client.get("/admin/access/membership/").status_code == 200
    assert client.get("/admin/access/directorysync/").status_code == 200


def test_the_home_page_names_the_team_a_nested_membership_comes_through(client, directory):
    directory.add_person("erin", password="erin-pw")
    directory.add_group("sre", people=["erin"])
    directory.add_group("platform", groups=["sre"])
    directory.add_group("engineering", groups=["platform"])
    services.sync_directory()
    login(client, "erin", "erin-pw")

    html = client.get(reverse("home")).content.decode()
    cells = html.replace("</td>", "</td> ")
    rows = [" ".join(strip_tags(row).split()) for row in cells.split("<tr>")]

    assert any(row.startswith("sre direct") for row in rows)
    assert any(row.startswith("platform through a nested group (sre)") for row in rows)
    assert any(row.startswith("engineering through a nested group (platform)") for row in rows)


def test_a_percent_sign_in_the_configured_filter_is_taken_literally(client, directory, settings):
    directory.add_person("alice", password="wonderland")
    settings.WARDEN_DIRECTORY = directory.settings(
        USER_FILTER="(&(objectClass=inetOrgPerson)(!(description=100%)))"
    )

    assert login(client, "alice", "wonderland").status_code == 302
