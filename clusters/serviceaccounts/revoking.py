"""Revoking a generation when its grace ends: its bound Secrets deleted on every cluster, and
the Secrets it was delivered into removed."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from access import audit
from access.words import count_of
from clusters import k8s, services
from clusters.bulk import update_rows
from clusters.choices import (
    AccountState,
    DeliveryKind,
    GenerationState,
)
from clusters.k8s import KubeError
from clusters.models import (
    Cluster,
    TokenGeneration,
)
from clusters.serviceaccounts.attempt import Attempt
from clusters.serviceaccounts.issuing import note_unreachable
from clusters.serviceaccounts.lease import hold, run_calls


@dataclass
class _Revocation:
    """One generation being revoked: where its bound Secrets are gone, and what failed."""

    attempt: Attempt
    generation: TokenGeneration
    done: list[str] = field(default_factory=list)
    failure: str = ""


def revoke_generations(attempts: list[Attempt]) -> dict[Attempt, int]:
    """Revoke the generations whose grace period is over, or every live one of a retired
    account; returns how many each attempt had to revoke."""
    now = timezone.now()
    due: dict[Attempt, list[TokenGeneration]] = {}
    for attempt in attempts:
        everything = attempt.account.state == AccountState.RETIRED
        due[attempt] = sorted(
            (
                g
                for g in attempt.live
                if everything
                or (
                    g.state == GenerationState.GRACE
                    and g.grace_until is not None
                    and g.grace_until <= now
                )
            ),
            key=lambda g: g.number,
        )
    revoking = [a for a in attempts if due[a]]
    revocations: list[_Revocation] = []

    def delete_secrets(attempt: Attempt) -> None:
        for generation in due[attempt]:
            revocation = _revoke(attempt, generation)
            revocations.append(revocation)
            if revocation.failure:
                return  # the later ones wait for the retry, as they would have in order

    run_calls(revoking, delete_secrets)
    _record_revocations(revocations)
    return {key: len(generations) for key, generations in due.items()}


def _revoke(attempt: Attempt, generation: TokenGeneration) -> _Revocation:
    """Delete the generation's bound Secrets: the API server then refuses its tokens."""
    account = attempt.account
    revocation = _Revocation(attempt, generation)
    clusters = {c.name: c for c in attempt.clusters()}
    if not set(generation.issued) <= set(clusters):  # it was issued where it no longer reaches
        clusters = {c.name: c for c in Cluster.objects.filter(name__in=list(generation.issued))}
    for name, record in sorted(generation.issued.items()):
        if name in generation.revoked_on:
            continue
        cluster = clusters.get(name)
        if cluster is not None:
            down = attempt.batch.unreachable.get(name)
            if down:
                revocation.failure = f"revoking generation {generation.number} on {name}: {down}"
                continue
            client = k8s.client_for(services.endpoint_for(cluster))
            try:
                client.delete("Secret", record["secret"], account.namespace, uid=record["uid"])
            except KubeError as exc:
                # 404: already gone; 409: the name now holds another object, ours is gone.
                if exc.status not in (404, 409):
                    revocation.failure = f"revoking generation {generation.number} on {name}: {exc}"
                    note_unreachable(attempt, cluster, exc)
                    continue
        revocation.done.append(name)
    return revocation


def _record_revocations(revocations: list[_Revocation]) -> None:
    """Write down the revocations in one transaction: each generation revoked where its
    Secrets are gone, and revoked for good when nothing failed."""
    if not revocations:
        return
    now = timezone.now()
    with transaction.atomic():
        held = set(hold(dict.fromkeys(r.attempt for r in revocations)))
        revocations = [r for r in revocations if r.attempt in held]
        finished, partial, events = [], [], []
        for revocation in revocations:
            generation = revocation.generation
            generation.revoked_on = [*generation.revoked_on, *revocation.done]
            if revocation.failure:
                partial.append(generation)
            else:
                was_pending = generation.state == GenerationState.PENDING
                generation.state = (
                    GenerationState.ABANDONED if was_pending else GenerationState.REVOKED
                )
                generation.revoked_at = now
                generation.sealed_tokens = ""
                generation.reveal_pending = False
                finished.append(generation)
            if revocation.done:
                events.append(
                    audit.Entry(
                        "serviceaccount.token_revoked",
                        obj=revocation.attempt.account,
                        after={
                            "generation": generation.number,
                            "clusters": sorted(revocation.done),
                        },
                    )
                )
        if finished:
            update_rows(
                finished, ["revoked_on", "state", "revoked_at", "sealed_tokens", "reveal_pending"]
            )
        if partial:
            update_rows(partial, ["revoked_on"])
        audit.record_many(events)
    for revocation in revocations:
        attempt, generation = revocation.attempt, revocation.generation
        if revocation.done:
            attempt.steps.append(
                f"revoked generation {generation.number} on "
                f"{count_of(len(revocation.done), 'cluster')}"
            )
        if revocation.failure and not attempt.failure:
            attempt.failure = revocation.failure


def remove_delivered_secrets(attempts: list[Attempt]) -> None:
    """A retired account's consumer Secrets hold revoked tokens: delete those Warden wrote, as
    it last wrote them (a Secret changed since, or gone, is left as it is)."""

    def remove(attempt: Attempt) -> None:
        removed = []
        for target in attempt.targets():
            if target.kind != DeliveryKind.SECRET:
                continue
            if target.cluster is None or not target.resource_version:
                continue
            client = k8s.client_for(services.endpoint_for(target.cluster))
            try:
                client.delete(
                    "Secret",
                    target.secret_name,
                    target.namespace,
                    resource_version=target.resource_version,
                )
            except KubeError as exc:
                if exc.status not in (404, 409):
                    attempt.failure = str(exc)
                    return
                continue
            removed.append(str(target))
        if removed:
            attempt.steps.append(
                f"deleted the consumer Secrets it had written: {', '.join(removed)}"
            )

    run_calls(attempts, remove)
