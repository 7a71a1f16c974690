"""Leads from the directory: each person's manager and each group's owners, on a real slapd."""

from __future__ import annotations

import ldap
import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from access import leads, services
from access.choices import SyncStatus
from access.directory import DirectoryConfig, DirectoryPerson, digest, parse_group, parse_person
from access.models import Person, Team

pytestmark = pytest.mark.django_db


def manager(username: str) -> str | None:
    person = Person.objects.select_related("manager").get(username=username, is_active=True)
    return person.manager.username if person.manager else None


def owners(team_name: str) -> set[str]:
    team = Team.objects.get(name=team_name)
    return set(team.owners.values_list("username", flat=True))


def test_it_mirrors_managers_and_owners_from_openldap(directory):
    # given: heidi's manager ivan comes on a later page than heidi (pages of 3)
    directory.add_person("alice", manager="heidi")
    directory.add_person("bob", manager="heidi")
    directory.add_person("heidi", manager="ivan")
    directory.add_person("carol")
    directory.add_person("ivan")
    directory.add_group("payments", people=["alice", "bob"], owners=["heidi", "ivan"])
    directory.add_group("checkout", people=["carol"], kind="groupOfUniqueNames", owners=["ivan"])
    directory.add_group("nobody-leads", people=["carol"])
    # when
    run = services.sync_directory()
    # then
    assert run.status == SyncStatus.SUCCEEDED, run.error
    assert run.warnings == []
    assert (manager("alice"), manager("bob"), manager("heidi")) == ("heidi", "heidi", "ivan")
    assert manager("carol") is None and manager("ivan") is None
    assert owners("payments") == {"heidi", "ivan"}
    assert owners("checkout") == {"ivan"}
    assert owners("nobody-leads") == set()
    assert run.leads_changed == 3 + 3  # three managers, three ownerships


def test_it_mirrors_managers_and_managed_by_from_active_directory(ad_directory):
    ad_directory.add_person("alice", manager="heidi")
    ad_directory.add_person("heidi")
    ad_directory.add_group("k8s-devs", people=["alice"], owners=["heidi"])

    run = services.sync_directory()

    assert run.status == SyncStatus.SUCCEEDED, run.error
    assert manager("alice") == "heidi"
    assert owners("k8s-devs") == {"heidi"}
    assert leads.manager_of(Person.objects.get(username="alice")).username == "heidi"
    assert [p.username for p in leads.team_leads(Team.objects.get(name="k8s-devs"))] == ["heidi"]


def test_a_manager_or_owner_who_is_not_a_known_person_is_unset_with_a_warning(directory):
    # given: a manager outside the user base, an owner that is a group, and a self-manager
    directory.add_person("alice", manager="ghost")
    directory.add_person("bob")
    directory.set_manager("bob", None, dn=f"uid=carol,ou=elsewhere,{directory.base_dn}")
    directory.add_person("narcissus", manager="narcissus")
    directory.add_group("admins", people=["bob"])
    directory.add_group("payments", people=["alice"])
    directory.set_owners("payments", ["bob"], dns=[directory.group_dn("admins")])
    # when
    run = services.sync_directory()
    # then: the sync goes on; nothing points at what it cannot resolve, and it says so
    assert run.status == SyncStatus.SUCCEEDED, run.error
    assert manager("alice") is None and manager("bob") is None and manager("narcissus") is None
    assert owners("payments") == {"bob"}
    warnings = "\n".join(run.warnings)
    assert f"manager {directory.person_dn('ghost').lower()} is not an active person" in warnings
    assert "ou=elsewhere" in warnings
    assert "names itself as its manager" in warnings
    assert f"owner {directory.group_dn('admins').lower()} is not an active person" in warnings


def test_a_disabled_manager_or_owner_is_no_lead(directory):
    directory.add_person("alice", manager="heidi")
    directory.add_person("heidi", disabled=True)
    directory.add_group("payments", people=["alice"], owners=["heidi"])

    run = services.sync_directory()

    assert manager("alice") is None
    assert owners("payments") == set()
    assert len(run.warnings) == 2


def test_a_manager_who_leaves_is_unset_from_reports_whose_entries_did_not_change(directory):
    # given
    directory.add_person("alice", manager="heidi")
    directory.add_person("heidi")
    directory.add_person("ivan")
    directory.add_group("payments", people=["alice"], owners=["heidi", "ivan"])
    services.sync_directory()
    assert manager("alice") == "heidi"
    # when heidi leaves; alice's entry is unchanged (it still names heidi's DN)
    directory.delete_person("heidi")
    run = services.sync_directory()
    # then
    assert run.status == SyncStatus.SUCCEEDED, run.error
    assert manager("alice") is None
    assert owners("payments") == {"ivan"}
    assert run.people_updated == 0  # alice's entry did not change; only the link did
    assert run.leads_changed == 2
    assert any("is not an active person" in w for w in run.warnings)


def test_a_changed_manager_and_changed_owners_are_followed(directory):
    directory.add_person("alice", manager="heidi")
    directory.add_person("heidi")
    directory.add_person("ivan")
    directory.add_group("payments", people=["alice"], owners=["heidi"])
    services.sync_directory()

    directory.set_manager("alice", "ivan")
    directory.set_owners("payments", ["ivan"])
    run = services.sync_directory()

    assert manager("alice") == "ivan"
    assert owners("payments") == {"ivan"}
    assert (run.people_updated, run.teams_updated) == (1, 1)
    assert run.leads_changed == 3  # one manager changed; one owner out, one in

    directory.set_manager("alice", None)
    directory.set_owners("payments", [])
    run = services.sync_directory()

    assert manager("alice") is None
    assert owners("payments") == set()


def test_a_sync_with_no_change_writes_no_lead(directory):
    directory.add_person("alice", manager="heidi")
    directory.add_person("heidi")
    directory.add_group("payments", people=["alice"], owners=["heidi"])
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
        and "auth_user" not in q["sql"]
    ]
    assert writes == []


def test_a_blocked_sync_changes_no_lead(directory, settings):
    # given: four people, alice led by heidi
    directory.add_person("alice", manager="heidi")
    directory.add_person("heidi")
    directory.add_person("ivan")
    directory.add_person("judy")
    services.sync_directory()
    settings.WARDEN_DIRECTORY = directory.settings(MAX_DEACTIVATE_SHARE=0.1)
    # when two people vanish (50 % > 10 %) and alice's manager changes in the same sync
    directory.delete_person("judy")
    directory.delete_person("heidi")
    directory.set_manager("alice", "ivan")
    run = services.sync_directory()
    # then nothing changed, the lead included
    assert run.status == SyncStatus.BLOCKED
    assert run.leads_changed == 0
    assert manager("alice") == "heidi"


def test_the_lead_attributes_are_configurable(directory, settings):
    # given a directory that keeps the lead in `secretary` and group owners in `seeAlso`
    settings.WARDEN_DIRECTORY = directory.settings(
        MANAGER_ATTR="secretary", GROUP_OWNER_ATTR="seeAlso"
    )
    directory.add_person("heidi")
    directory.add_person("alice")
    directory.modify_person("alice", secretary=directory.person_dn("heidi"))
    directory.add_group("payments", people=["alice"], owners=["alice"])  # `owner` is not read
    directory.conn.modify_s(
        directory.group_dn("payments"),
        [(ldap.MOD_ADD, "seeAlso", [directory.person_dn("heidi").encode()])],
    )
    # when
    services.sync_directory()
    # then
    assert manager("alice") == "heidi"
    assert owners("payments") == {"heidi"}


def test_the_schema_picks_the_owner_attribute_unless_set():
    assert DirectoryConfig(uri="", schema="openldap").group_owner_attr == "owner"
    assert DirectoryConfig(uri="", schema="ad").group_owner_attr == "managedBy"
    assert DirectoryConfig(uri="", schema="ad", group_owner_attr="owner").group_owner_attr == (
        "owner"
    )
    config = DirectoryConfig(uri="")
    assert "manager" in config.user_attributes()
    assert "owner" in config.group_attributes()


def test_entries_without_leads_keep_the_hash_they_had_before_leads_were_mirrored():
    # An upgrade must not rewrite every person and team at its first sync.
    config = DirectoryConfig(uri="")
    person = parse_person(config, "uid=alice,ou=people,dc=x", {"uid": [b"alice"]})
    assert person.entry_hash == digest(
        person.dn, None, "alice", "", "", False
    )  # the pre-leads formula
    group = parse_group(config, "cn=payments,ou=groups,dc=x", {"cn": [b"payments"]})
    assert group.entry_hash == digest(group.dn, None, "payments", "")
    led = parse_person(
        config,
        "uid=alice,ou=people,dc=x",
        {"uid": [b"alice"], "Manager": [b"UID=Heidi, OU=People,DC=x"]},
    )
    assert led.manager_dn == "uid=heidi,ou=people,dc=x"
    assert led.entry_hash != person.entry_hash
    assert DirectoryPerson("d", None, "u", "", "", False).manager_dn == ""


def test_leads_of_a_person_are_their_manager_and_their_teams_owners(directory):
    directory.add_person("alice", manager="heidi")
    directory.add_person("heidi")
    directory.add_person("ivan")
    directory.add_person("erin")
    directory.add_group("sre", people=["alice"], owners=["erin"])
    directory.add_group("platform", groups=["sre"], owners=["ivan", "alice"])
    services.sync_directory()
    alice, heidi, ivan = (Person.objects.get(username=u) for u in ("alice", "heidi", "ivan"))

    assert [p.username for p in leads.leads_of_person(alice)] == ["erin", "heidi", "ivan"]
    assert leads.is_manager_of(heidi, alice) and not leads.is_manager_of(ivan, alice)
    assert leads.is_team_lead(ivan, Team.objects.get(name="platform"))
    assert not leads.is_team_lead(ivan, Team.objects.get(name="sre"))


def test_the_home_page_shows_my_manager_and_my_teams_leads(client, directory):
    directory.add_person("alice", manager="heidi")
    directory.add_person("heidi", display_name="Heidi Hall")
    directory.add_person("ivan", display_name="Ivan Ito")
    directory.add_group("payments", people=["alice"], owners=["ivan"])
    services.sync_directory()
    user = get_user_model().objects.create_user("alice")
    Person.objects.filter(username="alice").update(user=user)
    client.force_login(user)

    page = client.get(reverse("home")).content.decode()

    assert "Manager</dt><dd>Heidi Hall" in page
    assert "Ivan Ito" in page


def test_operators_see_managers_and_owners_in_the_admin(client, directory):
    directory.add_person("alice", manager="heidi")
    directory.add_person("heidi")
    directory.add_group("payments", people=["alice"], owners=["heidi"])
    services.sync_directory()
    client.force_login(
        get_user_model().objects.create_user("olivia", is_staff=True, is_superuser=True)
    )

    people = client.get("/admin/access/person/").content.decode()
    team = Team.objects.get(name="payments")
    team_page = client.get(f"/admin/access/team/{team.pk}/change/").content.decode()

    assert "column-manager" in people
    assert "leads (owners in the directory)" in team_page.lower()
    assert "heidi" in team_page
