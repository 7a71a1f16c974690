"""Directory sync against a real Active Directory (a Samba AD DC, tests/fixtures/samba_ad.py)."""

from __future__ import annotations

import uuid

import ldap
import psutil
import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils.html import strip_tags

from access import directory as door
from access import services
from access.choices import SyncStatus
from access.directory import DirectoryConfig
from access.models import Grant, Person, Role, Team
from tests.fixtures.samba_ad import (
    AD_TESTS,
    BULK_GROUPS_DN,
    BULK_MEMBERS,
    BULK_PEOPLE_DN,
    DOMAIN_DN,
    ad_settings,
    admin_connection,
)

pytestmark = AD_TESTS


def members(team_name: str, *, direct: bool | None = None) -> set[str]:
    team = Team.objects.get(name=team_name)
    rows = team.memberships.all()
    if direct is not None:
        rows = rows.filter(is_direct=direct)
    return set(rows.values_list("person__username", flat=True))


def guid_of(server, dn: str) -> str:
    conn = admin_connection(server)
    try:
        [(_dn, attrs)] = conn.search_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", ["objectGUID"])
    finally:
        conn.unbind_s()
    return str(uuid.UUID(bytes_le=attrs["objectGUID"][0]))


class CountingConnection:
    """A real python-ldap connection that notes each base read of a range (observes only)."""

    def __init__(self, conn):
        self.conn = conn
        self.ranges_asked: list[str] = []

    def search_ext_s(self, base, scope, flt, attrs, *args, **kwargs):
        self.ranges_asked += [a for a in attrs if ";range=" in a]
        return self.conn.search_ext_s(base, scope, flt, attrs, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.conn, name)


def test_the_dc_listens_on_its_own_loopback_address_and_nowhere_else(samba_dc):
    sockets = psutil.Process(samba_dc.process.pid).net_connections(kind="inet")

    listening = {(s.laddr.ip, s.laddr.port) for s in sockets if s.status == psutil.CONN_LISTEN}
    assert (samba_dc.address, 636) in listening and (samba_dc.address, 389) in listening
    assert {s.laddr.ip for s in sockets if s.laddr} == {samba_dc.address}
    assert samba_dc.address.startswith("127.")


def test_it_mirrors_people_and_groups_keyed_by_object_guid(seeded_ad):
    # when
    run = services.sync_directory()

    # then: people of both OUs, the disabled one inactive, each keyed by its objectGUID
    assert run.status == SyncStatus.SUCCEEDED, run.error
    people = {p.username: p for p in Person.objects.all()}
    assert set(people) == {"alice", "bob", "carol", "dave", "erin"}
    assert not people["erin"].is_active and people["alice"].is_active
    alice_dn = f"CN=alice,OU=Engineering,OU=Staff,OU=Warden,{DOMAIN_DN}"
    assert people["alice"].external_id == guid_of(seeded_ad, alice_dn)
    assert people["alice"].dn == door.normalize_dn(alice_dn)
    assert people["carol"].dn.startswith("cn=carol,ou=operations,")
    assert people["alice"].email == "alice@example.com"
    assert Team.objects.get(name="platform").external_id


def test_nested_groups_three_levels_deep_give_members_of_every_level(seeded_ad):
    services.sync_directory()

    # everyone > engineering > platform > alice; everyone > operations > carol, dave
    assert members("platform", direct=True) == {"alice"}
    assert members("engineering", direct=True) == {"bob"}
    assert members("engineering", direct=False) == {"alice"}
    assert {"alice", "bob", "carol", "dave"} <= members("everyone", direct=False)
    assert members("everyone", direct=True) == set()


def test_a_no_change_sync_writes_nothing(seeded_ad):
    services.sync_directory()
    run = services.sync_directory()
    assert run.status == SyncStatus.SUCCEEDED and not run.changed_anything


def test_a_person_whose_primary_group_is_domain_users_is_its_member(seeded_ad, settings):
    # given: groups read from CN=Users, where AD keeps Domain Users; nobody is in its `member`
    settings.WARDEN_DIRECTORY = ad_settings(seeded_ad, GROUP_BASE_DN=f"CN=Users,{DOMAIN_DN}")

    run = services.sync_directory()

    assert run.status == SyncStatus.SUCCEEDED, run.error
    assert {"alice", "bob", "carol", "dave"} <= members("Domain Users", direct=True)


def test_the_door_always_asks_for_member_by_range_of_the_configured_size():
    assert "member;range=0-1499" in DirectoryConfig(uri="x", schema="ad").group_attributes()
    small = DirectoryConfig(uri="x", schema="ad", member_range_size=700)
    assert "member;range=0-699" in small.group_attributes()
    assert "member" in DirectoryConfig(uri="x", schema="openldap").group_attributes()


def test_a_5000_member_group_is_read_in_full_range_after_range(seeded_ad, settings):
    # given: ranges of 700, so the 5,000 members take eight reads
    settings.WARDEN_DIRECTORY = ad_settings(
        seeded_ad, GROUP_BASE_DN=BULK_GROUPS_DN, MEMBER_RANGE_SIZE=700
    )
    config = DirectoryConfig.from_settings()
    conn, follow_up = door.connect(config), CountingConnection(door.connect(config))

    # when
    pages = door.read_groups(conn, config, door.PageStats(), follow_up_conn=follow_up)
    [group] = [g for page in pages for g in page]

    # then: every member, none twice, and every range asked for in turn
    expected = {door.normalize_dn(f"CN=bulk{i:05d},{BULK_PEOPLE_DN}") for i in range(BULK_MEMBERS)}
    assert len(group.member_dns) == BULK_MEMBERS and set(group.member_dns) == expected
    assert follow_up.ranges_asked == [f"member;range={n}-{n + 699}" for n in range(700, 5000, 700)]


def test_a_sync_of_the_5000_member_group_gives_the_team_every_member(seeded_ad, settings):
    settings.WARDEN_DIRECTORY = ad_settings(
        seeded_ad,
        USER_BASE_DN=BULK_PEOPLE_DN,
        GROUP_BASE_DN=BULK_GROUPS_DN,
        PAGE_SIZE=1000,
        MEMBER_RANGE_SIZE=1500,
    )

    run = services.sync_directory()

    assert run.status == SyncStatus.SUCCEEDED, run.error
    assert Team.objects.get(name="big").memberships.count() == BULK_MEMBERS


def test_a_renamed_and_moved_person_stays_the_same_person_with_the_same_grants(samba_ad, settings):
    # given: alice, with a grant of her own and one through her team
    alice, payments = samba_ad.account("alice"), samba_ad.account("payments")
    samba_ad.add_person(alice)
    samba_ad.add_group(payments, people=[alice])
    services.sync_directory()
    person = Person.objects.get(username=alice)
    viewer = Role.objects.get(name="viewer")
    own = services.grant_access(role=viewer, person=person, namespaces=["default"])
    team_grant = services.grant_access(
        role=viewer, team=Team.objects.get(name=payments), namespaces=["default"]
    )

    # when: her account is renamed and moved to another OU
    other_ou = samba_ad.add_ou(f"OU=Elsewhere,{samba_ad.base_dn}")
    liddell = samba_ad.account("liddell")
    samba_ad.modify(samba_ad.person_dn(alice), sAMAccountName=liddell.encode())
    samba_ad.conn.rename_s(samba_ad.person_dn(alice), "CN=Alice Liddell", other_ou)
    settings.WARDEN_DIRECTORY = samba_ad.settings(USER_BASE_DN=samba_ad.base_dn)
    run = services.sync_directory()

    # then: the same Person, renamed, with her grants and her team
    assert run.status == SyncStatus.SUCCEEDED, run.error
    renamed = Person.objects.get(pk=person.pk)
    assert renamed.username == liddell and renamed.is_active
    assert renamed.dn == door.normalize_dn(f"CN=Alice Liddell,{other_ou}")
    assert Person.objects.count() == 1
    assert Grant.objects.get(pk=own.pk).person_id == person.pk
    assert members(payments) == {liddell}
    assert Grant.objects.get(pk=team_grant.pk).team.name == payments


def test_a_renamed_group_keeps_its_team_and_grants(samba_ad):
    alice, payments, billing = (samba_ad.account(n) for n in ("alice", "payments", "billing"))
    samba_ad.add_person(alice)
    samba_ad.add_group(payments, people=[alice])
    services.sync_directory()
    team = Team.objects.get(name=payments)
    grant = services.grant_access(
        role=Role.objects.get(name="viewer"), team=team, namespaces=["default"]
    )

    samba_ad.conn.rename_s(samba_ad.group_dn(payments), f"CN={billing}")
    samba_ad.modify(samba_ad.group_dn(billing), sAMAccountName=billing.encode())
    run = services.sync_directory()

    assert run.status == SyncStatus.SUCCEEDED, run.error
    renamed = Team.objects.get(pk=team.pk)
    assert renamed.name == billing and renamed.is_active
    assert Grant.objects.get(pk=grant.pk).team_id == team.pk
    assert members(billing) == {alice}


def test_a_person_disabled_in_ad_loses_access_on_every_cluster_at_the_next_sync(
    samba_ad, make_cluster, rbac, django_capture_on_commit_callbacks
):
    # given: alice and bob in payments, viewers on two clusters that bind users
    alice, bob, payments = (samba_ad.account(n) for n in ("alice", "bob", "payments"))
    samba_ad.add_person(alice)
    samba_ad.add_person(bob)
    samba_ad.add_group(payments, people=[alice, bob])
    services.sync_directory()
    sims = [make_cluster(bind_groups=False)[1] for _ in range(2)]
    with django_capture_on_commit_callbacks(execute=True):
        services.grant_access(
            role=Role.objects.get(name="viewer"),
            team=Team.objects.get(name=payments),
            namespaces=["default"],
        )
    assert all(rbac.subjects(s, "warden-viewer", "default") == [alice, bob] for s in sims)

    # when: bob's account is disabled in AD and the directory syncs
    samba_ad.disable(bob)
    with django_capture_on_commit_callbacks(execute=True):
        run = services.sync_directory()

    # then: bob is inactive and bound on no cluster
    assert run.status == SyncStatus.SUCCEEDED and run.people_deactivated == 1
    assert not Person.objects.get(username=bob).is_active
    assert all(rbac.subjects(s, "warden-viewer", "default") == [alice] for s in sims)


@pytest.mark.parametrize(
    ("misconfiguration", "says"),
    [
        ({"USER_BASE_DN": f"OU=Nowhere,{DOMAIN_DN}"}, "does not exist"),
        ({"BIND_PASSWORD": "not-the-service-secret"}, "LDAP_BIND_PASSWORD"),
        ({"CA_CERT_FILE": "other-ca"}, "certificate"),
    ],
    ids=["wrong base DN", "wrong bind password", "unverifiable certificate"],
)
def test_bad_configuration_is_reported_on_the_health_page_and_revokes_nobody(
    seeded_ad, settings, client, tmp_path, misconfiguration, says
):
    # given: a good sync, then a setting gone wrong
    services.sync_directory()
    active = set(Person.objects.filter(is_active=True).values_list("username", flat=True))
    if misconfiguration.get("CA_CERT_FILE") == "other-ca":
        from kubesim.server import make_tls_files

        other_ca, _cert, _key = make_tls_files(tmp_path / "other")
        (tmp_path / "other-ca.pem").write_bytes(other_ca)
        misconfiguration = {"CA_CERT_FILE": str(tmp_path / "other-ca.pem")}
    settings.WARDEN_DIRECTORY = ad_settings(seeded_ad, **misconfiguration)

    # when
    run = services.sync_directory()

    # then: the run failed saying what to fix, nobody lost anything, the health page says so
    assert run.status == SyncStatus.FAILED and says in run.error
    assert set(Person.objects.filter(is_active=True).values_list("username", flat=True)) == active
    operator = get_user_model().objects.create_user("olivia", is_staff=True)
    client.force_login(operator)
    page = strip_tags(client.get(reverse("health")).content.decode())
    assert says in page
    assert "not-the-service-secret" not in page
