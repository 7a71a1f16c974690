"""RBAC as kube-apiserver evaluates it: bootstrap roles, aggregation, authorization, escalation."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kubesim.store import Store, parse_label_selector

RBAC_GROUP = "rbac.authorization.k8s.io"
READ = ["get", "list", "watch"]
WRITE = ["create", "delete", "deletecollection", "patch", "update"]


def _rule(groups: list[str], resources: list[str], verbs: list[str]) -> dict[str, Any]:
    return {"apiGroups": groups, "resources": resources, "verbs": verbs}


# The bootstrap policy's user-facing roles, as the aggregation controller builds them: the
# aggregate-to-* parts carry the rules, admin/edit/view aggregate them. (Trimmed to the core,
# apps, batch and RBAC groups; the shape and semantics are the real ones.)
VIEW_RULES = [
    _rule(
        [""],
        [
            "configmaps",
            "endpoints",
            "persistentvolumeclaims",
            "pods",
            "replicationcontrollers",
            "services",
            "serviceaccounts",
        ],
        READ,
    ),
    _rule(
        [""],
        [
            "bindings",
            "events",
            "limitranges",
            "namespaces/status",
            "pods/log",
            "pods/status",
            "resourcequotas",
            "resourcequotas/status",
            "replicationcontrollers/status",
        ],
        READ,
    ),
    _rule([""], ["namespaces"], READ),
    _rule(
        ["apps"],
        [
            "daemonsets",
            "deployments",
            "deployments/scale",
            "replicasets",
            "replicasets/scale",
            "statefulsets",
            "statefulsets/scale",
            "controllerrevisions",
        ],
        READ,
    ),
    _rule(["batch"], ["cronjobs", "jobs"], READ),
]
EDIT_RULES = [
    _rule(
        [""],
        ["pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets", "services/proxy"],
        READ,
    ),
    _rule([""], ["serviceaccounts"], ["impersonate"]),
    _rule([""], ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"], WRITE),
    _rule(
        [""],
        [
            "configmaps",
            "events",
            "persistentvolumeclaims",
            "replicationcontrollers",
            "replicationcontrollers/scale",
            "secrets",
            "serviceaccounts",
            "services",
            "services/proxy",
        ],
        WRITE,
    ),
    _rule([""], ["serviceaccounts/token"], ["create"]),
    _rule(
        ["apps"],
        [
            "daemonsets",
            "deployments",
            "deployments/scale",
            "replicasets",
            "replicasets/scale",
            "statefulsets",
            "statefulsets/scale",
        ],
        WRITE,
    ),
    _rule(["batch"], ["cronjobs", "jobs"], WRITE),
]
ADMIN_RULES = [
    _rule(["authorization.k8s.io"], ["localsubjectaccessreviews"], ["create"]),
    _rule([RBAC_GROUP], ["rolebindings", "roles"], [*READ, *WRITE]),
]


def bootstrap_cluster_roles() -> list[dict[str, Any]]:
    def role(
        name: str,
        rules: list[dict[str, Any]],
        labels: dict[str, str] | None = None,
        aggregate_from: list[str] | None = None,
    ) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "apiVersion": f"{RBAC_GROUP}/v1",
            "kind": "ClusterRole",
            "metadata": {
                "name": name,
                "labels": {"kubernetes.io/bootstrapping": "rbac-defaults", **(labels or {})},
            },
            "rules": rules,
        }
        if aggregate_from:
            obj["aggregationRule"] = {
                "clusterRoleSelectors": [
                    {"matchLabels": {label: "true"}} for label in aggregate_from
                ]
            }
        return obj

    agg = "rbac.authorization.k8s.io/aggregate-to-"
    return [
        role(
            "cluster-admin",
            [_rule(["*"], ["*"], ["*"]), {"nonResourceURLs": ["*"], "verbs": ["*"]}],
        ),
        role("admin", [], aggregate_from=[f"{agg}admin"]),
        role("edit", [], {f"{agg}admin": "true"}, aggregate_from=[f"{agg}edit"]),
        role("view", [], {f"{agg}edit": "true"}, aggregate_from=[f"{agg}view"]),
        role("system:aggregate-to-admin", ADMIN_RULES, {f"{agg}admin": "true"}),
        role("system:aggregate-to-edit", EDIT_RULES, {f"{agg}edit": "true"}),
        role("system:aggregate-to-view", VIEW_RULES, {f"{agg}view": "true"}),
        role(
            "system:discovery",
            [
                {
                    "nonResourceURLs": [
                        "/api",
                        "/api/*",
                        "/apis",
                        "/apis/*",
                        "/healthz",
                        "/livez",
                        "/readyz",
                        "/openapi",
                        "/openapi/*",
                        "/version",
                        "/version/",
                    ],
                    "verbs": ["get"],
                }
            ],
        ),
        role(
            "system:basic-user",
            [
                _rule(
                    ["authorization.k8s.io"],
                    ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                    ["create"],
                ),
                _rule(["authentication.k8s.io"], ["selfsubjectreviews"], ["create"]),
            ],
        ),
    ]


def bootstrap_cluster_role_bindings() -> list[dict[str, Any]]:
    def binding(name: str, role: str, groups: list[str]) -> dict[str, Any]:
        return {
            "apiVersion": f"{RBAC_GROUP}/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": RBAC_GROUP, "kind": "Group", "name": g} for g in groups],
        }

    return [
        binding("cluster-admin", "cluster-admin", ["system:masters"]),
        binding("system:discovery", "system:discovery", ["system:authenticated"]),
        binding("system:basic-user", "system:basic-user", ["system:authenticated"]),
    ]


def aggregate(store: Store) -> None:
    """The clusterrole-aggregation controller: fill aggregated roles from their selectors.

    Aggregated roles can feed others (view -> edit -> admin), so it repeats to a fixed point.
    """
    roles = {obj["metadata"]["name"]: obj for obj in store.items("clusterroles")}
    for _ in range(len(roles) + 1):
        changed = False
        for obj in roles.values():
            selectors = (obj.get("aggregationRule") or {}).get("clusterRoleSelectors") or []
            if not selectors:
                continue
            rules: list[dict[str, Any]] = []
            for selector in selectors:
                text = ",".join(f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items())
                matches = parse_label_selector(text)
                for other in sorted(roles.values(), key=lambda r: r["metadata"]["name"]):
                    if other is obj or not matches(other["metadata"].get("labels") or {}):
                        continue
                    for rule in other.get("rules") or []:
                        if rule not in rules:
                            rules.append(rule)
            if obj.get("rules") != rules:
                obj["rules"] = rules
                changed = True
        if not changed:
            return


@dataclass(frozen=True)
class UserInfo:
    name: str
    groups: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    uid: str = ""

    @property
    def is_master(self) -> bool:
        return "system:masters" in self.groups


@dataclass(frozen=True)
class Attributes:
    """What a request asks: a resource verb, or a verb on a non-resource URL."""

    verb: str
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""
    resource_request: bool = True


def subject_matches(subject: dict[str, Any], user: UserInfo, binding_namespace: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "User":
        return name == user.name
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return user.name == f"system:serviceaccount:{namespace}:{name}"
    return False


def rules_for(store: Store, user: UserInfo, namespace: str) -> list[dict[str, Any]]:
    """Every rule the user holds cluster-wide, plus those bound in `namespace`."""
    rules: list[dict[str, Any]] = []
    for binding in store.items("clusterrolebindings"):
        if any(subject_matches(s, user, "") for s in binding.get("subjects") or []):
            rules.extend(_role_rules(store, binding["roleRef"], ""))
    if namespace:
        for binding in store.items("rolebindings"):
            if binding["metadata"]["namespace"] != namespace:
                continue
            if any(subject_matches(s, user, namespace) for s in binding.get("subjects") or []):
                rules.extend(_role_rules(store, binding["roleRef"], namespace))
    return rules


def _role_rules(store: Store, ref: dict[str, Any], namespace: str) -> list[dict[str, Any]]:
    if ref.get("kind") == "ClusterRole":
        role = store.peek("clusterroles", "", ref.get("name", ""))
    else:
        role = store.peek("roles", namespace, ref.get("name", ""))
    return list((role or {}).get("rules") or [])


def rule_allows(rule: dict[str, Any], attrs: Attributes) -> bool:
    verbs = rule.get("verbs") or []
    if "*" not in verbs and attrs.verb not in verbs:
        return False
    if not attrs.resource_request:
        return any(
            url == "*"
            or url == attrs.path
            or (url.endswith("*") and attrs.path.startswith(url[:-1]))
            for url in rule.get("nonResourceURLs") or []
        )
    if rule.get("nonResourceURLs") and not rule.get("resources"):
        return False
    groups = rule.get("apiGroups") or []
    if "*" not in groups and attrs.group not in groups:
        return False
    combined = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    resources = rule.get("resources") or []
    resource_ok = any(
        r == "*"
        or r == combined
        or (attrs.subresource and r == f"*/{attrs.subresource}")
        or (attrs.subresource and r == f"{attrs.resource}/*")
        for r in resources
    )
    if not resource_ok:
        return False
    names = rule.get("resourceNames") or []
    return not names or attrs.name in names


def authorize(store: Store, user: UserInfo, attrs: Attributes) -> bool:
    if user.is_master:
        return True
    return any(rule_allows(rule, attrs) for rule in rules_for(store, user, attrs.namespace))


def allowed_by(store: Store, user: UserInfo, attrs: Attributes) -> str:
    """kube-apiserver's reason for an RBAC allow: the first binding that grants it ("" for
    system:masters, whom the privileged-group authorizer lets through before RBAC)."""
    if user.is_master:
        return ""
    scopes = [("clusterrolebindings", "")]
    if attrs.namespace:
        scopes.append(("rolebindings", attrs.namespace))
    for plural, namespace in scopes:
        for binding in store.items(plural):
            if namespace and binding["metadata"].get("namespace") != namespace:
                continue
            subjects = [
                s for s in binding.get("subjects") or [] if subject_matches(s, user, namespace)
            ]
            rules = _role_rules(store, binding["roleRef"], namespace)
            if subjects and any(rule_allows(rule, attrs) for rule in rules):
                name = binding["metadata"]["name"]
                where = f"{name}/{namespace}" if namespace else name
                ref = binding["roleRef"]
                subject = subjects[0]
                who = subject.get("name", "")
                if subject.get("kind") == "ServiceAccount":
                    who = f"{subject.get('namespace') or namespace}/{who}"
                return (
                    f'RBAC: allowed by {binding["kind"]} "{where}" of {ref.get("kind")} '
                    f'"{ref.get("name")}" to {subject.get("kind")} "{who}"'
                )
    return ""


def forbidden_message(user: UserInfo, attrs: Attributes) -> str:
    """kube-apiserver's wording, which Warden's forbidden explainer parses."""
    if not attrs.resource_request:
        return f'forbidden: User "{user.name}" cannot {attrs.verb} path "{attrs.path}"'
    resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    qualified = f"{attrs.resource}.{attrs.group}" if attrs.group else attrs.resource
    prefix = (
        f'{qualified} "{attrs.name}" is forbidden' if attrs.name else f"{qualified} is forbidden"
    )
    scope = f' in the namespace "{attrs.namespace}"' if attrs.namespace else " at the cluster scope"
    return (
        f'{prefix}: User "{user.name}" cannot {attrs.verb} resource "{resource}" in API group '
        f'"{attrs.group}"{scope}'
    )


def covers(
    store: Store, user: UserInfo, rules: Iterable[dict[str, Any]], namespace: str
) -> list[str]:
    """The parts of `rules` the user does not hold (RBAC escalation prevention)."""
    if user.is_master:
        return []
    held = rules_for(store, user, namespace)
    missing = []
    for rule in rules:
        for verb in rule.get("verbs") or []:
            if rule.get("nonResourceURLs"):
                for url in rule["nonResourceURLs"]:
                    attrs = Attributes(verb=verb, path=url, resource_request=False)
                    if not any(_holds(h, attrs) for h in held):
                        missing.append(f"{{NonResourceURLs:[{url}] Verbs:[{verb}]}}")
                continue
            for group in rule.get("apiGroups") or [""]:
                for resource in rule.get("resources") or []:
                    base, _, sub = resource.partition("/")
                    for name in rule.get("resourceNames") or [""]:
                        attrs = Attributes(
                            verb=verb,
                            group=group,
                            resource=base,
                            subresource=sub,
                            namespace=namespace,
                            name=name,
                        )
                        if not any(_holds(h, attrs) for h in held):
                            missing.append(
                                f'{{APIGroups:["{group}"], Resources:["{resource}"], Verbs:["{verb}"]}}'
                            )
    return missing


def _holds(rule: dict[str, Any], wanted: Attributes) -> bool:
    """A held rule covers a wanted one, wildcards included (a held '*' covers anything)."""
    verbs = rule.get("verbs") or []
    if "*" not in verbs and wanted.verb not in verbs and wanted.verb != "*":
        return False
    if wanted.verb == "*" and "*" not in verbs:
        return False
    if not wanted.resource_request:
        return any(
            u == "*"
            or u == wanted.path
            or (u.endswith("*") and fnmatch.fnmatchcase(wanted.path, u))
            for u in rule.get("nonResourceURLs") or []
        )
    groups = rule.get("apiGroups") or []
    if "*" not in groups and wanted.group not in groups:
        return False
    combined = f"{wanted.resource}/{wanted.subresource}" if wanted.subresource else wanted.resource
    resources = rule.get("resources") or []
    if (
        "*" not in resources
        and combined not in resources
        and not (wanted.subresource and f"{wanted.resource}/*" in resources)
    ):
        return False
    names = rule.get("resourceNames") or []
    return not names or (wanted.name != "" and wanted.name in names)
