"""Access as code: export, validate with file and line, diff, plan, apply all or nothing."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
import yaml
from django.core.management import CommandError, call_command

from access.models import ApprovalPolicy, AuditEvent, Grant, Role
from access.services import grant_access
from ascode import files as ascode

pytestmark = pytest.mark.django_db


@pytest.fixture
def declared(company, fleet):
    """The seeded catalogue and policies, four cluster records and two standing grants."""
    grant_access(
        role=Role.objects.get(name="developer"),
        team=company.teams["payments"],
        environments=["staging"],
        namespaces=["payments"],
        reason="payments deploy to staging",
    )
    grant_access(role=Role.objects.get(name="viewer"), person=company.people["judy"], reason="")
    return company


def run(*args: str) -> str:
    out = StringIO()
    call_command("warden", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def edit(text: str, change) -> str:
    doc = yaml.safe_load(text)
    change(doc)
    return ascode.dump(doc)


def events() -> list[str]:
    return list(AuditEvent.objects.order_by("seq").values_list("action", flat=True))


def test_export_then_apply_then_export_is_unchanged(declared, tmp_path):
    first = run("export")
    path = tmp_path / "warden.yaml"
    path.write_text(first)
    before = events()

    applied = run("apply", "-f", str(path), "--no-plan")

    assert "No change" in applied
    assert events() == before
    assert run("export") == first


def test_the_file_names_things_by_name_in_a_stable_order(declared):
    doc = yaml.safe_load(ascode.export())

    assert [r["name"] for r in doc["roles"]][:2] == ["viewer", "developer"]
    assert doc["grants"][0] == {
        "team": "payments",
        "role": "developer",
        "environments": ["staging"],
        "namespaces": ["payments"],
        "reason": "payments deploy to staging",
    }
    assert [c["name"] for c in doc["clusters"]] == ["dev-1", "prod-1", "prod-2", "staging-1"]
    assert "token" not in ascode.export() and "api_url" not in ascode.export()
    assert "id" not in doc["grants"][0]


def test_a_dry_run_shows_the_diff_and_changes_nothing(declared, tmp_path):
    def change(doc):
        doc["roles"][0]["rank"] = 5
        doc["grants"].append({"team": "approvers", "role": "viewer", "environments": ["dev"]})
        doc["policies"][0]["approvals_required"] = 3

    path = tmp_path / "warden.yaml"
    path.write_text(edit(ascode.export(), change))
    before = events()

    out = run("apply", "-f", str(path), "--dry-run", "--no-plan")

    assert "~ role viewer (rank: 10 → 5)" in out
    assert "+ grant viewer to team approvers environments dev" in out
    assert "approvals_required: " in out
    assert "Dry run: nothing was changed." in out
    assert events() == before
    assert Role.objects.get(name="viewer").rank == 10


def test_apply_goes_through_the_services_and_is_audited(declared, tmp_path, company):
    def change(doc):
        doc["roles"][0]["rank"] = 5
        doc["grants"].append({"team": "approvers", "role": "viewer", "environments": ["dev"]})
        doc["clusters"][0]["labels"] = {"region": "eu"}

    path = tmp_path / "warden.yaml"
    path.write_text(edit(ascode.export(), change))

    out = run("apply", "-f", str(path), "--no-plan", "--as", "olivia")

    assert "Applied: 1 added, 2 changed, 0 removed" in out
    new = AuditEvent.objects.order_by("seq").values_list("action", "actor_name")
    assert list(new)[-4:] == [
        ("role.saved", "olivia"),
        ("cluster.updated", "olivia"),
        ("grant.created", "olivia"),
        ("ascode.applied", "olivia"),
    ]
    assert Grant.objects.filter(team=company.teams["approvers"], revoked_at=None).count() == 1
    # Applied once: the same file again changes nothing.
    assert "No change" in run("apply", "-f", str(path), "--no-plan")


def test_what_the_file_lacks_is_kept_unless_pruned(declared, tmp_path):
    def drop_judy(doc):
        doc["grants"] = [g for g in doc["grants"] if g.get("person") != "judy"]

    path = tmp_path / "warden.yaml"
    path.write_text(edit(ascode.export(), drop_judy))

    kept = run("apply", "-f", str(path), "--no-plan")
    assert "? grant viewer to person judy — not in the file; kept" in kept
    assert Grant.objects.filter(person__username="judy", revoked_at=None).exists()

    pruned = run("apply", "-f", str(path), "--no-plan", "--prune")
    assert "- grant viewer to person judy" in pruned
    assert not Grant.objects.filter(person__username="judy", revoked_at=None).exists()
    assert AuditEvent.objects.filter(action="grant.revoked", reason="access as code").exists()


def test_a_section_the_file_leaves_out_is_not_managed(declared, tmp_path):
    path = tmp_path / "roles-only.yaml"
    doc = yaml.safe_load(ascode.export())
    path.write_text(ascode.dump({"version": 1, "roles": doc["roles"]}))

    out = run("apply", "-f", str(path), "--no-plan", "--prune")

    assert "No change" in out
    assert Grant.objects.filter(revoked_at=None).count() == 2


def problems_of(text: str) -> list[str]:
    with pytest.raises(ascode.AsCodeError) as caught:
        ascode.load(text, filename="warden.yaml")
    return caught.value.problems


def test_validation_errors_name_the_file_and_the_line(declared):
    text = """version: 1
roles:
  - name: viewer
    display_name: Viewer
    rank: 10
    colour: blue
    definitions:
      - cluster_role: view
        scope: everywhere
policies:
  - name: dev
    environment: moon
    max_duration: soon
    default_duration: 4h
grants:
  - team: nobody
    role: developr
  - person: alice
    team: payments
    role: viewer
    namespaces: [Not_A_Namespace]
clusters:
  - name: nowhere-1
    environment: dev
    tier: tier-3
"""
    problems = problems_of(text)

    assert "warden.yaml:6: role viewer: unknown key 'colour'" in problems[0]
    expected = [
        "warden.yaml:8: role viewer definition */*: Scope 'everywhere'",
        "warden.yaml:12: policy 'dev': use dev, staging, prod",
        "warden.yaml:13: policy 'dev': 'soon' is not a duration",
        "warden.yaml:16: grant of developr to nobody: no active team 'nobody'",
        "warden.yaml:17: grant of developr to nobody: no role named 'developr'",
        "warden.yaml:18: grant of viewer to payments: name exactly one team or one person",
        "warden.yaml:18: grant of viewer to payments: Namespace Not_A_Namespace",
        "warden.yaml:23: cluster nowhere-1: no live cluster has this name: register it first",
    ]
    for start in expected:
        assert any(p.startswith(start) for p in problems), (start, problems)


def test_broken_yaml_and_a_key_written_twice_are_located(company):
    assert problems_of("version: 1\nroles: [\n")[0].startswith("warden.yaml:3:1: not valid YAML")
    twice = problems_of("version: 1\nroles:\n  - name: a\n    name: b\n")
    assert twice[0].startswith("warden.yaml:4:")
    assert "written twice" in twice[0]
    assert problems_of("- 1\n") == [
        "warden.yaml:1: the file must be a mapping with version and sections"
    ]


def test_apply_is_all_or_nothing(declared, tmp_path):
    def change(doc):
        doc["roles"][0]["rank"] = 5
        doc["policies"][0]["default_duration"] = "400d"  # longer than its longest: refused

    path = tmp_path / "warden.yaml"
    path.write_text(edit(ascode.export(), change))
    before = events()

    with pytest.raises(CommandError) as caught:
        run("apply", "-f", str(path), "--no-plan")

    assert "Nothing was changed" in str(caught.value)
    assert f"{path}:" in str(caught.value) and "longer than the longest" in str(caught.value)
    assert Role.objects.get(name="viewer").rank == 10
    assert events() == before
    assert ApprovalPolicy.objects.filter(default_duration__gt=timedelta(days=300)).count() == 0


def test_the_dry_run_shows_each_clusters_rbac_plan(company, make_cluster, tmp_path):
    cluster, _sim = make_cluster(environment="staging")
    doc = yaml.safe_load(ascode.export())
    doc["grants"] = [
        {
            "team": "payments",
            "role": "developer",
            "environments": ["staging"],
            "namespaces": ["default"],
        }
    ]
    path = tmp_path / "warden.yaml"
    path.write_text(ascode.dump(doc))

    out = run("apply", "-f", str(path), "--dry-run")

    assert f"  {cluster.name}:" in out
    assert "create RoleBinding default/warden-developer (roleRef edit; + Group:payments)" in out
    assert not Grant.objects.exists()


def test_service_accounts_are_declared_exported_and_retired_by_the_file(company, fleet, tmp_path):
    doc = yaml.safe_load(ascode.export())
    doc["service_accounts"] = [
        {
            "name": "deployer",
            "namespace": "payments",
            "owner_team": "payments",
            "roles": ["developer"],
            "clusters": ["staging-1"],
            "rotation_period": "30d",
            "grace_period": "2d",
            "token_lifetime": "35d",
        }
    ]
    path = tmp_path / "warden.yaml"
    path.write_text(ascode.dump(doc))

    out = run("apply", "-f", str(path), "--no-plan")

    assert "+ service account payments/deployer" in out
    exported = yaml.safe_load(run("export"))["service_accounts"]
    assert exported == doc["service_accounts"]
    assert "No change" in run("apply", "-f", str(path), "--no-plan")
    assert "serviceaccount.declared" in events()

    doc["service_accounts"] = []
    path.write_text(ascode.dump(doc))
    assert "- service account payments/deployer" in run(
        "apply", "-f", str(path), "--no-plan", "--prune"
    )
    assert yaml.safe_load(run("export"))["service_accounts"] == []
    assert "serviceaccount.retired" in events()


def test_a_service_account_with_a_short_lifetime_is_refused_with_its_line(company, fleet, tmp_path):
    doc = {
        "version": 1,
        "service_accounts": [
            {
                "name": "deployer",
                "namespace": "payments",
                "owner_team": "payments",
                "clusters": ["staging-1"],
                "rotation_period": "30d",
                "grace_period": "2d",
                "token_lifetime": "1d",
            }
        ],
    }
    path = tmp_path / "warden.yaml"
    path.write_text(ascode.dump(doc))

    with pytest.raises(CommandError) as caught:
        run("apply", "-f", str(path), "--no-plan")

    # The header comment takes four lines: the entry starts on line 7.
    assert f"{path}:7: service account payments/deployer: The token lifetime" in str(caught.value)


def test_a_duration_too_long_to_keep_is_a_located_error(declared):
    doc = yaml.safe_load(ascode.export())
    doc["policies"][0]["max_duration"] = "99999999999d"

    problems = problems_of(ascode.dump(doc))

    assert any("at most 3660d (ten years)" in p for p in problems), problems
