"""Handing a token generation over: a Kubernetes Secret in the consumer's namespace, or a signed
webhook to an external secret store; and the kubeconfig both (and the show-once page) carry.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from clusters import k8s, services
from clusters.choices import (
    DeliveryKind,
)
from clusters.compiler import MANAGED_BY, MANAGED_BY_LABEL, SERVICE_ACCOUNT_ANNOTATION
from clusters.k8s import KubeError
from clusters.kubeconfig import KubeconfigEntry, build_kubeconfig
from clusters.models import (
    Cluster,
    DeliveryTarget,
    ManagedServiceAccount,
    TokenGeneration,
)
from clusters.serviceaccounts.attempt import Attempt, Progress
from core.webhooks import WebhookError, post_signed

logger = logging.getLogger(__name__)


GENERATION_LABEL = "warden.io/token-generation"


def owned_by_account(obj: Mapping[str, Any], account: ManagedServiceAccount) -> bool:
    """The object carries Warden's ownership label and this account's id annotation."""
    meta = obj.get("metadata") or {}
    return (meta.get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY and (
        meta.get("annotations") or {}
    ).get(SERVICE_ACCOUNT_ANNOTATION) == str(account.pk)


def kubeconfig_for(
    account: ManagedServiceAccount,
    generation: TokenGeneration,
    issued: Mapping[str, Mapping[str, str]] | None = None,
    tokens: Mapping[str, str] | None = None,
    clusters: Iterable[Cluster] | None = None,
) -> str:
    """The generation's tokens as a ready kubeconfig (decrypts: call only to hand it over)."""
    tokens = unseal_tokens(generation) if tokens is None else tokens
    issued = {**generation.issued, **(issued or {})}
    known = list(clusters) if clusters is not None else Cluster.objects.filter(name__in=tokens)
    ca = {c.name: c.ca_bundle for c in known}
    entries = [
        KubeconfigEntry(
            cluster=name, server=issued[name]["server"], ca_pem=ca.get(name, ""), token=token
        )
        for name, token in sorted(tokens.items())
    ]
    return build_kubeconfig(account.name, entries, namespace=account.namespace)


def deliver(attempt: Attempt, generation: TokenGeneration, progress: Progress) -> None:
    """Hand the generation to every target that does not have it yet; one failing target does
    not stop the others (they get it now; the failed one on the retry)."""
    account = attempt.account
    targets = [t for t in attempt.targets() if t.pk not in generation.delivered]
    if not targets:
        return
    tokens = progress.tokens
    kubeconfig = kubeconfig_for(account, generation, progress.issued, tokens, attempt.clusters())
    expires = _iso(earliest_expiry({**generation.issued, **progress.issued}))
    for target in targets:
        try:
            if target.kind == DeliveryKind.SECRET:
                _deliver_secret(target, account, generation, tokens, kubeconfig, expires)
            else:
                _deliver_webhook(target, account, generation, progress, kubeconfig)
        except (KubeError, WebhookError) as exc:
            target.last_error = f"generation {generation.number}: {exc}"
            progress.undelivered.append(target)
            continue
        target.last_generation = generation.number
        target.last_delivered_at = timezone.now()
        target.last_error = ""
        progress.delivered.append(target)
    if progress.undelivered:
        progress.failure = "delivery failed: " + "; ".join(
            f"{t}: {t.last_error}" for t in progress.undelivered
        )


def _consumer_secret(
    target: DeliveryTarget,
    account: ManagedServiceAccount,
    generation: TokenGeneration,
    tokens: Mapping[str, str],
    kubeconfig: str,
    expires: str,
) -> dict[str, Any]:
    data = {"kubeconfig": kubeconfig}
    if len(tokens) == 1:
        data["token"] = next(iter(tokens.values()))
    for cluster, token in tokens.items():
        data[f"token.{cluster}"] = token
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": target.secret_name,
            "namespace": target.namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY, GENERATION_LABEL: str(generation.number)},
            "annotations": {
                SERVICE_ACCOUNT_ANNOTATION: str(account.pk),
                "warden.io/account": str(account),
                "warden.io/expires-at": expires,
            },
        },
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def _deliver_secret(
    target: DeliveryTarget,
    account: ManagedServiceAccount,
    generation: TokenGeneration,
    tokens: Mapping[str, str],
    kubeconfig: str,
    expires: str,
) -> None:
    """Write the consumer's Secret: one conditional PUT when it is as Warden left it."""
    assert target.cluster is not None
    client = k8s.client_for(services.endpoint_for(target.cluster))
    body = _consumer_secret(target, account, generation, tokens, kubeconfig, expires)
    if target.resource_version:
        try:
            written = client.replace(_with_rv(body, target.resource_version))
            target.resource_version = _rv(written)
            return
        except KubeError as exc:
            if exc.status not in (404, 409):
                raise
            if exc.status == 404:
                target.resource_version = ""
    if not target.resource_version:
        try:
            written = client.create(body)
            target.resource_version = _rv(written)
            return
        except KubeError as exc:
            if exc.status != 409:
                raise
    # Changed by someone since Warden wrote it, or made before: take it over only if it is ours.
    current = client.get("Secret", target.secret_name, target.namespace)
    if not owned_by_account(current, account):
        raise KubeError(
            409,
            "NotOwned",
            f"Secret {target.namespace}/{target.secret_name} on {target.cluster.name} exists and "
            "is not Warden's; it was left alone (remove it or pick another name)",
        )
    written = client.replace(_with_rv(body, _rv(current)))
    target.resource_version = _rv(written)


def _deliver_webhook(
    target: DeliveryTarget,
    account: ManagedServiceAccount,
    generation: TokenGeneration,
    progress: Progress,
    kubeconfig: str,
) -> None:
    issued = {**generation.issued, **progress.issued}
    payload = {
        "account": str(account),
        "account_id": account.pk,
        "owner_team": account.owner_team.name,
        "generation": generation.number,
        "expires_at": _iso(earliest_expiry(issued)),
        "clusters": {
            name: {
                "server": issued[name]["server"],
                "expires_at": issued[name]["expires_at"],
                "token": token,
            }
            for name, token in sorted(progress.tokens.items())
        },
        "kubeconfig": kubeconfig,
    }
    body = json.dumps(payload, sort_keys=True).encode()
    post_signed(
        target.url,
        body,
        str(target.signing_key),
        ca_pem=target.ca_bundle,
        headers={"X-Warden-Generation": str(generation.number)},
    )


def seal_tokens(tokens: Mapping[str, str]) -> str:
    # The field encrypts on save; "" when there is nothing to keep.
    return json.dumps(dict(tokens), sort_keys=True) if tokens else ""


def unseal_tokens(generation: TokenGeneration) -> dict[str, str]:
    raw = str(generation.sealed_tokens or "")
    return dict(json.loads(raw)) if raw else {}


def parse_moment(value: str) -> datetime | None:
    return parse_datetime(value) if value else None


def earliest_expiry(issued: Mapping[str, Mapping[str, str]]) -> datetime | None:
    expiries = [parse_moment(record.get("expires_at", "")) for record in issued.values()]
    return min((e for e in expiries if e), default=None)


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value else ""


def _rv(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def _with_rv(body: Mapping[str, Any], rv: str) -> dict[str, Any]:
    return {**body, "metadata": {**body["metadata"], "resourceVersion": rv}}
