"""The HTTP(S) front: many clusters on one port, each under /clusters/<name>, plus /_kubesim."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import socket
import ssl
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kubesim.cluster import Drop, SimCluster


def make_tls_files(
    folder: Path,
    addresses: tuple[str, ...] = ("127.0.0.1",),
    dns_names: tuple[str, ...] = ("localhost",),
    common_name: str = "kubesim",
    stem: str = "server",
) -> tuple[bytes, Path, Path]:
    """A throwaway CA and a server certificate for `dns_names` and `addresses`, written as
    folder/<stem>.crt and <stem>.key (the key owner-readable only); returns CA PEM, cert, key.

    The one test PKI: kubesim, slapd, Samba, the real kube-apiserver and the tests' listeners.
    """
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{common_name}-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    *(x509.DNSName(name) for name in dns_names),
                    *(x509.IPAddress(ipaddress.ip_address(a)) for a in addresses),
                ]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / f"{stem}.crt", folder / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return ca.public_bytes(serialization.Encoding.PEM), cert_path, key_path


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512
    sim: KubeSimServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY, as kube-apiserver has it (Go's default): headers and body are written
    # separately, and with Nagle's algorithm the body waited for the client's delayed ACK
    # (up to 40 ms per request on a kept-alive connection).
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        # A header sent more than once (kubectl's Impersonate-Group per group) is one
        # comma-separated value, as HTTP allows.
        headers: dict[str, str] = {}
        for key, value in self.headers.items():
            key = key.lower()
            headers[key] = f"{headers[key]},{value}" if key in headers else value
        sim = self.server.sim
        try:
            if split.path.startswith("/_kubesim"):
                status, payload, extra = sim.control(self.command, split.path, body)
            else:
                parts = split.path.split("/", 3)
                if len(parts) < 3 or parts[1] != "clusters" or parts[2] not in sim.clusters:
                    status, payload, extra = (
                        404,
                        {
                            "kind": "Status",
                            "apiVersion": "v1",
                            "metadata": {},
                            "status": "Failure",
                            "message": "no such cluster",
                            "reason": "NotFound",
                            "code": 404,
                        },
                        {},
                    )
                else:
                    cluster = sim.clusters[parts[2]]
                    answer = cluster.handle(
                        self.command,
                        "/" + (parts[3] if len(parts) > 3 else ""),
                        split.query,
                        headers,
                        body,
                    )
                    status, payload, extra = answer.status, answer.body, answer.headers
        except Drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if isinstance(payload, Iterator):
            self._stream(status, payload, extra)
            return
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        if "Content-Type" not in extra:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, status: int, chunks: Iterator[bytes], extra: dict[str, str]) -> None:
        """A watch: each line as one HTTP/1.1 chunk, sent as it happens."""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        try:
            for chunk in chunks:
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True  # the client went away
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve


class KubeSimServer:
    """Serves any number of clusters on one loopback port (HTTPS with a generated CA, or HTTP)."""

    def __init__(self, tls: bool = True, port: int = 0, host: str = "127.0.0.1"):
        self.tls = tls
        self.host = host
        self.clusters: dict[str, SimCluster] = {}
        self.ca_pem: bytes | None = None
        self._workdir = Path(tempfile.mkdtemp(prefix="kubesim-"))
        self._httpd = _Server((host, port), _Handler)
        self._httpd.sim = self
        if tls:
            self.ca_pem, cert, key = make_tls_files(self._workdir)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self.port = int(self._httpd.server_address[1])
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def start(self) -> KubeSimServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, name="kubesim", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        for cluster in list(self.clusters.values()):
            cluster.closed.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread = None

    def add_cluster(self, name: str, version: str = "1.30") -> SimCluster:
        with self._lock:
            if name in self.clusters:
                raise ValueError(f"cluster {name!r} exists")
            cluster = SimCluster(name=name, version=version)
            cluster.server_url = f"{self.url}/clusters/{name}"
            cluster.ca_cert_pem = self.ca_pem
            self.clusters[name] = cluster
            return cluster

    def remove_cluster(self, name: str) -> None:
        with self._lock:
            cluster = self.clusters.pop(name, None)
        if cluster is not None:
            cluster.closed.set()

    # --- control API for other processes ----------------------------------------------------

    def control(self, method: str, path: str, body: bytes) -> tuple[int, Any, dict[str, str]]:
        parts = [p for p in path.split("/") if p][1:]
        data = json.loads(body or b"{}")
        if parts == ["clusters"] and method == "GET":
            return 200, {"clusters": [self._describe(c) for c in self.clusters.values()]}, {}
        if parts == ["clusters"] and method == "POST":
            names = data.get("names") or [data["name"]]
            made = [
                self.add_cluster(n, data.get("version", "1.30"))
                for n in names
                if n not in self.clusters
            ]
            return 201, {"clusters": [self._describe(c) for c in made]}, {}
        if len(parts) >= 2 and parts[0] == "clusters":
            cluster = self.clusters.get(parts[1])
            if cluster is None:
                return 404, {"error": f"no cluster {parts[1]!r}"}, {}
            tail = parts[2:]
            if not tail and method == "DELETE":
                self.remove_cluster(parts[1])
                return 200, {}, {}
            if tail == ["faults"] and method in ("PUT", "POST"):
                try:
                    cluster.faults.update(data)
                except (ValueError, TypeError) as exc:
                    return 400, {"error": str(exc)}, {}
                return 200, {}, {}
            if tail == ["faults"] and method == "DELETE":
                cluster.faults.clear()
                return 200, {}, {}
            if tail == ["counters"] and method == "GET":
                return (
                    200,
                    {
                        "counters": [
                            {"verb": v, "resource": r, "count": n}
                            for (v, r), n in sorted(cluster.counters.items())
                        ]
                    },
                    {},
                )
            if tail == ["requests"] and method == "GET":
                with cluster.counter_lock:
                    log = list(cluster.request_log)
                    most = cluster.max_in_flight
                return 200, {"max_in_flight": most, "requests": log}, {}
            if tail == ["counters"] and method == "DELETE":
                cluster.reset_counters()
                return 200, {}, {}
            if tail == ["users"] and method == "POST":
                token = cluster.add_user(data["name"], data.get("token"), data.get("groups") or [])
                return 201, {"token": token}, {}
        return 404, {"error": "unknown control path"}, {}

    def _describe(self, cluster: SimCluster) -> dict[str, Any]:
        return {
            "name": cluster.name,
            "server": cluster.server_url,
            "token": cluster.admin_token,
            "ca": (self.ca_pem or b"").decode(),
        }
