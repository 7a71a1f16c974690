"""RBAC rule matching as kube-apiserver's RBAC authorizer decides it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from access.forbidden import AccessAttempt, rule_allows
from kubesim import rbac as kubesim_rbac


def attempt(**kw):
    kw.setdefault("verb", "get")
    return AccessAttempt(**kw)


PODS = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}


def test_a_rule_allows_its_verbs_on_its_resources_in_its_group():
    assert rule_allows(PODS, attempt(verb="list", resource="pods", namespace="p"))
    assert not rule_allows(PODS, attempt(verb="delete", resource="pods"))
    assert not rule_allows(PODS, attempt(verb="get", resource="secrets"))
    assert not rule_allows(PODS, attempt(verb="get", resource="pods", api_group="apps"))


def test_star_matches_any_verb_group_and_resource():
    rule = {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}
    assert rule_allows(rule, attempt(verb="escalate", resource="clusterroles", api_group="x.io"))
    assert rule_allows(rule, attempt(verb="get", resource="pods", subresource="log"))


def test_a_resource_does_not_bring_its_subresources():
    assert not rule_allows(PODS, attempt(resource="pods", subresource="log"))
    assert rule_allows(
        {**PODS, "resources": ["pods/log"]}, attempt(resource="pods", subresource="log")
    )


def test_star_slash_subresource_matches_that_subresource_of_anything():
    rule = {"apiGroups": ["apps"], "resources": ["*/scale"], "verbs": ["patch"]}
    scale = attempt(verb="patch", api_group="apps", resource="deployments", subresource="scale")
    assert rule_allows(rule, scale)
    assert not rule_allows(rule, attempt(verb="patch", api_group="apps", resource="deployments"))
    assert not rule_allows(
        rule, attempt(verb="patch", api_group="apps", resource="deployments", subresource="status")
    )


def test_resource_slash_star_is_not_a_wildcard_in_kubernetes():
    # rbac/v1 ResourceMatches knows "*", exact and "*/sub"; "pods/*" matches only itself.
    rule = {"apiGroups": [""], "resources": ["pods/*"], "verbs": ["get"]}
    assert not rule_allows(rule, attempt(resource="pods", subresource="log"))


def test_resource_names_limit_a_rule_to_those_objects():
    rule = {**PODS, "resourceNames": ["web-0"]}
    assert rule_allows(rule, attempt(resource="pods", name="web-0"))
    assert not rule_allows(rule, attempt(resource="pods", name="web-1"))
    # list and create carry no name, so a named rule never allows them
    assert not rule_allows(rule, attempt(verb="list", resource="pods"))


def test_non_resource_urls_match_exactly_or_by_trailing_star():
    rule = {"nonResourceURLs": ["/healthz", "/metrics/*"], "verbs": ["get"]}
    assert rule_allows(rule, attempt(path="/healthz"))
    assert rule_allows(rule, attempt(path="/metrics/cadvisor"))
    assert not rule_allows(rule, attempt(path="/metrics"))
    assert not rule_allows(rule, attempt(path="/healthz", verb="post"))
    assert rule_allows({"nonResourceURLs": ["*"], "verbs": ["*"]}, attempt(path="/anything"))


def test_resource_rules_and_url_rules_do_not_cross():
    url_rule = {"nonResourceURLs": ["*"], "verbs": ["*"]}
    resource_rule = {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}
    assert not rule_allows(url_rule, attempt(resource="pods"))
    assert not rule_allows(resource_rule, attempt(path="/metrics"))


# --- properties -------------------------------------------------------------------------------

verbs = st.sampled_from(["get", "list", "watch", "create", "delete", "patch", "impersonate"])
groups = st.sampled_from(["", "apps", "batch", "rbac.authorization.k8s.io"])
resources = st.sampled_from(["pods", "deployments", "secrets", "nodes"])
subresources = st.sampled_from(["", "log", "exec", "scale", "status"])
names = st.sampled_from(["", "web-0", "api"])


@st.composite
def attempts(draw):
    return AccessAttempt(
        verb=draw(verbs),
        api_group=draw(groups),
        resource=draw(resources),
        subresource=draw(subresources),
        name=draw(names),
        namespace=draw(st.sampled_from(["", "payments"])),
    )


def rule_for(a: AccessAttempt) -> dict:
    rule = {"apiGroups": [a.api_group], "resources": [a.combined_resource], "verbs": [a.verb]}
    if a.name:
        rule["resourceNames"] = [a.name]
    return rule


@given(attempts())
def test_the_rule_naming_exactly_the_request_allows_it(a):
    assert rule_allows(rule_for(a), a)


@given(attempts(), st.sets(st.sampled_from(["apiGroups", "resources", "verbs"]), min_size=1))
def test_widening_a_field_to_star_keeps_it_allowed(a, widened):
    rule = {**rule_for(a), **{key: ["*"] for key in widened}}
    assert rule_allows(rule, a)


@given(attempts(), verbs)
def test_a_rule_without_the_verb_never_allows_it(a, other):
    rule = {**rule_for(a), "verbs": [other]}
    assert rule_allows(rule, a) == (other == a.verb)


@st.composite
def rules(draw):
    rule = {
        "apiGroups": draw(st.lists(st.sampled_from(["", "apps", "*"]), min_size=1, max_size=2)),
        "resources": draw(
            st.lists(
                st.sampled_from(["pods", "pods/log", "*/scale", "deployments", "*", "secrets"]),
                min_size=1,
                max_size=3,
            )
        ),
        "verbs": draw(st.lists(st.sampled_from(["get", "list", "*", "patch"]), min_size=1)),
    }
    if draw(st.booleans()):
        rule["resourceNames"] = draw(st.lists(st.sampled_from(["web-0", "api"]), min_size=1))
    return rule


@given(rules(), attempts())
def test_it_agrees_with_kubesims_authorizer(rule, a):
    # An independent implementation (the emulator's) must decide every case the same way.
    attrs = kubesim_rbac.Attributes(
        verb=a.verb,
        group=a.api_group,
        resource=a.resource,
        subresource=a.subresource,
        namespace=a.namespace,
        name=a.name,
    )
    assert rule_allows(rule, a) == kubesim_rbac.rule_allows(rule, attrs)


@pytest.mark.parametrize("verb", ["get", "list", "watch"])
def test_kubesims_view_role_reads_pod_logs_but_not_secrets(verb):
    view = kubesim_rbac.VIEW_RULES
    assert any(rule_allows(r, attempt(verb=verb, resource="pods", subresource="log")) for r in view)
    assert not any(rule_allows(r, attempt(verb=verb, resource="secrets")) for r in view)
