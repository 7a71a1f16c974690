"""Helpers for the service-account tests: declare an account, look at tokens as a consumer."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

from django.db import connection
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from clusters import serviceaccounts
from clusters.choices import DeliveryKind, GenerationState
from clusters.models import ManagedServiceAccount, TokenGeneration
from tests.clusters.conftest import official_client


def declare(
    cluster: Any,
    owner: Any,
    roles: list[Any] | None = None,
    name: str = "deployer",
    namespace: str = "default",
    consumer: tuple[Any, str, str] | None = None,
    grace: timedelta = timedelta(hours=1),
    show_to_owner: bool = False,
    **fields: Any,
) -> ManagedServiceAccount:
    """Declare an account on `cluster`, delivering to a consumer Secret (cluster, ns, name)."""
    data = serviceaccounts.AccountInput(
        name=name,
        namespace=namespace,
        owner_team=owner,
        roles=roles or [],
        clusters=fields.pop("clusters", [cluster.name]),
        grace_period=grace,
        rotation_period=fields.pop("rotation_period", timedelta(days=1)),
        token_lifetime=fields.pop("token_lifetime", timedelta(days=2)),
        show_to_owner=show_to_owner,
        **fields,
    )
    account = serviceaccounts.declare_service_account(data)
    if consumer is not None:
        target_cluster, ns, secret = consumer
        serviceaccounts.add_delivery_target(
            account,
            kind=DeliveryKind.SECRET,
            cluster=target_cluster,
            namespace=ns,
            secret_name=secret,
        )
    return account


def active(account: ManagedServiceAccount) -> TokenGeneration:
    return account.generations.get(state=GenerationState.ACTIVE)


def delivered_token(sim: Any, namespace: str = "default", name: str = "deployer-token") -> str:
    """The token as the consumer reads it from its Secret."""
    secret = k8s_client.CoreV1Api(official_client(sim)).read_namespaced_secret(name, namespace)
    return base64.b64decode(secret.data["token"]).decode()


def consumer_secret(sim: Any, namespace: str = "default", name: str = "deployer-token") -> Any:
    return k8s_client.CoreV1Api(official_client(sim)).read_namespaced_secret(name, namespace)


def authenticated_as(sim: Any, token: str) -> str | None:
    """TokenReview by the cluster admin: the user the token stands for, or None if refused."""
    review = k8s_client.V1TokenReview(spec=k8s_client.V1TokenReviewSpec(token=token))
    status = k8s_client.AuthenticationV1Api(official_client(sim)).create_token_review(review).status
    return status.user.username if status.authenticated else None


def status_when_used(sim: Any, token: str, namespace: str = "default") -> int:
    """What the API server answers the token's holder listing pods: 200, 401 or 403."""
    config = k8s_client.Configuration()
    config.host = sim.server_url
    config.api_key = {"BearerToken": token}
    config.api_key_prefix = {"BearerToken": "Bearer"}
    config.ca_cert_data = sim.ca_cert_pem.decode()
    try:
        k8s_client.CoreV1Api(k8s_client.ApiClient(config)).list_namespaced_pod(namespace)
    except ApiException as exc:
        return int(exc.status)
    return 200


def create_namespace(sim: Any, name: str) -> None:
    k8s_client.CoreV1Api(official_client(sim)).create_namespace(
        k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name=name))
    )


def raw_column(table: str, column: str) -> list[str]:
    """What the database itself holds, below the ORM's decryption."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table}")  # noqa: S608 - test-only, fixed names
        return [str(row[0]) for row in cursor.fetchall()]
