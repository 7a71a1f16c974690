"""Access as code: Warden's declared state as one YAML file, exported and applied.

The file holds the role catalogue (with what each role becomes per environment and tier), the
approval policies, the standing grants, the clusters' metadata and the managed service accounts
(not their delivery targets, which hold webhook signing keys); it names things by name,
never by id, in a stable order, so that a change reads well in a git diff.

`export()` writes what Warden holds; `load()` reads a file, checking every entry and naming the
file and line of each problem; `diff()` says what applying it would add, change and remove in
Warden (and `rbac_plan()` what that does on each cluster); `apply()` makes the changes in one
transaction through the same services as the pages and the API, so each change is audited and
the clusters it reaches reconcile after the commit.

What "removed from the file" means: by default nothing is taken away. Roles, definitions,
policies and standing grants that Warden has and the file lacks are listed and kept. With
`prune=True` the file is the whole truth for these: standing grants not in the file are
revoked, definitions of the file's roles and policies not in the file are deleted, service
accounts not in the file are retired (their tokens revoked). Roles
themselves are never deleted (grants and requests refer to them), and clusters are never
registered nor retired by a file: their credentials are not in it, and retiring is a fleet
operation with its own page.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from access import audit, durations
from access.choices import Environment, GrantSource, RoleScope, Tier
from access.models import ApprovalPolicy, Grant, Person, Role, RoleDefinition, Team
from access.services import catalogue
from access.services.grants import (
    clean_definition,
    clean_scope,
    grant_access,
    remove_role_definition,
    revoke_grant,
    set_role_definition,
)
from clusters.choices import ClusterState
from clusters.models import Cluster, ManagedServiceAccount
from core import yamltext
from core.types import Actor

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
    "environments",
    "tiers",
    "clusters",
    "cluster_selector",
    "namespaces",
    "starts_at",
    "expires_at",
    "reason",
)
SERVICE_ACCOUNT_KEYS = ManagedServiceAccount.DECLARED
CLUSTER_KEYS = (
    "name",
    "environment",
    "tier",
    "labels",
    "user_prefix",
    "group_prefix",
    "bind_groups",
)


class AsCodeError(Exception):
    """The file cannot be applied; `problems` are "file:line: what is wrong" lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# --- reading YAML with line numbers ---------------------------------------------------------


class Marked(dict):  # type: ignore[type-arg]
    """A mapping from the file, with the line of itself and of each key."""

    line: int = 0
    lines: dict[str, int]


class MarkedList(list):  # type: ignore[type-arg]
    line: int = 0


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps line numbers and refuses a key written twice."""


def _mapping(loader: _Loader, node: yaml.MappingNode) -> Marked:
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


def _sequence(loader: _Loader, node: yaml.SequenceNode) -> MarkedList:
    result = MarkedList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)


# --- the declared state, normalised ---------------------------------------------------------


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


def _definition_data(role: str, values: Mapping[str, Any]) -> dict[str, Any]:
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


def _when(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _grant_key(data: Mapping[str, Any]) -> tuple[Any, ...]:
    """Everything but the reason: a grant whose scope or subject changes is another grant."""
    return tuple(json.dumps(data.get(k), sort_keys=True) for k in GRANT_KEYS if k != "reason")


def current() -> Declared:
    """What Warden holds now, in the file's terms."""
    state = Declared(source="Warden", sections=set(SECTIONS))
    for role in Role.objects.prefetch_related("definitions").order_by("rank", "name"):
        data: dict[str, Any] = {
            "name": role.name,
            "display_name": role.display_name,
            "description": role.description,
            "rank": role.rank,
        }
        state.roles[(role.name,)] = Item("role", (role.name,), data)
        for d in role.definitions.all():
            values = _definition_data(
                role.name,
                {
                    "environment": d.environment,
                    "tier": d.tier,
                    "cluster_role": d.cluster_role,
                    "rules": d.rules,
                    "scope": d.scope,
                    "namespaces": d.namespaces,
                    "allowed": d.allowed,
                },
            )
            key: tuple[Any, ...] = (role.name, d.environment, d.tier)
            state.definitions[key] = Item("definition", key, values)
    policies = ApprovalPolicy.objects.select_related("role").prefetch_related(
        "approver_teams", "break_glass_teams", "break_glass_roles"
    )
    for p in policies:
        data = {
            "name": p.name,
            "environment": p.environment,
            "tier": p.tier,
            "role": p.role.name if p.role else "",
            "approvals_required": p.approvals_required,
            "approver_teams": sorted(t.name for t in p.approver_teams.all()),
            "manager_may_approve": p.manager_may_approve,
            "self_approval_forbidden": p.self_approval_forbidden,
            "max_duration": durations.format(p.max_duration),
            "default_duration": durations.format(p.default_duration),
            "self_extension": p.self_extension,
            "break_glass_allowed": p.break_glass_allowed,
            "break_glass_duration": durations.format(p.break_glass_duration)
            if p.break_glass_duration
            else "",
            "break_glass_teams": sorted(t.name for t in p.break_glass_teams.all()),
            "break_glass_roles": sorted(r.name for r in p.break_glass_roles.all()),
        }
        key = (p.environment, p.tier, data["role"])
        state.policies[key] = Item("policy", key, data, pk=p.pk)
    for g in _standing_grants():
        data = {
            "team": g.team.name if g.team is not None else "",
            "person": g.person.username if g.person is not None else "",
            "role": g.role.name,
            "environments": sorted(g.environments or []),
            "tiers": sorted(g.tiers or []),
            "clusters": sorted(g.clusters or []),
            "cluster_selector": dict(sorted((g.cluster_selector or {}).items())),
            "namespaces": sorted(g.namespaces or []),
            "starts_at": _when(g.starts_at),
            "expires_at": _when(g.expires_at),
            "reason": g.reason,
        }
        state.grants.append(Item("grant", _grant_key(data), data, pk=g.pk))
    for c in Cluster.objects.exclude(state=ClusterState.RETIRED).order_by("name"):
        data = {
            "name": c.name,
            "environment": c.environment,
            "tier": c.tier,
            "labels": dict(sorted((c.labels or {}).items())),
            "user_prefix": c.user_prefix,
            "group_prefix": c.group_prefix,
            "bind_groups": c.bind_groups,
        }
        state.clusters[(c.name,)] = Item("cluster", (c.name,), data)
    for account in _active_accounts():
        data = {
            "name": account.name,
            "namespace": account.namespace,
            "description": account.description,
            "owner_team": account.owner_team.name,
            "roles": sorted(r.name for r in account.roles.all()),
            "namespaces": sorted(account.namespaces or []),
            "clusters": sorted(account.clusters or []),
            "cluster_selector": dict(sorted((account.cluster_selector or {}).items())),
            "rotation_period": durations.format(account.rotation_period),
            "grace_period": durations.format(account.grace_period),
            "token_lifetime": durations.format(account.token_lifetime),
            "show_to_owner": account.show_to_owner,
        }
        key = (account.namespace, account.name)
        state.service_accounts[key] = Item("service_account", key, data, pk=account.pk)
    return state


def _active_accounts() -> Iterable[Any]:
    from clusters.choices import AccountState
    from clusters.models import ManagedServiceAccount

    return (
        ManagedServiceAccount.objects.filter(state=AccountState.ACTIVE)
        .select_related("owner_team")
        .prefetch_related("roles")
        .order_by("namespace", "name")
    )


def _standing_grants() -> Iterable[Grant]:
    """Standing grants not yet over (in force, or starting later): what the file manages."""
    now = timezone.now()
    return (
        Grant.objects.filter(source=GrantSource.STANDING, revoked_at__isnull=True)
        .exclude(expires_at__lte=now)
        .select_related("role", "team", "person")
        .order_by("id")
    )


# --- export ---------------------------------------------------------------------------------


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


def export() -> str:
    """Warden's declared state as the file's text."""
    return dump(document(current()))


# --- load and validate ----------------------------------------------------------------------


class _Checker:
    """Collects "file:line: problem" lines while a file is read."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.problems: list[str] = []

    def at(self, line: int, where: str, message: str) -> None:
        self.problems.append(f"{self.filename}:{line}: {where}: {message}")

    def keys(self, entry: Any, allowed: Iterable[str], where: str, line: int) -> bool:
        if not isinstance(entry, Marked):
            self.at(line, where, "must be a mapping of names to values")
            return False
        unknown = sorted(set(entry) - set(allowed))
        for key in unknown:
            self.at(
                entry.lines.get(key, entry.line),
                where,
                f"unknown key {key!r}; use {', '.join(allowed)}",
            )
        return True  # the rest of the entry is still checked

    def line_of(self, entry: Marked, key: str) -> int:
        return entry.lines.get(key, entry.line)

    def text(
        self, entry: Marked, key: str, where: str, default: str = "", required: bool = False
    ) -> str:
        value = entry.get(key, default)
        if value is None:
            value = default
        if required and (value == "" or value is None):
            self.at(entry.line, where, f"{key} is required")
            return ""
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.at(self.line_of(entry, key), where, f"{key} must be text")
            return default
        return str(value)

    def flag(self, entry: Marked, key: str, where: str, default: bool) -> bool:
        value = entry.get(key, default)
        if not isinstance(value, bool):
            self.at(self.line_of(entry, key), where, f"{key} must be true or false")
            return default
        return value

    def number(self, entry: Marked, key: str, where: str, default: int) -> int:
        value = entry.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            self.at(self.line_of(entry, key), where, f"{key} must be a whole number (0 or more)")
            return default
        return value

    def names(self, entry: Marked, key: str, where: str) -> list[str]:
        value = entry.get(key) or []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.at(self.line_of(entry, key), where, f"{key} must be a list of names")
            return []
        return sorted(set(value))

    def mapping(self, entry: Marked, key: str, where: str) -> dict[str, str]:
        value = entry.get(key) or {}
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str | int | float) and not isinstance(v, bool)
            for k, v in value.items()
        ):
            self.at(self.line_of(entry, key), where, f"{key} must map names to text values")
            return {}
        return {k: str(v) for k, v in sorted(value.items())}

    def duration(self, entry: Marked, key: str, where: str, required: bool) -> str:
        value = entry.get(key)
        if value in (None, ""):
            if required:
                self.at(entry.line, where, f"{key} is required (e.g. 4h, 7d)")
            return ""
        try:
            return durations.format(durations.parse(str(value)))
        except ValueError as exc:
            self.at(self.line_of(entry, key), where, str(exc))
            return ""

    def moment(self, entry: Marked, key: str, where: str) -> str:
        value = entry.get(key)
        if value in (None, ""):
            return ""
        parsed = value if isinstance(value, datetime) else parse_datetime(str(value))
        if parsed is None:
            self.at(
                self.line_of(entry, key),
                where,
                f"{key} must be a time such as 2026-01-31T18:00:00Z",
            )
            return ""
        if timezone.is_naive(parsed):
            parsed = timezone.make_aware(parsed, UTC)
        return _when(parsed)


def load(text: str, filename: str = "<file>") -> Declared:
    """Read and check a file; AsCodeError lists every problem with its file and line."""
    check = _Checker(filename)
    try:
        doc = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        error = yamltext.not_valid(exc)
        where = f"{error.line}:{error.column}" if error.line else "1"
        raise AsCodeError([f"{filename}:{where}: not valid YAML: {error.problem}"]) from None
    if not isinstance(doc, Marked):
        raise AsCodeError([f"{filename}:1: the file must be a mapping with version and sections"])
    state = Declared(source=filename, digest=hashlib.sha256(text.encode()).hexdigest())
    if doc.get("version") != VERSION:
        check.at(check.line_of(doc, "version"), "version", f"write version: {VERSION}")
    check.keys(doc, ("version", *SECTIONS), "file", 1)
    sections: dict[str, list[Any]] = {}
    for name in SECTIONS:
        if name not in doc:
            continue
        state.sections.add(name)
        value = doc[name] if doc[name] is not None else MarkedList()
        if not isinstance(value, list):
            check.at(check.line_of(doc, name), name, "must be a list of entries")
            continue
        sections[name] = value
    known_roles = set(Role.objects.values_list("name", flat=True))
    known_roles |= {str(r.get("name")) for r in sections.get("roles", []) if isinstance(r, Marked)}
    for entry in sections.get("roles", []):
        _load_role(check, state, entry)
    for entry in sections.get("policies", []):
        _load_policy(check, state, entry, known_roles)
    for entry in sections.get("grants", []):
        _load_grant(check, state, entry, known_roles)
    for entry in sections.get("clusters", []):
        _load_cluster(check, state, entry)
    for entry in sections.get("service_accounts", []):
        _load_service_account(check, state, entry, known_roles)
    if check.problems:
        raise AsCodeError(check.problems)
    return state


def _line(entry: Any) -> int:
    return getattr(entry, "line", 0) or 1


def _load_role(check: _Checker, state: Declared, entry: Any) -> None:
    where = f"role {entry.get('name', '?')}" if isinstance(entry, dict) else "role"
    if not check.keys(entry, ROLE_KEYS, where, _line(entry)):
        return
    name = check.text(entry, "name", where, required=True)
    data: dict[str, Any] = {
        "name": name,
        "display_name": check.text(entry, "display_name", where, default=name.title()),
        "description": check.text(entry, "description", where),
        "rank": check.number(entry, "rank", where, 100),
    }
    if (name,) in state.roles:
        check.at(entry.line, where, f"role {name} is written twice")
        return
    state.roles[(name,)] = Item("role", (name,), data, entry.line)
    definitions = entry.get("definitions") or []
    if not isinstance(definitions, list):
        check.at(check.line_of(entry, "definitions"), where, "definitions must be a list")
        return
    for d in definitions:
        _load_definition(check, state, name, d)


def _load_definition(check: _Checker, state: Declared, role: str, entry: Any) -> None:
    where = f"role {role} definition"
    if not check.keys(entry, DEFINITION_KEYS, where, _line(entry)):
        return
    environment = check.text(entry, "environment", where)
    tier = check.text(entry, "tier", where)
    where = f"role {role} definition {environment or '*'}/{tier or '*'}"
    if environment and environment not in Environment.values:
        check.at(check.line_of(entry, "environment"), where, f"use {', '.join(Environment.values)}")
    if tier and tier not in Tier.values:
        check.at(check.line_of(entry, "tier"), where, f"use {', '.join(Tier.values)}")
    try:
        values = clean_definition(
            cluster_role=check.text(entry, "cluster_role", where),
            rules=entry.get("rules") or [],
            scope=check.text(entry, "scope", where, default=RoleScope.NAMESPACES),
            namespaces=check.names(entry, "namespaces", where),
            allowed=check.flag(entry, "allowed", where, True),
        )
    except ValidationError as exc:
        for message in exc.messages:
            check.at(entry.line, where, message)
        return
    key = (role, environment, tier)
    if key in state.definitions:
        check.at(entry.line, where, "this environment and tier are defined twice")
        return
    data = _definition_data(role, {"environment": environment, "tier": tier, **values})
    state.definitions[key] = Item("definition", key, data, entry.line)


def _load_policy(check: _Checker, state: Declared, entry: Any, roles: set[str]) -> None:
    where = f"policy {entry.get('name', '?')!r}" if isinstance(entry, dict) else "policy"
    if not check.keys(entry, POLICY_KEYS, where, _line(entry)):
        return
    data: dict[str, Any] = {
        "name": check.text(entry, "name", where, required=True),
        "environment": check.text(entry, "environment", where),
        "tier": check.text(entry, "tier", where),
        "role": check.text(entry, "role", where),
        "approvals_required": check.number(entry, "approvals_required", where, 1),
        "approver_teams": check.names(entry, "approver_teams", where),
        "manager_may_approve": check.flag(entry, "manager_may_approve", where, False),
        "self_approval_forbidden": check.flag(entry, "self_approval_forbidden", where, True),
        "max_duration": check.duration(entry, "max_duration", where, required=True),
        "default_duration": check.duration(entry, "default_duration", where, required=True),
        "self_extension": check.flag(entry, "self_extension", where, False),
        "break_glass_allowed": check.flag(entry, "break_glass_allowed", where, False),
        "break_glass_duration": check.duration(entry, "break_glass_duration", where, False),
        "break_glass_teams": check.names(entry, "break_glass_teams", where),
        "break_glass_roles": check.names(entry, "break_glass_roles", where),
    }
    if data["environment"] and data["environment"] not in Environment.values:
        check.at(check.line_of(entry, "environment"), where, f"use {', '.join(Environment.values)}")
    if data["tier"] and data["tier"] not in Tier.values:
        check.at(check.line_of(entry, "tier"), where, f"use {', '.join(Tier.values)}")
    if data["role"] and data["role"] not in roles:
        check.at(check.line_of(entry, "role"), where, f"no role named {data['role']!r}")
    _teams_exist(check, entry, where, data["approver_teams"], "approver_teams")
    _teams_exist(check, entry, where, data["break_glass_teams"], "break_glass_teams")
    for name in data["break_glass_roles"]:
        if name not in roles:
            check.at(check.line_of(entry, "break_glass_roles"), where, f"no role named {name!r}")
    key = (data["environment"], data["tier"], data["role"])
    if key in state.policies:
        check.at(entry.line, where, "another policy covers the same environment, tier and role")
        return
    state.policies[key] = Item("policy", key, data, entry.line)


def _teams_exist(check: _Checker, entry: Marked, where: str, names: list[str], key: str) -> None:
    active = set(Team.objects.filter(is_active=True, name__in=names).values_list("name", flat=True))
    for name in sorted(set(names) - active):
        check.at(check.line_of(entry, key), where, f"no active team {name!r} in the directory")


def _load_grant(check: _Checker, state: Declared, entry: Any, roles: set[str]) -> None:
    where = "grant"
    if not check.keys(entry, GRANT_KEYS, where, _line(entry)):
        return
    team = check.text(entry, "team", where)
    person = check.text(entry, "person", where)
    role = check.text(entry, "role", where, required=True)
    where = f"grant of {role or '?'} to {team or person or '?'}"
    if bool(team) == bool(person):
        check.at(entry.line, where, "name exactly one team or one person")
    if team:
        _teams_exist(check, entry, where, [team], "team")
    if person and not Person.objects.filter(is_active=True, username=person).exists():
        check.at(
            check.line_of(entry, "person"), where, f"no active person {person!r} in the directory"
        )
    if role and role not in roles:
        check.at(check.line_of(entry, "role"), where, f"no role named {role!r}")
    try:
        scope = clean_scope(
            environments=check.names(entry, "environments", where),
            tiers=check.names(entry, "tiers", where),
            clusters=check.names(entry, "clusters", where),
            cluster_selector=check.mapping(entry, "cluster_selector", where),
            namespaces=check.names(entry, "namespaces", where),
        )
    except ValidationError as exc:
        for message in exc.messages:
            check.at(entry.line, where, message)
        return
    data: dict[str, Any] = {
        "team": team,
        "person": person,
        "role": role,
        **scope,
        "cluster_selector": dict(sorted(scope["cluster_selector"].items())),
        "starts_at": check.moment(entry, "starts_at", where),
        "expires_at": check.moment(entry, "expires_at", where),
        "reason": check.text(entry, "reason", where),
    }
    state.grants.append(Item("grant", _grant_key(data), data, entry.line))


def _load_cluster(check: _Checker, state: Declared, entry: Any) -> None:
    where = f"cluster {entry.get('name', '?')}" if isinstance(entry, dict) else "cluster"
    if not check.keys(entry, CLUSTER_KEYS, where, _line(entry)):
        return
    name = check.text(entry, "name", where, required=True)
    data: dict[str, Any] = {
        "name": name,
        "environment": check.text(entry, "environment", where, required=True),
        "tier": check.text(entry, "tier", where, required=True),
        "labels": check.mapping(entry, "labels", where),
        "user_prefix": check.text(entry, "user_prefix", where),
        "group_prefix": check.text(entry, "group_prefix", where),
        "bind_groups": check.flag(entry, "bind_groups", where, True),
    }
    if data["environment"] and data["environment"] not in Environment.values:
        check.at(check.line_of(entry, "environment"), where, f"use {', '.join(Environment.values)}")
    if data["tier"] and data["tier"] not in Tier.values:
        check.at(check.line_of(entry, "tier"), where, f"use {', '.join(Tier.values)}")
    try:
        clean_scope(cluster_selector=data["labels"])
    except ValidationError as exc:
        for message in exc.messages:
            check.at(check.line_of(entry, "labels"), where, message)
    live = Cluster.objects.exclude(state=ClusterState.RETIRED).filter(name=name).exists()
    if name and not live:
        check.at(
            entry.line,
            where,
            "no live cluster has this name: register it first (its credentials are not part "
            "of this file)",
        )
    if (name,) in state.clusters:
        check.at(entry.line, where, f"cluster {name} is written twice")
        return
    state.clusters[(name,)] = Item("cluster", (name,), data, entry.line)


def _load_service_account(check: _Checker, state: Declared, entry: Any, roles: set[str]) -> None:
    where = f"service account {entry.get('name', '?')}" if isinstance(entry, dict) else "account"
    if not check.keys(entry, SERVICE_ACCOUNT_KEYS, where, _line(entry)):
        return
    data: dict[str, Any] = {
        "name": check.text(entry, "name", where, required=True),
        "namespace": check.text(entry, "namespace", where, required=True),
        "description": check.text(entry, "description", where),
        "owner_team": check.text(entry, "owner_team", where, required=True),
        "roles": check.names(entry, "roles", where),
        "namespaces": check.names(entry, "namespaces", where),
        "clusters": check.names(entry, "clusters", where),
        "cluster_selector": check.mapping(entry, "cluster_selector", where),
        "rotation_period": check.duration(entry, "rotation_period", where, required=True),
        "grace_period": check.duration(entry, "grace_period", where, required=True),
        "token_lifetime": check.duration(entry, "token_lifetime", where, required=True),
        "show_to_owner": check.flag(entry, "show_to_owner", where, True),
    }
    where = f"service account {data['namespace']}/{data['name']}"
    if data["owner_team"]:
        _teams_exist(check, entry, where, [data["owner_team"]], "owner_team")
    for role in data["roles"]:
        if role not in roles:
            check.at(check.line_of(entry, "roles"), where, f"no role named {role!r}")
    try:
        clean_scope(namespaces=data["namespaces"], cluster_selector=data["cluster_selector"])
    except ValidationError as exc:
        for message in exc.messages:
            check.at(entry.line, where, message)
    key = (data["namespace"], data["name"])
    if key in state.service_accounts:
        check.at(entry.line, where, "this account is written twice")
        return
    state.service_accounts[key] = Item("service_account", key, data, entry.line)


# --- diff -----------------------------------------------------------------------------------


@dataclass
class Change:
    """One difference between the file and Warden."""

    action: str  # add, change, remove, keep (not in the file, kept without --prune)
    kind: str
    item: Item
    before: Item | None = None
    fields: list[str] = field(default_factory=list)

    def text(self) -> str:
        sign = {"add": "+", "change": "~", "remove": "-", "keep": "?"}[self.action]
        line = f"{sign} {self.item.label}"
        if self.action == "change" and self.before is not None:
            shown = [
                f"{name}: {_show(self.before.data.get(name))} → {_show(self.item.data.get(name))}"
                for name in self.fields
            ]
            line += " (" + "; ".join(shown) + ")"
        if self.action == "keep":
            line += " — not in the file; kept (--prune would remove it)"
        return line


def _show(value: Any) -> str:
    if value in ("", None, [], {}):
        return "(none)"
    if isinstance(value, list | dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


@dataclass
class Diff:
    changes: list[Change] = field(default_factory=list)

    def of(self, action: str) -> list[Change]:
        return [c for c in self.changes if c.action == action]

    @property
    def empty(self) -> bool:
        return not any(c.action in ("add", "change", "remove") for c in self.changes)

    def counts(self) -> dict[str, int]:
        return dict(Counter(c.action for c in self.changes))

    def text(self) -> str:
        if not self.changes:
            return "No change: Warden already holds what the file says."
        return "\n".join(c.text() for c in self.changes)


def _compare_keyed(
    diff: Diff,
    kind: str,
    wanted: Mapping[tuple[Any, ...], Item],
    have: Mapping[tuple[Any, ...], Item],
    prune: bool,
    managed: bool,
    may_remove: bool = True,
) -> None:
    for key, item in wanted.items():
        old = have.get(key)
        if old is None:
            diff.changes.append(Change("add", kind, item))
            continue
        changed = [name for name in item.data if item.data[name] != old.data.get(name)]
        if changed:
            diff.changes.append(Change("change", kind, item, before=old, fields=changed))
    if not managed:
        return
    for key, item in have.items():
        if key not in wanted:
            action = "remove" if prune and may_remove else "keep"
            diff.changes.append(Change(action, kind, item))


def diff(wanted: Declared, have: Declared, *, prune: bool = False) -> Diff:
    """What applying `wanted` would change in `have` (Warden now)."""
    result = Diff()
    _compare_keyed(
        result, "role", wanted.roles, have.roles, prune, "roles" in wanted.sections, False
    )
    # Definitions are managed per role: a role of the file owns its definitions.
    file_roles = {key[0] for key in wanted.roles}
    have_defs = {k: v for k, v in have.definitions.items() if k[0] in file_roles}
    _compare_keyed(
        result, "definition", wanted.definitions, have_defs, prune, "roles" in wanted.sections
    )
    _compare_keyed(
        result, "policy", wanted.policies, have.policies, prune, "policies" in wanted.sections
    )
    _compare_keyed(result, "cluster", wanted.clusters, have.clusters, prune, False)
    if "clusters" in wanted.sections:
        for key, item in have.clusters.items():
            if key not in wanted.clusters:
                # Never retired by a file: listed so that the reader knows it is not declared.
                result.changes.append(Change("keep", "cluster", item))
    _compare_grants(result, wanted, have, prune)
    _compare_keyed(
        result,
        "service_account",
        wanted.service_accounts,
        have.service_accounts,
        prune,
        "service_accounts" in wanted.sections,
    )
    order = {
        "role": 0,
        "definition": 1,
        "policy": 2,
        "cluster": 3,
        "grant": 4,
        "service_account": 5,
    }
    actions = {"remove": 0, "change": 1, "add": 2, "keep": 3}
    result.changes.sort(key=lambda c: (order[c.kind], actions[c.action], c.item.label))
    return result


def _compare_grants(result: Diff, wanted: Declared, have: Declared, prune: bool) -> None:
    available: dict[tuple[Any, ...], list[Item]] = {}
    for item in have.grants:
        available.setdefault(item.key, []).append(item)
    for item in wanted.grants:
        matches = available.get(item.key)
        if matches:
            matches.pop(0)  # held already: nothing to do (a different reason is not a change)
        else:
            result.changes.append(Change("add", "grant", item))
    if "grants" not in wanted.sections:
        return
    for leftovers in available.values():
        for item in leftovers:
            result.changes.append(Change("remove" if prune else "keep", "grant", item))


# --- the RBAC plan --------------------------------------------------------------------------


def rbac_plan(changes: Diff, wanted: Declared) -> list[Any]:
    """Each affected cluster's RBAC diff if the changes were applied (read-only, dry-run)."""
    from clusters import planning
    from clusters.compiler import GrantSpec, RoleDefinitionSpec, RoleSpec
    from clusters.services import live_clusters, load_inputs, role_specs

    add: list[GrantSpec] = []
    for i, change in enumerate(changes.of("add")):
        if change.kind != "grant":
            continue
        d = change.item.data
        add.append(
            GrantSpec(
                id=-(i + 1),
                role=d["role"],
                team=d["team"] or None,
                person=d["person"] or None,
                environments=tuple(d["environments"]),
                tiers=tuple(d["tiers"]),
                clusters=tuple(d["clusters"]),
                selector=tuple(sorted(d["cluster_selector"].items())),
                namespaces=tuple(d["namespaces"]),
                starts_at=parse_datetime(d["starts_at"]) if d["starts_at"] else None,
                expires_at=parse_datetime(d["expires_at"]) if d["expires_at"] else None,
            )
        )
    remove = frozenset(
        c.item.pk for c in changes.of("remove") if c.kind == "grant" and c.item.pk is not None
    )
    touched_roles = {
        c.item.data["role"]
        for c in changes.changes
        if c.kind == "definition" and c.action in ("add", "change", "remove")
    }
    roles = {}
    current_specs = role_specs()
    removed_defs = {c.item.key for c in changes.of("remove") if c.kind == "definition"}
    for name in touched_roles:
        defs = [
            RoleDefinitionSpec(
                environment=d.data["environment"],
                tier=d.data["tier"],
                cluster_role=d.data["cluster_role"],
                rules=tuple(d.data["rules"]),
                cluster_wide=d.data["scope"] == RoleScope.CLUSTER,
                namespaces=tuple(d.data["namespaces"]),
                allowed=d.data["allowed"],
            )
            for key, d in wanted.definitions.items()
            if key[0] == name
        ]
        if name in current_specs:
            # Definitions not in the file stay unless this apply removes them.
            mine = {(d.environment, d.tier) for d in defs}
            defs += [
                d
                for d in current_specs[name].definitions
                if (d.environment, d.tier) not in mine
                and (name, d.environment, d.tier) not in removed_defs
            ]
        roles[name] = RoleSpec(name, tuple(defs))
    fleet_change = planning.Change(add=tuple(add), remove=remove, roles=roles)
    moved = {c.item.data["name"]: c.item.data for c in changes.of("change") if c.kind == "cluster"}
    base = load_inputs(None).grants
    affected = {c.name for c in planning.affected_clusters(fleet_change, base)} | set(moved)
    targets = []
    for cluster in live_clusters():
        if cluster.name not in affected:
            continue
        if cluster.name in moved:
            data = moved[cluster.name]
            cluster.environment, cluster.tier = data["environment"], data["tier"]
            cluster.labels = data["labels"]
            cluster.user_prefix, cluster.group_prefix = data["user_prefix"], data["group_prefix"]
            cluster.bind_groups = data["bind_groups"]
        targets.append(cluster)
    if not targets:
        return []
    return planning.plan_change(fleet_change, clusters=targets)


def plan_text(plans: list[Any]) -> str:
    if not plans:
        return "No cluster's RBAC changes."
    lines = []
    for plan in plans:
        if plan.error:
            lines.append(f"{plan.cluster}: could not be read ({plan.error}); its plan is unknown")
            continue
        if not plan.changes:
            lines.append(f"{plan.cluster}: no change")
            continue
        lines.append(f"{plan.cluster}:")
        for c in plan.changes:
            where = f"{c.namespace}/" if c.namespace else ""
            details = f" ({'; '.join(c.details)})" if c.details else ""
            lines.append(f"  {c.action} {c.kind} {where}{c.name}{details}")
    return "\n".join(lines)


# --- apply ----------------------------------------------------------------------------------


def apply(wanted: Declared, *, actor: Actor = None, prune: bool = False) -> Diff:
    """Make Warden hold what the file says, all or nothing, through the services.

    Each change is audited by its service, with one `ascode.applied` event naming the file's
    digest; reconciles are queued when the transaction commits. A change a service refuses
    rolls everything back and is reported with the entry's line.
    """
    with transaction.atomic():
        changes = diff(wanted, current(), prune=prune)
        if changes.empty:
            return changes
        problems: list[str] = []
        for change in changes.changes:
            if change.action in ("keep",):
                continue
            try:
                _apply_one(change, actor)
            except ValidationError as exc:
                where = (
                    f"{wanted.source}:{change.item.line}"
                    if change.action != "remove"
                    else (wanted.source)
                )
                problems.extend(f"{where}: {change.item.label}: {m}" for m in exc.messages)
        if problems:
            transaction.set_rollback(True)
            raise AsCodeError(problems)
        audit.record(
            "ascode.applied",
            actor=actor,
            object_type="access.ascode",
            object_repr=wanted.source[:255],
            after={"file_sha256": wanted.digest, "prune": prune, **changes.counts()},
        )
    return changes


def _apply_one(change: Change, actor: Actor) -> None:
    data = change.item.data
    reason = "access as code"
    if change.kind == "role":
        role = Role.objects.filter(name=data["name"]).first()
        catalogue.save_role(role, actor=actor, reason=reason, **data)
    elif change.kind == "definition":
        role = Role.objects.get(name=data["role"])
        if change.action == "remove":
            definition = RoleDefinition.objects.get(
                role=role, environment=data["environment"], tier=data["tier"]
            )
            remove_role_definition(definition, actor=actor, reason=reason)
            return
        values = {k: v for k, v in data.items() if k not in ("role", "environment", "tier")}
        set_role_definition(
            role,
            environment=data["environment"],
            tier=data["tier"],
            actor=actor,
            reason=reason,
            **values,
        )
    elif change.kind == "policy":
        _apply_policy(change, actor, reason)
    elif change.kind == "cluster":
        cluster = Cluster.objects.get(name=data["name"])
        from clusters.services import update_cluster

        update_cluster(
            cluster,
            actor=actor,
            environment=data["environment"],
            tier=data["tier"],
            labels=data["labels"],
            user_prefix=data["user_prefix"],
            group_prefix=data["group_prefix"],
            bind_groups=data["bind_groups"],
            api_url=cluster.api_url,
            ca_bundle=cluster.ca_bundle,
            reason=reason,
        )
    elif change.kind == "service_account":
        _apply_service_account(change, actor, reason)
    elif change.kind == "grant":
        if change.action == "remove":
            assert change.item.pk is not None  # a grant Warden holds
            revoke_grant(Grant.objects.get(pk=change.item.pk), actor=actor, reason=reason)
            return
        grant_access(
            role=Role.objects.get(name=data["role"]),
            team=Team.objects.get(is_active=True, name=data["team"]) if data["team"] else None,
            person=Person.objects.get(is_active=True, username=data["person"])
            if data["person"]
            else None,
            actor=actor,
            reason=data["reason"] or reason,
            starts_at=parse_datetime(data["starts_at"]) if data["starts_at"] else None,
            expires_at=parse_datetime(data["expires_at"]) if data["expires_at"] else None,
            environments=data["environments"],
            tiers=data["tiers"],
            clusters=data["clusters"],
            cluster_selector=data["cluster_selector"],
            namespaces=data["namespaces"],
        )


def _apply_service_account(change: Change, actor: Actor, reason: str) -> None:
    from clusters import serviceaccounts
    from clusters.choices import AccountState
    from clusters.models import ManagedServiceAccount

    data = change.item.data
    existing = ManagedServiceAccount.objects.filter(
        state__in=(AccountState.ACTIVE, AccountState.PENDING),
        namespace=data["namespace"],
        name=data["name"],
    ).first()
    if change.action == "remove":
        if existing is not None:
            serviceaccounts.retire_service_account(existing, actor=actor, reason=reason)
        return
    serviceaccounts.declare_service_account(
        serviceaccounts.AccountInput(
            name=data["name"],
            namespace=data["namespace"],
            description=data["description"],
            owner_team=Team.objects.get(is_active=True, name=data["owner_team"]),
            roles=list(Role.objects.filter(name__in=data["roles"])),
            namespaces=data["namespaces"],
            clusters=data["clusters"],
            cluster_selector=data["cluster_selector"],
            rotation_period=durations.parse(data["rotation_period"]),
            grace_period=durations.parse(data["grace_period"]),
            token_lifetime=durations.parse(data["token_lifetime"]),
            show_to_owner=data["show_to_owner"],
        ),
        actor=actor,
        account=existing,
        reason=reason,
    )


def _apply_policy(change: Change, actor: Actor, reason: str) -> None:
    data = change.item.data
    role = Role.objects.filter(name=data["role"]).first() if data["role"] else None
    existing = ApprovalPolicy.objects.filter(
        environment=data["environment"], tier=data["tier"], role=role
    ).first()
    if change.action == "remove":
        if existing is not None:
            catalogue.delete_policy(existing, actor=actor, reason=reason)
        return
    glass = data["break_glass_duration"]
    catalogue.save_policy(
        existing,
        name=data["name"],
        environment=data["environment"],
        tier=data["tier"],
        role=role,
        approvals_required=data["approvals_required"],
        approver_teams=list(Team.objects.filter(is_active=True, name__in=data["approver_teams"])),
        manager_may_approve=data["manager_may_approve"],
        self_approval_forbidden=data["self_approval_forbidden"],
        max_duration=durations.parse(data["max_duration"]),
        default_duration=durations.parse(data["default_duration"]),
        self_extension=data["self_extension"],
        break_glass_allowed=data["break_glass_allowed"],
        break_glass_duration=durations.parse(glass) if glass else None,
        break_glass_teams=list(
            Team.objects.filter(is_active=True, name__in=data["break_glass_teams"])
        ),
        break_glass_roles=list(Role.objects.filter(name__in=data["break_glass_roles"])),
        actor=actor,
        reason=reason,
    )


__all__ = [
    "AsCodeError",
    "Declared",
    "Diff",
    "apply",
    "current",
    "diff",
    "export",
    "load",
    "plan_text",
    "rbac_plan",
]
