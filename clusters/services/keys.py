"""Secrets at rest: re-encrypting stored credentials under the newest key."""

from __future__ import annotations

import dataclasses

from django.db import transaction

from access import audit
from clusters import crypto
from core.types import Actor


def rotate_encryption_key(
    *, batch_size: int = 500, dry_run: bool = False, actor: Actor = None
) -> list[crypto.RotationCount]:
    """Re-encrypt every stored secret with the newest WARDEN_ENCRYPTION_KEYS key, audited."""
    counts = crypto.reencrypt_all(batch_size=batch_size, dry_run=dry_run)
    if not dry_run:
        with transaction.atomic():
            audit.record(
                "encryption.secrets_reencrypted",
                actor=actor,
                object_type="clusters.crypto",
                object_repr="stored secrets",
                after=[dataclasses.asdict(c) for c in counts],
            )
    return counts
