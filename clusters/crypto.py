"""Secrets at rest: Fernet encryption with key rotation (MultiFernet) and a model field for it."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models, transaction
from django.db.models import TextField, Value
from django.db.models.functions import Cast

from config import logconfig


class SecretUnreadable(Exception):
    """A stored secret cannot be decrypted with any configured key."""


def _keys() -> list[Fernet]:
    keys = list(settings.WARDEN_ENCRYPTION_KEYS)
    if not keys:
        if not settings.DEBUG:
            raise ImproperlyConfigured("WARDEN_ENCRYPTION_KEYS is not set")
        # Local use only: a key derived from the development SECRET_KEY.
        derived = hashlib.sha256(f"warden-dev-encryption:{settings.SECRET_KEY}".encode()).digest()
        keys = [base64.urlsafe_b64encode(derived).decode()]
    try:
        return [Fernet(key) for key in keys]
    except ValueError as exc:
        raise ImproperlyConfigured(
            "WARDEN_ENCRYPTION_KEYS holds a value that is not a Fernet key (32 url-safe base64 "
            "bytes)"
        ) from exc


def fernet() -> MultiFernet:
    return MultiFernet(_keys())


def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        plaintext = fernet().decrypt(token.encode()).decode()
        logconfig.remember(plaintext)  # a secret now in memory is never to reach a log line
        return plaintext
    except InvalidToken as exc:
        raise SecretUnreadable(
            "A stored secret cannot be decrypted with WARDEN_ENCRYPTION_KEYS: was a key removed "
            "before every secret was re-encrypted?"
        ) from exc


def rotate(token: str) -> str:
    """Re-encrypt with the newest key (MultiFernet.rotate); the old key is still read."""
    return fernet().rotate(token.encode()).decode()


class Secret(str):
    """A decrypted secret whose repr never shows it (tracebacks, debug pages, logs)."""

    def __repr__(self) -> str:
        return "Secret('********')"


class EncryptedTextField(models.TextField):  # type: ignore[type-arg]
    """Text encrypted with Fernet in the database; reads back as a Secret."""

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> Secret | None:
        if value is None or value == "":
            return Secret("") if value == "" else None
        return Secret(decrypt(value))

    def get_prep_value(self, value: Any) -> str | None:
        if value is None or value == "":
            return None if value is None else ""
        return encrypt(str(value))


# --- key rotation -------------------------------------------------------------------------------


@dataclass
class RotationCount:
    """What re-encryption did to one encrypted field of one model."""

    field: str
    checked: int = 0
    reencrypted: int = 0
    current: int = 0
    unreadable: int = 0
    # Rows changed by someone else between our read and write: already under the newest key.
    raced: int = 0


def encrypted_fields() -> list[tuple[type[models.Model], EncryptedTextField]]:
    """Every EncryptedTextField of every installed model (concrete fields, no proxies)."""
    found = []
    for model in apps.get_models():
        if model._meta.proxy or not model._meta.managed:
            continue
        for model_field in model._meta.concrete_fields:
            if isinstance(model_field, EncryptedTextField):
                found.append((model, model_field))
    return found


def reencrypt_all(batch_size: int = 500, dry_run: bool = False) -> list[RotationCount]:
    """Re-encrypt every stored secret with the first key of WARDEN_ENCRYPTION_KEYS.

    The other keys still decrypt, so this can run while the application serves. Idempotent:
    a secret already under the newest key is left as it is. Each batch is one transaction, and
    each row is written only if it still holds what was read (a concurrent save wins).
    """
    return [
        _reencrypt_field(model, model_field, batch_size, dry_run)
        for model, model_field in encrypted_fields()
    ]


def _reencrypt_field(
    model: type[models.Model], model_field: EncryptedTextField, batch_size: int, dry_run: bool
) -> RotationCount:
    count = RotationCount(field=f"{model._meta.label}.{model_field.name}")
    newest, everyone = _keys()[0], fernet()
    column = model_field.attname
    # Cast to a plain text field: the stored ciphertext, not the decrypted value.
    raw = model._default_manager.alias(raw=Cast(column, output_field=TextField()))
    last_pk: Any = None
    while True:
        page = raw.exclude(**{f"{column}__isnull": True}).order_by("pk")
        if last_pk is not None:
            page = page.filter(pk__gt=last_pk)
        rows = list(
            page.annotate(stored=Cast(column, output_field=TextField())).values_list(
                "pk", "stored"
            )[:batch_size]
        )
        if not rows:
            return count
        with transaction.atomic():
            for pk, stored in rows:
                last_pk = pk
                if not stored:
                    continue
                count.checked += 1
                try:
                    newest.decrypt(stored.encode())
                except InvalidToken:
                    pass
                else:
                    count.current += 1
                    continue
                try:
                    rotated = everyone.rotate(stored.encode()).decode()
                except InvalidToken:
                    count.unreadable += 1
                    continue
                if dry_run:
                    count.reencrypted += 1
                    continue
                written = raw.filter(pk=pk, raw=stored).update(
                    **{column: Value(rotated, output_field=TextField())}
                )
                if written:
                    count.reencrypted += 1
                else:
                    count.raced += 1
