"""Secrets at rest: encrypted in the database, rotatable, never shown by repr."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.db import connection

from clusters import crypto
from clusters.models import Cluster

pytestmark = pytest.mark.django_db


def test_a_cluster_token_is_stored_encrypted_and_read_back(settings):
    settings.WARDEN_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    cluster = Cluster.objects.create(
        name="dev-1", environment="dev", tier="tier-3", api_url="https://k", token="s3cret-token"
    )

    with connection.cursor() as cursor:
        cursor.execute("SELECT token FROM clusters_cluster WHERE id = %s", [cluster.pk])
        stored = cursor.fetchone()[0]

    assert "s3cret" not in stored
    assert Cluster.objects.get(pk=cluster.pk).token == "s3cret-token"
    assert "s3cret" not in repr(Cluster.objects.get(pk=cluster.pk).token)


def test_a_new_key_reads_old_secrets_and_rotation_moves_them(settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.WARDEN_ENCRYPTION_KEYS = [old]
    token = crypto.encrypt("value")

    settings.WARDEN_ENCRYPTION_KEYS = [new, old]
    assert crypto.decrypt(token) == "value"
    rotated = crypto.rotate(token)

    settings.WARDEN_ENCRYPTION_KEYS = [new]
    assert crypto.decrypt(rotated) == "value"
    with pytest.raises(crypto.SecretUnreadable, match="was a key removed"):
        crypto.decrypt(token)


def test_a_malformed_key_is_named(settings):
    settings.WARDEN_ENCRYPTION_KEYS = ["not-a-key"]
    with pytest.raises(Exception, match="not a Fernet key"):
        crypto.encrypt("x")
