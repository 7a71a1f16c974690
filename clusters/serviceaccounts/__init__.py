"""Managed service accounts: declaring them, and issuing, delivering, rotating and revoking tokens.

A rotation of one account is: issue generation N+1 (on every cluster the account reaches, a
Secret Warden owns and a TokenRequest bound to it) -> deliver it to every target -> make it the
active generation, leaving N valid for the grace period -> when that ends, revoke N by deleting
its bound Secrets. Each step is written down (and audited) before the next begins, so a failure
anywhere leaves generation N in force and the next attempt carries on where this one stopped.

Only one worker rotates an account at a time: it holds a lease on the account row (lease_id,
lease_until), claimed with one conditional UPDATE and renewed at every step. A worker that dies
holds nothing: its lease runs out and the next attempt resumes the unfinished generation. Every
write checks the lease is still ours, so a worker that lost it cannot record anything.

Beat's rotations run in batches (rotate_accounts): the accounts of a batch are claimed, read and
recorded together (one UPDATE, one query per table, one transaction and one audit-chain lock
per step), while each keeps its own lease, generation, run and audit events, and fails alone.
rotate_account (on demand) is a batch of one.

Token values exist in memory while they are handed over and, encrypted, in
TokenGeneration.sealed_tokens until every target has them and the owner has seen them (when
asked to be shown). They are never logged, never put in an audit event, never shown twice.
"""

from __future__ import annotations

from clusters.serviceaccounts import (
    attempt,
    declare,
    delivery,
    issuing,
    lease,
    legacy,
    revoking,
    rotation,
)
from clusters.serviceaccounts.attempt import RotationFailed
from clusters.serviceaccounts.declare import (
    AccountInput,
    add_delivery_target,
    declare_service_account,
    queue_rotation,
    reached_clusters,
    remove_delivery_target,
    request_rotation,
    retire_service_account,
)
from clusters.serviceaccounts.delivery import kubeconfig_for
from clusters.serviceaccounts.issuing import bound_secret_name
from clusters.serviceaccounts.lease import LeaseLost, claim, release
from clusters.serviceaccounts.legacy import (
    delete_legacy_token,
    migrate_legacy_token,
    scan_legacy_tokens,
)
from clusters.serviceaccounts.rotation import (
    AlreadyShown,
    NotOwned,
    after_reconcile,
    due_account_ids,
    due_batches,
    reveal,
    rotate_account,
    rotate_accounts,
)

__all__ = [
    "AccountInput",
    "AlreadyShown",
    "LeaseLost",
    "NotOwned",
    "RotationFailed",
    "add_delivery_target",
    "after_reconcile",
    "attempt",
    "bound_secret_name",
    "claim",
    "declare",
    "declare_service_account",
    "delete_legacy_token",
    "delivery",
    "due_account_ids",
    "due_batches",
    "issuing",
    "kubeconfig_for",
    "lease",
    "legacy",
    "migrate_legacy_token",
    "queue_rotation",
    "reached_clusters",
    "release",
    "remove_delivery_target",
    "request_rotation",
    "retire_service_account",
    "reveal",
    "revoking",
    "rotate_account",
    "rotate_accounts",
    "rotation",
    "scan_legacy_tokens",
]
