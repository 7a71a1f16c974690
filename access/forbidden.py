"""The "Why forbidden?" explainer: read a Kubernetes `forbidden` message, say which roles allow it.

Pure: no database and no network. The caller (clusters.answers.forbidden_explanation) loads the
role catalogue, the rules of the ClusterRoles it references as the cluster holds them, and the
asker's grants and reconcile state; this module parses, matches and explains.

RBAC is evaluated as kube-apiserver's RBAC authorizer does (rbac/v1 evaluation helpers:
VerbMatches, APIGroupMatches, ResourceMatches incl. `*/subresource`, ResourceNameMatches,
NonResourceURLMatches), and a binding's reach as Warden's compiler writes it: a cluster-wide
role is a ClusterRoleBinding, a namespaced one RoleBindings only in the namespaces it reaches.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from access.specs import ClusterSpec, GrantSpec, RoleDefinitionSpec, RoleSpec

SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
ANONYMOUS = "system:anonymous"
# The form is a GET (an answer can be linked): this keeps the request line well under the 4 KiB
# proxies and gunicorn accept by default.
MAX_MESSAGE = 2000

# One Kubernetes name segment as the API accepts it in the pieces we read (generous on purpose:
# the point is to read what the server wrote, not to validate it).
_Q = r'"(?P<{0}>[^"]*)"'
# kube-apiserver >= 1.14 (responsewriters.forbiddenMessage):
#   User "u" cannot VERB resource "res[/sub]" in API group "g" in the namespace "ns"
#   User "u" cannot VERB resource "res[/sub]" in API group "g" at the cluster scope
_CURRENT = re.compile(
    r"User "
    + _Q.format("user")
    + r" cannot (?P<verb>[\w*-]+) resource "
    + _Q.format("resource")
    + r" in API group "
    + _Q.format("group")
    + r"(?: in the namespace "
    + _Q.format("namespace")
    + r"| at the cluster scope)"
)
# Non-resource URLs: User "u" cannot VERB path "/metrics"
_PATH = re.compile(
    r"User " + _Q.format("user") + r" cannot (?P<verb>[\w*-]+) path " + _Q.format("path")
)
# Older servers (before 1.14) wrote the group into the resource: "deployments.apps/scale".
#   User "u" cannot VERB res[.group][/sub] in the namespace "ns" | at the cluster scope
_LEGACY = re.compile(
    r"User "
    + _Q.format("user")
    + r" cannot (?P<verb>[\w*-]+) (?P<resource>[^\s\"]+)(?: in the namespace "
    + _Q.format("namespace")
    + r"| at the cluster scope)"
)
# Before the "User ..." part: `pods "web-0" is forbidden: ` names the object.
_NAMED = re.compile(r'(?P<qualified>[^\s"]+) "(?P<name>[^"]*)" is forbidden:\s*$')


class UnreadableMessage(ValueError):
    """The text holds no forbidden message Warden recognises; the message says what to paste."""


@dataclass(frozen=True)
class AccessAttempt:
    """What a refused request asked for: kube-apiserver's authorizer attributes."""

    verb: str
    user: str = ""
    resource: str = ""
    subresource: str = ""
    api_group: str = ""
    namespace: str = ""
    name: str = ""
    # A non-resource URL (/metrics, /healthz): then resource fields are empty.
    path: str = ""
    # What the authorizers added after the message (e.g. `RBAC: clusterrole ... not found`).
    reason: str = ""

    @property
    def is_resource_request(self) -> bool:
        return not self.path

    @property
    def combined_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource

    @property
    def at_cluster_scope(self) -> bool:
        """Needs a cluster-wide binding: a path, a cluster-scoped resource, or all namespaces."""
        return not self.is_resource_request or not self.namespace

    def describe(self) -> str:
        """The attempt in plain words, for the page."""
        if not self.is_resource_request:
            return f"{self.verb} the path {self.path}"
        group = f' in API group "{self.api_group}"' if self.api_group else " in the core API group"
        target = f'"{self.name}" of ' if self.name else ""
        where = f' in namespace "{self.namespace}"' if self.namespace else " at the cluster scope"
        return f"{self.verb} {target}{self.combined_resource}{group}{where}"


# --- reading a message ------------------------------------------------------------------------


def parse_message(text: str) -> AccessAttempt:
    """The attempt a pasted forbidden message describes; UnreadableMessage when there is none.

    Accepts what people paste: kubectl's `Error from server (Forbidden): ...`, the Status JSON
    (with `\\"` escapes), client logs, wrapped lines, and the pre-1.14 wording.
    """
    if len(text) > MAX_MESSAGE:
        raise UnreadableMessage(
            f"That is more than {MAX_MESSAGE} characters: paste just the line that says "
            '"... is forbidden: User ... cannot ...".'
        )
    flat = _unescape(text)
    match = _CURRENT.search(flat)
    if match:
        resource, _, subresource = match["resource"].partition("/")
        return _attempt(match, flat, resource, subresource, match["group"])
    match = _PATH.search(flat)
    if match:
        return AccessAttempt(
            verb=match["verb"],
            user=match["user"],
            path=match["path"],
            reason=_reason(flat, match.end()),
        )
    match = _LEGACY.search(flat)
    if match:
        qualified, _, subresource = match["resource"].partition("/")
        resource, _, group = qualified.partition(".")
        return _attempt(match, flat, resource, subresource, group)
    raise UnreadableMessage(
        "Warden found no Kubernetes forbidden message in that text. Paste the whole line, e.g. "
        '`pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the '
        'namespace "payments"`, or fill in the fields instead.'
    )


def _unescape(text: str) -> str:
    stripped = text.strip()
    if stripped.startswith("{"):
        # A whole Status object (kubectl -o json, an API client's log): its message.
        try:
            status = json.loads(stripped)
        except ValueError:
            pass
        else:
            if isinstance(status, dict) and isinstance(status.get("message"), str):
                stripped = status["message"]
    # JSON and Go's %q escape quotes inside log lines; terminals wrap long lines.
    flat = stripped.replace('\\\\"', '"').replace('\\"', '"')
    return re.sub(r"\s+", " ", flat).strip()


def _attempt(
    match: re.Match[str], flat: str, resource: str, subresource: str, group: str
) -> AccessAttempt:
    named = _NAMED.search(flat[: match.start()])
    return AccessAttempt(
        verb=match["verb"],
        user=match["user"],
        resource=resource,
        subresource=subresource,
        api_group=group,
        namespace=match["namespace"] or "",
        name=named["name"] if named else "",
        reason=_reason(flat, match.end()),
    )


def _reason(flat: str, end: int) -> str:
    rest = flat[end:].strip()
    if not rest.startswith(":"):
        return ""
    # Inside a JSON log line the message ends where its string does.
    rest = re.split(r'",\s*"|"\s*}', rest[1:], maxsplit=1)[0]
    return rest.strip().rstrip(".").strip()


def attempt_from_fields(
    *,
    verb: str,
    resource: str = "",
    api_group: str = "",
    namespace: str = "",
    name: str = "",
    path: str = "",
) -> AccessAttempt:
    """An attempt typed into the form. `resource` may carry a subresource (`pods/log`) and, as
    kubectl writes it, a group (`deployments.apps`)."""
    verb = verb.strip().lower()
    resource, path = resource.strip(), path.strip()
    if not verb:
        raise UnreadableMessage("Say which verb was refused (get, list, create, delete, ...).")
    if path:
        if resource:
            raise UnreadableMessage("Give a resource or a path (a non-resource URL), not both.")
        if not path.startswith("/"):
            raise UnreadableMessage("A non-resource path starts with / (e.g. /metrics).")
        return AccessAttempt(verb=verb, path=path)
    if not resource:
        raise UnreadableMessage("Say which resource was refused (pods, deployments, pods/log).")
    qualified, _, subresource = resource.partition("/")
    group = api_group.strip()
    if not group and "." in qualified:
        qualified, _, group = qualified.partition(".")
    return AccessAttempt(
        verb=verb,
        resource=qualified.lower(),
        subresource=subresource.lower(),
        api_group=group.lower(),
        namespace=namespace.strip(),
        name=name.strip(),
    )


# --- RBAC rule matching (kube-apiserver's semantics) ------------------------------------------


def rule_allows(rule: Mapping[str, Any], attempt: AccessAttempt) -> bool:
    """Whether one PolicyRule allows the attempt, exactly as the RBAC authorizer decides."""
    if not _verb_matches(rule, attempt.verb):
        return False
    if not attempt.is_resource_request:
        return _non_resource_url_matches(rule, attempt.path)
    return (
        _api_group_matches(rule, attempt.api_group)
        and _resource_matches(rule, attempt.combined_resource, attempt.subresource)
        and _resource_name_matches(rule, attempt.name)
    )


def _verb_matches(rule: Mapping[str, Any], verb: str) -> bool:
    return any(v == "*" or v == verb for v in rule.get("verbs") or ())


def _api_group_matches(rule: Mapping[str, Any], group: str) -> bool:
    return any(g == "*" or g == group for g in rule.get("apiGroups") or ())


def _resource_matches(rule: Mapping[str, Any], combined: str, subresource: str) -> bool:
    for resource in rule.get("resources") or ():
        if resource == "*" or resource == combined:
            return True
        # `*/scale` matches the scale subresource of anything; `pods/*` matches nothing special.
        if subresource and resource == f"*/{subresource}":
            return True
    return False


def _resource_name_matches(rule: Mapping[str, Any], name: str) -> bool:
    names = rule.get("resourceNames") or ()
    return not names or name in names


def _non_resource_url_matches(rule: Mapping[str, Any], path: str) -> bool:
    for url in rule.get("nonResourceURLs") or ():
        if url == "*" or url == path:
            return True
        if url.endswith("*") and path.startswith(url.rstrip("*")):
            return True
    return False


def matching_rule(
    rules: Sequence[Mapping[str, Any]], attempt: AccessAttempt
) -> Mapping[str, Any] | None:
    return next((rule for rule in rules if rule_allows(rule, attempt)), None)


def _near_miss_names(rules: Sequence[Mapping[str, Any]], attempt: AccessAttempt) -> list[str]:
    """Object names a rule would allow, when only resourceNames stand in the way."""
    names: list[str] = []
    for rule in rules:
        if rule.get("resourceNames") and rule_allows({**rule, "resourceNames": []}, attempt):
            names.extend(rule["resourceNames"])
    return sorted(set(names))


# --- explaining -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CatalogueRole:
    """A role of Warden's catalogue, with what it becomes on each kind of cluster."""

    name: str
    display_name: str
    rank: int
    spec: RoleSpec
    description: str = ""


ALLOWS, DENIES, UNAVAILABLE, UNKNOWN = "allows", "denies", "unavailable", "unknown"


@dataclass(frozen=True)
class RoleVerdict:
    """Whether one role, as defined on this cluster, would allow the attempt, and why."""

    role: str
    display_name: str
    rank: int
    state: str  # ALLOWS, DENIES, UNAVAILABLE (not offered here) or UNKNOWN (rules unreadable)
    why: str
    kube_role: str = ""
    rule: Mapping[str, Any] | None = None
    # Where to request it: the attempt's namespace, or "" for a cluster-wide grant.
    namespace: str = ""

    @property
    def allows(self) -> bool:
        return self.state == ALLOWS

    @property
    def rule_text(self) -> str:
        return describe_rule(self.rule) if self.rule is not None else ""


def describe_rule(rule: Mapping[str, Any]) -> str:
    """A PolicyRule on one line, as `kubectl describe clusterrole` lists it."""
    parts = []
    for key in ("verbs", "apiGroups", "resources", "resourceNames", "nonResourceURLs"):
        values = rule.get(key)
        if values:
            shown = ", ".join(f'"{v}"' if key == "apiGroups" else str(v) for v in values)
            parts.append(f"{key}: {shown}")
    return "; ".join(parts)


@dataclass(frozen=True)
class Holding:
    """A grant the asker holds (directly or through a team) that reaches the cluster."""

    grant: GrantSpec
    via: str  # "you" or "team payments"
    # From the cluster's newest reconcile: None = never reconciled since the grant existed.
    in_force: bool | None = None
    pending: tuple[str, ...] = ()


@dataclass
class Explanation:
    """The page's answer: roles that would allow the attempt, and what may be wrong instead."""

    attempt: AccessAttempt
    cluster: str
    verdicts: list[RoleVerdict]
    # Grants the asker already holds that should allow it.
    covering: list[Holding] = field(default_factory=list)
    # Likely causes, when the asker already holds a role that should allow it.
    causes: list[str] = field(default_factory=list)
    # Other things worth knowing (about the user named in the message, unreadable roles, ...).
    notes: list[str] = field(default_factory=list)

    @property
    def smallest(self) -> RoleVerdict | None:
        """The lowest-ranked role that allows it: the one to request."""
        return next((v for v in self.verdicts if v.allows), None)

    @property
    def already_allowed(self) -> bool:
        return bool(self.covering)


def explain(
    attempt: AccessAttempt,
    cluster: ClusterSpec,
    roles: Sequence[CatalogueRole],
    cluster_role_rules: Mapping[str, Sequence[Mapping[str, Any]]],
    unreadable: Mapping[str, str] | None = None,
    *,
    username: str = "",
    holdings: Sequence[Holding] = (),
) -> Explanation:
    """Which roles would allow `attempt` on `cluster`, smallest first, and whether the asker
    (`username`, with `holdings`) should already be allowed.

    `cluster_role_rules` holds the rules of each referenced ClusterRole as the cluster has them
    (aggregated roles already filled in; one the cluster lacks is absent); `unreadable` says
    why one could not be read.
    """
    unreadable = unreadable or {}
    verdicts = [
        _verdict(attempt, cluster, role, cluster_role_rules, unreadable)
        for role in sorted(roles, key=lambda r: (r.rank, r.name))
    ]
    result = Explanation(attempt=attempt, cluster=cluster.name, verdicts=verdicts)
    if username and _is_about(attempt, cluster, username):
        allowing = {v.role for v in verdicts if v.allows}
        result.covering = [
            holding
            for holding in holdings
            if holding.grant.role in allowing
            and grant_covers(holding.grant, cluster, roles, attempt)
        ]
        result.causes.extend(_causes(result.covering, attempt, cluster, username))
    result.notes.extend(_subject_notes(attempt, cluster, username, bool(result.causes)))
    if any(v.state == UNKNOWN for v in verdicts):
        result.notes.append(
            f"Some roles could not be checked because Warden could not read their rules from "
            f"{cluster.name}; the answer may miss a smaller role."
        )
    return result


def _verdict(
    attempt: AccessAttempt,
    cluster: ClusterSpec,
    role: CatalogueRole,
    cluster_role_rules: Mapping[str, Sequence[Mapping[str, Any]]],
    unreadable: Mapping[str, str],
) -> RoleVerdict:
    verdict = RoleVerdict(role.name, role.display_name, role.rank, state=DENIES, why="")
    definition = role.spec.definition_for(cluster)
    if definition is None:
        why = f"Not offered on {cluster.environment}/{cluster.tier} clusters."
        return replace(verdict, state=UNAVAILABLE, why=why)
    if definition.cluster_role:
        verdict = replace(verdict, kube_role=f"ClusterRole {definition.cluster_role}")
        if definition.cluster_role in unreadable:
            why = f"Its rules could not be read: {unreadable[definition.cluster_role]}"
            return replace(verdict, state=UNKNOWN, why=why)
        if definition.cluster_role not in cluster_role_rules:
            why = (
                f"The ClusterRole {definition.cluster_role} does not exist on {cluster.name}, so "
                "a binding to it allows nothing. Tell the Warden operators."
            )
            return replace(verdict, why=why)
        rules: Sequence[Mapping[str, Any]] = cluster_role_rules[definition.cluster_role]
    else:
        kube_role = f"{role.spec.managed_cluster_role_name} (rules Warden manages)"
        verdict = replace(verdict, kube_role=kube_role)
        rules = definition.rules
    rule = matching_rule(rules, attempt)
    if rule is None:
        names = _near_miss_names(rules, attempt)
        if names:
            why = f"Its rules allow this only for the objects named {', '.join(names)}."
        else:
            why = f"Its rules do not allow {attempt.verb} on {_what(attempt)}."
        return replace(verdict, why=why)
    scope_problem = _scope_problem(definition, attempt)
    if scope_problem:
        return replace(verdict, why=scope_problem, rule=rule)
    return replace(
        verdict,
        state=ALLOWS,
        why=_allows_because(definition, attempt),
        rule=rule,
        namespace="" if attempt.at_cluster_scope else attempt.namespace,
    )


def _what(attempt: AccessAttempt) -> str:
    if not attempt.is_resource_request:
        return f"the path {attempt.path}"
    group = f" ({attempt.api_group})" if attempt.api_group else ""
    return f"{attempt.combined_resource}{group}"


def _cluster_wide(definition: RoleDefinitionSpec) -> bool:
    return definition.cluster_wide and not definition.namespaces


def _scope_problem(definition: RoleDefinitionSpec, attempt: AccessAttempt) -> str:
    """Why the role's bindings would not reach the attempt here; "" when they would."""
    if attempt.at_cluster_scope:
        if _cluster_wide(definition):
            return ""
        what = "a path" if not attempt.is_resource_request else "this request is at cluster scope"
        return (
            f"It is bound only inside namespaces here, and {what} "
            "(a cluster-scoped resource, or all namespaces at once) needs a cluster-wide binding."
        )
    if definition.namespaces and not _matches_any(attempt.namespace, definition.namespaces):
        return (
            f"It reaches only namespaces {', '.join(definition.namespaces)} here, "
            f'not "{attempt.namespace}".'
        )
    return ""


def _allows_because(definition: RoleDefinitionSpec, attempt: AccessAttempt) -> str:
    if attempt.at_cluster_scope:
        return "Its rules allow it, and it is bound cluster-wide."
    return f'Its rules allow it in namespace "{attempt.namespace}".'


def _matches_any(value: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(value, pattern) for pattern in patterns)


def grant_covers(
    grant: GrantSpec, cluster: ClusterSpec, roles: Sequence[CatalogueRole], attempt: AccessAttempt
) -> bool:
    """Whether the bindings the compiler writes for this grant would reach the attempt."""
    if not grant.reaches(cluster):
        return False
    role = next((r for r in roles if r.name == grant.role), None)
    definition = role.spec.definition_for(cluster) if role else None
    if definition is None:
        return False
    if attempt.at_cluster_scope:
        return not grant.namespaces and _cluster_wide(definition)
    if grant.namespaces:
        return _matches_any(attempt.namespace, grant.namespaces) and (
            not definition.namespaces or _matches_any(attempt.namespace, definition.namespaces)
        )
    if _cluster_wide(definition):
        return True
    return bool(definition.namespaces) and _matches_any(attempt.namespace, definition.namespaces)


def _subject_name(cluster: ClusterSpec, username: str) -> str:
    return cluster.user_prefix + username


def _is_about(attempt: AccessAttempt, cluster: ClusterSpec, username: str) -> bool:
    """The message names the asker: as Warden binds them, or with another (or no) prefix."""
    user = attempt.user
    if user in ("", _subject_name(cluster, username), username):
        return True
    # "oidc:alice" or "https://issuer#alice" when Warden's prefix for the cluster is different.
    return user.endswith(username) and user[-len(username) - 1] in ":#/"


def _subject_notes(
    attempt: AccessAttempt, cluster: ClusterSpec, username: str, has_causes: bool
) -> list[str]:
    user = attempt.user
    if not user:
        return []
    if user.startswith(SERVICE_ACCOUNT_PREFIX):
        namespace, _, name = user[len(SERVICE_ACCOUNT_PREFIX) :].partition(":")
        return [
            f'"{user}" is the service account "{name}" in namespace "{namespace}", a machine, '
            "not a person: access requests in Warden are for people and teams. Ask the Warden "
            "operators to give that service account the role below."
        ]
    if user == ANONYMOUS:
        return [
            "The request reached the cluster without any identity (system:anonymous): the "
            "token or client certificate is missing or was not accepted. Log in to the cluster "
            "again before asking for more access."
        ]
    expected = _subject_name(cluster, username)
    if username and _is_about(attempt, cluster, username) and user != expected and not has_causes:
        # Granted or not, a binding for "oidc:alice" never matches a request from "alice".
        return [_prefix_mismatch(user, expected, cluster)]
    if username and not _is_about(attempt, cluster, username):
        return [
            f'The message is about user "{user}", but you are '
            f'"{_subject_name(cluster, username)}" on {cluster.name}. Warden shows which roles '
            f'would allow it; "{user}" must ask for access themselves.'
        ]
    return []


def _causes(
    covering: Sequence[Holding], attempt: AccessAttempt, cluster: ClusterSpec, username: str
) -> list[str]:
    if not covering:
        return []
    causes: list[str] = []
    waiting = [h for h in covering if not h.in_force]
    for holding in waiting:
        detail = "; ".join(holding.pending) if holding.pending else "no reconcile has done it yet"
        causes.append(
            f"Your grant #{holding.grant.id} of {holding.grant.role} (via {holding.via}) is not "
            f"in force on {cluster.name} yet: {detail}. Wait for the next reconcile, or ask an "
            "operator to reconcile the cluster."
        )
    if len(waiting) == len(covering):
        return causes
    held = ", ".join(sorted({f"{h.grant.role} (via {h.via})" for h in covering if h.in_force}))
    causes.append(f"Warden has already put {held} in force on {cluster.name}, which allows this.")
    expected = _subject_name(cluster, username)
    if attempt.user and attempt.user != expected:
        causes.append(_prefix_mismatch(attempt.user, expected, cluster))
    teams = sorted({h.via for h in covering if h.in_force and h.via.startswith("team ")})
    if teams and cluster.bind_groups:
        groups = ", ".join(f'"{cluster.group_prefix}{t.removeprefix("team ")}"' for t in teams)
        causes.append(
            f"{cluster.name} binds your team as the group {groups}: your token must carry that "
            "group. Log in to the cluster again to get a token with your current groups."
        )
    causes.append(
        f"The message may come from another cluster than {cluster.name}: check "
        "`kubectl config current-context`."
    )
    return causes


def _prefix_mismatch(seen: str, expected: str, cluster: ClusterSpec) -> str:
    return (
        f'The cluster saw you as "{seen}", but Warden binds "{expected}": the user prefix set '
        f'for {cluster.name} in Warden ("{cluster.user_prefix}") does not match what its '
        "authenticator adds. Tell the Warden operators."
    )


def request_query(explanation: Explanation) -> dict[str, str] | None:
    """The query string that prefills a request for the smallest allowing role."""
    smallest = explanation.smallest
    if smallest is None:
        return None
    query = {"role": smallest.role, "cluster": explanation.cluster}
    if smallest.namespace:
        query["namespace"] = smallest.namespace
    return query
