"""Cluster discovery: register clusters found in a Cluster API management cluster or a folder.

A source is listed as a whole first. When that fails (the management cluster is down, the
folder is not mounted) the run fails and changes nothing: no cluster is ever retired because
its source could not be read. Each cluster found is mapped to an environment and tier by the
source's rules and registered through `services.register_cluster`, access check included; a
cluster that fails is recorded in the run and does not stop the others. Clusters the source
registered and no longer lists are marked missing, and retired (records kept) once they have
been missing for the source's grace period.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from access import audit
from access.choices import Environment, Tier
from clusters import k8s, services
from clusters.choices import ClusterState, DiscoveryKind, DiscoveryStatus, DiscoveryTrigger
from clusters.k8s import Endpoint, KubeError, Unreachable
from clusters.kubeconfig import ClusterAccess, KubeconfigError, parse_kubeconfig
from clusters.models import Cluster, DiscoveryRun, DiscoverySource
from core import outbound, queue, yamltext
from core.types import Actor

logger = logging.getLogger(__name__)

CAPI_GROUP = "cluster.x-k8s.io"
CAPI_VERSION = "v1beta1"
CAPI_PLURAL = "clusters"
# A run still "running" after this long was left by a worker that died; the next one proceeds.
STALE_RUN = timedelta(minutes=30)
# Kubeconfig files larger than this are not read (a folder of kubeconfigs, not of anything).
MAX_KUBECONFIG_BYTES = 1 << 20
RULE_KEYS = {"match", "name", "environment", "tier"}


class SourceDown(Exception):
    """The source as a whole could not be listed; the message says what to fix."""


@dataclass
class Candidate:
    """A cluster a source lists: its key there, the name it gets, labels, and access to it."""

    key: str
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    access: ClusterAccess | None = None
    # Why it cannot be registered (its credentials cannot be read); it still counts as present.
    problem: str = ""


# --- mapping rules ----------------------------------------------------------------------------


def validate_rules(rules: Any) -> list[dict[str, Any]]:
    """The rules in their stored form; ValidationError naming the rule and field to fix."""
    if rules in (None, ""):
        return []
    if not isinstance(rules, list):
        raise ValidationError("Rules must be a list of mappings (one `- ...` entry per rule)")
    errors: list[str] = []
    clean: list[dict[str, Any]] = []
    for number, rule in enumerate(rules, start=1):
        if not isinstance(rule, dict):
            errors.append(f"Rule {number} is not a mapping")
            continue
        unknown = sorted(set(map(str, rule)) - RULE_KEYS)
        if unknown:
            errors.append(
                f"Rule {number} has unknown keys {', '.join(unknown)}: use match, name, "
                "environment and tier"
            )
        match = rule.get("match") or {}
        if not isinstance(match, dict) or not all(
            isinstance(k, str) and isinstance(v, str | int | bool) for k, v in match.items()
        ):
            errors.append(f"Rule {number}: `match` must map label names to values")
            match = {}
        pattern = rule.get("name") or ""
        if not isinstance(pattern, str):
            errors.append(f"Rule {number}: `name` must be a glob such as prod-*")
            pattern = ""
        if rule.get("environment") not in Environment.values:
            errors.append(
                f"Rule {number}: environment must be one of {', '.join(Environment.values)}"
            )
        if rule.get("tier") not in Tier.values:
            errors.append(f"Rule {number}: tier must be one of {', '.join(Tier.values)}")
        clean.append(
            {
                "match": {str(k): _label_text(v) for k, v in match.items()},
                "name": pattern,
                "environment": rule.get("environment"),
                "tier": rule.get("tier"),
            }
        )
    if errors:
        raise ValidationError(errors)
    return clean


def _label_text(value: Any) -> str:
    # YAML reads `critical: true` as a boolean; a Kubernetes label value is the text "true".
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def map_cluster(source: DiscoverySource, candidate: Candidate) -> tuple[str, str, int] | None:
    """(environment, tier, rule number — 0 for the default) the first matching rule gives."""
    for number, rule in enumerate(source.rules or [], start=1):
        match = rule.get("match") or {}
        if any(candidate.labels.get(k) != v for k, v in match.items()):
            continue
        if rule.get("name") and not fnmatch.fnmatchcase(candidate.name, rule["name"]):
            continue
        return rule["environment"], rule["tier"], number
    if source.default_environment and source.default_tier:
        return source.default_environment, source.default_tier, 0
    return None


# --- listing the sources ----------------------------------------------------------------------


def source_endpoint(source: DiscoverySource, token: str | None = None) -> Endpoint:
    return Endpoint(
        api_url=source.api_url,
        token=str(source.token) if token is None else token,
        ca_pem=source.ca_bundle,
    )


def list_candidates(source: DiscoverySource) -> list[Candidate]:
    """Every cluster the source lists now; SourceDown when the source cannot be listed."""
    if source.kind == DiscoveryKind.CLUSTER_API:
        return _list_cluster_api(source)
    if source.kind == DiscoveryKind.KUBECONFIG_DIR:
        return _list_kubeconfig_dir(source)
    raise SourceDown(f"Unknown discovery kind {source.kind!r}")


def _list_cluster_api(source: DiscoverySource) -> list[Candidate]:
    client = k8s.KubeClient(source_endpoint(source), max_attempts=3)
    try:
        try:
            objects = list(
                client.list_custom(CAPI_GROUP, CAPI_VERSION, CAPI_PLURAL, source.namespace)
            )
        except KubeError as exc:
            raise SourceDown(_management_problem(source, exc)) from exc
        candidates = []
        for obj in objects:
            meta = obj.get("metadata") or {}
            if meta.get("deletionTimestamp"):
                continue  # being deleted: treat as gone
            name, namespace = str(meta.get("name") or ""), str(meta.get("namespace") or "")
            labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
            candidate = Candidate(key=f"{namespace}/{name}", name=name, labels=labels)
            try:
                candidate.access = _capi_kubeconfig(client, namespace, name)
            except (KubeError, KubeconfigError) as exc:
                candidate.problem = _secret_problem(namespace, name, exc)
            candidates.append(candidate)
        return candidates
    finally:
        client.close()


def _capi_kubeconfig(client: k8s.KubeClient, namespace: str, name: str) -> ClusterAccess:
    """The workload cluster's access from Cluster API's `<name>-kubeconfig` Secret (key value)."""
    secret = client.get("Secret", f"{name}-kubeconfig", namespace)
    encoded = (secret.get("data") or {}).get("value")
    if not encoded:
        raise KubeconfigError(f"Secret {namespace}/{name}-kubeconfig has no key `value`")
    try:
        text = base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise KubeconfigError(
            f"Secret {namespace}/{name}-kubeconfig: `value` is not base64 of a kubeconfig"
        ) from exc
    return parse_kubeconfig(text)


def _management_problem(source: DiscoverySource, exc: KubeError) -> str:
    if isinstance(exc, Unreachable):
        return f"The management cluster is not answering: {exc.message}"
    if exc.status == 401:
        return (
            "The management cluster does not accept the source's token (401): paste a current one"
        )
    if exc.status == 403:
        return (
            "The source's credentials may not list clusters.cluster.x-k8s.io"
            + (f" in namespace {source.namespace}" if source.namespace else "")
            + f": {exc.message}"
        )
    if exc.status == 404:
        return (
            "The management cluster does not serve clusters.cluster.x-k8s.io/v1beta1: is "
            "Cluster API installed there?"
        )
    return f"The management cluster answered {exc}"


def _secret_problem(namespace: str, name: str, exc: Exception) -> str:
    if isinstance(exc, KubeError) and exc.status == 404:
        return (
            f"Secret {namespace}/{name}-kubeconfig does not exist (yet): the cluster may still "
            "be provisioning"
        )
    if isinstance(exc, KubeError) and exc.status == 403:
        return f"The source's credentials may not read Secret {namespace}/{name}-kubeconfig"
    return str(exc)


def _list_kubeconfig_dir(source: DiscoverySource) -> list[Candidate]:
    folder = Path(source.path)
    try:
        # Mounted Secrets hold their files behind dot-named links (..data): skip those.
        files = sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.is_file())
    except OSError as exc:
        raise SourceDown(
            f"The folder {source.path} cannot be read ({exc.strerror or exc}): is it mounted "
            "on the worker?"
        ) from exc
    candidates: list[Candidate] = []
    for path in files:
        candidates.extend(_kubeconfig_file_candidates(path))
    return candidates


def _kubeconfig_file_candidates(path: Path) -> list[Candidate]:
    """One candidate per context of the file; one with a problem when the file is unreadable."""
    try:
        if path.stat().st_size > MAX_KUBECONFIG_BYTES:
            raise KubeconfigError("larger than 1 MiB: not a kubeconfig")
        text = path.read_text()
        doc = yaml.safe_load(text)
        contexts = [
            str(c.get("name"))
            for c in (doc.get("contexts") or [] if isinstance(doc, dict) else [])
            if isinstance(c, dict) and c.get("name")
        ]
        if not contexts:
            raise KubeconfigError("no contexts: is it a kubeconfig?")
    except (OSError, UnicodeDecodeError, yaml.YAMLError, KubeconfigError) as exc:
        # Stands for every cluster of this file: they are kept while it cannot be read.
        return [
            Candidate(key=f"{path.name}#*", name="", problem=f"{path.name}: {_unreadable(exc)}")
        ]
    out = []
    for context in contexts:
        candidate = Candidate(key=f"{path.name}#{context}", name="")
        try:
            candidate.access = parse_kubeconfig(text, context)
            candidate.name = slugify(candidate.access.cluster_name)[:63].strip("-")
            if not candidate.name:
                candidate.problem = f"{path.name}: context {context!r} names no usable cluster"
        except KubeconfigError as exc:
            candidate.name = slugify(context)[:63].strip("-")
            candidate.problem = f"{path.name}, context {context!r}: {exc}"
        out.append(candidate)
    return out


def _unreadable(exc: Exception) -> str:
    """Why a kubeconfig file cannot be used, in Warden's words: a YAML or decoding error quotes
    the file (the line may hold a token), so only its line is named."""
    if isinstance(exc, yaml.YAMLError):
        return str(yamltext.not_valid(exc))
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte {exc.start})"
    if isinstance(exc, OSError):
        return f"cannot be read ({exc.strerror or exc.__class__.__name__})"
    return str(exc)  # KubeconfigError: Warden's own message, naming the part to fix


# --- a discovery run --------------------------------------------------------------------------


def discover(
    source_id: int, trigger: str = DiscoveryTrigger.SCHEDULE, actor: Actor = None
) -> DiscoveryRun | None:
    """One pass over a source; None when another run of it is under way (a normal outcome)."""
    run = _claim(source_id, trigger)
    if run is None:
        return None
    started = time.monotonic()
    source = run.source
    try:
        candidates = list_candidates(source)
    except SourceDown as exc:
        run.status, run.error = DiscoveryStatus.FAILED, str(exc)
        logger.warning("discovery source %s is down: %s", source.name, exc)
    else:
        try:
            _apply(source, run, candidates, actor)
        except Exception as exc:
            # Record the run as failed rather than leave it "running" until it goes stale.
            run.status, run.error = DiscoveryStatus.FAILED, f"Discovery stopped: {exc}"
            run.finished_at = timezone.now()
            run.save()
            raise
        run.status = DiscoveryStatus.SUCCEEDED
    run.mark_finished(started)
    run.save()
    return run


def _claim(source_id: int, trigger: str) -> DiscoveryRun | None:
    with transaction.atomic():
        source = DiscoverySource.objects.select_for_update().get(pk=source_id)
        running = source.runs.filter(status=DiscoveryStatus.RUNNING)
        stale = running.filter(started_at__lt=timezone.now() - STALE_RUN)
        stale.update(
            status=DiscoveryStatus.FAILED,
            finished_at=timezone.now(),
            error="The worker running it stopped before it finished",
        )
        if running.exists():
            return None
        return DiscoveryRun.objects.create(source=source, trigger=trigger)


def _apply(
    source: DiscoverySource, run: DiscoveryRun, candidates: list[Candidate], actor: Actor
) -> None:
    known = {c.discovered_key: c for c in Cluster.objects.filter(discovered_by=source)}
    seen: set[str] = set()
    rule_hits: set[int] = set()
    run.found = sum(1 for c in candidates if not c.key.endswith("#*"))
    for candidate in candidates:
        seen.add(candidate.key)
        if candidate.key.endswith("#*"):
            # An unreadable file: keep every cluster it held, as if each was listed.
            prefix = candidate.key[:-1]
            seen.update(k for k in known if k.startswith(prefix))
        outcome = _one(source, candidate, known.get(candidate.key), rule_hits, actor)
        if outcome in ("registered", "updated", "unchanged"):
            setattr(run, outcome, getattr(run, outcome) + 1)
        else:
            run.failed += 1
            run.problems.append({"cluster": candidate.key, "problem": outcome})
    for number, rule in enumerate(source.rules or [], start=1):
        if number not in rule_hits:
            run.notes.append(f"Rule {number} ({_rule_text(rule)}) matched no cluster")
    _mark_missing(source, run, [c for key, c in known.items() if key not in seen], actor)


def _one(
    source: DiscoverySource,
    candidate: Candidate,
    cluster: Cluster | None,
    rule_hits: set[int],
    actor: Actor,
) -> str:
    """registered / updated / unchanged, or the problem that stopped this cluster."""
    if cluster is not None and cluster.missing_since is not None:
        Cluster.objects.filter(pk=cluster.pk).update(missing_since=None)
    if candidate.problem:
        return candidate.problem
    assert candidate.access is not None
    mapped = map_cluster(source, candidate)
    if mapped is None:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(candidate.labels.items())) or "none"
        return (
            f"No rule maps {candidate.name} (labels: {labels}) to an environment and tier: add "
            "a rule that matches it, or a default environment and tier"
        )
    environment, tier, rule = mapped
    rule_hits.add(rule)
    access = candidate.access
    try:
        if cluster is None:
            taken = Cluster.objects.filter(name=candidate.name).first()
            if taken is not None:
                return _name_taken(source, candidate, taken)
            services.register_cluster(
                name=candidate.name,
                environment=environment,
                tier=tier,
                api_url=access.api_url,
                token=access.token,
                ca_bundle=access.ca_pem,
                labels=candidate.labels,
                user_prefix=source.user_prefix,
                group_prefix=source.group_prefix,
                bind_groups=source.bind_groups,
                actor=actor,
                discovered_by=source,
                discovered_key=candidate.key,
            )
            return "registered"
        if cluster.state == ClusterState.RETIRED:
            return (
                f"{candidate.name} is listed again, but Warden retired its record on "
                f"{cluster.retired_at:%Y-%m-%d}: register it under another name"
            )
        changed = services.update_cluster(
            cluster,
            actor=actor,
            environment=environment,
            tier=tier,
            labels=candidate.labels,
            user_prefix=cluster.user_prefix,
            group_prefix=cluster.group_prefix,
            bind_groups=cluster.bind_groups,
            api_url=access.api_url,
            ca_bundle=access.ca_pem,
            token=access.token,
            reason=f"discovered by {source.name}",
        )
        return "updated" if changed else "unchanged"
    except ValidationError as exc:
        return f"{candidate.name}: " + " ".join(exc.messages)


def _name_taken(source: DiscoverySource, candidate: Candidate, taken: Cluster) -> str:
    owner = f"discovery source {taken.discovered_by}" if taken.discovered_by_id else "an operator"
    return (
        f"A cluster named {candidate.name} is already registered by {owner}; Warden leaves it alone"
    )


def _mark_missing(
    source: DiscoverySource, run: DiscoveryRun, gone: list[Cluster], actor: Actor
) -> None:
    now = timezone.now()
    grace = timedelta(hours=source.grace_hours)
    for cluster in gone:
        if cluster.state == ClusterState.RETIRED:
            continue
        if cluster.missing_since is None:
            Cluster.objects.filter(pk=cluster.pk).update(missing_since=now)
            cluster.missing_since = now
        if now - cluster.missing_since < grace:
            run.missing += 1
            continue
        try:
            # It is gone from its source, so its API is most likely gone too: nothing to remove.
            services.retire_cluster(
                cluster,
                remove_owned=False,
                actor=actor,
                reason=(
                    f"missing from discovery source {source.name} since "
                    f"{cluster.missing_since:%Y-%m-%d %H:%M} UTC (grace {source.grace_hours} h)"
                ),
            )
        except ValidationError as exc:
            run.problems.append({"cluster": cluster.discovered_key, "problem": exc.messages[0]})
            continue
        run.retired += 1


def _rule_text(rule: dict[str, Any]) -> str:
    parts = [f"{k}={v}" for k, v in sorted((rule.get("match") or {}).items())]
    if rule.get("name"):
        parts.append(f"name {rule['name']}")
    target = f"{rule.get('environment')}/{rule.get('tier')}"
    return (" and ".join(parts) or "any cluster") + f" → {target}"


# --- the sources themselves -------------------------------------------------------------------

# What discovery needs on a Cluster API management cluster: (verb, group, resource).
CAPI_ACCESS = [("list", CAPI_GROUP, "clusters"), ("get", "", "secrets")]


def check_source_access(endpoint: Endpoint, namespace: str) -> list[str]:
    """Problems that stop Warden from reading Cluster API clusters and their kubeconfigs."""
    client = k8s.KubeClient(endpoint, max_attempts=1)
    try:
        client.version()
        missing = [
            f"{verb} {resource}" + (f".{group}" if group else "")
            for verb, group, resource in CAPI_ACCESS
            if not client.self_subject_access_review(verb, resource, group, namespace)
        ]
    except Unreachable as exc:
        return [exc.message]
    except KubeError as exc:
        if exc.status == 401:
            return ["The management cluster does not accept this token (401): paste a current one"]
        return [f"The management cluster answered {exc}"]
    finally:
        client.close()
    if missing:
        where = f" in namespace {namespace}" if namespace else " in all namespaces"
        return [
            "The source's credentials may not " + ", ".join(missing) + where + ": bind them to "
            "a role that allows it (see docs/clusters.md, 'Cluster discovery')"
        ]
    return []


_SOURCE_FIELDS = (
    "name",
    "kind",
    "enabled",
    "api_url",
    "namespace",
    "path",
    "rules",
    "default_environment",
    "default_tier",
    "user_prefix",
    "group_prefix",
    "bind_groups",
    "grace_hours",
)


def source_facts(source: DiscoverySource) -> dict[str, Any]:
    return {name: getattr(source, name) for name in _SOURCE_FIELDS}


def save_source(
    source: DiscoverySource, *, token: str = "", actor: Actor = None
) -> DiscoverySource:
    """Create or change a discovery source; new management-cluster credentials are checked.

    `source` carries the new values (unsaved); an empty token keeps the stored one.
    """
    source.rules = validate_rules(source.rules)
    previous = DiscoverySource.objects.filter(pk=source.pk).first() if source.pk else None
    if token:
        source.token = token
    elif previous is not None:
        source.token = previous.token
    if source.kind == DiscoveryKind.CLUSTER_API:
        if not source.api_url or not source.token:
            raise ValidationError(
                "A Cluster API source needs the management cluster's API URL and a token"
            )
        if previous is not None and previous.token:
            # The stored token goes only where it was given for.
            pem = services.normal_pem
            services.require_token_for_new_address(
                (previous.api_url, pem(previous.ca_bundle)),
                (source.api_url, pem(source.ca_bundle)),
                token,
            )
        outbound.check_api_url(source.api_url, what="The management cluster's API URL")
        new_credentials = previous is None or (
            (previous.api_url, previous.ca_bundle, previous.token, previous.namespace)
            != (source.api_url, source.ca_bundle, source.token, source.namespace)
        )
        if new_credentials:
            problems = check_source_access(source_endpoint(source), source.namespace)
            if problems:
                raise ValidationError(problems)
    elif source.kind == DiscoveryKind.KUBECONFIG_DIR:
        if not source.path:
            raise ValidationError("A kubeconfig folder source needs the folder's path")
        source.api_url, source.ca_bundle, source.token, source.namespace = "", "", "", ""
    source.full_clean(validate_unique=False)
    try:
        with transaction.atomic():
            source.save()
            audit.record(
                "discovery_source.updated" if previous else "discovery_source.created",
                actor=actor,
                obj=source,
                before=source_facts(previous) if previous else None,
                after=source_facts(source),
            )
    except IntegrityError as exc:
        raise ValidationError(f"A discovery source named {source.name!r} already exists") from exc
    return source


@transaction.atomic
def request_discovery(source: DiscoverySource, *, actor: Actor = None) -> None:
    """Queue a discovery run of one source now (after this transaction commits)."""
    audit.record("discovery_source.run_requested", actor=actor, obj=source)
    queue.send_on_commit(
        "clusters.tasks.discover_source_task", source.pk, DiscoveryTrigger.OPERATOR
    )
