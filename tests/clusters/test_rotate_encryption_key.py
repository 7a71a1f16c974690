"""`manage.py rotate_encryption_key`: every stored secret moves to the newest key while the old
keys still decrypt; idempotent, batched, and loud about secrets no key can read."""

from __future__ import annotations

from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db.models import TextField
from django.db.models.functions import Cast

from access.models import AuditEvent
from clusters import crypto
from clusters.models import Cluster, DiscoverySource

pytestmark = pytest.mark.django_db

OLD = Fernet.generate_key().decode()
NEW = Fernet.generate_key().decode()


def stored(model, pk, column="token"):
    """The ciphertext as the database holds it."""
    return (
        model.objects.annotate(raw=Cast(column, output_field=TextField()))
        .values_list("raw", flat=True)
        .get(pk=pk)
    )


def under(key, ciphertext):
    try:
        Fernet(key.encode()).decrypt(ciphertext.encode())
    except Exception:
        return False
    return True


@pytest.fixture
def secrets_under_the_old_key(settings):
    settings.WARDEN_ENCRYPTION_KEYS = [OLD]
    clusters = [
        Cluster.objects.create(
            name=f"c{i}",
            environment="dev",
            tier="tier-2",
            api_url=f"https://c{i}.example.com",
            token=f"token-{i}",
        )
        for i in range(5)
    ]
    source = DiscoverySource.objects.create(
        name="capi", kind="cluster-api", api_url="https://m.example.com", token="mgmt-token"
    )
    return clusters, source


def rotate(*args):
    out = StringIO()
    call_command("rotate_encryption_key", *args, stdout=out)
    return out.getvalue()


def test_every_encrypted_field_of_every_model_is_found():
    fields = {f"{model._meta.label}.{field.name}" for model, field in crypto.encrypted_fields()}
    assert {"clusters.Cluster.token", "clusters.DiscoverySource.token"} <= fields


def test_rotation_re_encrypts_every_secret_with_the_new_key(settings, secrets_under_the_old_key):
    clusters, source = secrets_under_the_old_key
    # given: the new key was put in front, the old one still there
    settings.WARDEN_ENCRYPTION_KEYS = [NEW, OLD]

    report = rotate("--batch-size", "2")

    assert "clusters.Cluster.token: 5 checked, re-encrypted 5" in report
    assert "clusters.DiscoverySource.token: 1 checked, re-encrypted 1" in report
    for cluster in clusters:
        assert under(NEW, stored(Cluster, cluster.pk)) and not under(
            OLD, stored(Cluster, cluster.pk)
        )
    assert under(NEW, stored(DiscoverySource, source.pk))
    # then: with the old key gone, every secret still reads as it was written
    settings.WARDEN_ENCRYPTION_KEYS = [NEW]
    assert [c.token for c in Cluster.objects.order_by("name")] == [f"token-{i}" for i in range(5)]
    assert DiscoverySource.objects.get().token == "mgmt-token"
    event = AuditEvent.objects.get(action="encryption.secrets_reencrypted")
    assert {"field": "clusters.Cluster.token"}.items() <= event.after[0].items()
    assert "token-0" not in str(event.after)


def test_rotation_is_idempotent(settings, secrets_under_the_old_key):
    settings.WARDEN_ENCRYPTION_KEYS = [NEW, OLD]
    rotate()
    before = {c.pk: stored(Cluster, c.pk) for c in Cluster.objects.all()}

    report = rotate()

    assert "re-encrypted 0, 5 already under the newest key" in report
    assert {c.pk: stored(Cluster, c.pk) for c in Cluster.objects.all()} == before


def test_a_dry_run_counts_and_changes_nothing(settings, secrets_under_the_old_key):
    clusters, _source = secrets_under_the_old_key
    settings.WARDEN_ENCRYPTION_KEYS = [NEW, OLD]
    report = rotate("--dry-run")
    assert "would re-encrypt 5" in report
    assert under(OLD, stored(Cluster, clusters[0].pk))
    assert not AuditEvent.objects.filter(action="encryption.secrets_reencrypted").exists()


def test_removing_the_old_key_too_early_is_reported_and_nothing_is_lost(
    settings, secrets_under_the_old_key
):
    clusters, _source = secrets_under_the_old_key
    settings.WARDEN_ENCRYPTION_KEYS = [NEW]  # the old key was dropped before rotating

    with pytest.raises(CommandError, match="6 secrets cannot be decrypted"):
        rotate()

    # putting the old key back recovers everything
    settings.WARDEN_ENCRYPTION_KEYS = [NEW, OLD]
    assert Cluster.objects.get(pk=clusters[0].pk).token == "token-0"
    rotate()
    settings.WARDEN_ENCRYPTION_KEYS = [NEW]
    assert Cluster.objects.get(pk=clusters[0].pk).token == "token-0"


def test_a_secret_saved_while_rotating_is_not_overwritten(
    settings, secrets_under_the_old_key, monkeypatch
):
    clusters, _source = secrets_under_the_old_key
    settings.WARDEN_ENCRYPTION_KEYS = [NEW, OLD]
    first = clusters[0]
    real_fernet = crypto.fernet

    class SaveDuringRotation:
        """The keys as usual, but an operator saves c0's token between read and write."""

        def __init__(self):
            self.inner = real_fernet()

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def rotate(self, token):
            if Cluster.objects.get(pk=first.pk).token == "token-0":
                Cluster.objects.filter(pk=first.pk).update(token="fresh-token")
            return self.inner.rotate(token)

    monkeypatch.setattr(crypto, "fernet", SaveDuringRotation)

    report = rotate()

    assert "1 changed meanwhile" in report
    monkeypatch.undo()
    assert Cluster.objects.get(pk=first.pk).token == "fresh-token"
    assert Cluster.objects.get(pk=clusters[1].pk).token == "token-1"
