"""The one door to Kubernetes: the official client, with auth, retries, pagination and errors.

Everything Warden asks a cluster goes through KubeClient, so that 429/5xx back-off, 410 on a
stale `continue`, connection failures and the API's Status messages are handled once, and the
number of API calls per reconcile can be counted.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import urllib3
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.exceptions import ApiException

from config import logconfig
from core import outbound

logger = logging.getLogger(__name__)

RBAC = "/apis/rbac.authorization.k8s.io/v1"
PATHS = {
    "Namespace": ("/api/v1", "namespaces", False),
    "ClusterRole": (RBAC, "clusterroles", False),
    "ClusterRoleBinding": (RBAC, "clusterrolebindings", False),
    "Role": (RBAC, "roles", True),
    "RoleBinding": (RBAC, "rolebindings", True),
    "ServiceAccount": ("/api/v1", "serviceaccounts", True),
    "Secret": ("/api/v1", "secrets", True),
}
LIST_PAGE = 500
AUTHENTICATION = "/apis/authentication.k8s.io/v1"

# API calls made by the current thread, across clients: a rotation counts its own calls even
# when worker threads share one pooled client per cluster.
_thread_calls = threading.local()


def calls_in_this_thread() -> int:
    return int(getattr(_thread_calls, "n", 0))


def user_agent() -> str:
    """This process as the clusters' audit logs name it (after a fork: the child's pid)."""
    return f"warden/0.1 ({socket.gethostname()}; pid {os.getpid()})"


class KubeError(Exception):
    """A Kubernetes API call failed; `message` is the API server's own words where it sent some."""

    def __init__(self, status: int, reason: str, message: str, retry_after: float | None = None):
        super().__init__(f"{status} {reason}: {message}" if status else message)
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after


class Unreachable(KubeError):
    """No HTTP answer at all: connection refused or reset, DNS, TLS, timeout."""


@dataclass(frozen=True)
class Endpoint:
    """Where a cluster's API is and how Warden authenticates there."""

    api_url: str
    token: str
    ca_pem: str = ""
    timeout_s: float = 10.0
    verify_tls: bool = True

    def __post_init__(self) -> None:
        logconfig.remember(self.token)  # never to reach a log line of this process

    def fingerprint(self) -> str:
        raw = "\x1f".join((self.api_url, self.token, self.ca_pem, str(self.verify_tls)))
        return hashlib.sha256(raw.encode()).hexdigest()


class KubeClient:
    """Calls to one cluster's API server, counted, with bounded retries."""

    def __init__(self, endpoint: Endpoint, max_attempts: int = 5, max_backoff_s: float = 8.0):
        self.endpoint = endpoint
        self.max_attempts = max_attempts
        self.max_backoff_s = max_backoff_s
        self.calls = 0
        self.api = ApiClient(_configuration(endpoint))
        # Named in the clusters' audit logs: which Warden process (pod, pid) made a call.
        self.api.user_agent = user_agent()
        # http:// or a metadata address: no call is made, whatever the record says.
        self.refused = outbound.refusal(endpoint.api_url, what="The API server URL")

    # --- the generic call -------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """One API call with back-off on 429 (Retry-After), 5xx and dropped connections."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._once(method, path, query, body, content_type)
            except KubeError as exc:
                retryable = isinstance(exc, Unreachable) or exc.status == 429 or exc.status >= 500
                if not retryable or attempt >= self.max_attempts:
                    raise
                delay = exc.retry_after if exc.retry_after is not None else self._backoff(attempt)
                logger.info("retrying %s %s in %.2fs after %s", method, path, delay, exc)
                time.sleep(delay)

    def _backoff(self, attempt: int) -> float:
        jitter = 0.5 + random.random() / 2  # noqa: S311 - jitter, not a secret
        return float(min(self.max_backoff_s, 0.2 * 2 ** (attempt - 1)) * jitter)

    def _once(
        self, method: str, path: str, query: Mapping[str, Any] | None, body: Any, content_type: str
    ) -> dict[str, Any]:
        if self.refused:
            raise Unreachable(0, "Refused", self.refused)
        self.calls += 1
        _thread_calls.n = calls_in_this_thread() + 1
        query_params = [(k, v) for k, v in (query or {}).items() if v not in (None, "")]
        headers = {"Accept": "application/json", "Content-Type": content_type}
        try:
            _method, url, headers, body_out, _post = self.api.param_serialize(
                method=method,
                resource_path=path,
                query_params=query_params,
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self.api.call_api(
                method,
                url,
                header_params=headers,
                body=body_out,
                _request_timeout=self.endpoint.timeout_s,
            )
            response.read()  # type: ignore[no-untyped-call]
        except ApiException as exc:  # the client's own wrapping of TLS and connection failures
            raise Unreachable(0, "Unreachable", _connection_message(self.endpoint, exc)) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Unreachable(0, "Unreachable", _connection_message(self.endpoint, exc)) from exc
        data = response.data or b""
        if 200 <= response.status < 300:
            answer: dict[str, Any] = json.loads(data) if data else {}
            if answer.get("kind") == "TokenRequest":
                logconfig.remember((answer.get("status") or {}).get("token"))
            return answer
        raise _error_from(
            response.status,
            response.reason or "",
            data,
            response.getheader("Retry-After"),  # type: ignore[no-untyped-call]
        )

    # --- resources --------------------------------------------------------------------------

    def path(self, kind: str, namespace: str = "", name: str = "") -> str:
        prefix, plural, namespaced = PATHS[kind]
        out = prefix
        if namespaced and namespace:
            out += f"/namespaces/{quote(namespace, safe='')}"
        out += f"/{plural}"
        if name:
            out += f"/{quote(name, safe='')}"
        return out

    def list(
        self, kind: str, label_selector: str = "", namespace: str = "", field_selector: str = ""
    ) -> Iterator[dict[str, Any]]:
        """Every object of a kind (all namespaces unless one is named), a page at a time."""
        return self._list_path(self.path(kind, namespace), label_selector, field_selector)

    def custom_path(self, group: str, version: str, plural: str, namespace: str = "") -> str:
        """The path of a custom resource collection (e.g. Cluster API's clusters)."""
        out = f"/apis/{quote(group, safe='')}/{quote(version, safe='')}"
        if namespace:
            out += f"/namespaces/{quote(namespace, safe='')}"
        return f"{out}/{quote(plural, safe='')}"

    def list_custom(
        self, group: str, version: str, plural: str, namespace: str = "", label_selector: str = ""
    ) -> Iterator[dict[str, Any]]:
        """Every custom object of a kind (all namespaces unless one is named), paginated."""
        return self._list_path(self.custom_path(group, version, plural, namespace), label_selector)

    def _list_path(
        self, path: str, label_selector: str = "", field_selector: str = ""
    ) -> Iterator[dict[str, Any]]:
        token = ""
        while True:
            query = {
                "labelSelector": label_selector,
                "fieldSelector": field_selector,
                "limit": LIST_PAGE,
                "continue": token,
            }
            try:
                page = self.request("GET", path, query)
            except KubeError as exc:
                if exc.status == 410 and token:
                    # The snapshot expired mid-list: start again for a consistent view.
                    token = ""
                    continue
                raise
            yield from page.get("items") or []
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                return

    def get(self, kind: str, name: str, namespace: str = "") -> dict[str, Any]:
        return self.request("GET", self.path(kind, namespace, name))

    def create(self, obj: Mapping[str, Any], dry_run: bool = False) -> dict[str, Any]:
        meta = obj["metadata"]
        return self.request(
            "POST",
            self.path(obj["kind"], meta.get("namespace", "")),
            {"dryRun": "All" if dry_run else None},
            dict(obj),
        )

    def replace(self, obj: Mapping[str, Any], dry_run: bool = False) -> dict[str, Any]:
        """PUT with the object's resourceVersion: a stale one answers 409 Conflict."""
        meta = obj["metadata"]
        return self.request(
            "PUT",
            self.path(obj["kind"], meta.get("namespace", ""), meta["name"]),
            {"dryRun": "All" if dry_run else None},
            dict(obj),
        )

    def delete(
        self,
        kind: str,
        name: str,
        namespace: str = "",
        resource_version: str = "",
        dry_run: bool = False,
        uid: str = "",
    ) -> None:
        """Delete; with resource_version or uid, only the very object Warden read or made."""
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        preconditions = {"resourceVersion": resource_version, "uid": uid}
        if resource_version or uid:
            body["preconditions"] = {k: v for k, v in preconditions.items() if v}
        if dry_run:
            body["dryRun"] = ["All"]
        self.request("DELETE", self.path(kind, namespace, name), None, body)

    def cluster_role_rules(self, name: str) -> builtins.list[dict[str, Any]]:
        """The rules a ClusterRole holds now; for an aggregated one (view, edit, admin), the
        rules the cluster's aggregation controller filled in. KubeError 404 when it is absent."""
        return list(self.get("ClusterRole", name).get("rules") or [])

    def self_subject_access_review(
        self, verb: str, resource: str, group: str = "", namespace: str = "", name: str = ""
    ) -> bool:
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {
                "resourceAttributes": {
                    "verb": verb,
                    "resource": resource,
                    "group": group,
                    "namespace": namespace,
                    "name": name,
                }
            },
        }
        answer = self.request(
            "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", None, review
        )
        return bool((answer.get("status") or {}).get("allowed"))

    def request_token(
        self,
        namespace: str,
        service_account: str,
        expiration_seconds: int,
        bound_secret: Mapping[str, str],
    ) -> tuple[str, str]:
        """TokenRequest for a ServiceAccount, bound to a Secret: (token, expirationTimestamp).

        Deleting the bound Secret revokes the token. The API server may shorten the lifetime
        (--service-account-max-token-expiration); the answer's timestamp is the truth.
        """
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "expirationSeconds": int(expiration_seconds),
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "name": bound_secret["name"],
                    "uid": bound_secret["uid"],
                },
            },
        }
        path = self.path("ServiceAccount", namespace, service_account) + "/token"
        answer = self.request("POST", path, None, body)
        status = answer.get("status") or {}
        token = str(status.get("token") or "")
        if not token:
            raise KubeError(0, "NoToken", "the API server answered the TokenRequest with no token")
        return token, str(status.get("expirationTimestamp") or "")

    def review_token(self, token: str) -> dict[str, Any]:
        """TokenReview: the API server's verdict on a bearer token (`authenticated`, `user`)."""
        review = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token},
        }
        answer = self.request("POST", f"{AUTHENTICATION}/tokenreviews", None, review)
        return dict(answer.get("status") or {})

    def cluster_identity(self) -> str:
        """The uid of the kube-system namespace: what this cluster is, whichever URL reaches it
        (it lives as long as the cluster). Read with `list namespaces`, which Warden holds."""
        for namespace in self.list("Namespace", field_selector="metadata.name=kube-system"):
            return str((namespace.get("metadata") or {}).get("uid") or "")
        return ""

    def version(self) -> dict[str, Any]:
        return self.request("GET", "/version")

    def close(self) -> None:
        self.api.close()  # type: ignore[no-untyped-call]


def _configuration(endpoint: Endpoint) -> Configuration:
    config = Configuration()
    config.host = endpoint.api_url.rstrip("/")
    config.api_key = {"BearerToken": endpoint.token}
    config.api_key_prefix = {"BearerToken": "Bearer"}
    config.verify_ssl = endpoint.verify_tls
    if endpoint.ca_pem:
        config.ca_cert_data = endpoint.ca_pem
    # Retries are Warden's (above), so they are counted and honour Retry-After.
    config.retries = False
    return config


def _error_from(status: int, reason: str, data: bytes, retry_after: str | None) -> KubeError:
    """The error of a non-2xx answer: the API server's own Status message when it sent one,
    else the status code and a fixed text. Nothing else of the body is ever repeated (a URL
    pointed at some other server must not turn Warden into a way of reading it)."""
    reason = _phrase(status)
    message = f"the server answered HTTP {status} without a Kubernetes Status"
    try:
        parsed = json.loads(data)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and parsed.get("kind") == "Status" and parsed.get("message"):
        message = str(parsed["message"])[:1000]
        reason = str(parsed.get("reason") or reason)[:100]
    delay: float | None = None
    if retry_after:
        try:
            delay = max(0.0, float(retry_after))
        except ValueError:
            delay = None
    return KubeError(status, reason, message, delay)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _connection_message(endpoint: Endpoint, exc: BaseException) -> str:
    text = str(getattr(exc, "reason", "") or exc)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return (
            f"TLS verification of {endpoint.api_url} failed: the CA bundle does not match the "
            "API server's certificate; paste the cluster's CA"
        )
    first_line = text.splitlines()[0][:200] if text else exc.__class__.__name__
    return f"{endpoint.api_url} is unreachable: {first_line}"


_clients: dict[str, KubeClient] = {}
_clients_lock = threading.Lock()


def client_for(endpoint: Endpoint) -> KubeClient:
    """A pooled client per endpoint within this process (connections are kept alive)."""
    key = endpoint.fingerprint()
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = KubeClient(endpoint)
        return client


def forget_clients() -> None:
    """Drop the pooled clients, so that the next call connects afresh (after a cluster's
    address, CA or faults changed under a long-lived process, as in tests)."""
    with _clients_lock:
        _clients.clear()
