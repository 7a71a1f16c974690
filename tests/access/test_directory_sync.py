"""Directory sync against a real slapd: OpenLDAP- and AD-shaped entries, nesting, safety."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from access import selectors, services
from access.choices import InactiveReason, SyncStatus
from access.models import DirectorySync, Membership, Person, Team

pytestmark = pytest.mark.django_db


def members(team_name: str) -> set[str]:
    team = Team.objects.get(name=team_name, is_active=True)
    return set(team.members.values_list("username", flat=True))


def direct_members(team_name: str) -> set[str]:
    team = Team.objects.get(name=team_name, is_active=True)
    return set(
        Membership.objects.filter(team=team, is_direct=True).values_list(
            "person__username", flat=True
        )
    )


def test_it_mirrors_openldap_people_and_groups(directory):
    # given
    directory.add_person("alice", email="alice@corp.example", display_name="Alice Liddell")
    directory.add_person("bob")
    directory.add_person("carol")
    directory.add_group("payments", people=["alice", "bob"])
    directory.add_group("unique", people=["carol"], kind="groupOfUniqueNames")
    directory.add_group("posix", people=["alice", "carol"], kind="posixGroup")
    # when
    run = services.sync_directory()
    # then
    assert run.status == SyncStatus.SUCCEEDED, run.error
    alice = Person.objects.get(username="alice")
    assert (alice.email, alice.display_name, alice.is_active) == (
        "alice@corp.example",
        "Alice Liddell",
        True,
    )
    assert alice.external_id  # entryUUID: identity that survives renames
    assert members("payments") == {"alice", "bob"}
    assert members("unique") == {"carol"}
    assert members("posix") == {"alice", "carol"}
    assert (run.people_seen, run.people_created, run.teams_created) == (3, 3, 3)


def test_it_mirrors_active_directory_entries(ad_directory):
    # given: membership on the group side for one, only on the user's memberOf for another
    ad_directory.add_group("k8s-admins")
    ad_directory.add_group("k8s-devs", groups=["k8s-admins"])
    ad_directory.add_person("alice")
    ad_directory.add_person("bob", member_of=["k8s-admins"])
    ad_directory.add_person("mallory", disabled=True)
    ad_directory.set_members("k8s-devs", people=["alice"], groups=["k8s-admins"])
    # when
    run = services.sync_directory()
    # then
    assert run.status == SyncStatus.SUCCEEDED, run.error
    assert set(Person.objects.filter(is_active=True).values_list("username", flat=True)) == {
        "alice",
        "bob",
    }
    mallory = Person.objects.get(username="mallory")
    assert not mallory.is_active and mallory.inactive_reason == InactiveReason.DISABLED
    assert members("k8s-admins") == {"bob"}
    assert members("k8s-devs") == {"alice", "bob"}
    assert direct_members("k8s-devs") == {"alice"}


def test_nested_groups_give_members_of_every_level(directory):
    directory.add_person("alice")
    directory.add_person("bob")
    directory.add_person("carol")
    directory.add_group("sre", people=["carol"])
    directory.add_group("platform", people=["bob"], groups=["sre"])
    directory.add_group("engineering", people=["alice"], groups=["platform"])

    services.sync_directory()

    assert members("engineering") == {"alice", "bob", "carol"}
    assert direct_members("engineering") == {"alice"}
    assert members("platform") == {"bob", "carol"}
    assert set(Team.objects.get(name="engineering").subteams.values_list("name", flat=True)) == {
        "platform"
    }


def test_cyclic_groups_end_the_walk_and_share_members(directory):
    directory.add_person("alice")
    directory.add_person("bob")
    directory.add_group("a", people=["alice"])
    directory.add_group("b", people=["bob"], groups=["a"])
    directory.set_members("a", people=["alice"], groups=["b"])  # a -> b -> a

    run = services.sync_directory()

    assert run.status == SyncStatus.SUCCEEDED, run.error
    assert members("a") == {"alice", "bob"}
    assert members("b") == {"alice", "bob"}


def test_a_sync_with_no_change_writes_nothing(directory):
    directory.add_person("alice")
    directory.add_person("bob")
    directory.add_group("payments", people=["alice", "bob"])
    directory.add_group("all", groups=["payments"])
    services.sync_directory()

    with CaptureQueriesContext(connection) as queries:
        run = services.sync_directory()

    assert run.status == SyncStatus.SUCCEEDED
    assert not run.changed_anything
    writes = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].split()[0].upper() in ("INSERT", "UPDATE", "DELETE")
        and "access_directorysync" not in q["sql"]
        and "access_synclock" not in q["sql"]
        # flag refresh UPDATEs are guarded by a WHERE that matches only rows needing change
        and "auth_user" not in q["sql"]
    ]
    assert writes == []


def test_a_changed_entry_is_updated(directory):
    directory.add_person("alice", email="old@example.com")
    services.sync_directory()

    directory.modify_person("alice", mail="new@example.com")
    run = services.sync_directory()

    assert run.people_updated == 1
    assert Person.objects.get(username="alice").email == "new@example.com"


def test_a_person_removed_becomes_inactive_and_comes_back_when_re_added(directory):
    for name in ("alice", "bob", "carol"):
        directory.add_person(name)
    directory.add_group("payments", people=["alice", "bob"])
    services.sync_directory()
    alice_id = Person.objects.get(username="alice").pk

    directory.delete_person("alice")
    run = services.sync_directory()

    alice = Person.objects.get(pk=alice_id)
    assert run.people_deactivated == 1
    assert not alice.is_active and alice.inactive_reason == InactiveReason.REMOVED
    assert alice.deactivated_at is not None
    assert list(selectors.people_deactivated_since(run.started_at)) == [alice]
    assert members("payments") == {"bob"}

    directory.add_person("alice")
    directory.set_members("payments", people=["alice", "bob"])
    run = services.sync_directory()

    assert run.status == SyncStatus.SUCCEEDED, run.error
    # A re-created entry has a new entryUUID: it is a new Person, the leaver's record is kept.
    assert Person.objects.get(username="alice", is_active=True).pk != alice_id
    assert members("payments") == {"alice", "bob"}


def test_a_disabled_person_becomes_inactive_and_cannot_log_in(directory):
    directory.add_person("alice")
    directory.add_person("bob")
    services.sync_directory()
    user = get_user_model().objects.create_user("alice")
    Person.objects.filter(username="alice").update(user=user)

    directory.disable("alice")
    run = services.sync_directory()

    alice = Person.objects.get(username="alice")
    assert run.people_deactivated == 1
    assert (alice.is_active, alice.inactive_reason) == (False, InactiveReason.DISABLED)
    user.refresh_from_db()
    assert not user.is_active


def test_a_moved_entry_keeps_its_identity(directory):
    directory.add_person("alice")
    services.sync_directory()
    alice_id = Person.objects.get(username="alice").pk

    directory.conn.rename_s(directory.person_dn("alice"), "uid=alice.l")
    directory.modify_person("alice.l", uid="alice.l")
    run = services.sync_directory()

    renamed = Person.objects.get(pk=alice_id)
    assert (renamed.username, renamed.is_active) == ("alice.l", True)
    assert run.people_deactivated == 0 and run.people_created == 0


def test_a_username_freed_by_a_leaver_can_be_reused(directory):
    directory.add_person("sam")
    directory.add_person("other")
    services.sync_directory()
    directory.delete_person("sam")
    directory.add_person("sam", display_name="Sam the Second")

    run = services.sync_directory()

    assert run.status == SyncStatus.SUCCEEDED, run.error
    assert Person.objects.filter(username="sam").count() == 2
    assert Person.objects.get(username="sam", is_active=True).display_name == "Sam the Second"


def test_a_username_used_twice_in_the_directory_is_reported_not_fatal(directory):
    directory.add_person("alice")
    dn = "uid=alice,ou=elsewhere," + directory.people_dn
    import ldap.modlist

    directory.conn.add_s(
        "ou=elsewhere," + directory.people_dn,
        ldap.modlist.addModlist({"objectClass": [b"organizationalUnit"], "ou": [b"elsewhere"]}),
    )
    directory.conn.add_s(
        dn,
        ldap.modlist.addModlist(
            {"objectClass": [b"inetOrgPerson"], "uid": [b"alice"], "cn": [b"a"], "sn": [b"a"]}
        ),
    )

    run = services.sync_directory()

    assert run.status == SyncStatus.SUCCEEDED, run.error
    assert Person.objects.filter(username="alice", is_active=True).count() == 1
    assert any("alice" in w for w in run.warnings)


def test_the_guard_stops_a_sync_that_would_deactivate_too_many(directory, settings):
    for i in range(10):
        directory.add_person(f"user{i}")
    directory.add_group("everyone", people=[f"user{i}" for i in range(10)])
    services.sync_directory()
    settings.WARDEN_DIRECTORY = directory.settings(MAX_DEACTIVATE_SHARE=0.10)

    # given: two of ten people vanish (20 % > 10 %), and a new person arrives
    directory.delete_person("user0")
    directory.delete_person("user1")
    directory.add_person("newcomer")
    # when
    run = services.sync_directory()
    # then: nothing changed, and the run says why
    assert run.status == SyncStatus.BLOCKED
    assert "2 of 10 people" in run.error
    assert not run.changed_anything
    assert run.guard["people"]["would_remove"] == 2
    assert set(run.guard["people"]["sample"]) == {"user0", "user1"}
    assert Person.objects.filter(is_active=True).count() == 10
    assert not Person.objects.filter(username="newcomer").exists()
    assert members("everyone") == {f"user{i}" for i in range(10)}

    # when an operator confirms
    operator = get_user_model().objects.create_user("operator", is_staff=True)
    confirmed = services.confirm_blocked_sync(run, operator)
    # then
    assert confirmed.status == SyncStatus.SUCCEEDED, confirmed.error
    assert confirmed.confirms == run
    assert confirmed.people_deactivated == 2
    assert Person.objects.filter(is_active=True).count() == 9


def test_the_guard_blocks_a_confirmation_if_more_would_go_than_was_confirmed(directory, settings):
    for i in range(10):
        directory.add_person(f"user{i}")
    services.sync_directory()
    settings.WARDEN_DIRECTORY = directory.settings(MAX_DEACTIVATE_SHARE=0.10)
    directory.delete_person("user0")
    directory.delete_person("user1")
    blocked = services.sync_directory()
    directory.delete_person("user2")

    run = services.confirm_blocked_sync(blocked, get_user_model().objects.create_user("op"))

    assert run.status == SyncStatus.BLOCKED
    assert Person.objects.filter(is_active=True).count() == 10


def test_an_empty_directory_answer_is_blocked_not_applied(directory, settings):
    for i in range(5):
        directory.add_person(f"user{i}")
    services.sync_directory()
    # a filter typo: the directory answers, but with nobody
    settings.WARDEN_DIRECTORY = directory.settings(
        MAX_DEACTIVATE_SHARE=0.10, USER_FILTER="(objectClass=inetOrgPersn)"
    )

    run = services.sync_directory()

    assert run.status == SyncStatus.BLOCKED
    assert Person.objects.filter(is_active=True).count() == 5


def test_a_wrong_base_dn_fails_clearly_and_changes_nothing(directory, settings):
    directory.add_person("alice")
    services.sync_directory()
    settings.WARDEN_DIRECTORY = directory.settings(USER_BASE_DN="ou=nobody,dc=warden,dc=test")

    run = services.sync_directory()

    assert run.status == SyncStatus.FAILED
    assert "LDAP_USER_BASE_DN 'ou=nobody,dc=warden,dc=test' does not exist" in run.error
    assert Person.objects.get(username="alice").is_active


def test_an_empty_base_dn_is_refused(directory, settings):
    settings.WARDEN_DIRECTORY = directory.settings(GROUP_BASE_DN="")

    run = services.sync_directory()

    assert run.status == SyncStatus.FAILED
    assert "LDAP_GROUP_BASE_DN is not set" in run.error


def test_a_size_limit_stops_the_sync(slapd, tmp_path, settings):
    # given: a directory whose bind account may read only 3 entries, even paged
    from access.localslapd import LocalSlapd, base_ldif
    from tests.fixtures.slapd import SERVICE_DN, SERVICE_PASSWORD, SUFFIX, TestDirectory

    limited = LocalSlapd(tmp_path / "slapd", suffix=SUFFIX, size_limit=3)
    limited.configure()
    limited.load(base_ldif(SUFFIX, SERVICE_DN, SERVICE_PASSWORD))
    limited.start()
    try:
        tree = TestDirectory(server=limited, base_dn=SUFFIX)
        for i in range(5):
            tree.add_person(f"user{i}")
        settings.WARDEN_DIRECTORY = tree.settings()
        # when
        run = services.sync_directory()
        # then
        assert run.status == SyncStatus.FAILED
        assert "size limit" in run.error
        assert Person.objects.count() == 0
        tree.close()
    finally:
        limited.destroy()


def test_a_directory_that_is_down_fails_clearly_and_revokes_nobody(directory, settings):
    directory.add_person("alice")
    services.sync_directory()
    settings.WARDEN_DIRECTORY = directory.settings(URI="ldap://127.0.0.1:9")

    run = services.sync_directory()

    assert run.status == SyncStatus.FAILED
    assert "does not answer" in run.error
    assert Person.objects.get(username="alice").is_active


def test_wrong_service_credentials_name_the_setting_to_fix(directory, settings):
    settings.WARDEN_DIRECTORY = directory.settings(BIND_PASSWORD="wrong")

    run = services.sync_directory()

    assert run.status == SyncStatus.FAILED
    assert "LDAP_BIND_DN and LDAP_BIND_PASSWORD" in run.error
    assert "wrong" not in run.error


def test_members_of_an_admin_team_become_staff(directory, settings):
    directory.add_person("olivia")
    directory.add_person("dev")
    directory.add_group("warden-admins", people=["olivia"])
    settings.WARDEN_DIRECTORY = directory.settings(ADMIN_TEAMS=["warden-admins"])
    users = get_user_model().objects
    olivia_user, dev_user = users.create_user("olivia"), users.create_user("dev")
    services.sync_directory()
    Person.objects.filter(username="olivia").update(user=olivia_user)
    Person.objects.filter(username="dev").update(user=dev_user)

    services.sync_directory()
    olivia_user.refresh_from_db()
    dev_user.refresh_from_db()
    assert olivia_user.is_staff and olivia_user.is_superuser
    assert not dev_user.is_staff

    directory.set_members("warden-admins", people=["dev"])
    services.sync_directory()
    olivia_user.refresh_from_db()
    assert not olivia_user.is_staff


def test_each_run_is_recorded_with_its_counts(directory):
    directory.add_person("alice")
    directory.add_group("g", people=["alice"])

    run = services.sync_directory()

    stored = DirectorySync.objects.get(pk=run.pk)
    assert stored.status == SyncStatus.SUCCEEDED
    assert stored.finished_at is not None and stored.duration_s is not None
    assert (stored.people_created, stored.teams_created, stored.memberships_added) == (1, 1, 1)
    assert selectors.last_sync() == stored
