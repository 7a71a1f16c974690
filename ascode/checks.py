"""Loading a file: every entry checked, each problem named with its file and line."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import yaml
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from access import durations
from access.choices import Environment, RoleScope, Tier
from access.models import Person, Role, Team
from access.services.grants import (
    clean_definition,
    clean_scope,
)
from ascode.format import (
    CLUSTER_KEYS,
    DEFINITION_KEYS,
    GRANT_KEYS,
    POLICY_KEYS,
    ROLE_KEYS,
    SECTIONS,
    SERVICE_ACCOUNT_KEYS,
    VERSION,
    AsCodeError,
    Declared,
    Item,
    Marked,
    MarkedList,
    MarkedLoader,
    definition_data,
    grant_key,
    when_text,
)
from clusters.choices import ClusterState
from clusters.models import Cluster
from core import yamltext


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
        return when_text(parsed)


def load(text: str, filename: str = "<file>") -> Declared:
    """Read and check a file; AsCodeError lists every problem with its file and line."""
    check = _Checker(filename)
    try:
        doc = yaml.load(text, Loader=MarkedLoader)  # noqa: S506 - MarkedLoader is a SafeLoader
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
    data = definition_data(role, {"environment": environment, "tier": tier, **values})
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
    state.grants.append(Item("grant", grant_key(data), data, entry.line))


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
