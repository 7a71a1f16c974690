"""Bad input over the API: a 400 that names the field and the limit, never a 500, and nothing
saved; what cannot be granted is refused with the reason, never replaced by a default."""

from __future__ import annotations

import pytest

from access.models import AccessRequest
from clusters.models import ManagedServiceAccount
from tests.api.test_api_service_accounts import body as account
from tests.api.test_api_workflows import ask

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("duration", ["99999999999d", "P99999999999D", "3661d", "99999999999h"])
def test_a_duration_too_long_to_keep_is_a_400_naming_the_limit(api, fleet, duration):
    answer = api("alice").post("/api/v1/requests/", ask(duration=duration), format="json")

    assert answer.status_code == 400
    assert "at most 3660d (ten years)" in answer.json()["duration"][0]
    assert not AccessRequest.objects.exists()


def test_a_duration_of_zero_is_refused_with_the_reason_not_replaced_by_the_default(api, fleet):
    answer = api("alice").post("/api/v1/requests/", ask(duration="0s"), format="json")

    assert answer.status_code == 400
    assert "The duration must be positive" in answer.json()["detail"]
    assert not AccessRequest.objects.exists()


def test_a_duration_beyond_the_policy_is_refused_with_the_policy_limit(api, fleet):
    answer = api("alice").post("/api/v1/requests/", ask(duration="300d"), format="json")

    assert answer.status_code == 400
    assert "can be asked for here" in answer.json()["detail"]


@pytest.mark.parametrize("field", ["rotation_period", "grace_period", "token_lifetime"])
def test_a_service_account_duration_too_long_is_a_400(api, company, make_cluster, field):
    cluster, _ = make_cluster()

    answer = api("olivia").post(
        "/api/v1/service-accounts/", account(cluster, **{field: "99999999999d"}), format="json"
    )

    assert answer.status_code == 400
    assert "at most 3660d" in answer.json()[field][0]
    assert not ManagedServiceAccount.objects.exists()


def test_a_service_account_naming_an_unknown_cluster_is_refused(api, company, make_cluster):
    cluster, _ = make_cluster()

    answer = api("olivia").post(
        "/api/v1/service-accounts/",
        account(cluster, clusters=[cluster.name, "no-such-cluster"]),
        format="json",
    )

    assert answer.status_code == 400
    assert "No cluster is called no-such-cluster" in str(answer.json())
    assert not ManagedServiceAccount.objects.exists()
