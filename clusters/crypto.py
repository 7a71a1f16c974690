"""Secrets at rest: Fernet encryption with key rotation (MultiFernet) and a model field for it."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models


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
        return fernet().decrypt(token.encode()).decode()
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


class EncryptedTextField(models.TextField):
    """Text encrypted with Fernet in the database; reads back as a Secret."""

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> Secret | None:
        if value is None or value == "":
            return Secret("") if value == "" else None
        return Secret(decrypt(value))

    def get_prep_value(self, value: Any) -> str | None:
        if value is None or value == "":
            return value
        return encrypt(str(value))
