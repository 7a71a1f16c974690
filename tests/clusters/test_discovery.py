"""Cluster discovery: from a Cluster API management cluster (kubesim serving the Cluster API
custom resources and kubeconfig Secrets) and from a folder of kubeconfig files."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from access.models import AuditEvent
from clusters import discovery
from clusters.choices import ClusterState, DiscoveryStatus, DiscoveryTrigger
from clusters.models import Cluster, DiscoveryRun, DiscoverySource
from tests.clusters.conftest import kubeconfig_for

pytestmark = pytest.mark.django_db

RULES = [
    {"match": {"env": "production"}, "environment": "prod", "tier": "tier-0"},
    {"match": {"env": "staging"}, "environment": "staging", "tier": "tier-1"},
    {"name": "sandbox-*", "environment": "dev", "tier": "tier-3"},
]


class Management:
    """A kubesim cluster acting as a Cluster API management cluster."""

    def __init__(self, sim):
        self.sim = sim
        sim.register_kind("Cluster", "clusters", "cluster.x-k8s.io", "v1beta1")
        sim.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "capi"}})

    def add(self, name, labels=None, workload=None, kubeconfig=None, namespace="capi"):
        self.sim.apply(
            {
                "apiVersion": "cluster.x-k8s.io/v1beta1",
                "kind": "Cluster",
                "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
                "spec": {"controlPlaneEndpoint": {"host": "10.0.0.1", "port": 6443}},
            }
        )
        text = kubeconfig if kubeconfig is not None else (workload and kubeconfig_for(workload))
        if text:
            self.sim.apply(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "type": "cluster.x-k8s.io/secret",
                    "metadata": {"name": f"{name}-kubeconfig", "namespace": namespace},
                    "data": {"value": base64.b64encode(text.encode()).decode()},
                }
            )

    def remove(self, name, namespace="capi"):
        self.sim.store.delete(self.sim.store.kinds["clusters"], namespace, name)

    def source(self, **fields):
        values = {
            "name": "capi-mgmt",
            "kind": "cluster-api",
            "api_url": self.sim.server_url,
            "ca_bundle": self.sim.ca_cert_pem.decode(),
            "token": self.sim.admin_token,
            "namespace": "capi",
            "rules": RULES,
        }
        values.update(fields)
        return DiscoverySource.objects.create(**values)


@pytest.fixture
def management(kube_cluster):
    return Management(kube_cluster())


def discover(source):
    return discovery.discover(source.pk, DiscoveryTrigger.OPERATOR)


# --- Cluster API ------------------------------------------------------------------------------


def test_clusters_listed_by_cluster_api_are_registered_with_their_mapped_environment(
    management, kube_cluster
):
    prod, staging = kube_cluster(), kube_cluster()
    management.add("prod-eu-1", {"env": "production", "region": "eu"}, prod)
    management.add("staging-eu-1", {"env": "staging"}, staging)
    source = management.source()

    run = discover(source)

    assert run.status == DiscoveryStatus.SUCCEEDED
    assert (run.found, run.registered, run.failed) == (2, 2, 0)
    registered = Cluster.objects.get(name="prod-eu-1")
    assert (registered.environment, registered.tier) == ("prod", "tier-0")
    assert registered.labels == {"env": "production", "region": "eu"}
    assert registered.api_url == prod.server_url and registered.token == prod.admin_token
    assert registered.discovered_by == source and registered.discovered_key == "capi/prod-eu-1"
    assert Cluster.objects.get(name="staging-eu-1").tier == "tier-1"
    event = AuditEvent.objects.get(action="cluster.registered", object_id=str(registered.pk))
    assert event.reason == "discovered by capi-mgmt"
    assert run.notes == ["Rule 3 (name sandbox-* → dev/tier-3) matched no cluster"]


def test_a_source_without_a_namespace_lists_every_namespace(management, kube_cluster):
    management.sim.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-b"}})
    management.add("prod-a", {"env": "production"}, kube_cluster())
    management.add("prod-b", {"env": "production"}, kube_cluster(), namespace="team-b")

    run = discover(management.source(namespace=""))

    assert run.registered == 2
    assert Cluster.objects.get(name="prod-b").discovered_key == "team-b/prod-b"


def test_a_second_run_changes_nothing_and_a_rotated_token_is_taken_up(management, kube_cluster):
    prod = kube_cluster()
    management.add("prod-eu-1", {"env": "production"}, prod)
    source = management.source()
    discover(source)

    again = discover(source)
    assert (again.registered, again.updated, again.unchanged) == (0, 0, 1)

    # when: the Cluster API provider rotates the kubeconfig's token
    fresh = prod.add_user("warden-2", groups=["system:masters"])
    secrets = management.sim.store.kinds["secrets"]
    secret = management.sim.store.get(secrets, "capi", "prod-eu-1-kubeconfig")
    secret["data"]["value"] = base64.b64encode(kubeconfig_for(prod, token=fresh).encode()).decode()
    management.sim.store.update(secrets, "capi", "prod-eu-1-kubeconfig", secret)

    rotated = discover(source)
    assert rotated.updated == 1
    assert Cluster.objects.get(name="prod-eu-1").token == fresh
    event = AuditEvent.objects.get(action="cluster.updated")
    assert event.reason == "discovered by capi-mgmt; new credentials, access checked"
    assert fresh not in str(event.before) + str(event.after)


def test_labels_that_no_rule_matches_are_reported_and_not_registered(management, kube_cluster):
    management.add("mystery-1", {"env": "qa", "team": "x"}, kube_cluster())
    source = management.source()

    run = discover(source)

    assert run.status == DiscoveryStatus.SUCCEEDED
    assert run.registered == 0 and run.failed == 1
    (problem,) = run.problems
    assert problem["cluster"] == "capi/mystery-1"
    assert "No rule maps mystery-1 (labels: env=qa, team=x)" in problem["problem"]
    assert "add a rule" in problem["problem"]
    assert len(run.notes) == 3  # every rule matched nothing
    assert not Cluster.objects.exists()


def test_a_default_environment_catches_what_no_rule_matches(management, kube_cluster):
    management.add("mystery-1", {"env": "qa"}, kube_cluster())
    source = management.source(default_environment="dev", default_tier="tier-3")
    discover(source)
    assert Cluster.objects.get(name="mystery-1").environment == "dev"


def test_one_cluster_failing_its_access_check_does_not_stop_the_others(management, kube_cluster):
    good, bad = kube_cluster(), kube_cluster()
    management.add("prod-good", {"env": "production"}, good)
    management.add("prod-bad", {"env": "production"}, kubeconfig=kubeconfig_for(bad, token="old"))
    management.add("prod-provisioning", {"env": "production"})  # no Secret yet
    source = management.source()

    run = discover(source)

    assert (run.found, run.registered, run.failed) == (3, 1, 2)
    problems = {p["cluster"]: p["problem"] for p in run.problems}
    assert "does not accept this token" in problems["capi/prod-bad"]
    assert "old" not in problems["capi/prod-bad"].split(":")[-1]
    assert "may still be provisioning" in problems["capi/prod-provisioning"]
    assert set(Cluster.objects.values_list("name", flat=True)) == {"prod-good"}


def test_a_cluster_gone_from_cluster_api_is_retired_after_the_grace_period(
    management, kube_cluster
):
    management.add("prod-eu-1", {"env": "production"}, kube_cluster())
    source = management.source(grace_hours=6)
    discover(source)
    management.remove("prod-eu-1")

    within_grace = discover(source)

    cluster = Cluster.objects.get(name="prod-eu-1")
    assert within_grace.missing == 1 and within_grace.retired == 0
    assert cluster.state == ClusterState.ACTIVE and cluster.missing_since is not None

    # when: it is still gone when the grace period is over
    Cluster.objects.filter(pk=cluster.pk).update(missing_since=timezone.now() - timedelta(hours=7))
    after_grace = discover(source)

    cluster.refresh_from_db()
    assert after_grace.retired == 1
    assert cluster.state == ClusterState.RETIRED  # and its record is kept
    event = AuditEvent.objects.get(action="cluster.retired")
    assert "missing from discovery source capi-mgmt" in event.reason


def test_a_cluster_that_comes_back_within_the_grace_period_is_no_longer_missing(
    management, kube_cluster
):
    workload = kube_cluster()
    management.add("prod-eu-1", {"env": "production"}, workload)
    source = management.source()
    discover(source)
    management.remove("prod-eu-1")
    discover(source)

    management.add("prod-eu-1", {"env": "production"})  # the Secret is still there
    back = discover(source)

    assert back.missing == 0 and back.unchanged == 1
    assert Cluster.objects.get(name="prod-eu-1").missing_since is None


def test_a_management_cluster_that_is_down_retires_nothing(management, kube_cluster):
    management.add("prod-eu-1", {"env": "production"}, kube_cluster())
    source = management.source(grace_hours=1)
    discover(source)
    # the cluster has been "missing" for long, by an earlier run's account
    Cluster.objects.update(missing_since=timezone.now() - timedelta(days=3))
    management.sim.faults.unreachable = True

    run = discover(source)

    assert run.status == DiscoveryStatus.FAILED
    assert "management cluster is not answering" in run.error
    cluster = Cluster.objects.get(name="prod-eu-1")
    assert cluster.state == ClusterState.ACTIVE
    assert not AuditEvent.objects.filter(action="cluster.retired").exists()


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("token", "does not accept the source's token (401)"),
        ("rbac", "may not list clusters.cluster.x-k8s.io in namespace capi"),
        ("no-capi", "is Cluster API installed there?"),
    ],
)
def test_a_source_that_cannot_be_listed_fails_with_what_to_fix(
    management, kube_cluster, breakage, message
):
    management.add("prod-eu-1", {"env": "production"}, kube_cluster())
    source = management.source()
    discover(source)
    if breakage == "token":
        source.token = "expired"
    elif breakage == "rbac":
        source.token = management.sim.add_user("nobody")
    else:
        plain = kube_cluster()  # a cluster without Cluster API
        source.api_url, source.token = plain.server_url, plain.admin_token
    source.save()

    run = discover(source)

    assert run.status == DiscoveryStatus.FAILED and message in run.error
    assert Cluster.objects.get(name="prod-eu-1").missing_since is None


def test_least_privilege_reader_credentials_are_enough(management, kube_cluster):
    sim = management.sim
    reader = sim.add_user("warden-discovery")
    sim.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "warden-discovery", "namespace": "capi"},
            "rules": [
                {"apiGroups": ["cluster.x-k8s.io"], "resources": ["clusters"], "verbs": ["list"]},
                {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
            ],
        }
    )
    sim.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "warden-discovery", "namespace": "capi"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "warden-discovery",
            },
            "subjects": [
                {
                    "kind": "User",
                    "name": "warden-discovery",
                    "apiGroup": "rbac.authorization.k8s.io",
                }
            ],
        }
    )
    management.add("prod-eu-1", {"env": "production"}, kube_cluster())
    endpoint = discovery.source_endpoint(management.source(token=reader))

    assert discovery.check_source_access(endpoint, "capi") == []
    assert "in all namespaces" in discovery.check_source_access(endpoint, "")[0]
    assert discover(DiscoverySource.objects.get()).registered == 1


def test_a_name_already_registered_by_hand_is_left_alone(management, kube_cluster, make_cluster):
    mine, _ = make_cluster(environment="dev")
    management.add(mine.name, {"env": "production"}, kube_cluster())
    run = discover(management.source())
    assert "already registered by an operator" in run.problems[0]["problem"]
    mine.refresh_from_db()
    assert mine.environment == "dev" and mine.discovered_by is None


def test_a_run_while_another_is_under_way_does_nothing(management):
    source = management.source()
    DiscoveryRun.objects.create(source=source, trigger=DiscoveryTrigger.SCHEDULE)
    assert discover(source) is None

    # a run left "running" by a worker that died long ago does not block forever
    DiscoveryRun.objects.update(started_at=timezone.now() - timedelta(hours=2))
    assert discover(source).status == DiscoveryStatus.SUCCEEDED
    assert DiscoveryRun.objects.filter(status=DiscoveryStatus.FAILED).count() == 1


def test_the_scheduled_task_runs_every_enabled_source(management, kube_cluster, tmp_path):
    from clusters.tasks import discover_all_task

    management.add("prod-eu-1", {"env": "production"}, kube_cluster())
    management.source()
    DiscoverySource.objects.create(name="off", kind="kubeconfig-dir", path="/x", enabled=False)

    assert discover_all_task.delay().get() == 1

    assert Cluster.objects.filter(name="prod-eu-1").exists()
    assert not DiscoveryRun.objects.filter(source__name="off").exists()


# --- a folder of kubeconfig files ---------------------------------------------------------------


@pytest.fixture
def folder(tmp_path):
    path = tmp_path / "kubeconfigs"
    path.mkdir()
    return path


def folder_source(folder, **fields):
    values = {
        "name": "folder",
        "kind": "kubeconfig-dir",
        "path": str(folder),
        "rules": [{"name": "c*", "environment": "staging", "tier": "tier-2"}],
    }
    values.update(fields)
    return DiscoverySource.objects.create(**values)


def test_every_context_of_every_file_in_the_folder_is_registered(folder, kube_cluster):
    one, two, three = kube_cluster(), kube_cluster(), kube_cluster()
    (folder / "one.yaml").write_text(kubeconfig_for(one))
    (folder / "pair.kubeconfig").write_text(kubeconfig_for(two, three))
    (folder / ".hidden").write_text("not read")
    source = folder_source(folder)

    run = discover(source)

    assert (run.found, run.registered, run.failed) == (3, 3, 0)
    assert set(Cluster.objects.values_list("name", flat=True)) == {one.name, two.name, three.name}
    assert Cluster.objects.get(name=two.name).discovered_key == f"pair.kubeconfig#{two.name}-ctx"
    assert Cluster.objects.get(name=one.name).environment == "staging"


def test_a_file_that_cannot_be_read_keeps_its_clusters(folder, kube_cluster):
    sim = kube_cluster()
    (folder / "one.yaml").write_text(kubeconfig_for(sim))
    source = folder_source(folder, grace_hours=0)
    discover(source)

    (folder / "one.yaml").write_text("clusters: [half-written")
    run = discover(source)

    assert run.failed == 1 and "one.yaml" in run.problems[0]["problem"]
    assert run.missing == 0 and run.retired == 0
    assert Cluster.objects.get(name=sim.name).state == ClusterState.ACTIVE


def test_a_file_removed_from_the_folder_retires_its_cluster_after_the_grace(folder, kube_cluster):
    sim = kube_cluster()
    (folder / "one.yaml").write_text(kubeconfig_for(sim))
    source = folder_source(folder, grace_hours=0)
    discover(source)

    (folder / "one.yaml").unlink()
    run = discover(source)

    assert run.retired == 1
    assert Cluster.objects.get(name=sim.name).state == ClusterState.RETIRED


def test_a_folder_that_is_not_there_retires_nothing(folder, kube_cluster):
    sim = kube_cluster()
    (folder / "one.yaml").write_text(kubeconfig_for(sim))
    source = folder_source(folder, grace_hours=0)
    discover(source)

    (folder / "one.yaml").unlink()
    folder.rmdir()
    run = discover(source)

    assert run.status == DiscoveryStatus.FAILED
    assert "cannot be read" in run.error and "mounted" in run.error
    assert Cluster.objects.get(name=sim.name).state == ClusterState.ACTIVE


def test_a_kubeconfig_with_a_plugin_login_is_reported(folder):
    (folder / "eks.yaml").write_text(
        """
apiVersion: v1
kind: Config
clusters: [{name: eks-1, cluster: {server: "https://eks.example.com"}}]
users: [{name: me, user: {exec: {command: aws}}}]
contexts: [{name: eks-1, context: {cluster: eks-1, user: me}}]
"""
    )
    run = discover(folder_source(folder))
    assert "logs in with a plugin" in run.problems[0]["problem"]
    assert not Cluster.objects.exists()


# --- rules and sources ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"env": "prod"}, "Rules must be a list"),
        (
            [{"match": {"env": "x"}, "environment": "production", "tier": "tier-0"}],
            "Rule 1: environment",
        ),
        ([{"environment": "prod", "tier": "gold"}], "Rule 1: tier must be one of"),
        ([{"labels": {}, "environment": "prod", "tier": "tier-0"}], "unknown keys labels"),
        (["prod"], "Rule 1 is not a mapping"),
        ([{"match": ["env"], "environment": "prod", "tier": "tier-0"}], "`match` must map"),
    ],
)
def test_bad_rules_are_refused_naming_the_rule(rules, message):
    with pytest.raises(ValidationError) as refused:
        discovery.validate_rules(rules)
    assert message in " ".join(refused.value.messages)


def test_label_values_written_as_yaml_booleans_match_kubernetes_text():
    (rule,) = discovery.validate_rules(
        [{"match": {"critical": True}, "environment": "prod", "tier": "tier-0"}]
    )
    assert rule["match"] == {"critical": "true"}


def test_saving_a_cluster_api_source_checks_its_credentials(management):
    weak = management.sim.add_user("nobody")
    source = DiscoverySource(
        name="capi",
        kind="cluster-api",
        api_url=management.sim.server_url,
        ca_bundle=management.sim.ca_cert_pem.decode(),
        namespace="capi",
    )
    with pytest.raises(ValidationError, match=r"may not list clusters\.cluster\.x-k8s\.io"):
        discovery.save_source(source, token=weak)
    assert not DiscoverySource.objects.exists()

    saved = discovery.save_source(source, token=management.sim.admin_token)
    assert saved.token == management.sim.admin_token
    assert AuditEvent.objects.get(action="discovery_source.created").after["name"] == "capi"


# --- the discovery pages ----------------------------------------------------------------------


def test_an_operator_adds_a_source_and_the_token_is_write_only(client, operator, management):
    token = management.sim.admin_token
    form = {
        "name": "capi-mgmt",
        "kind": "cluster-api",
        "enabled": "on",
        "api_url": management.sim.server_url,
        "ca_bundle": management.sim.ca_cert_pem.decode(),
        "token": token,
        "namespace": "capi",
        "rules_text": "- match: {env: production}\n  environment: prod\n  tier: tier-0\n",
        "bind_groups": "on",
        "grace_hours": "24",
    }

    response = client.post(reverse("cluster-discovery-new"), form)

    source = DiscoverySource.objects.get()
    assert response.status_code == 302
    assert source.rules == [
        {"match": {"env": "production"}, "name": "", "environment": "prod", "tier": "tier-0"}
    ]
    edit_page = client.get(reverse("cluster-discovery-edit", args=[source.pk])).content.decode()
    assert token not in edit_page and "env: production" in edit_page

    # an edit without a token keeps the stored one
    client.post(
        reverse("cluster-discovery-edit", args=[source.pk]),
        {**form, "token": "", "grace_hours": "48"},
    )
    source.refresh_from_db()
    assert source.grace_hours == 48 and source.token == token


def test_the_source_form_names_bad_rules_and_missing_fields(client, operator):
    response = client.post(
        reverse("cluster-discovery-new"),
        {
            "name": "folder",
            "kind": "kubeconfig-dir",
            "rules_text": "- environment: production\n  tier: tier-0\n",
            "grace_hours": "24",
            "default_environment": "dev",
        },
    )
    text = response.content.decode()
    assert response.status_code == 400
    assert "Rule 1: environment must be one of dev, staging, prod" in text
    assert "Name the folder" in text
    assert "Give both a default environment and tier" in text
    assert not DiscoverySource.objects.exists()


def test_the_source_page_shows_each_runs_counts_problems_and_notes(
    client, operator, management, kube_cluster, django_capture_on_commit_callbacks
):
    management.add("prod-eu-1", {"env": "production"}, kube_cluster())
    management.add("mystery", {"env": "qa"}, kube_cluster())
    source = management.source()

    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("cluster-discovery-run", args=[source.pk]))

    page = client.get(reverse("cluster-discovery-detail", args=[source.pk])).content.decode()
    assert "No rule maps mystery (labels: env=qa)" in page
    assert "matched no cluster" in page
    assert "prod-eu-1" in page and "capi/prod-eu-1" in page
    overview = client.get(reverse("cluster-discovery")).content.decode()
    assert "2 found, 1 registered, 1 failed, 0 retired" in overview
