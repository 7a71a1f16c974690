"""The file's format: its sections and keys, reading YAML with line numbers, the declared
state it normalises to, and writing it back in a stable order."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml

from access.choices import Environment, RoleScope
from access.models import ApprovalPolicy, Grant
from clusters.models import Cluster, ManagedServiceAccount

VERSION = 1
SECTIONS = ("roles", "policies", "grants", "clusters", "service_accounts")
ENV_ORDER = {"": 0, **{e: i + 1 for i, e in enumerate(Environment.values)}}
HEADER = (
    "# Warden access as code: roles, approval policies, standing grants, cluster metadata and\n"
    "# managed service accounts.\n"
    "# Review changes in git, then: manage.py warden apply -f <this file> --dry-run\n"
    "# (see docs/access-as-code.md). Names, not ids; durations as 30m, 4h, 7d.\n"
)

ROLE_KEYS = ("name", "display_name", "description", "rank", "definitions")
DEFINITION_KEYS = ("environment", "tier", "cluster_role", "rules", "scope", "namespaces", "allowed")
POLICY_KEYS = ApprovalPolicy.SETTINGS
GRANT_KEYS = (
    "team",
    "person",
    "role",
    *Grant.SCOPE,
    "starts_at",
    "expires_at",
    "reason",
)
SERVICE_ACCOUNT_KEYS = ManagedServiceAccount.DECLARED
CLUSTER_KEYS = Cluster.SPEC


class AsCodeError(Exception):
    """The file cannot be applied; `problems` are "file:line: what is wrong" lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class Marked(dict):  # type: ignore[type-arg]
    """A mapping from the file, with the line of itself and of each key."""

    line: int = 0
    lines: dict[str, int]


class MarkedList(list):  # type: ignore[type-arg]
    line: int = 0


class MarkedLoader(yaml.SafeLoader):
    """SafeLoader that keeps line numbers and refuses a key written twice."""


def _mapping(loader: MarkedLoader, node: yaml.MappingNode) -> Marked:
    result = Marked()
    result.line = node.start_mark.line + 1
    result.lines = {}
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            raise yaml.constructor.ConstructorError(
                None, None, f"keys are names, not {key!r}", key_node.start_mark
            )
        if key in result:
            raise yaml.constructor.ConstructorError(
                None, None, f"{key!r} is written twice in this entry", key_node.start_mark
            )
        result[key] = loader.construct_object(value_node, deep=True)
        result.lines[key] = key_node.start_mark.line + 1
    return result


def _sequence(loader: MarkedLoader, node: yaml.SequenceNode) -> MarkedList:
    result = MarkedList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    return result


MarkedLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
MarkedLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)


@dataclass
class Item:
    """One entry of a section, normalised to what export writes, with where it came from."""

    kind: str  # role, definition, policy, grant, cluster
    key: tuple[Any, ...]
    data: dict[str, Any]
    # Where it was written (files), or 0 for what Warden holds.
    line: int = 0
    # The database row it stands for (what Warden holds), or None for entries of a file.
    pk: int | None = None

    @property
    def label(self) -> str:
        return describe(self.kind, self.data)


@dataclass
class Declared:
    """What a file (or Warden) declares, keyed for comparison."""

    source: str
    roles: dict[tuple[Any, ...], Item] = field(default_factory=dict)
    definitions: dict[tuple[Any, ...], Item] = field(default_factory=dict)
    policies: dict[tuple[Any, ...], Item] = field(default_factory=dict)
    # Grants have no name: identical grants may be declared more than once.
    grants: list[Item] = field(default_factory=list)
    clusters: dict[tuple[Any, ...], Item] = field(default_factory=dict)
    service_accounts: dict[tuple[Any, ...], Item] = field(default_factory=dict)
    # Sections the file has: a section it lacks is not managed by it (nothing pruned there).
    sections: set[str] = field(default_factory=set)
    digest: str = ""


def describe(kind: str, data: Mapping[str, Any]) -> str:
    """An entry in words, for the diff and for errors."""
    if kind == "role":
        return f"role {data['name']}"
    if kind == "definition":
        where = f"{data.get('environment') or '*'}/{data.get('tier') or '*'}"
        return f"role {data['role']} definition {where}"
    if kind == "policy":
        where = f"{data.get('environment') or '*'}/{data.get('tier') or '*'}"
        role = f" role {data['role']}" if data.get("role") else ""
        return f"policy {data['name']!r} ({where}{role})"
    if kind == "grant":
        subject = f"team {data['team']}" if data.get("team") else f"person {data['person']}"
        parts = [f"grant {data['role']} to {subject}"]
        for name in ("environments", "tiers", "clusters", "namespaces"):
            if data.get(name):
                parts.append(f"{name} {','.join(data[name])}")
        if data.get("cluster_selector"):
            parts.append(
                "selector "
                + ",".join(f"{k}={v}" for k, v in sorted(data["cluster_selector"].items()))
            )
        if data.get("expires_at"):
            parts.append(f"until {data['expires_at']}")
        return " ".join(parts)
    if kind == "service_account":
        return f"service account {data['namespace']}/{data['name']}"
    return f"cluster {data['name']}"


def _compact(data: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Leave out what equals its default, so the file shows what matters."""
    return {k: v for k, v in data.items() if k not in defaults or defaults[k] != v}


DEFINITION_DEFAULTS: dict[str, Any] = {
    "environment": "",
    "tier": "",
    "cluster_role": "",
    "rules": [],
    "scope": RoleScope.NAMESPACES,
    "namespaces": [],
    "allowed": True,
}
POLICY_DEFAULTS: dict[str, Any] = {
    "environment": "",
    "tier": "",
    "role": "",
    "approvals_required": 1,
    "approver_teams": [],
    "manager_may_approve": False,
    "self_approval_forbidden": True,
    "self_extension": False,
    "break_glass_allowed": False,
    "break_glass_duration": "",
    "break_glass_teams": [],
    "break_glass_roles": [],
}
GRANT_DEFAULTS: dict[str, Any] = {
    "team": "",
    "person": "",
    "environments": [],
    "tiers": [],
    "clusters": [],
    "cluster_selector": {},
    "namespaces": [],
    "starts_at": "",
    "expires_at": "",
    "reason": "",
}
CLUSTER_DEFAULTS: dict[str, Any] = {
    "labels": {},
    "user_prefix": "",
    "group_prefix": "",
    "bind_groups": True,
}
ROLE_DEFAULTS: dict[str, Any] = {"description": ""}
SERVICE_ACCOUNT_DEFAULTS: dict[str, Any] = {
    "description": "",
    "roles": [],
    "namespaces": [],
    "clusters": [],
    "cluster_selector": {},
    "show_to_owner": True,
}


def _definition_order(item: Item) -> tuple[Any, ...]:
    d = item.data
    return (ENV_ORDER.get(d["environment"], 9), d["tier"])


def document(state: Declared) -> dict[str, Any]:
    """The file's content for a state: sorted, defaults left out."""
    roles = []
    for role in sorted(state.roles.values(), key=lambda i: (i.data["rank"], i.data["name"])):
        name = role.data["name"]
        definitions = sorted(
            (d for d in state.definitions.values() if d.data["role"] == name),
            key=_definition_order,
        )
        entry = _compact(role.data, ROLE_DEFAULTS)
        entry["definitions"] = [
            _compact({k: v for k, v in d.data.items() if k != "role"}, DEFINITION_DEFAULTS)
            for d in definitions
        ]
        roles.append(entry)
    policies = [
        _compact(p.data, POLICY_DEFAULTS)
        for p in sorted(
            state.policies.values(),
            key=lambda i: (
                ENV_ORDER.get(i.data["environment"], 9),
                i.data["tier"],
                i.data["role"],
                i.data["name"],
            ),
        )
    ]
    grants = [
        _compact(g.data, GRANT_DEFAULTS)
        for g in sorted(
            state.grants,
            key=lambda i: (
                0 if i.data["team"] else 1,
                i.data["team"] or i.data["person"],
                i.data["role"],
                i.key,
                i.data["reason"],
            ),
        )
    ]
    clusters = [
        _compact(c.data, CLUSTER_DEFAULTS)
        for c in sorted(state.clusters.values(), key=lambda i: i.data["name"])
    ]
    accounts = [
        _compact(a.data, SERVICE_ACCOUNT_DEFAULTS)
        for a in sorted(state.service_accounts.values(), key=lambda i: i.key)
    ]
    return {
        "version": VERSION,
        "roles": roles,
        "policies": policies,
        "grants": grants,
        "clusters": clusters,
        "service_accounts": accounts,
    }


class _Dumper(yaml.SafeDumper):
    """Block style, keys in the order written; multi-line text as a literal block."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(doc: Mapping[str, Any]) -> str:
    body = yaml.dump(
        dict(doc), Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True
    )
    return HEADER + body


def definition_data(role: str, values: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "role": role,
        "environment": values.get("environment", ""),
        "tier": values.get("tier", ""),
        "cluster_role": values.get("cluster_role", ""),
        "rules": list(values.get("rules") or []),
        "scope": values.get("scope", RoleScope.NAMESPACES),
        "namespaces": list(values.get("namespaces") or []),
        "allowed": values.get("allowed", True),
    }


def when_text(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def grant_key(data: Mapping[str, Any]) -> tuple[Any, ...]:
    """Everything but the reason: a grant whose scope or subject changes is another grant."""
    return tuple(json.dumps(data.get(k), sort_keys=True) for k in GRANT_KEYS if k != "reason")
