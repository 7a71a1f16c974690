"""What people and operators do over the API, end to end through the same services as the UI."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from access.models import AccessRequest, ApprovalPolicy, AuditEvent, Grant, Role
from clusters.models import Cluster
from clusters.services import reconcile_cluster
from tests.fixtures.company import payments_may_break_glass_on_prod

pytestmark = pytest.mark.django_db
WHY = "Rolling out the payments fix for INC-77"


def ask(**overrides):
    body = {
        "role": "developer",
        "environments": ["staging"],
        "namespaces": ["payments"],
        "duration": "4h",
        "justification": WHY,
        "ticket": "INC-77",
    }
    body.update(overrides)
    return body


# --- requests -----------------------------------------------------------------------------------


def test_a_developer_previews_files_and_gets_approved_with_narrowing(api, company, fleet):
    alice, judy, peggy = api("alice"), api("judy"), api("peggy")

    preview = alice.post("/api/v1/requests/preview/", ask(), format="json").json()
    assert preview["ok"] is True
    assert [(r["cluster"], r["what"], r["where"]) for r in preview["reach"]] == [
        ("staging-1", "ClusterRole edit", "payments")
    ]
    assert preview["approvers"] == "1 approval by Judy, Peggy (team approvers)"
    assert not AccessRequest.objects.exists()

    filed = alice.post("/api/v1/requests/", ask(namespaces=["payments", "checkout"]), format="json")
    assert filed.status_code == 201, filed.json()
    pk = filed.json()["id"]
    assert filed.json()["state"] == "pending"
    assert filed.json()["duration"] == "4h"

    approved = judy.post(
        f"/api/v1/requests/{pk}/approve/",
        {"comment": "ok", "namespaces": ["payments"], "duration": "2h"},
        format="json",
    )
    assert approved.status_code == 200, approved.json()
    body = approved.json()
    assert body["state"] == "active"
    assert body["namespaces"] == ["payments"]
    assert body["duration"] == "2h"
    assert body["approvals"][0]["narrowed"]["namespaces"] == [
        ["checkout", "payments"],
        ["payments"],
    ]
    assert peggy.post(f"/api/v1/requests/{pk}/approve/", {}, format="json").status_code == 400

    mine = alice.get("/api/v1/me/access/").json()
    assert [(h["role"], h["request"]) for h in mine] == [("developer", pk)]
    assert [c["cluster"] for c in mine[0]["clusters"]] == ["staging-1"]

    ended = alice.post(f"/api/v1/requests/{pk}/end/", {"reason": "done"}, format="json")
    assert ended.json()["state"] == "revoked"
    assert Grant.objects.get().revoked_at is not None


def test_a_refused_request_says_every_reason(api, fleet):
    answer = api("alice").post(
        "/api/v1/requests/",
        ask(environments=["prod"], namespaces=[], duration="30d"),
        format="json",
    )

    assert answer.status_code == 400
    detail = answer.json()["detail"]
    assert "name the namespaces you need" in detail
    assert "At most" in detail
    assert not AccessRequest.objects.exists()


def test_bad_input_is_a_400_naming_the_field(api, fleet):
    alice = api("alice")

    assert "role" in alice.post("/api/v1/requests/", ask(role="nope"), format="json").json()
    assert "duration" in alice.post("/api/v1/requests/", ask(duration="soon"), format="json").json()
    assert (
        "environments"
        in alice.post("/api/v1/requests/", ask(environments=["moon"]), format="json").json()
    )


def test_a_deny_needs_a_reason_and_ends_the_request(api, company, fleet):
    pk = api("alice").post("/api/v1/requests/", ask(), format="json").json()["id"]

    assert api("judy").post(f"/api/v1/requests/{pk}/deny/", {}, format="json").status_code == 400
    denied = api("judy").post(f"/api/v1/requests/{pk}/deny/", {"comment": "use dev"}, format="json")

    assert denied.json()["state"] == "denied"
    assert denied.json()["decision_comment"] == "use dev"


def test_lists_are_paged_and_filtered(api, company, fleet):
    alice = api("alice")
    for ns in ("a1", "a2", "a3"):
        alice.post("/api/v1/requests/", ask(namespaces=[ns]), format="json")

    page = alice.get("/api/v1/requests/?page_size=2").json()
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"]
    assert alice.get("/api/v1/requests/?state=denied").json()["count"] == 0
    assert alice.get("/api/v1/requests/?mine=true&state=pending").json()["count"] == 3
    assert api("judy").get("/api/v1/requests/?requester=alice").json()["count"] == 3
    assert api("judy").get("/api/v1/requests/?requester=bob").json()["count"] == 0


# --- grants and roles, planned against kubesim --------------------------------------------------


def test_an_operator_plans_then_grants_then_revokes(api, company, make_cluster, rbac):
    cluster, sim = make_cluster(environment="staging")
    olivia = api("olivia")
    body = {
        "team": "payments",
        "role": "developer",
        "environments": ["staging"],
        "namespaces": ["default"],
        "reason": "payments deploys",
    }

    plan = olivia.post("/api/v1/grants/plan/", body, format="json")
    assert plan.status_code == 200, plan.json()
    assert plan.json()[0]["cluster"] == cluster.name
    assert plan.json()[0]["changes"][0]["action"] == "create"
    assert not Grant.objects.exists()

    made = olivia.post("/api/v1/grants/", body, format="json")
    assert made.status_code == 201
    grant_id = made.json()["id"]
    reconcile_cluster(cluster.pk)
    assert rbac.subjects(sim, "warden-developer", "default") == ["payments"]

    revoke_plan = olivia.get(f"/api/v1/grants/{grant_id}/revoke-plan/").json()
    assert revoke_plan[0]["changes"][0]["action"] == "delete"
    assert olivia.post(f"/api/v1/grants/{grant_id}/revoke/", {}, format="json").status_code == 400
    revoked = olivia.post(f"/api/v1/grants/{grant_id}/revoke/", {"reason": "moved"}, format="json")
    assert revoked.json()["in_force"] is False
    assert AuditEvent.objects.filter(action="grant.revoked", reason="moved").exists()


def test_a_grant_names_exactly_one_subject(api, company):
    answer = api("olivia").post(
        "/api/v1/grants/",
        {"team": "payments", "person": "bob", "role": "viewer", "reason": "x"},
        format="json",
    )
    assert answer.status_code == 400
    assert "exactly one" in str(answer.json())


def test_an_operator_redefines_a_role_after_seeing_the_plan(api, company, make_cluster):
    cluster, _ = make_cluster(environment="dev")
    Grant.objects.create(team=company.teams["payments"], role=Role.objects.get(name="viewer"))
    reconcile_cluster(cluster.pk)
    olivia = api("olivia")
    body = {"environment": "dev", "cluster_role": "edit", "scope": "cluster", "reason": "dev"}

    planned = olivia.post("/api/v1/roles/viewer/define/?plan=1", body, format="json")
    assert planned.status_code == 202
    changes = planned.json()[0]["changes"]
    assert any("edit" in " ".join(c["details"]) for c in changes), changes
    assert not Role.objects.get(name="viewer").definitions.filter(environment="dev").exists()

    applied = olivia.post("/api/v1/roles/viewer/define/", body, format="json")
    assert applied.status_code == 200
    dev = [d for d in applied.json()["definitions"] if d["environment"] == "dev"]
    assert dev[0]["cluster_role"] == "edit"
    assert AuditEvent.objects.filter(action="role.defined").count() == 1

    bad = olivia.post(
        "/api/v1/roles/viewer/define/", {"rules": [{"verbs": ["get"]}]}, format="json"
    )
    assert bad.status_code == 400
    assert "neither resources" in bad.json()["detail"]


def test_everyone_reads_the_catalogue(api, company):
    roles = api("mallory").get("/api/v1/roles/").json()["results"]
    assert [r["name"] for r in roles][:2] == ["viewer", "developer"]


# --- policies -----------------------------------------------------------------------------------


def test_policies_are_created_changed_and_deleted_with_an_audit_trail(api, company):
    olivia = api("olivia")
    body = {
        "name": "sandbox",
        "environment": "dev",
        "tier": "tier-3",
        "approvals_required": 0,
        "approver_teams": ["approvers"],
        "max_duration": "1d",
        "default_duration": "8h",
    }

    made = olivia.post("/api/v1/policies/", body, format="json")
    assert made.status_code == 201, made.json()
    pk = made.json()["id"]
    assert made.json()["max_duration"] == "1d"
    changed = olivia.patch(f"/api/v1/policies/{pk}/", {"approvals_required": 1}, format="json")
    assert changed.json()["approvals_required"] == 1
    assert changed.json()["approver_teams"] == ["approvers"]
    assert olivia.post("/api/v1/policies/", body, format="json").status_code == 400
    too_long = olivia.patch(f"/api/v1/policies/{pk}/", {"default_duration": "2d"}, format="json")
    assert too_long.status_code == 400
    assert olivia.delete(f"/api/v1/policies/{pk}/").status_code == 204

    saved = AuditEvent.objects.filter(action__startswith="policy.").order_by("seq")
    assert [e.action for e in saved] == ["policy.saved", "policy.saved", "policy.deleted"]
    assert saved[1].before["approvals_required"] == 0 and saved[1].after["approvals_required"] == 1
    assert not ApprovalPolicy.objects.filter(pk=pk).exists()


# --- clusters -----------------------------------------------------------------------------------


def test_an_operator_registers_updates_checks_reconciles_and_retires_a_cluster(
    api, kube_cluster, django_capture_on_commit_callbacks
):
    sim = kube_cluster()
    olivia = api("olivia")
    body = {
        "name": "api-made",
        "environment": "dev",
        "tier": "tier-3",
        "api_url": sim.server_url,
        "ca_bundle": sim.ca_cert_pem.decode(),
        "token": sim.admin_token,
        "labels": {"region": "eu"},
    }

    wrong = olivia.post("/api/v1/clusters/", {**body, "token": "wrong"}, format="json")
    assert wrong.status_code == 400
    assert not Cluster.objects.filter(name="api-made").exists()

    made = olivia.post("/api/v1/clusters/", body, format="json")
    assert made.status_code == 201, made.json()
    assert "token" not in made.json()
    assert olivia.post("/api/v1/clusters/", body, format="json").status_code == 400

    patched = olivia.patch(
        "/api/v1/clusters/api-made/", {"labels": {"region": "us"}}, format="json"
    )
    assert patched.json()["labels"] == {"region": "us"}
    assert Cluster.objects.get(name="api-made").token == sim.admin_token
    assert olivia.post("/api/v1/clusters/api-made/check/").json() == {"ok": True, "problems": []}
    with django_capture_on_commit_callbacks(execute=True):
        assert olivia.post("/api/v1/clusters/api-made/reconcile/").status_code == 202
    runs = olivia.get("/api/v1/reconcile-runs/?cluster=api-made").json()
    assert runs["count"] >= 1 and runs["results"][0]["cluster"] == "api-made"

    unconfirmed = olivia.post("/api/v1/clusters/api-made/retire/", {"confirm": "x"}, format="json")
    assert unconfirmed.status_code == 400
    retired = olivia.post(
        "/api/v1/clusters/api-made/retire/",
        {"confirm": "api-made", "reason": "gone"},
        format="json",
    )
    assert retired.json()["state"] == "retired"
    assert olivia.get("/api/v1/clusters/?state=retired").json()["count"] == 1


# --- audit, me, why forbidden -------------------------------------------------------------------


def test_the_audit_trail_filters_by_action_and_actor(api, company, fleet):
    api("alice").post("/api/v1/requests/", ask(), format="json")
    olivia = api("olivia")

    submitted = olivia.get("/api/v1/audit-events/?action=request.").json()
    assert [e["action"] for e in submitted["results"]] == ["request.submitted"]
    assert olivia.get("/api/v1/audit-events/?actor=alice&action=request").json()["count"] == 1
    assert olivia.get("/api/v1/audit-events/?actor=bob&action=request").json()["count"] == 0
    seq = submitted["results"][0]["seq"]
    assert olivia.get(f"/api/v1/audit-events/{seq}/").json()["hash"]


def test_my_clusters_give_what_a_kubeconfig_needs(api, company, make_cluster, settings):
    settings.WARDEN_KUBECONFIG_USER_EXEC = {"command": "kubelogin", "args": ["--user={username}"]}
    cluster, _ = make_cluster(environment="dev", user_prefix="oidc:")
    Grant.objects.create(
        team=company.teams["payments"], role=Role.objects.get(name="developer"), namespaces=["pay"]
    )

    mine = api("alice").get("/api/v1/me/clusters/").json()

    assert [(c["name"], c["namespaces"], c["username"]) for c in mine] == [
        (cluster.name, ["pay"], "oidc:alice")
    ]
    assert mine[0]["ca_bundle"].startswith("-----BEGIN CERTIFICATE")
    # {username} is the directory login (what the identity provider knows), not the prefixed name.
    assert mine[0]["user_exec"] == {"command": "kubelogin", "args": ["--user=alice"]}
    assert api("mallory").get("/api/v1/me/clusters/").json() == []


def test_why_forbidden_names_the_smallest_role(api, company, make_cluster):
    cache.clear()
    cluster, _ = make_cluster(environment="dev")
    message = (
        'pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the '
        'namespace "payments"'
    )

    answer = api("alice").post("/api/v1/why-forbidden/", {"message": message}, format="json")

    assert answer.status_code == 200, answer.json()
    assert answer.json()["smallest"] == "viewer"
    assert answer.json()["request"] == {
        "role": "viewer",
        "cluster": cluster.name,
        "namespace": "payments",
    }
    unreadable = api("alice").post("/api/v1/why-forbidden/", {"message": "hello"}, format="json")
    assert unreadable.status_code == 400


def test_break_glass_access_awaiting_its_review_is_listed_by_a_filter(api, company, fleet):
    payments_may_break_glass_on_prod(company)
    glass = api("alice").post(
        "/api/v1/requests/",
        ask(environments=["prod"], break_glass=True, duration="1h"),
        format="json",
    )
    assert glass.status_code == 201, glass.json()
    api("alice").post("/api/v1/requests/", ask(), format="json")

    waiting = api("olivia").get("/api/v1/requests/?awaiting_review=true").json()

    assert [r["id"] for r in waiting["results"]] == [glass.json()["id"]]
    assert api("olivia").get("/api/v1/requests/?awaiting_review=false").json()["count"] == 0
