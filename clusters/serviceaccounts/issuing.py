"""Issuing a generation's tokens on each cluster: a Secret Warden owns and a TokenRequest bound to
it, only for a ServiceAccount Warden created and owns (checked on the cluster at the time)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from clusters import k8s, services
from clusters.choices import (
    ReconcileTrigger,
)
from clusters.compiler import MANAGED_BY, MANAGED_BY_LABEL, SERVICE_ACCOUNT_ANNOTATION
from clusters.k8s import KubeError, Unreachable
from clusters.models import (
    Cluster,
    ManagedServiceAccount,
    TokenGeneration,
)
from clusters.serviceaccounts.attempt import Attempt, RotationFailed
from clusters.serviceaccounts.delivery import (
    GENERATION_LABEL,
    owned_by_account,
)

# The type of the per-generation Secret a token is bound to: it holds no data, it only exists.
BOUND_SECRET_TYPE = "warden.io/token-binding"  # noqa: S105 - a type name, not a secret


MIN_LIFETIME = timedelta(minutes=10)


def bound_secret_name(account: ManagedServiceAccount, number: int) -> str:
    return f"{account.name}-warden-{number}"


def issue_missing(attempt: Attempt) -> None:
    """A token on every reached cluster that has none yet; stops at the first failure (what
    was issued before it is still recorded, so a retry only does the rest)."""
    generation, progress = attempt.generation, attempt.progress
    assert generation is not None
    for cluster in attempt.clusters():
        if cluster.name in generation.issued:
            if cluster.name in progress.tokens and not _still_owned(attempt, cluster):
                return  # a token an earlier attempt got is not delivered: see progress.failure
            continue
        down = attempt.batch.unreachable.get(cluster.name)
        if down:
            progress.failure = f"issuing on {cluster.name}: {down}"
            return
        try:
            record, token = _issue_on(cluster, attempt.account, generation)
        except (KubeError, RotationFailed) as exc:
            progress.failure = f"issuing on {cluster.name}: {exc}"
            note_unreachable(attempt, cluster, exc)
            return
        progress.issued[cluster.name], progress.tokens[cluster.name] = record, token


def _still_owned(attempt: Attempt, cluster: Cluster) -> bool:
    """A resumed generation's token from an earlier attempt is delivered only if its
    ServiceAccount is still Warden's (and this account's) on the cluster now."""
    client = k8s.client_for(services.endpoint_for(cluster))
    try:
        check_service_account_owned(client, cluster, attempt.account)
    except (KubeError, RotationFailed) as exc:
        attempt.progress.failure = f"checking {cluster.name}: {exc}"
        note_unreachable(attempt, cluster, exc)
        return False
    return True


def note_unreachable(attempt: Attempt, cluster: Cluster, exc: Exception) -> None:
    """A cluster that did not answer (after the client's retries) is not asked again by the
    rest of the batch: their attempts fail at once and are retried like this one."""
    if isinstance(exc, Unreachable):
        attempt.batch.unreachable[cluster.name] = f"{exc} (not tried again in this batch)"


def _issue_on(
    cluster: Cluster, account: ManagedServiceAccount, generation: TokenGeneration
) -> tuple[dict[str, str], str]:
    client = k8s.client_for(services.endpoint_for(cluster))
    check_service_account_owned(client, cluster, account)
    bound = _create_bound_secret(client, account, generation)
    seconds = int(account.token_lifetime.total_seconds())
    token, expires = client.request_token(account.namespace, account.name, seconds, bound)
    record = {
        "secret": bound["name"],
        "uid": bound["uid"],
        "expires_at": expires,
        "server": cluster.api_url,
    }
    return record, token


def check_service_account_owned(
    client: k8s.KubeClient, cluster: Cluster, account: ManagedServiceAccount
) -> None:
    """RotationFailed unless the ServiceAccount on `cluster` is the one Warden keeps for this
    account (its managed-by label and this account's id annotation), read now: Warden never
    asks for a token of a ServiceAccount it did not create and does not own."""
    current = read_service_account(client, account)
    if current is None or not owned_by_account(current, account):
        # Not there yet (new account, or someone deleted it), or adopted and not yet marked:
        # the reconciler writes it, as every object Warden owns (and nothing it does not own).
        run = services.reconcile_cluster(cluster.pk, trigger=ReconcileTrigger.CHANGE)
        if run is None:
            raise RotationFailed(
                f"the ServiceAccount is not ready on {cluster.name} and another worker is "
                "reconciling that cluster; retrying"
            )
        current = read_service_account(client, account)
        if current is None:
            pending = "; ".join(run.pending.get(f"sa:{account.pk}", [])) or run.error
            raise RotationFailed(
                f"the ServiceAccount cannot be created on {cluster.name}: "
                f"{pending or 'see the cluster reconcile'}"
            )
    if not owned_by_account(current, account):
        raise RotationFailed(
            f"ServiceAccount {account.namespace}/{account.name} on {cluster.name} is not "
            "Warden's (no managed-by label and id annotation of this account): no token is "
            "requested for it"
        )


def read_service_account(
    client: k8s.KubeClient, account: ManagedServiceAccount
) -> dict[str, Any] | None:
    try:
        return client.get("ServiceAccount", account.name, account.namespace)
    except KubeError as exc:
        if exc.status == 404:
            return None
        raise


def _bound_secret_body(account: ManagedServiceAccount, number: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": BOUND_SECRET_TYPE,
        "metadata": {
            "name": bound_secret_name(account, number),
            "namespace": account.namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY, GENERATION_LABEL: str(number)},
            "annotations": {
                SERVICE_ACCOUNT_ANNOTATION: str(account.pk),
                "warden.io/purpose": (
                    f"Tokens of generation {number} of service account {account.name} are "
                    "bound to this Secret: deleting it revokes them."
                ),
            },
        },
    }


def _create_bound_secret(
    client: k8s.KubeClient, account: ManagedServiceAccount, generation: TokenGeneration
) -> dict[str, str]:
    body = _bound_secret_body(account, generation.number)
    name, namespace = body["metadata"]["name"], account.namespace
    try:
        created = client.create(body)
    except KubeError as exc:
        if exc.status != 409:
            raise
        current = client.get("Secret", name, namespace)
        if not owned_by_account(current, account):
            raise KubeError(
                409,
                "NotOwned",
                f"Secret {namespace}/{name} exists and is not Warden's; it was left alone",
            ) from exc
        # Left by an attempt that died before recording its token: deleting it revokes that
        # token (which nobody holds), and the generation starts clean.
        client.delete("Secret", name, namespace, uid=current["metadata"]["uid"])
        created = client.create(body)
    return {"name": name, "uid": str(created["metadata"]["uid"])}
