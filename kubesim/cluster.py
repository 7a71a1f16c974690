"""One emulated cluster: its store, users, tokens, faults, counters, and the API it serves."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import random
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

from kubesim import codec, discovery, fields, rbac, schema, tables, watch
from kubesim import patch as patching
from kubesim.codec import decode_body
from kubesim.patch import APPLY_PATCH
from kubesim.rbac import Attributes, UserInfo
from kubesim.store import (
    ApiError,
    Kind,
    Store,
    builtin_kinds,
    invalid_object,
    label_namespace,
    now_rfc3339,
)

SA_TOKEN_TYPE = "kubernetes.io/service-account-token"
IMMORTAL_NAMESPACES = ("default", "kube-system", "kube-public")
# Kinds whose DELETE answers with the object (being) deleted; the others answer a Success Status
# (kube-apiserver's ReturnDeletedObject).
RETURNS_DELETED = ("namespaces", "serviceaccounts", "pods", "services")
# The audience of a token asked for without one (kube-apiserver's --api-audiences default).
DEFAULT_AUDIENCE = "https://kubernetes.default.svc.cluster.local"
TOKEN_REQUEST = Kind("TokenRequest", "token", "authentication.k8s.io", "v1", True)
# The claim a legacy (Secret-held) token names its Secret by, as kube-controller-manager sets it.
LEGACY_SECRET_CLAIM = "kubernetes.io/serviceaccount/secret.name"


class Drop(Exception):
    """Close the connection without an answer (unreachable cluster, dropped connection)."""


@dataclass
class Faults:
    """What goes wrong on this cluster, set by tests and benchmarks."""

    latency_s: float = 0.0
    error_rate: float = 0.0
    status: int = 503
    drop_connections: bool = False
    unreachable: bool = False
    throttled: int = 0
    retry_after: int = 1

    def throttle(self, n: int = 1, retry_after: int = 1) -> None:
        """The next n requests answer 429 Too Many Requests with Retry-After."""
        self.throttled, self.retry_after = n, retry_after

    def clear(self) -> None:
        self.__init__()  # type: ignore[misc]

    def update(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            if name == "throttle":
                self.throttle(int(value.get("n", 1)), int(value.get("retry_after", 1)))
            elif name in self.__dataclass_fields__:
                setattr(self, name, type(getattr(self, name))(value))
            else:
                raise ValueError(f"unknown fault {name!r}")


@dataclass
class Response:
    status: int
    body: Any  # a JSON-able value, bytes already encoded, or an iterator of bytes (a watch)
    headers: dict[str, str] = field(default_factory=dict)


def not_found_page() -> Response:
    """kube-apiserver's answer where no API is served (e.g. /apis/<unknown group>/v1): text."""
    return Response(
        404,
        b"404 page not found\n",
        {"Content-Type": "text/plain; charset=utf-8", "X-Content-Type-Options": "nosniff"},
    )


@dataclass
class SimCluster:
    """An independent Kubernetes API: its own objects, users and version."""

    name: str
    version: str = "1.30"
    server_url: str = ""
    ca_cert_pem: bytes | None = None
    admin_token: str = field(default_factory=lambda: "admin-" + secrets.token_urlsafe(24))
    store: Store = field(default_factory=Store)
    faults: Faults = field(default_factory=Faults)
    counters: Counter[tuple[str, str]] = field(default_factory=Counter)
    users: dict[str, UserInfo] = field(default_factory=dict)
    signing_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    counter_lock: threading.Lock = field(default_factory=threading.Lock)
    # The newest requests (start and end time, method, path, user agent) and the most served at
    # once: which
    # client called when, and whether two clients ever worked on this cluster at the same time.
    request_log: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=5000))
    in_flight: int = 0
    max_in_flight: int = 0
    # Set when the cluster is removed or the server stops: open watches end.
    closed: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        for kind in builtin_kinds():
            self.store.register(kind)
        self.users[self.admin_token] = UserInfo(
            "kubernetes-admin", ("system:masters", "system:authenticated")
        )
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.store.create(self.store.kinds["namespaces"], "", {"metadata": {"name": ns}})
        for role in rbac.bootstrap_cluster_roles():
            self.store.create(self.store.kinds["clusterroles"], "", role)
        for binding in rbac.bootstrap_cluster_role_bindings():
            self.store.create(self.store.kinds["clusterrolebindings"], "", binding)
        rbac.aggregate(self.store)
        self.store.on_change.append(self._controllers)

    # --- setup API --------------------------------------------------------------------------

    def add_user(
        self, name: str, token: str | None = None, groups: list[str] | tuple[str, ...] = ()
    ) -> str:
        token = token or f"{name}-" + secrets.token_urlsafe(16)
        self.users[token] = UserInfo(name, (*groups, "system:authenticated"))
        return token

    def register_kind(
        self, kind: str, plural: str, group: str, version: str, namespaced: bool = True
    ) -> None:
        """Serve a custom resource (e.g. Cluster API's clusters.cluster.x-k8s.io)."""
        self.store.register(Kind(kind, plural, group, version, namespaced))

    def set_unreachable(self, value: bool = True) -> None:
        self.faults.unreachable = value

    def reset_counters(self) -> None:
        with self.counter_lock:
            self.counters.clear()
            self.request_log.clear()
            self.max_in_flight = self.in_flight

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create an object directly, as the admin would (test setup)."""
        kind = next(k for k in self.store.kinds.values() if k.kind == obj["kind"])
        return self.store.create(kind, obj.get("metadata", {}).get("namespace", ""), obj)

    # --- controllers ------------------------------------------------------------------------

    def _controllers(self, plural: str, event: str, obj: dict[str, Any] | None) -> None:
        if plural == "clusterroles":
            rbac.aggregate(self.store)

    # --- tokens -----------------------------------------------------------------------------

    def _sign(self, claims: dict[str, Any]) -> str:
        def enc(data: dict[str, Any]) -> str:
            return (
                base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode())
                .rstrip(b"=")
                .decode()
            )

        head = enc({"alg": "HS256", "kid": self.name})
        body = enc(claims)
        sig = hmac.new(self.signing_key, f"{head}.{body}".encode(), hashlib.sha256).digest()
        return f"{head}.{body}." + base64.urlsafe_b64encode(sig).rstrip(b"=").decode()

    def _verify(self, token: str) -> dict[str, Any] | None:
        parts = token.split(".")
        if len(parts) != 3:
            return None
        sig = hmac.new(self.signing_key, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(base64.urlsafe_b64encode(sig).rstrip(b"=").decode(), parts[2]):
            return None
        claims: dict[str, Any] = json.loads(
            base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        )
        return claims

    def authenticate(self, token: str) -> UserInfo | None:
        if token in self.users:
            return self.users[token]
        claims = self._verify(token)
        if claims is None:
            return None
        if claims.get("exp") and claims["exp"] < time.time():
            return None
        ns, sa_name = claims["ns"], claims["sa"]
        sa = self.store.peek("serviceaccounts", ns, sa_name)
        if sa is None or sa["metadata"]["uid"] != claims.get("sa_uid"):
            return None
        legacy = claims.get(LEGACY_SECRET_CLAIM)
        if legacy:
            # A legacy token is valid only while its Secret exists and still holds it
            # (kube-apiserver's legacy token lookup): deleting the Secret revokes it.
            secret = self.store.peek("secrets", ns, legacy)
            held = ((secret or {}).get("data") or {}).get("token", "")
            if secret is None or base64.b64decode(held).decode() != token:
                return None
        bound = claims.get("secret")
        if bound:
            secret = self.store.peek("secrets", ns, bound["name"])
            if secret is None or secret["metadata"]["uid"] != bound["uid"]:
                return None  # the bound object is gone: the token is revoked
        return UserInfo(
            f"system:serviceaccount:{ns}:{sa_name}",
            ("system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"),
            {"authentication.kubernetes.io/credential-id": [f"JTI={claims['jti']}"]}
            if claims.get("jti")
            else {},
            uid=sa["metadata"]["uid"],
        )

    def issue_token(
        self,
        namespace: str,
        sa_name: str,
        seconds: int,
        bound: dict[str, Any] | None,
        legacy_secret: str = "",
    ) -> tuple[str, str]:
        sa = self.store.peek("serviceaccounts", namespace, sa_name)
        if sa is None:
            raise ApiError(
                404,
                "NotFound",
                f'serviceaccounts "{sa_name}" not found',
                {"name": sa_name, "kind": "serviceaccounts"},
            )
        claims: dict[str, Any] = {
            "ns": namespace,
            "sa": sa_name,
            "sa_uid": sa["metadata"]["uid"],
            "iat": int(time.time()),
            "jti": secrets.token_hex(8),
        }
        if seconds:
            claims["exp"] = int(time.time()) + seconds
        if legacy_secret:
            claims[LEGACY_SECRET_CLAIM] = legacy_secret
        if bound:
            if bound.get("kind") != "Secret":
                raise ApiError(
                    422,
                    "Invalid",
                    f'TokenRequest.authentication.k8s.io "{sa_name}" is invalid: spec.boundObjectRef.kind: Unsupported value: "{bound.get("kind")}"',
                )
            secret = self.store.peek("secrets", namespace, bound.get("name", ""))
            if secret is None:
                raise ApiError(
                    404,
                    "NotFound",
                    f'secrets "{bound.get("name")}" not found',
                    {"name": bound.get("name"), "kind": "secrets"},
                )
            if bound.get("uid") and bound["uid"] != secret["metadata"]["uid"]:
                raise ApiError(
                    409,
                    "Conflict",
                    f"the UID in the bound object reference ({bound['uid']}) does not match the UID in record. The object might have been deleted and then recreated",
                )
            claims["secret"] = {
                "name": secret["metadata"]["name"],
                "uid": secret["metadata"]["uid"],
            }
        expires = time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(claims.get("exp", time.time() + 10 * 365 * 86400))
        )
        return self._sign(claims), expires

    # --- request handling -------------------------------------------------------------------

    def handle(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> Response:
        faults = self.faults
        if faults.unreachable or faults.drop_connections:
            raise Drop()
        params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        self._count(method, path, params)
        with self.counter_lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            entry = {
                "t": time.time(),
                "end": 0.0,
                "method": method,
                "path": path,
                "agent": headers.get("user-agent", ""),
            }
            self.request_log.append(entry)
        try:
            return self._handle(method, path, params, headers, body)
        finally:
            with self.counter_lock:
                self.in_flight -= 1
                entry["end"] = time.time()

    def _handle(
        self,
        method: str,
        path: str,
        params: dict[str, str],
        headers: dict[str, str],
        body: bytes,
    ) -> Response:
        faults = self.faults
        if faults.latency_s:
            time.sleep(faults.latency_s)
        if faults.throttled > 0:
            faults.throttled -= 1
            return self._error(
                ApiError(
                    429,
                    "TooManyRequests",
                    "Too many requests, please try again later.",
                    {"retryAfterSeconds": faults.retry_after},
                    {"Retry-After": str(faults.retry_after)},
                )
            )
        if faults.error_rate and random.random() < faults.error_rate:
            return self._error(
                ApiError(faults.status, "InternalError", "kubesim: injected failure")
            )
        try:
            return self._route(method, path, params, headers, body)
        except ApiError as exc:
            return self._error(exc)

    def _count(self, method: str, path: str, params: dict[str, str]) -> tuple[str, str]:
        """Count the request as (verb, resource) — e.g. ("list", "rolebindings")."""
        # The API server decodes each path segment (clients send ':' as %3A, e.g. system:...).
        segments = [unquote(s) for s in path.split("/") if s]
        if not segments or segments[0] not in ("api", "apis"):
            verb, resource = "get", "/" + "/".join(segments)
        else:
            rest = segments[2:] if segments[0] == "api" else segments[3:]
            if rest and rest[0] == "namespaces" and len(rest) >= 3:
                rest = rest[2:]
            if not rest:
                verb, resource = "get", "discovery"
            else:
                name = rest[1] if len(rest) > 1 else ""
                resource = "/".join([rest[0], *rest[2:3]])
                try:
                    verb = _verb(method, name, params)
                except ApiError:
                    verb = method.lower()
        with self.counter_lock:
            self.counters[(verb, resource)] += 1
        return verb, resource

    @staticmethod
    def _error(exc: ApiError) -> Response:
        return Response(exc.code, exc.status(), exc.headers)

    def _route(
        self, method: str, path: str, params: dict[str, str], headers: dict[str, str], body: bytes
    ) -> Response:
        user = self._user(headers)
        # The API server decodes each path segment (clients send ':' as %3A, e.g. system:...).
        segments = [unquote(s) for s in path.split("/") if s]
        if (
            not segments
            or segments[0] not in ("api", "apis")
            or (segments[0] == "apis" and len(segments) < 3)
            or (segments[0] == "api" and len(segments) < 2)
        ):
            attrs = Attributes(
                verb="get" if method == "GET" else method.lower(),
                path=path or "/",
                resource_request=False,
            )
            self._authorize(user, attrs)
            return Response(
                200, discovery.non_resource(self.store, self.version, self.server_url, path)
            )
        group, version, rest = (
            ("", segments[1], segments[2:])
            if segments[0] == "api"
            else (segments[1], segments[2], segments[3:])
        )
        if not discovery.serves(self.store, group, version):
            return not_found_page()  # no handler at all: Go's mux answers, not the API machinery
        if not rest:
            return Response(200, discovery.resource_list(self.store, group, version))
        namespace = ""
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        plural = rest[0]
        name = rest[1] if len(rest) > 1 else ""
        sub = "/".join(rest[2:])
        manager = fields.manager_of(params, headers.get("user-agent", ""))
        if group in ("authorization.k8s.io", "authentication.k8s.io") and method == "POST":
            review = decode_body(headers.get("content-type", ""), body)
            return self._review(user, group, plural, namespace, review, manager)
        kind = self.store.kind_for(group, plural)
        if kind.namespaced is False and namespace:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        verb = _verb(method, name, params)
        self._authorize(
            user,
            Attributes(
                verb=verb,
                group=group,
                resource=plural,
                subresource=sub,
                namespace=namespace or (name if plural == "namespaces" else ""),
                name=name,
            ),
        )
        dry_run = params.get("dryRun") == "All"
        if sub == "token" and plural == "serviceaccounts" and method == "POST":
            return self._token_request(
                namespace, name, decode_body(headers.get("content-type", ""), body), manager
            )
        if sub:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        as_table = tables.wants_table(headers.get("accept", ""))
        include = params.get("includeObject", "Metadata")
        if verb == "watch":
            render = _table_events(kind.kind, include) if as_table else None
            stream = watch.stream(self.store, kind, namespace, params, self.closed, render)
            return Response(200, stream)
        if verb == "list" and as_table:
            listed = self.store.list(
                kind,
                namespace,
                params.get("labelSelector", ""),
                params.get("fieldSelector", ""),
                int(params.get("limit") or 0),
                params.get("continue", ""),
            )
            return Response(
                200, tables.table(kind.kind, listed["items"], listed["metadata"], include)
            )
        if verb == "get" and as_table:
            obj = self.store.get(kind, namespace, name)
            meta = {"resourceVersion": obj["metadata"].get("resourceVersion", "")}
            return Response(200, tables.table(kind.kind, [obj], meta, include))
        if verb == "list":
            limit = int(params.get("limit") or 0)
            return Response(
                200,
                self.store.list_json(
                    kind,
                    namespace,
                    params.get("labelSelector", ""),
                    params.get("fieldSelector", ""),
                    limit,
                    params.get("continue", ""),
                ),
            )
        if verb == "get":
            return Response(200, self.store.get(kind, namespace, name))
        warned: list[str] = []

        def owned(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
            return fields.record_update(old, new, manager, kind)

        if verb == "create":
            obj = decode_body(headers.get("content-type", ""), body)
            obj = _known_fields(kind, obj, params, warned)
            self._check_escalation(user, kind, namespace, obj)
            obj = _defaulted(kind, self._prepare(kind, namespace, obj))
            created = self.store.create(kind, namespace, obj, dry_run, owned)
            return Response(201, created, _warning(warned))
        if verb == "update":
            obj = decode_body(headers.get("content-type", ""), body)
            obj = _known_fields(kind, obj, params, warned)
            self._check_escalation(user, kind, namespace, obj)
            obj = _defaulted(kind, obj)
            updated = self.store.update(kind, namespace, name, obj, dry_run, owned)
            return Response(200, updated, _warning(warned))
        if verb == "patch" and codec.media_type(headers.get("content-type", "")) == APPLY_PATCH:
            applied = _known_fields(kind, codec.decode_body(codec.YAML, body), params, warned)
            answer = self._server_side_apply(user, kind, namespace, name, params, applied, dry_run)
            answer.headers.update(_warning(warned))
            return answer
        if verb == "patch":
            current = self.store.get(kind, namespace, name)
            patched = patching.apply(current, body, headers.get("content-type", ""))
            patched = _known_fields(kind, patched, params, warned)
            self._check_escalation(user, kind, namespace, patched)
            patched = _defaulted(kind, patched)
            updated = self.store.update(kind, namespace, name, patched, dry_run, owned)
            return Response(200, updated, _warning(warned))
        if verb == "delete":
            if kind.plural == "namespaces" and name in IMMORTAL_NAMESPACES:
                # kube-apiserver's NamespaceLifecycle admission keeps these.
                raise ApiError(
                    403,
                    "Forbidden",
                    f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                    {"name": name, "kind": "namespaces"},
                )
            options = decode_body(headers.get("content-type", ""), body) if body else {}
            preconditions = options.get("preconditions") or {}
            gone = self.store.delete(
                kind,
                namespace,
                name,
                preconditions.get("resourceVersion") or "",
                dry_run or options.get("dryRun") == ["All"],
                preconditions.get("uid") or "",
            )
            return Response(200, _deleted(kind, gone))
        if verb == "deletecollection":
            listed = self.store.list(
                kind, namespace, params.get("labelSelector", ""), params.get("fieldSelector", "")
            )
            for item in listed["items"]:
                self.store.delete(
                    kind,
                    item["metadata"].get("namespace", ""),
                    item["metadata"]["name"],
                    "",
                    dry_run,
                )
            for item in listed["items"]:  # (list items carry no kind or apiVersion)
                item.pop("kind", None)
                item.pop("apiVersion", None)
            return Response(200, listed)
        raise ApiError(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )

    def _server_side_apply(
        self,
        user: UserInfo,
        kind: Kind,
        namespace: str,
        name: str,
        params: dict[str, str],
        applied: dict[str, Any],
        dry_run: bool,
    ) -> Response:
        """PATCH with application/apply-patch+yaml: create or merge, owning what is applied."""
        manager = params.get("fieldManager", "")
        if not manager:
            raise invalid_object(
                "PatchOptions",
                "meta.k8s.io",
                "",
                ["fieldManager: Required value: is required for apply patch"],
            )
        meta = applied.get("metadata") or {}
        if meta.get("name") and meta["name"] != name:
            raise ApiError(
                400, "BadRequest", "the name of the object does not match the name on the URL"
            )
        if (applied.get("apiVersion"), applied.get("kind")) != (kind.api_version, kind.kind):
            raise ApiError(
                400,
                "BadRequest",
                f"the body's apiVersion and kind ({applied.get('apiVersion')}, "
                f"{applied.get('kind')}) do not match the URL's ({kind.api_version}, {kind.kind})",
            )
        live = self.store.peek(kind.plural, namespace if kind.namespaced else "", name)
        live = copy.deepcopy(live) if live is not None else None
        merged = fields.apply(live, applied, manager, params.get("force") == "true", kind)
        merged.setdefault("metadata", {})["name"] = name
        self._check_escalation(user, kind, namespace, merged)
        if live is None:
            merged = self._prepare(kind, namespace, merged)
            return Response(201, self.store.create(kind, namespace, merged, dry_run))
        return Response(200, self.store.update(kind, namespace, name, merged, dry_run))

    # --- pieces -----------------------------------------------------------------------------

    def _user(self, headers: dict[str, str]) -> UserInfo:
        auth = headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        user = self.authenticate(token) if token else None
        if user is None:
            raise ApiError(401, "Unauthorized", "Unauthorized")
        target = headers.get("impersonate-user")
        if target:
            self._authorize(user, Attributes(verb="impersonate", resource="users", name=target))
            groups = tuple(
                g.strip() for g in headers.get("impersonate-group", "").split(",") if g.strip()
            )
            for group in groups:
                self._authorize(user, Attributes(verb="impersonate", resource="groups", name=group))
            return UserInfo(target, (*groups, "system:authenticated"))
        return user

    def _authorize(self, user: UserInfo, attrs: Attributes) -> None:
        if not rbac.authorize(self.store, user, attrs):
            details = {"name": attrs.name, "group": attrs.group, "kind": attrs.resource}
            raise ApiError(
                403,
                "Forbidden",
                rbac.forbidden_message(user, attrs),
                {k: v for k, v in details.items() if v} if attrs.resource_request else {},
            )

    def _check_escalation(
        self, user: UserInfo, kind: Kind, namespace: str, obj: dict[str, Any]
    ) -> None:
        if user.is_master:
            return
        name = (obj.get("metadata") or {}).get("name", "")
        if kind.kind in ("Role", "ClusterRole"):
            missing = rbac.covers(self.store, user, obj.get("rules") or [], namespace)
            if missing and not rbac.authorize(
                self.store,
                user,
                Attributes(
                    verb="escalate",
                    group=kind.group,
                    resource=kind.plural,
                    namespace=namespace,
                    name=name,
                ),
            ):
                raise ApiError(
                    403,
                    "Forbidden",
                    f'{kind.qualified} "{name}" is forbidden: user "{user.name}" is attempting to grant RBAC permissions not currently held:\n'
                    + "\n".join(missing),
                )
        if kind.kind in ("RoleBinding", "ClusterRoleBinding"):
            ref = obj.get("roleRef") or {}
            role_plural = "clusterroles" if ref.get("kind") == "ClusterRole" else "roles"
            if rbac.authorize(
                self.store,
                user,
                Attributes(
                    verb="bind",
                    group=rbac.RBAC_GROUP,
                    resource=role_plural,
                    namespace=namespace,
                    name=ref.get("name", ""),
                ),
            ):
                return
            role = self.store.peek(
                role_plural, namespace if role_plural == "roles" else "", ref.get("name", "")
            )
            missing = rbac.covers(self.store, user, (role or {}).get("rules") or [], namespace)
            if missing or role is None:
                raise ApiError(
                    403,
                    "Forbidden",
                    f'{kind.qualified} "{name}" is forbidden: user "{user.name}" is attempting to grant RBAC permissions not currently held:\n'
                    + "\n".join(missing),
                )

    def _prepare(self, kind: Kind, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Admission and the token controller, for what Warden relies on."""
        if kind.kind == "Secret" and obj.get("type") == SA_TOKEN_TYPE:
            annotations = (obj.get("metadata") or {}).get("annotations") or {}
            sa_name = annotations.get("kubernetes.io/service-account.name")
            sa = self.store.peek("serviceaccounts", namespace, sa_name or "")
            if sa is None:
                raise ApiError(
                    422,
                    "Invalid",
                    f'Secret "{obj["metadata"].get("name")}" is invalid: metadata.annotations[kubernetes.io/service-account.name]: Not found',
                )
            token, _ = self.issue_token(
                namespace, str(sa_name), 0, None, legacy_secret=obj["metadata"].get("name", "")
            )
            obj = copy.deepcopy(obj)
            obj["metadata"].setdefault("annotations", {})["kubernetes.io/service-account.uid"] = sa[
                "metadata"
            ]["uid"]
            obj["data"] = {
                "token": base64.b64encode(token.encode()).decode(),
                "namespace": base64.b64encode(namespace.encode()).decode(),
                "ca.crt": base64.b64encode(self.ca_cert_pem or b"").decode(),
            }
        return obj

    def _token_request(
        self, namespace: str, name: str, body: dict[str, Any], manager: str
    ) -> Response:
        spec = body.get("spec") or {}
        seconds = int(spec.get("expirationSeconds") or 3600)
        if seconds < 600:
            raise invalid_object(
                "TokenRequest",
                "authentication.k8s.io",
                "",
                [
                    f"spec.expirationSeconds: Invalid value: {seconds}: may not specify a "
                    "duration less than 10 minutes"
                ],
            )
        token, expires = self.issue_token(namespace, name, seconds, spec.get("boundObjectRef"))
        account = self.store.peek("serviceaccounts", namespace, name) or {"metadata": {}}
        meta: dict[str, Any] = {
            "name": name,
            "namespace": namespace,
            "uid": account["metadata"].get("uid", ""),
            "creationTimestamp": now_rfc3339(),
        }
        owned = fields.record_update(None, {"spec": spec}, manager, TOKEN_REQUEST, "token")
        meta.update(owned.get("metadata") or {})
        return Response(
            201,
            {
                "kind": "TokenRequest",
                "apiVersion": "authentication.k8s.io/v1",
                "metadata": meta,
                "spec": {
                    "audiences": spec.get("audiences") or [DEFAULT_AUDIENCE],
                    "expirationSeconds": seconds,
                    "boundObjectRef": spec.get("boundObjectRef"),
                },
                "status": {"token": token, "expirationTimestamp": expires},
            },
        )

    def _review(
        self,
        user: UserInfo,
        group: str,
        plural: str,
        namespace: str,
        body: dict[str, Any],
        manager: str,
    ) -> Response:
        spec = body.get("spec") or {}
        out: dict[str, Any] = {
            "kind": body.get("kind", ""),
            "apiVersion": f"{group}/v1",
            "metadata": {},
            "spec": spec,
        }
        # A review is created like any object: its writer owns what it sent.
        review_kind = Kind(out["kind"], plural, group, "v1", plural.startswith("local"))
        out["metadata"] = fields.record_update(None, out, manager, review_kind)["metadata"]
        if plural == "selfsubjectreviews":  # kubectl auth whoami
            out.pop("spec")
            out["metadata"] = {"creationTimestamp": now_rfc3339()}
            out["status"] = {"userInfo": _user_info(user)}
            return Response(201, out)
        if plural == "tokenreviews":
            self._authorize(user, Attributes(verb="create", group=group, resource=plural))
            reviewed = self.authenticate(spec.get("token", ""))
            out["status"] = (
                {
                    "authenticated": True,
                    "user": _user_info(reviewed),
                    "audiences": spec.get("audiences") or [DEFAULT_AUDIENCE],
                }
                if reviewed
                else {"user": {}, "error": "invalid bearer token"}
            )
            return Response(201, out)
        if plural in (
            "selfsubjectaccessreviews",
            "subjectaccessreviews",
            "localsubjectaccessreviews",
        ):
            subject = user
            if plural != "selfsubjectaccessreviews":
                self._authorize(
                    user,
                    Attributes(verb="create", group=group, resource=plural, namespace=namespace),
                )
                subject = UserInfo(spec.get("user", ""), tuple(spec.get("groups") or ()))
            if spec.get("nonResourceAttributes"):
                nra = spec["nonResourceAttributes"]
                attrs = Attributes(
                    verb=nra.get("verb", ""), path=nra.get("path", ""), resource_request=False
                )
            else:
                ra = spec.get("resourceAttributes") or {}
                attrs = Attributes(
                    verb=ra.get("verb", ""),
                    group=ra.get("group", ""),
                    resource=ra.get("resource", ""),
                    subresource=ra.get("subresource", ""),
                    namespace=ra.get("namespace", "") or namespace,
                    name=ra.get("name", ""),
                )
            allowed = rbac.authorize(self.store, subject, attrs)
            reason = rbac.allowed_by(self.store, subject, attrs) if allowed else ""
            out["status"] = {"allowed": allowed, **({"reason": reason} if reason else {})}
            return Response(201, out)
        if plural == "selfsubjectrulesreviews":
            rules = rbac.rules_for(self.store, user, spec.get("namespace", ""))
            if user.is_master:
                rules = [
                    {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]},
                    {"verbs": ["*"], "nonResourceURLs": ["*"]},
                ]
            out["status"] = {
                "resourceRules": [
                    {
                        k: r[k]
                        for k in ("verbs", "apiGroups", "resources", "resourceNames")
                        if r.get(k)
                    }
                    for r in rules
                    if r.get("resources")
                ],
                "nonResourceRules": [
                    {"verbs": r["verbs"], "nonResourceURLs": r["nonResourceURLs"]}
                    for r in rules
                    if r.get("nonResourceURLs")
                ],
                "incomplete": False,
            }
            return Response(201, out)
        raise ApiError(404, "NotFound", "the server could not find the requested resource")


def _verb(method: str, name: str, params: dict[str, str]) -> str:
    if method == "GET":
        if params.get("watch") in ("1", "true"):
            return "watch"
        return "get" if name else "list"
    if method == "POST":
        return "create"
    if method == "PUT":
        return "update"
    if method == "PATCH":
        return "patch"
    if method == "DELETE":
        return "delete" if name else "deletecollection"
    raise ApiError(
        405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
    )


def _table_events(kind: str, include: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A watch's objects as one-row Tables; only the first names the columns (as kube-apiserver)."""
    first = [True]

    def render(obj: dict[str, Any]) -> dict[str, Any]:
        meta = {"resourceVersion": obj["metadata"].get("resourceVersion", "")}
        table = tables.table(kind, [obj], meta, include, with_columns=first[0])
        first[0] = False
        return table

    return render


def _known_fields(
    kind: Kind, obj: dict[str, Any], params: dict[str, str], warned: list[str]
) -> dict[str, Any]:
    """The object without fields its kind does not have, as kube-apiserver decodes it: dropped
    with a warning (fieldValidation=Warn, the default), dropped (Ignore), or a 400 (Strict).
    Kinds kubesim does not know field by field are kept as sent."""
    message = schema.message_for(kind.group, kind.version, kind.kind)
    if message is None:
        return obj
    known, unknown = schema.prune(message, obj)
    mode = params.get("fieldValidation") or "Warn"
    if unknown and mode == "Strict":
        raise ApiError(
            400,
            "BadRequest",
            f'{kind.kind} in version "{kind.version}" cannot be handled as a {kind.kind}: '
            "strict decoding error: " + ", ".join(f'unknown field "{p}"' for p in unknown),
        )
    if mode == "Warn":
        warned += [f'unknown field "{p}"' for p in unknown]
    return known


def _warning(warned: list[str]) -> dict[str, str]:
    """The Warning header (RFC 7234, code 299) kube-apiserver sends, one value per warning."""
    if not warned:
        return {}
    return {"Warning": ", ".join('299 - "' + w.replace('"', '\\"') + '"' for w in warned)}


def _deleted(kind: Kind, gone: dict[str, Any]) -> dict[str, Any]:
    """What a DELETE answers: the object for the kinds kube-apiserver returns it for (a namespace
    as it starts terminating), else a Success Status naming it."""
    if kind.plural in RETURNS_DELETED:
        return gone
    details = {
        "name": gone["metadata"]["name"],
        "group": kind.group,
        "kind": kind.plural,
        "uid": gone["metadata"]["uid"],
    }
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {k: v for k, v in details.items() if v},
    }


def _defaulted(kind: Kind, obj: dict[str, Any]) -> dict[str, Any]:
    """Defaults set before field ownership is recorded, so that the writer owns them too."""
    if kind.kind == "Namespace" and (obj.get("metadata") or {}).get("name"):
        label_namespace(obj)
    return obj


def _user_info(user: UserInfo) -> dict[str, Any]:
    """A user as reviews show one (TokenReview, SelfSubjectReview)."""
    info: dict[str, Any] = {"username": user.name}
    if user.uid:
        info["uid"] = user.uid
    info["groups"] = list(user.groups)
    if user.extra:
        info["extra"] = user.extra
    return info
