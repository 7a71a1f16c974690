"""The request page's role and cluster pickers, My access and the inbox's one-click decisions and
history, through the test client."""

from __future__ import annotations

import pytest
from django.utils.html import strip_tags

from access.choices import RequestState
from access.models import AccessRequest, Approval, Grant, Role
from access.role_words import definition_words, rule_words
from access.services import requests
from clusters.models import Cluster, ReconcileRun

pytestmark = pytest.mark.django_db
WHY = "Rolling out the payments fix for INC-77"


def text(response) -> str:
    """The page as a person reads it: tags out, spaces collapsed."""
    return " ".join(strip_tags(response.content.decode()).split())


def as_user(client, user):
    client.force_login(user)
    return client


def filed(company, who="alice", **kw):
    kw.setdefault("environments", ["staging"])
    kw.setdefault("namespaces", ["payments"])
    return requests.submit_request(
        requester=company.people[who],
        role=Role.objects.get(name="developer"),
        justification=WHY,
        actor=company.users[who],
        **kw,
    )


# --- the role picker, in plain words ------------------------------------------------------------


def test_each_role_is_explained_in_plain_words_with_what_it_becomes(client, company, fleet):
    page = text(as_user(client, company.alice).get("/requests/new"))

    assert "Developer Create and change workloads in a namespace" in page
    assert (
        "any environment, any tier: ClusterRole edit, in the namespaces you ask for. Read and "
        "change most objects, Secrets included" in page
    )
    assert "prod, any tier: ClusterRole view" in page
    assert "prod, any tier: not offered." in page  # cluster admin


def test_the_roles_page_says_the_same_and_lists_warden_managed_rules(client, company):
    viewer = Role.objects.get(name="viewer")
    viewer.definitions.create(
        environment="dev",
        rules=[{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]}],
        scope="namespaces",
        namespaces=["team-*"],
    )

    page = text(as_user(client, company.alice).get("/roles/"))

    assert "its own rules (ClusterRole warden-viewer)" in page
    assert "Get, list pods, pods/log (core API group)." in page
    assert "only in namespaces team-*" in page


def test_rules_read_as_sentences():
    assert rule_words(
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch"]}
    ) == ("read deployments (apps API group)")
    assert rule_words({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}) == (
        "do anything to every resource (every API group)"
    )
    assert (
        rule_words({"nonResourceURLs": ["/metrics"], "verbs": ["get"]}) == "get the paths /metrics"
    )
    assert (
        rule_words(
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": ["app"],
                "verbs": ["get"],
            }
        )
        == "get configmaps (core API group, only the objects named app)"
    )
    unknown = definition_words(
        environment="",
        tier="",
        cluster_role="team-reader",
        rules=[],
        cluster_wide=False,
        namespaces=[],
        allowed=True,
        role_name="x",
    )
    assert unknown.allows == [
        "What the cluster's ClusterRole team-reader allows (read from each cluster)."
    ]


# --- the cluster picker ------------------------------------------------------------------------


def test_the_cluster_picker_follows_environment_tier_and_search(client, company, fleet):
    as_user(client, company.alice)

    prod = text(client.post("/requests/clusters", {"environments": ["prod"]}))
    assert "prod-1" in prod and "prod-2" in prod and "dev-1" not in prod

    tier0 = text(client.post("/requests/clusters", {"environments": ["prod"], "tiers": ["tier-0"]}))
    assert "prod-1" in tier0 and "prod-2" not in tier0

    searched = client.post(
        "/requests/clusters", {"cluster_search": "stag", "clusters": ["prod-2"]}
    ).content.decode()
    # the search shows staging-1, and keeps prod-2 ticked although it does not match
    assert 'value="staging-1"' in searched and "dev-1" not in searched
    assert 'value="prod-2" checked' in searched

    nothing = text(client.post("/requests/clusters", {"cluster_search": "nope"}))
    assert "No live cluster matches “nope”" in nothing


def test_a_large_fleet_shows_the_first_matches_and_says_how_many_more(
    client, company, fleet, monkeypatch
):
    monkeypatch.setattr("access.selectors.PICKER_LIMIT", 2)
    as_user(client, company.alice)

    page = text(client.post("/requests/clusters", {}))

    assert "2 more clusters match: narrow the search to see them." in page


def test_ticking_a_cluster_limits_the_request_to_it(client, company, fleet):
    as_user(client, company.alice)
    data = {
        "role": Role.objects.get(name="developer").pk,
        "environments": ["prod"],
        "clusters": ["prod-2"],
        "namespaces": "payments",
        "justification": WHY,
    }

    preview = text(client.post("/requests/preview", data))
    assert "prod-2" in preview and "prod-1" not in preview

    client.post("/requests/new", {**data, "submit": "1"})
    assert AccessRequest.objects.get().clusters == ["prod-2"]


def test_a_retired_cluster_cannot_be_ticked(client, company, fleet):
    Cluster.objects.filter(name="prod-2").update(state="retired")
    as_user(client, company.alice)

    response = client.post(
        "/requests/new",
        {
            "role": Role.objects.get(name="developer").pk,
            "clusters": ["prod-2"],
            "namespaces": "payments",
            "justification": WHY,
            "submit": "1",
        },
    )

    assert "prod-2 is not a live cluster (retired, or unknown): untick it." in text(response)
    assert not AccessRequest.objects.exists()


# --- My access -------------------------------------------------------------------------------


def test_my_access_says_where_the_access_is_in_force_and_where_it_is_on_its_way(
    client, company, fleet
):
    req = requests.approve_request(filed(company, environments=["staging", "prod"]), company.judy)
    requests.approve_request(req, company.peggy)  # prod needs two
    req.refresh_from_db()
    ReconcileRun.objects.create(
        cluster=fleet["staging-1"],
        trigger="change",
        status="succeeded",
        grants_in_force=[req.grant_id],
    )

    page = text(as_user(client, company.alice).get("/"))

    assert "staging-1 · payments in force" in page
    assert "prod-1 · payments on its way (not reconciled yet)" in page


def test_im_done_on_my_access_ends_it_and_stays_there(client, company, fleet):
    req = requests.approve_request(filed(company), company.judy)
    as_user(client, company.alice)

    response = client.post(f"/requests/{req.pk}/end", {"next": "home", "reason": "done"})

    assert response.status_code == 302 and response["Location"] == "/"
    assert AccessRequest.objects.get(pk=req.pk).state == RequestState.REVOKED
    assert "You hold no access yet" in text(client.get("/"))


def test_my_requests_are_paginated(client, company, fleet, monkeypatch):
    monkeypatch.setattr("access.views.HOME_REQUESTS_PAGE_SIZE", 2)
    for ns in ("a", "b", "c"):
        requests.cancel_request(filed(company, namespaces=[ns]), company.alice)

    page = text(as_user(client, company.alice).get("/"))
    assert "Page 1 of 2" in page
    assert "Page 2 of 2" in text(client.get("/?requests=2"))


def test_a_team_grant_cannot_be_dropped_from_my_access(client, company, fleet):
    Grant.objects.create(team=company.teams["payments"], role=Role.objects.get(name="viewer"))

    page = text(as_user(client, company.alice).get("/"))

    assert "through your team" in page and "I'm done" not in page


# --- the inbox ---------------------------------------------------------------------------------


def test_each_inbox_row_approves_or_denies_just_its_request(client, company, fleet):
    first, second = filed(company), filed(company, who="bob")
    as_user(client, company.judy)

    client.post("/inbox/bulk", {"approve_one": first.pk, "ids": [second.pk]})
    client.post("/inbox/bulk", {"deny_one": second.pk, "comment": "use staging-2"})

    assert AccessRequest.objects.get(pk=first.pk).state == RequestState.ACTIVE
    assert AccessRequest.objects.get(pk=second.pk).state == RequestState.DENIED


def test_deciding_nothing_says_so(client, company, fleet):
    filed(company)
    as_user(client, company.judy)

    response = client.post("/inbox/bulk", {"decision": "approve"}, follow=True)

    assert "Tick the requests to decide first." in text(response)


def test_a_bulk_decision_reports_requests_it_may_not_decide_and_decides_the_rest(
    client, company, fleet
):
    mine, foreign = filed(company), filed(company, who="bob")
    foreign.approver_teams.set([company.teams["payments"]])  # judy is not in payments
    as_user(client, company.judy)

    page = text(client.post("/inbox/bulk", {"ids": [mine.pk, foreign.pk]}, follow=True))

    assert f"#{foreign.pk}: no such request waits for you." in page
    assert AccessRequest.objects.get(pk=mine.pk).state == RequestState.ACTIVE
    assert AccessRequest.objects.get(pk=foreign.pk).state == RequestState.PENDING


def test_the_decision_history_is_paginated_and_says_where_each_request_is_now(
    client, company, fleet
):
    for ns in range(12):
        requests.approve_request(filed(company, namespaces=[f"ns-{ns}"]), company.judy)
    assert Approval.objects.filter(approver=company.judy).count() == 12
    as_user(client, company.judy)

    first = text(client.get("/inbox/"))
    second = text(client.get("/inbox/?history=2"))

    assert "Page 1 of 2" in first and "Active" in first
    assert "Page 2 of 2" in second


def test_the_preview_shows_before_the_justification_is_written(client, company, fleet):
    as_user(client, company.alice)
    data = {"role": Role.objects.get(name="developer").pk, "environments": ["staging"]}

    preview = text(client.post("/requests/preview", {**data, "namespaces": "payments"}))
    refused = text(client.post("/requests/new", {**data, "namespaces": "payments", "submit": "1"}))

    assert "staging-1" in preview and "1 approval by Judy, Peggy (team approvers)" in preview
    assert "This field is required." in refused and not AccessRequest.objects.exists()


# --- nobody sees another person's data ---------------------------------------------------------


def test_my_access_shows_only_my_own_grants_and_requests(client, company, fleet):
    bobs = filed(company, who="bob", namespaces=["bobs-namespace"])
    Grant.objects.create(
        person=company.people["bob"], role=Role.objects.get(name="admin"), reason="bob only"
    )

    page = text(as_user(client, company.alice).get("/"))

    assert "bobs-namespace" not in page and f"#{bobs.pk}" not in page
    assert "Cluster admin" not in page


def test_the_request_pickers_need_a_directory_person(client, company, django_user_model):
    local = django_user_model.objects.create_user("breakglass-admin")
    as_user(client, local)

    assert client.post("/requests/clusters", {}).status_code == 403
    assert client.post("/requests/preview", {}).status_code == 403
    client.logout()
    assert client.post("/requests/clusters", {}).status_code == 302  # to the login page
