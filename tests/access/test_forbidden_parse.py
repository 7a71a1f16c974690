"""Reading Kubernetes forbidden messages as people paste them (kube-apiserver's own wording)."""

from __future__ import annotations

import pytest

from access.forbidden import AccessAttempt, UnreadableMessage, attempt_from_fields, parse_message
from kubesim.rbac import Attributes, UserInfo, forbidden_message

# (pasted text, what Warden must read from it)
REAL_SHAPES = [
    # kubectl get pods -n payments
    (
        'Error from server (Forbidden): pods is forbidden: User "alice" cannot list resource '
        '"pods" in API group "" in the namespace "payments"',
        AccessAttempt(verb="list", user="alice", resource="pods", namespace="payments"),
    ),
    # kubectl get nodes: a cluster-scoped resource
    (
        'Error from server (Forbidden): nodes is forbidden: User "alice" cannot list resource '
        '"nodes" in API group "" at the cluster scope',
        AccessAttempt(verb="list", user="alice", resource="nodes"),
    ),
    # kubectl get pods -A: a namespaced resource across all namespaces
    (
        'pods is forbidden: User "alice" cannot list resource "pods" in API group "" at the '
        "cluster scope",
        AccessAttempt(verb="list", user="alice", resource="pods"),
    ),
    # kubectl logs web-0: a subresource of a named object
    (
        'Error from server (Forbidden): pods "web-0" is forbidden: User "alice" cannot get '
        'resource "pods/log" in API group "" in the namespace "payments"',
        AccessAttempt(
            verb="get",
            user="alice",
            resource="pods",
            subresource="log",
            name="web-0",
            namespace="payments",
        ),
    ),
    # kubectl exec: create on pods/exec
    (
        'Error from server (Forbidden): pods "web-0" is forbidden: User "oidc:alice" cannot '
        'create resource "pods/exec" in API group "" in the namespace "payments"',
        AccessAttempt(
            verb="create",
            user="oidc:alice",
            resource="pods",
            subresource="exec",
            name="web-0",
            namespace="payments",
        ),
    ),
    # a named object in a non-core group: the prefix is resource.group
    (
        'Error from server (Forbidden): deployments.apps "api" is forbidden: User "alice" '
        'cannot patch resource "deployments" in API group "apps" in the namespace "checkout"',
        AccessAttempt(
            verb="patch",
            user="alice",
            resource="deployments",
            api_group="apps",
            name="api",
            namespace="checkout",
        ),
    ),
    # kubectl scale: the scale subresource in apps
    (
        'deployments.apps "api" is forbidden: User "alice" cannot patch resource '
        '"deployments/scale" in API group "apps" in the namespace "checkout"',
        AccessAttempt(
            verb="patch",
            user="alice",
            resource="deployments",
            subresource="scale",
            api_group="apps",
            name="api",
            namespace="checkout",
        ),
    ),
    # a service account, from a controller's log
    (
        "E0301 12:00:00.000000 1 reflector.go:147] failed to list *v1.Secret: secrets is "
        'forbidden: User "system:serviceaccount:payments:deployer" cannot list resource '
        '"secrets" in API group "" in the namespace "payments"',
        AccessAttempt(
            verb="list",
            user="system:serviceaccount:payments:deployer",
            resource="secrets",
            namespace="payments",
        ),
    ),
    # a custom resource with a dotted group, cluster-scoped and named
    (
        'clusterissuers.cert-manager.io "letsencrypt" is forbidden: User "alice" cannot delete '
        'resource "clusterissuers" in API group "cert-manager.io" at the cluster scope',
        AccessAttempt(
            verb="delete",
            user="alice",
            resource="clusterissuers",
            api_group="cert-manager.io",
            name="letsencrypt",
        ),
    ),
    # a non-resource URL
    (
        'Error from server (Forbidden): forbidden: User "alice" cannot get path "/metrics"',
        AccessAttempt(verb="get", user="alice", path="/metrics"),
    ),
    # a client's log line holding the Status JSON, with the authorizer's reason appended
    (
        'W0301 request failed: {"kind":"Status","apiVersion":"v1","status":"Failure",'
        '"message":"pods is forbidden: '
        'User \\"alice\\" cannot watch resource \\"pods\\" in API group \\"\\" in the namespace '
        '\\"payments\\": RBAC: clusterrole.rbac.authorization.k8s.io \\"reader\\" not found",'
        '"reason":"Forbidden","code":403}',
        AccessAttempt(
            verb="watch",
            user="alice",
            resource="pods",
            namespace="payments",
            reason='RBAC: clusterrole.rbac.authorization.k8s.io "reader" not found',
        ),
    ),
    # the Status object itself (kubectl -o json)
    (
        '{"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "nodes \\"n1\\" '
        'is forbidden: User \\"alice\\" cannot get resource \\"nodes\\" in API group \\"\\" '
        'at the cluster scope", "reason": "Forbidden", "details": {"name": "n1", "kind": "nodes"}, '
        '"code": 403}',
        AccessAttempt(verb="get", user="alice", resource="nodes", name="n1"),
    ),
    # a terminal wrapped the line
    (
        'Error from server (Forbidden): pods is forbidden: User "alice" cannot list\n'
        '  resource "pods" in API group "" in the namespace\n  "payments"',
        AccessAttempt(verb="list", user="alice", resource="pods", namespace="payments"),
    ),
    # kube-apiserver before 1.14: group folded into the resource, no "resource"/"API group"
    (
        'Error from server (Forbidden): deployments.apps is forbidden: User "alice" cannot '
        'list deployments.apps in the namespace "checkout"',
        AccessAttempt(
            verb="list",
            user="alice",
            resource="deployments",
            api_group="apps",
            namespace="checkout",
        ),
    ),
    (
        'pods "web-0" is forbidden: User "alice" cannot get pods/log in the namespace "payments"',
        AccessAttempt(
            verb="get",
            user="alice",
            resource="pods",
            subresource="log",
            name="web-0",
            namespace="payments",
        ),
    ),
    (
        'nodes is forbidden: User "alice" cannot list nodes at the cluster scope: no RBAC '
        "policy matched",
        AccessAttempt(verb="list", user="alice", resource="nodes", reason="no RBAC policy matched"),
    ),
]


@pytest.mark.parametrize(("text", "expected"), REAL_SHAPES)
def test_it_reads_every_real_message_shape(text, expected):
    assert parse_message(text) == expected


@pytest.mark.parametrize(
    "attrs",
    [
        Attributes(verb="list", resource="pods", namespace="payments"),
        Attributes(verb="get", resource="pods", subresource="log", namespace="p", name="web-0"),
        Attributes(verb="create", group="apps", resource="deployments", namespace="checkout"),
        Attributes(verb="list", resource="namespaces"),
        Attributes(
            verb="delete", group="rbac.authorization.k8s.io", resource="clusterroles", name="x"
        ),
        Attributes(verb="get", path="/metrics", resource_request=False),
    ],
)
def test_it_reads_what_kubesim_answers_back_to_front(attrs):
    # kubesim writes kube-apiserver's wording; reading it must give the attributes back.
    user = UserInfo(name="system:serviceaccount:payments:deployer")

    attempt = parse_message(forbidden_message(user, attrs))

    assert attempt.user == user.name
    assert (attempt.verb, attempt.api_group, attempt.resource) == (
        attrs.verb,
        attrs.group,
        attrs.resource,
    )
    assert (attempt.subresource, attempt.namespace, attempt.name, attempt.path) == (
        attrs.subresource,
        attrs.namespace,
        attrs.name,
        attrs.path,
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "error: You must be logged in to the server (Unauthorized)",
        'Error from server (NotFound): pods "web-0" not found',
        "no",  # what `kubectl auth can-i` says
        'User "alice" cannot',
    ],
)
def test_it_says_what_to_paste_when_there_is_no_forbidden_message(text):
    with pytest.raises(UnreadableMessage, match="no Kubernetes forbidden message"):
        parse_message(text)


def test_it_refuses_a_whole_log_file():
    with pytest.raises(UnreadableMessage, match="paste just the line"):
        parse_message("x" * 2001)


def test_typed_fields_accept_kubectl_spellings():
    attempt = attempt_from_fields(verb=" GET ", resource="deployments.apps/scale", namespace="c")
    assert attempt == AccessAttempt(
        verb="get", resource="deployments", subresource="scale", api_group="apps", namespace="c"
    )


def test_typed_fields_keep_an_explicit_group():
    attempt = attempt_from_fields(verb="list", resource="pods", api_group="", namespace="p")
    assert (attempt.resource, attempt.api_group) == ("pods", "")


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"verb": "", "resource": "pods"}, "which verb"),
        ({"verb": "get"}, "which resource"),
        ({"verb": "get", "resource": "pods", "path": "/metrics"}, "not both"),
        ({"verb": "get", "path": "metrics"}, "starts with /"),
    ],
)
def test_typed_fields_that_do_not_make_a_request_are_refused(fields, complaint):
    with pytest.raises(UnreadableMessage, match=complaint):
        attempt_from_fields(**fields)
