"""update_rows(): many rows saved at once, each with its own values, and nothing else."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from clusters.bulk import update_rows
from clusters.choices import GenerationState
from clusters.models import ManagedServiceAccount, TokenGeneration
from tests.clusters.sa_helpers import declare, raw_column

pytestmark = pytest.mark.django_db


def test_each_row_gets_its_own_values_and_other_fields_stay(make_cluster, people):
    # given: two accounts' generations as the database holds them
    cluster, _sim = make_cluster()
    generations = [
        TokenGeneration.objects.create(
            account=declare(cluster, people["payments"], name=name), number=1, trigger="declared"
        )
        for name in ("deployer", "builder")
    ]
    now = timezone.now()
    first, second = (TokenGeneration.objects.get(pk=g.pk) for g in generations)

    # when: each changes in memory (JSON, text that is stored encrypted, time, state) ...
    first.issued = {cluster.name: {"secret": "deployer-warden-1", "uid": "u-1"}}
    first.sealed_tokens = '{"c": "tok-1"}'
    first.expires_at = now
    first.state = GenerationState.ACTIVE
    second.issued = {}
    second.sealed_tokens = ""
    second.expires_at = None
    second.state = GenerationState.ABANDONED
    second.trigger = "operator"  # not among the fields written: stays as stored
    update_rows([first, second], ["issued", "sealed_tokens", "expires_at", "state"])

    # then: each row holds its own values, read back as written
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.issued == {cluster.name: {"secret": "deployer-warden-1", "uid": "u-1"}}
    assert str(first.sealed_tokens) == '{"c": "tok-1"}'
    assert (first.expires_at, first.state) == (now, GenerationState.ACTIVE)
    assert (second.issued, str(second.sealed_tokens), second.expires_at) == ({}, "", None)
    assert (second.state, second.trigger) == (GenerationState.ABANDONED, "declared")
    # and the token is encrypted at rest, as a save() would leave it
    assert not any(
        "tok-1" in value for value in raw_column("clusters_tokengeneration", "sealed_tokens")
    )


def test_nothing_to_write_writes_nothing(django_assert_num_queries):
    with django_assert_num_queries(0):
        update_rows([], ["state"])


def test_a_large_set_of_rows_is_written_whole(make_cluster, people):
    cluster, _sim = make_cluster()
    account = declare(cluster, people["payments"])
    ManagedServiceAccount.objects.filter(pk=account.pk).update(next_rotation_at=timezone.now())
    rows = TokenGeneration.objects.bulk_create(
        TokenGeneration(account=account, number=n, trigger="schedule") for n in range(1, 1203)
    )
    later = timezone.now() + timedelta(days=1)
    for row in rows:
        row.grace_until = later + timedelta(seconds=row.number)

    update_rows(rows, ["grace_until"])

    stored = dict(TokenGeneration.objects.values_list("number", "grace_until"))
    assert len(stored) == 1202
    assert all(stored[n] == later + timedelta(seconds=n) for n in stored)
