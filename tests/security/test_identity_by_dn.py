"""Issue 15, item 7: teams are who the directory says, by DN, never by a name anyone can reuse.

An attacker who may create a group somewhere under the group base names it like an operator
team, or like a team that holds access, and hopes Warden takes the name for the identity. Such a
group becomes a team of its own with a distinct name (Kubernetes group names included), is
reported by the sync, and gives its members nothing the other group has.
"""

from __future__ import annotations

import contextlib
import runpy
from pathlib import Path

import ldap
import ldap.modlist
import pytest
from django.contrib.auth import get_user_model

from access import services
from access.models import Grant, Team
from clusters import services as cluster_services

pytestmark = pytest.mark.django_db


def add_rogue_group(directory, name: str, members: list[str]) -> str:
    """A group in another OU under the group base, as a delegated admin could make one."""
    ou = f"ou=projects,{directory.groups_dn}"
    with contextlib.suppress(ldap.ALREADY_EXISTS):
        directory.conn.add_s(
            ou,
            ldap.modlist.addModlist({"objectClass": [b"organizationalUnit"], "ou": [b"projects"]}),
        )
    dn = f"cn={name},{ou}"
    attrs = {
        "objectClass": [b"top", b"groupOfNames"],
        "cn": [name.encode()],
        "member": [directory.person_dn(m).encode() for m in members],
    }
    directory.conn.add_s(dn, ldap.modlist.addModlist(attrs))
    return dn


@pytest.fixture
def org(directory, settings):
    for name in ("alice", "bob", "olivia", "mallory"):
        directory.add_person(name, password=f"{name}-pw")
    directory.add_group("payments", people=["alice", "bob"])
    directory.add_group("warden-admins", people=["olivia"])
    settings.WARDEN_DIRECTORY = directory.settings(ADMIN_TEAMS=["warden-admins"])
    run = services.sync_directory()
    assert run.status == "succeeded", run.error
    return directory


def is_operator(username: str) -> bool:
    return get_user_model().objects.filter(username=username, is_superuser=True).exists() or (
        get_user_model().objects.filter(username=username, is_staff=True).exists()
    )


def log_in_everyone(client, *names):
    for name in names:
        assert (
            client.post("/login/", {"username": name, "password": f"{name}-pw"}).status_code == 302
        )
        client.post("/logout/")


def test_a_group_named_like_the_operator_team_elsewhere_makes_nobody_an_operator(client, org):
    log_in_everyone(client, "olivia", "mallory")
    assert is_operator("olivia") and not is_operator("mallory")
    # when mallory's rogue group, named like the operator team, appears under the group base
    add_rogue_group(org, "warden-admins", ["mallory"])
    run = services.sync_directory()
    # then she is no operator, olivia still is, and the sync says why
    assert not is_operator("mallory")
    assert is_operator("olivia")
    assert any("warden-admins" in warning for warning in run.warnings)
    assert (
        client.post("/login/", {"username": "mallory", "password": "mallory-pw"}).status_code == 302
    )
    assert client.get("/admin/").status_code == 302
    assert client.get("/api/v1/clusters/").status_code in (200, 403)


def test_operator_teams_named_by_dn_match_that_group_only(client, org, settings):
    log_in_everyone(client, "olivia", "mallory")
    rogue = add_rogue_group(org, "warden-admins", ["mallory"])
    settings.WARDEN_DIRECTORY = org.settings(ADMIN_TEAMS=[org.group_dn("warden-admins")])
    services.sync_directory()
    assert is_operator("olivia") and not is_operator("mallory")
    # and naming the rogue DN selects the rogue group, not the name
    settings.WARDEN_DIRECTORY = org.settings(ADMIN_TEAMS=[rogue])
    services.sync_directory()
    assert is_operator("mallory") and not is_operator("olivia")


@pytest.mark.parametrize("bind_groups", [True, False])
def test_same_named_groups_never_merge_on_a_cluster(
    org, make_cluster, catalogue, rbac, bind_groups
):
    # given payments holds viewer on a cluster
    cluster, sim = make_cluster(bind_groups=bind_groups)
    payments = Team.objects.get(dn=org.group_dn("payments"))
    Grant.objects.create(team=payments, role=catalogue["viewer"])
    # when mallory makes another group called payments and the directory syncs
    add_rogue_group(org, "payments", ["mallory"])
    run = services.sync_directory()
    cluster_services.reconcile_cluster(cluster.pk)
    # then the two are distinct teams with distinct names, and mallory gets nothing
    teams = Team.objects.filter(is_active=True, dn__icontains="payments")
    assert teams.count() == 2
    assert len({team.name for team in teams}) == 2
    assert Team.objects.get(pk=payments.pk).name == "payments"
    subjects = rbac.subjects(sim, "warden-viewer")
    assert "mallory" not in subjects
    assert subjects == (["payments"] if bind_groups else ["alice", "bob"])
    assert any("payments" in warning for warning in run.warnings)


def test_operator_teams_are_read_from_the_environment_as_whole_dns(monkeypatch, tmp_path):
    monkeypatch.setenv("DEBUG", "1")
    monkeypatch.setenv("WARDEN_VAR_DIR", str(tmp_path))
    monkeypatch.setenv(
        "WARDEN_ADMIN_TEAMS", "cn=warden-admins,ou=groups,dc=example,dc=com; cn=sre,ou=ops,dc=x"
    )
    loaded = runpy.run_path(str(Path(__file__).resolve().parents[2] / "config" / "settings.py"))

    assert loaded["WARDEN_DIRECTORY"]["ADMIN_TEAMS"] == [
        "cn=warden-admins,ou=groups,dc=example,dc=com",
        "cn=sre,ou=ops,dc=x",
    ]
