"""A real Kubernetes control plane on loopback: etcd, kube-apiserver and kube-controller-manager.

The binaries are built from the official Go modules pinned in tests/k8s/*/go.mod by
tests/k8s/build.sh, once per version, into ${WARDEN_BUILD_CACHE:-~/.cache/warden}/bin. One etcd
serves every "cluster"; each cluster is its own kube-apiserver (HTTPS with a generated CA,
static tokens, RBAC, service-account signing keys, an audit log) under its own --etcd-prefix,
with a kube-controller-manager behind it for the controllers RBAC and tokens depend on.

Used by tests/fixtures/kube_apiserver.py, and by people through `make kube-apiserver`:

    python -m tests.k8s.control_plane --kubeconfig var/kube-apiserver.kubeconfig
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from kubesim.server import make_tls_files

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BUILD_SCRIPT = HERE / "build.sh"
MANAGER_MANIFEST = REPO / "deploy" / "rbac" / "warden-manager.yaml"
MANAGER_USER = "system:serviceaccount:warden-system:warden-manager"
ADMIN_USER = "warden-test-admin"
ISSUER = "https://kubernetes.default.svc.cluster.local"
# The controllers Warden's behaviour depends on: view/edit/admin get their rules by aggregation,
# legacy token Secrets get a token, deleted namespaces go away, owned objects are collected.
CONTROLLERS = ",".join(
    (
        "clusterrole-aggregation-controller",
        "serviceaccount-token-controller",
        "serviceaccount-controller",
        "namespace-controller",
        "garbage-collector-controller",
        "root-ca-certificate-publisher-controller",
    )
)
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
"""
# People of the tests' directory (tests/clusters/conftest.py `people`) as the API server knows
# them: a static token each, with their directory teams as groups.
PEOPLE = {"alice": ("payments",), "bob": ("payments",), "carol": ("sre",), "dave": ()}
PR_SET_PDEATHSIG = 1
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


class Unavailable(RuntimeError):
    """The binaries are not there and could not be built; the message says how to get them."""


class PortTaken(RuntimeError):
    """A server could not listen: another process took its port between our pick and its bind."""


# --- binaries ---------------------------------------------------------------------------------


def _required_version(go_mod: Path, module: str) -> str:
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", go_mod.read_text(), re.M)
    if not match:
        raise Unavailable(f"{go_mod} names no version of {module}")
    return match.group(1)


def kubernetes_version() -> str:
    return _required_version(HERE / "apiserver" / "go.mod", "k8s.io/kubernetes")


def etcd_version() -> str:
    return _required_version(HERE / "etcd" / "go.mod", "go.etcd.io/etcd/server/v3")


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path

    @classmethod
    def expected(cls) -> Binaries:
        cache = Path(os.environ.get("WARDEN_BUILD_CACHE") or Path.home() / ".cache" / "warden")
        k8s = kubernetes_version()
        return cls(
            etcd=cache / "bin" / f"etcd-{etcd_version()}",
            kube_apiserver=cache / "bin" / f"kube-apiserver-{k8s}",
            kube_controller_manager=cache / "bin" / f"kube-controller-manager-{k8s}",
        )

    def missing(self) -> list[Path]:
        return [
            p
            for p in (self.etcd, self.kube_apiserver, self.kube_controller_manager)
            if not os.access(p, os.X_OK)
        ]

    @classmethod
    def get(cls, build: bool) -> Binaries:
        """The cached binaries; built first (minutes, once per version) when `build` is set."""
        found = cls.expected()
        if not found.missing():
            return found
        if not build:
            names = ", ".join(p.name for p in found.missing())
            raise Unavailable(
                f"{names} not built yet: run `make test-kubernetes` (builds them once with Go "
                "from the Go module proxy, then runs this tier)"
            )
        try:
            done = subprocess.run(
                ["bash", str(BUILD_SCRIPT), "all"], capture_output=True, text=True, check=False
            )
        except OSError as exc:
            raise Unavailable(f"could not run {BUILD_SCRIPT}: {exc}") from exc
        if done.returncode != 0:
            tail = "\n".join(done.stderr.strip().splitlines()[-15:])
            raise Unavailable(f"`bash {BUILD_SCRIPT} all` failed ({done.returncode}):\n{tail}")
        if found.missing():
            raise Unavailable(f"{BUILD_SCRIPT} ran but {found.missing()} are still missing")
        return found


# --- keys and certificates --------------------------------------------------------------------


def _pem_key(key: Any) -> bytes:
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _write_private(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


@dataclass
class Pki:
    """A throwaway CA, the API servers' serving certificate, and the service-account key pair."""

    folder: Path
    ca_pem: bytes = b""

    def create(self) -> Pki:
        self.ca_pem, _cert, _key = make_tls_files(
            self.folder,
            addresses=("127.0.0.1", "10.96.0.1"),  # and the in-cluster Service's address
            dns_names=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"),
            common_name="kube-apiserver",
            stem="apiserver",
        )
        (self.folder / "ca.crt").write_bytes(self.ca_pem)
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write_private(self.folder / "sa.key", _pem_key(sa_key))
        (self.folder / "sa.pub").write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        return self

    def path(self, name: str) -> str:
        return str(self.folder / name)


# --- processes --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """In the child: SIGTERM when the process that started it dies, even by SIGKILL, so that a
    killed test run leaves no server behind (Linux; elsewhere stop() is all there is)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Process:
    """A child process with its output in a log file; stopped with SIGTERM, then SIGKILL."""

    name: str
    argv: list[str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        return self

    def check_alive(self) -> None:
        if self.popen is not None and self.popen.poll() is not None:
            error = PortTaken if "address already in use" in self.log_tail() else RuntimeError
            raise error(
                f"{self.name} exited with {self.popen.returncode}; its log ({self.log}) ends:\n"
                + self.log_tail()
            )

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)


def _wait(what: str, ready: Any, processes: list[Process], timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        for process in processes:
            process.check_alive()
        if ready():
            return
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p.name}:\n{p.log_tail()}" for p in processes)
            raise RuntimeError(f"{what} not ready after {timeout_s:.0f}s\n{tails}")
        time.sleep(0.2)


# --- one cluster ------------------------------------------------------------------------------


@dataclass
class RealCluster:
    """One kube-apiserver (and its controller manager): what a test or a person talks to.

    Has the attributes the tests read from a kubesim cluster (name, server_url, ca_cert_pem,
    admin_token), plus the manager's token, the audit log and helpers for tokens.
    """

    name: str
    folder: Path
    port: int
    ca_cert_pem: bytes
    admin_token: str
    manager_token: str = ""
    people: dict[str, str] = field(default_factory=dict)  # username -> token
    processes: list[Process] = field(default_factory=list)

    @property
    def server_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def audit_log(self) -> Path:
        return self.folder / "audit.log"

    # --- raw HTTPS, as any client ------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, dict[str, Any]]:
        """One request with a token (the admin's by default): (status, JSON body or {})."""
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(
            self.server_url + path,
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {token or self.admin_token}",
                "Content-Type": content_type,
                "Accept": "application/json",
            },
        )
        context = ssl.create_default_context(cadata=self.ca_cert_pem.decode())
        try:
            with urllib.request.urlopen(request, context=context, timeout=30) as answer:
                raw = answer.read()
                status = answer.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        try:
            parsed = json.loads(raw) if raw else {}
        except ValueError:
            parsed = {"raw": raw.decode(errors="replace")}
        return status, parsed if isinstance(parsed, dict) else {"items": parsed}

    def ready(self) -> bool:
        try:
            status, _ = self.call("GET", "/readyz")
        except OSError:
            return False
        return status == 200

    def apply_manifest(self, text: str) -> list[dict[str, Any]]:
        """Server-side apply of every object in a YAML stream, as the admin."""
        applied = []
        for obj in yaml.safe_load_all(text):
            if not obj:
                continue
            status, answer = self.call(
                "PATCH",
                object_path(obj) + "?fieldManager=warden-tests&force=true",
                obj,
                content_type="application/apply-patch+yaml",
            )
            if status >= 300:
                raise RuntimeError(f"applying {obj['kind']} {obj['metadata']['name']}: {answer}")
            applied.append(answer)
        return applied

    def token_for(
        self, service_account: str, namespace: str = "default", seconds: int = 3600
    ) -> str:
        """A bound token (TokenRequest) for a ServiceAccount, made first if it is absent."""
        self.call(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts",
            {"metadata": {"name": service_account}},
        )
        status, answer = self.call(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": seconds},
            },
        )
        if status != 201:
            raise RuntimeError(f"TokenRequest for {namespace}/{service_account}: {answer}")
        return str(answer["status"]["token"])

    # --- the audit log -----------------------------------------------------------------------

    def audit_mark(self) -> int:
        """Where the audit log ends now: pass it to audit_since() to see what came after."""
        try:
            return self.audit_log.stat().st_size
        except FileNotFoundError:
            return 0

    def audit_since(self, mark: int) -> list[dict[str, Any]]:
        """Audit events (stage ResponseComplete) written after `mark`, every one of them.

        A request's event is logged as its response goes out, so a sentinel request is made
        and waited for: every earlier answered request is in the log by then.
        """
        sentinel = f"audit-sentinel-{secrets.token_hex(4)}"
        self.call("GET", f"/api/v1/namespaces/{sentinel}")
        deadline = time.monotonic() + 10
        while True:
            with self.audit_log.open("rb") as log:
                log.seek(mark)
                events = [json.loads(line) for line in log.read().splitlines() if line.strip()]
            done = [e for e in events if e.get("stage") == "ResponseComplete"]
            if any((e.get("objectRef") or {}).get("name") == sentinel for e in done):
                return [e for e in done if (e.get("objectRef") or {}).get("name") != sentinel]
            if time.monotonic() > deadline:
                raise RuntimeError("the audit log did not show the sentinel request in 10s")
            time.sleep(0.05)

    def writes_since(self, mark: int, user: str = MANAGER_USER) -> list[dict[str, Any]]:
        """The writes `user` (Warden's manager identity by default) made after `mark`."""
        return [
            e
            for e in self.audit_since(mark)
            if e.get("verb") in WRITE_VERBS and (e.get("user") or {}).get("username") == user
        ]

    def kubeconfig(self, token: str | None = None, user: str = "admin") -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": self.name,
            "clusters": [
                {
                    "name": self.name,
                    "cluster": {
                        "server": self.server_url,
                        "certificate-authority-data": base64.b64encode(self.ca_cert_pem).decode(),
                    },
                }
            ],
            "users": [{"name": user, "user": {"token": token or self.admin_token}}],
            "contexts": [{"name": self.name, "context": {"cluster": self.name, "user": user}}],
        }


def object_path(obj: dict[str, Any]) -> str:
    """The REST path of a built-in object (the kinds Warden's manifests use)."""
    api_version, kind = obj["apiVersion"], obj["kind"]
    meta = obj.get("metadata") or {}
    plural = kind.lower() + ("es" if kind.endswith("s") else "s")
    if kind.endswith("y"):
        plural = kind.lower()[:-1] + "ies"
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    namespace = meta.get("namespace") or ""
    cluster_scoped = kind in {
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "PriorityClass",
        "StorageClass",
    }
    if namespace or not cluster_scoped:
        prefix += f"/namespaces/{namespace or 'default'}"
    return f"{prefix}/{plural}/{meta['name']}"


# --- the control plane ------------------------------------------------------------------------


@dataclass(frozen=True)
class OidcTrust:
    """An OpenID Connect provider an API server trusts for people (structured authentication
    configuration): its issuer, CA and audience, the claims that name the user and their groups,
    and the prefixes the API server puts before them (a registered cluster's user_prefix and
    group_prefix in Warden, so that Warden's bindings name exactly what the server sees)."""

    issuer: str
    ca_pem: str
    audience: str
    username_claim: str = "preferred_username"
    username_prefix: str = ""
    groups_claim: str = "groups"
    groups_prefix: str = ""

    def authentication_config(self) -> str:
        return yaml.safe_dump(
            {
                "apiVersion": "apiserver.config.k8s.io/v1",
                "kind": "AuthenticationConfiguration",
                "jwt": [
                    {
                        "issuer": {
                            "url": self.issuer,
                            "audiences": [self.audience],
                            "certificateAuthority": self.ca_pem,
                        },
                        "claimMappings": {
                            "username": {
                                "claim": self.username_claim,
                                "prefix": self.username_prefix,
                            },
                            "groups": {"claim": self.groups_claim, "prefix": self.groups_prefix},
                        },
                    }
                ],
            }
        )


class ControlPlane:
    """One etcd and any number of API servers on it, each with its own --etcd-prefix."""

    def __init__(self, binaries: Binaries, folder: Path | None = None):
        self.binaries = binaries
        self.folder = folder or Path(tempfile.mkdtemp(prefix="warden-kube-"))
        self._own_folder = folder is None
        self.pki = Pki(self.folder).create()
        self.etcd: Process | None = None
        self.etcd_url = ""
        self.clusters: dict[str, RealCluster] = {}

    def start_etcd(self, attempts: int = 3) -> None:
        for attempt in range(1, attempts + 1):
            try:
                return self._start_etcd()
            except PortTaken:
                if self.etcd is not None:
                    self.etcd.stop()
                shutil.rmtree(self.folder / "etcd", ignore_errors=True)
                if attempt == attempts:
                    raise

    def _start_etcd(self) -> None:
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        data = self.folder / "etcd"
        self.etcd = Process(
            "etcd",
            [
                str(self.binaries.etcd),
                "--name=warden-test",
                f"--data-dir={data}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=warden-test=http://127.0.0.1:{peer}",
                "--log-level=warn",
                "--unsafe-no-fsync",  # a throwaway test store: speed over durability
            ],
            self.folder / "etcd.log",
        ).start()

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"{self.etcd_url}/health", timeout=2) as answer:
                    return bool(json.loads(answer.read()).get("health") == "true")
            except (OSError, ValueError):
                return False

        _wait("etcd", healthy, [self.etcd])

    def add_clusters(self, *names: str, oidc: OidcTrust | None = None) -> list[RealCluster]:
        """Start an API server (and controller manager) per name, in parallel; ready on return.

        With `oidc`, the API servers also authenticate people by that provider's ID tokens."""
        if self.etcd is None:
            self.start_etcd()
        for attempt in range(1, 4):
            made = [self._start_apiserver(name, oidc) for name in names]
            try:
                _wait(
                    "kube-apiserver",
                    lambda batch=made: all(c.ready() for c in batch),
                    [p for c in made for p in c.processes],
                )
                break
            except PortTaken:
                for cluster in made:  # start them again on other ports
                    for process in cluster.processes:
                        process.stop()
                    del self.clusters[cluster.name]
                    shutil.rmtree(cluster.folder, ignore_errors=True)
                if attempt == 3:
                    raise
        for cluster in made:
            self._start_controller_manager(cluster)
        for cluster in made:
            self._bootstrap(cluster)
        return made

    def remove_cluster(self, name: str) -> None:
        """Stop one API server (and its controller manager); its etcd prefix stays."""
        cluster = self.clusters.pop(name)
        for process in reversed(cluster.processes):
            process.stop()

    def _start_apiserver(self, name: str, oidc: OidcTrust | None = None) -> RealCluster:
        if name in self.clusters:
            raise ValueError(f"cluster {name} exists")
        folder = self.folder / name
        folder.mkdir()
        admin_token = secrets.token_urlsafe(24)
        kcm_token = secrets.token_urlsafe(24)
        people = {user: secrets.token_urlsafe(24) for user in PEOPLE}
        lines = [
            f'{admin_token},{ADMIN_USER},uid-admin,"system:masters"',
            f'{kcm_token},system:kube-controller-manager,uid-kcm,"system:masters"',
        ]
        for user, groups in PEOPLE.items():
            lines.append(
                f"{people[user]},{user},uid-{user}" + (f',"{",".join(groups)}"' if groups else "")
            )
        tokens = folder / "tokens.csv"
        _write_private(tokens, ("\n".join(lines) + "\n").encode())
        (folder / "kcm.token").write_text(kcm_token)
        (folder / "audit-policy.yaml").write_text(AUDIT_POLICY)
        cluster = RealCluster(
            name, folder, free_port(), self.pki.ca_pem, admin_token, people=people
        )
        pki = self.pki
        extra: list[str] = []
        if oidc is not None:
            (folder / "authentication.yaml").write_text(oidc.authentication_config())
            extra.append(f"--authentication-config={folder / 'authentication.yaml'}")
        cluster.processes.append(
            Process(
                f"kube-apiserver {name}",
                [
                    str(self.binaries.kube_apiserver),
                    f"--etcd-servers={self.etcd_url}",
                    f"--etcd-prefix=/clusters/{name}",
                    "--bind-address=127.0.0.1",
                    "--advertise-address=127.0.0.1",
                    f"--secure-port={cluster.port}",
                    f"--cert-dir={folder / 'certs'}",
                    f"--tls-cert-file={pki.path('apiserver.crt')}",
                    f"--tls-private-key-file={pki.path('apiserver.key')}",
                    f"--token-auth-file={tokens}",
                    "--authorization-mode=Node,RBAC",
                    f"--service-account-issuer={ISSUER}",
                    f"--service-account-key-file={pki.path('sa.pub')}",
                    f"--service-account-signing-key-file={pki.path('sa.key')}",
                    f"--api-audiences={ISSUER}",
                    "--service-cluster-ip-range=10.96.0.0/16",
                    f"--audit-policy-file={folder / 'audit-policy.yaml'}",
                    f"--audit-log-path={cluster.audit_log}",
                    "--audit-log-format=json",
                    "--audit-log-mode=blocking",
                    "--profiling=false",
                    "--endpoint-reconciler-type=none",
                    *extra,
                ],
                folder / "kube-apiserver.log",
            ).start()
        )
        self.clusters[name] = cluster
        return cluster

    def _start_controller_manager(self, cluster: RealCluster) -> None:
        kubeconfig = cluster.folder / "kcm.kubeconfig"
        token = (cluster.folder / "kcm.token").read_text()
        _write_private(
            kubeconfig,
            yaml.safe_dump(
                cluster.kubeconfig(token=token, user="kube-controller-manager")
            ).encode(),
        )
        cluster.processes.append(
            Process(
                f"kube-controller-manager {cluster.name}",
                [
                    str(self.binaries.kube_controller_manager),
                    f"--kubeconfig={kubeconfig}",
                    f"--controllers={CONTROLLERS}",
                    f"--service-account-private-key-file={self.pki.path('sa.key')}",
                    f"--root-ca-file={self.pki.path('ca.crt')}",
                    "--leader-elect=false",
                    "--secure-port=0",
                    "--concurrent-namespace-syncs=2",
                ],
                cluster.folder / "kube-controller-manager.log",
            ).start()
        )

    def _bootstrap(self, cluster: RealCluster) -> None:
        """Warden's manager identity, exactly as deploy/rbac/warden-manager.yaml makes it."""

        def aggregated() -> bool:
            status, view = cluster.call(
                "GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/view"
            )
            return status == 200 and bool(view.get("rules"))

        _wait(f"ClusterRole aggregation on {cluster.name}", aggregated, cluster.processes)
        cluster.apply_manifest(MANAGER_MANIFEST.read_text())

        def token_issued() -> bool:
            status, secret = cluster.call(
                "GET", "/api/v1/namespaces/warden-system/secrets/warden-manager-token"
            )
            token = (secret.get("data") or {}).get("token") if status == 200 else None
            if token:
                cluster.manager_token = base64.b64decode(token).decode()
            return bool(token)

        _wait(f"the warden-manager-token Secret on {cluster.name}", token_issued, cluster.processes)

    def stop(self) -> None:
        for cluster in self.clusters.values():
            for process in reversed(cluster.processes):
                process.stop()
        if self.etcd is not None:
            self.etcd.stop()
        if self._own_folder:
            shutil.rmtree(self.folder, ignore_errors=True)

    @contextlib.contextmanager
    def running(self, *names: str) -> Iterator[ControlPlane]:
        try:
            self.add_clusters(*names)
            yield self
        finally:
            self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", default="var/kube-apiserver.kubeconfig")
    parser.add_argument("--name", default="warden-dev")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        binaries = Binaries.get(build=True)
    except Unavailable as exc:
        print(f"kube-apiserver: {exc}", file=sys.stderr)
        return 1
    plane = ControlPlane(binaries)
    # Ctrl-C and `kill` both stop it cleanly (even when started from a script, which would
    # leave SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        (cluster,) = plane.add_clusters(args.name)
        path = Path(args.kubeconfig)
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_private(path, yaml.safe_dump(cluster.kubeconfig()).encode())
        print(
            f"kube-apiserver {kubernetes_version()} ready at {cluster.server_url} in "
            f"{time.monotonic() - started:.1f}s: KUBECONFIG={path} (admin); Ctrl-C stops it",
            flush=True,
        )
        while True:
            for process in [*cluster.processes, *([plane.etcd] if plane.etcd else [])]:
                process.check_alive()
            time.sleep(1)
    except KeyboardInterrupt:
        return 0
    finally:
        plane.stop()


if __name__ == "__main__":
    sys.exit(main())
