"""The cluster registry: register, edit, check the connection, retire."""

from __future__ import annotations

import hashlib
import time
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from access import audit
from clusters import k8s, locks
from clusters.choices import ClusterState, ReconcileStatus, ReconcileTrigger
from clusters.compiler import (
    DesiredState,
)
from clusters.k8s import Endpoint, KubeError
from clusters.models import Cluster, DiscoverySource, ReconcileRun
from clusters.plan import Plan
from clusters.reconcile import ACCOUNT_KIND, MANAGED_KINDS, Outcome, apply, read_actual
from clusters.services.checks import check_access, read_identity, refuse_second_registration
from clusters.services.inputs import endpoint_for
from clusters.services.queueing import queue_on_commit
from core import outbound
from core.types import Actor

# The fields of a cluster an audit event shows before and after a change (never the token).
_AUDITED = (
    "name",
    "environment",
    "tier",
    "labels",
    "api_url",
    "user_prefix",
    "group_prefix",
    "bind_groups",
    "state",
)


def cluster_facts(cluster: Cluster) -> dict[str, Any]:
    """What an audit event records of a cluster: its metadata and a CA fingerprint."""
    facts = {field: getattr(cluster, field) for field in _AUDITED}
    facts["ca_sha256"] = (
        hashlib.sha256(cluster.ca_bundle.encode()).hexdigest()[:16] if cluster.ca_bundle else ""
    )
    if cluster.discovered_by_id:
        facts["discovered_by"] = cluster.discovered_by_id
    return facts


def normal_pem(text: str) -> str:
    """A PEM bundle as stored: LF line ends (browsers send CRLF), one final newline."""
    text = (text or "").replace("\r\n", "\n").strip()
    return text + "\n" if text else ""


def register_cluster(
    *,
    name: str,
    environment: str,
    tier: str,
    api_url: str,
    token: str,
    ca_bundle: str = "",
    labels: dict[str, str] | None = None,
    user_prefix: str = "",
    group_prefix: str = "",
    bind_groups: bool = True,
    check: bool = True,
    actor: Actor = None,
    discovered_by: DiscoverySource | None = None,
    discovered_key: str = "",
    update_existing: bool = True,
) -> Cluster:
    """Register (or re-register) a cluster after checking Warden can manage RBAC there.

    Nothing is saved when the check fails: the ValidationError's messages say what to fix.
    update_existing=False refuses a name already registered (the registration page), instead
    of replacing that cluster's settings (the command and the demo, which re-register).
    """
    existing = Cluster.objects.filter(name=name).first()
    if existing is not None and existing.state == ClusterState.RETIRED:
        raise ValidationError(f"Cluster {name!r} was retired; pick another name")
    if existing is not None and not update_existing:
        raise ValidationError(
            f"A cluster named {name!r} is already registered: edit it, or pick another name"
        )
    cluster = existing or Cluster(name=name)
    before = cluster_facts(cluster) if existing else None
    ca_bundle = normal_pem(ca_bundle)
    cluster.environment, cluster.tier = environment, tier
    cluster.api_url, cluster.token, cluster.ca_bundle = api_url, token, ca_bundle
    cluster.labels = labels or {}
    cluster.user_prefix, cluster.group_prefix = user_prefix, group_prefix
    cluster.bind_groups = bind_groups
    if discovered_by is not None:
        cluster.discovered_by, cluster.discovered_key = discovered_by, discovered_key
        cluster.missing_since = None
    # Cheap validation first, so a bad name or URL is named before any network call.
    cluster.full_clean(validate_unique=False)
    outbound.check_api_url(api_url)
    if check:
        endpoint = Endpoint(api_url=api_url, token=token, ca_pem=ca_bundle)
        problems = check_access(endpoint)
        if problems:
            raise ValidationError(problems)
        cluster.identity = read_identity(endpoint)
    try:
        with transaction.atomic():
            refuse_second_registration(cluster.identity, api_url, other_than=cluster.pk)
            cluster.save()
            audit.record(
                "cluster.updated" if existing else "cluster.registered",
                actor=actor,
                obj=cluster,
                before=before,
                after=cluster_facts(cluster),
                reason=f"discovered by {discovered_by.name}" if discovered_by else "",
            )
            queue_on_commit(cluster.pk, ReconcileTrigger.CHANGE)
    except IntegrityError as exc:
        # Another registration of the same name committed between our read and write.
        raise ValidationError(f"A cluster named {name!r} is already registered") from exc
    return cluster


def update_cluster(
    cluster: Cluster,
    *,
    actor: Actor = None,
    environment: str,
    tier: str,
    labels: dict[str, str],
    user_prefix: str,
    group_prefix: str,
    bind_groups: bool,
    api_url: str,
    ca_bundle: str,
    token: str = "",
    reason: str = "",
) -> bool:
    """Change a cluster's metadata or credentials; True when something changed.

    New credentials (API URL, CA or token) are checked like a registration before anything is
    saved; an empty token keeps the current one only while the URL and the CA stay the same, so
    the stored token never goes to an address it was not given for. A change queues a
    reconcile of the cluster.
    """
    if cluster.state == ClusterState.RETIRED:
        raise ValidationError(f"Cluster {cluster.name} is retired; it can no longer be changed")
    ca_bundle = normal_pem(ca_bundle)
    if ca_bundle == normal_pem(cluster.ca_bundle):
        ca_bundle = cluster.ca_bundle  # the same CA, however it was written when stored
    require_token_for_new_address((cluster.api_url, cluster.ca_bundle), (api_url, ca_bundle), token)
    new_token = token or str(cluster.token)
    new_credentials = (
        api_url != cluster.api_url or ca_bundle != cluster.ca_bundle or new_token != cluster.token
    )
    identity = cluster.identity
    if new_credentials:
        outbound.check_api_url(api_url)
        endpoint = Endpoint(api_url=api_url, token=new_token, ca_pem=ca_bundle)
        problems = check_access(endpoint)
        if problems:
            raise ValidationError(problems)
        identity = read_identity(endpoint) or identity
    with transaction.atomic():
        if new_credentials:
            refuse_second_registration(identity, api_url, other_than=cluster.pk)
        current = Cluster.objects.select_for_update().get(pk=cluster.pk)
        current.identity = identity
        before = cluster_facts(current)
        current.environment, current.tier, current.labels = environment, tier, labels or {}
        current.user_prefix, current.group_prefix = user_prefix, group_prefix
        current.bind_groups = bind_groups
        current.api_url, current.ca_bundle, current.token = api_url, ca_bundle, new_token
        current.full_clean(validate_unique=False)
        after = cluster_facts(current)
        if after == before and not new_credentials:
            return False
        current.save()
        if new_credentials:
            reason = "; ".join(filter(None, [reason, "new credentials, access checked"]))
        audit.record(
            "cluster.updated", actor=actor, obj=current, before=before, after=after, reason=reason
        )
        queue_on_commit(current.pk, ReconcileTrigger.CHANGE)
    cluster.refresh_from_db()
    return True


def require_token_for_new_address(
    stored: tuple[str, str], wanted: tuple[str, str], token: str
) -> None:
    """A new API URL or CA (stored and wanted: (url, CA)) needs the token given again: the
    stored token is only ever sent where it was given for (an operator could otherwise send
    the prod token to a host of their own)."""
    if token or stored == wanted:
        return
    what = "API URL" if stored[0] != wanted[0] else "CA bundle"
    raise ValidationError(
        f"A new {what} needs the token again: paste Warden's token for the cluster at the new "
        "address (the stored token is never sent anywhere else)."
    )


def check_connection(cluster: Cluster) -> list[str]:
    """Ask the cluster now whether Warden's stored credentials may manage RBAC there."""
    if cluster.state == ClusterState.RETIRED:
        return [f"Cluster {cluster.name} is retired; Warden no longer talks to it"]
    return check_access(endpoint_for(cluster))


RETIRE_LOCK_WAIT_S = 30.0


def retire_cluster(
    cluster: Cluster, *, remove_owned: bool = True, actor: Actor = None, reason: str = ""
) -> ReconcileRun | None:
    """Retire a cluster; first remove every object Warden owns there, if asked and reachable.

    When removal fails the cluster is not retired, so nothing Warden wrote is left behind
    unnoticed; retire with remove_owned=False to give it up as it is. The record is kept.
    """
    if cluster.state == ClusterState.RETIRED:
        raise ValidationError(f"Cluster {cluster.name} is already retired")
    run = None
    if remove_owned:
        # Wait for a reconcile under way to finish, so that it does not write after the removal.
        with locks.cluster_lock(cluster.pk, wait_s=RETIRE_LOCK_WAIT_S) as held:
            if not held:
                raise ValidationError(
                    f"{cluster.name} is being reconciled right now; try again in a minute."
                )
            run = _remove_owned(cluster)
        if run.status != ReconcileStatus.SUCCEEDED:
            raise ValidationError(
                f"Could not remove Warden's objects from {cluster.name}: {run.error}. Retire "
                "without removing them, or fix the cluster's access first."
            )
    with transaction.atomic():
        before = cluster_facts(cluster)
        cluster.state = ClusterState.RETIRED
        cluster.retired_at = timezone.now()
        cluster.save(update_fields=["state", "retired_at", "updated_at"])
        audit.record(
            "cluster.retired",
            actor=actor,
            obj=cluster,
            before=before,
            after={
                **cluster_facts(cluster),
                "removed_owned": remove_owned,
                "deleted": run.deleted if run else 0,
            },
            reason=reason,
        )
    return run


def _remove_owned(cluster: Cluster) -> ReconcileRun:
    started = time.monotonic()
    run = ReconcileRun(cluster=cluster, trigger=ReconcileTrigger.RETIRE)
    client = k8s.client_for(endpoint_for(cluster))
    calls_before = client.calls
    try:
        actual = read_actual(client, (*MANAGED_KINDS, ACCOUNT_KIND))
        plan = Plan(delete=sorted(actual))
        outcome = Outcome(plan=plan, desired=DesiredState())
        apply(client, plan, actual, outcome)
        run.deleted = outcome.deleted
        run.status = ReconcileStatus.FAILED if outcome.errors else ReconcileStatus.SUCCEEDED
        run.error = "\n".join(outcome.errors[:20])
    except KubeError as exc:
        run.status, run.error = ReconcileStatus.FAILED, str(exc)
    run.api_calls = client.calls - calls_before
    run.mark_finished(started)
    run.save()
    return run
