"""Dex, the real OpenID Connect provider of Warden's test world, built from its Go module.

`DexServer` starts the cached Dex binary (tests/k8s/build.sh dex) on loopback with TLS from a
throwaway CA, in-memory storage, an LDAP connector pointed at a directory subtree of the test
slapd, and static clients: `warden` (the web UI, confidential) and `warden-cli` (public, for
the kubectl credential plugin).
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from kubesim.server import make_tls_files
from tests.k8s.control_plane import Process, Unavailable, free_port

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE.parent / "k8s" / "build.sh"
MODULE = "github.com/dexidp/dex"
WEB_CLIENT_ID = "warden"
CLI_CLIENT_ID = "warden-cli"


def dex_version() -> str:
    """The pseudo-version of github.com/dexidp/dex that tests/dex/go.mod pins."""
    for line in (HERE / "go.mod").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == MODULE and parts[1].startswith("v"):
            return parts[1]
    raise Unavailable(f"tests/dex/go.mod pins no version of {MODULE}")


def dex_binary(build: bool) -> Path:
    """The cached Dex binary; built first (minutes, once per version) when `build` is set."""
    cache = Path(os.environ.get("WARDEN_BUILD_CACHE") or Path.home() / ".cache" / "warden")
    binary = cache / "bin" / f"dex-{dex_version()}"
    if os.access(binary, os.X_OK):
        return binary
    if not build:
        raise Unavailable(
            f"{binary.name} not built yet: run `bash tests/k8s/build.sh dex` (builds Dex once with "
            "Go from the Go module proxy) or `make test-kubernetes`"
        )
    try:
        done = subprocess.run(
            ["bash", str(BUILD_SCRIPT), "dex"], capture_output=True, text=True, check=False
        )
    except OSError as exc:
        raise Unavailable(f"could not run {BUILD_SCRIPT}: {exc}") from exc
    if done.returncode != 0 or not os.access(binary, os.X_OK):
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise Unavailable(f"`bash {BUILD_SCRIPT} dex` failed ({done.returncode}):\n{tail}")
    return binary


def make_tls(folder: Path) -> Path:
    """A throwaway CA (ca.crt) and Dex's serving certificate (dex.crt, dex.key) for 127.0.0.1
    and localhost, from the tests' one PKI helper."""
    ca_pem, _cert, _key = make_tls_files(folder, common_name="dex", stem="dex")
    ca_path = folder / "ca.crt"
    ca_path.write_bytes(ca_pem)
    return ca_path


@dataclass
class LdapConnector:
    """Where Dex finds people and groups: one subtree of the test slapd (OpenLDAP shape)."""

    host: str  # host:port, plain LDAP on loopback
    bind_dn: str
    bind_password: str
    people_dn: str
    groups_dn: str

    ID = "ldap"
    NAME = "Company directory"
    PEOPLE = "(objectClass=inetOrgPerson)"
    USERNAME = "uid"
    PERSON_ID = "uid"
    GROUPS = "(objectClass=groupOfNames)"

    def transport(self) -> dict[str, object]:
        return {"insecureNoSSL": True}

    def config(self) -> dict[str, object]:
        return {
            "type": "ldap",
            "id": self.ID,
            "name": self.NAME,
            "config": {
                "host": self.host,
                **self.transport(),
                "bindDN": self.bind_dn,
                "bindPW": self.bind_password,
                "usernamePrompt": "Username",
                "userSearch": {
                    "baseDN": self.people_dn,
                    "filter": self.PEOPLE,
                    "username": self.USERNAME,
                    "idAttr": self.PERSON_ID,
                    "emailAttr": "mail",
                    "nameAttr": "displayName",
                    "preferredUsernameAttr": self.USERNAME,
                },
                "groupSearch": {
                    "baseDN": self.groups_dn,
                    "filter": self.GROUPS,
                    "userMatchers": [{"userAttr": "DN", "groupAttr": "member"}],
                    "nameAttr": "cn",
                },
            },
        }


@dataclass
class AdConnector(LdapConnector):
    """Where Dex finds people and groups in Active Directory: LDAPS with the domain's CA, people
    by sAMAccountName (disabled accounts left out), groups by their member DNs."""

    ca_path: str = ""  # the domain's CA; `host` is the domain controller's LDAPS host:port

    ID = "ad"
    NAME = "Active Directory"
    PEOPLE = (
        "(&(objectCategory=person)(objectClass=user)"
        "(!(userAccountControl:1.2.840.113556.1.4.803:=2)))"
    )
    USERNAME = "sAMAccountName"
    PERSON_ID = "DN"
    GROUPS = "(objectClass=group)"

    def transport(self) -> dict[str, object]:
        return {"rootCA": self.ca_path}


@dataclass
class DexServer:
    """One Dex process; `issuer` is its https URL, `ca_path` the CA that signed its certificate."""

    binary: Path
    folder: Path
    connector: LdapConnector
    redirect_uris: list[str]
    web_client_secret: str = "warden-web-secret"
    port: int = 0
    ca_path: Path = Path()
    process: Process | None = None
    extra_clients: list[dict[str, object]] = field(default_factory=list)

    @property
    def issuer(self) -> str:
        return f"https://127.0.0.1:{self.port}/dex"

    def config(self) -> dict[str, object]:
        return {
            "issuer": self.issuer,
            "storage": {"type": "memory"},
            "web": {
                "https": f"127.0.0.1:{self.port}",
                "tlsCert": str(self.folder / "dex.crt"),
                "tlsKey": str(self.folder / "dex.key"),
            },
            "logger": {"level": "info"},
            "oauth2": {"skipApprovalScreen": True, "responseTypes": ["code"]},
            "expiry": {"idTokens": "10m", "refreshTokens": {"validIfNotUsedFor": "1h"}},
            "enablePasswordDB": False,
            "connectors": [self.connector.config()],
            "staticClients": [
                {
                    "id": WEB_CLIENT_ID,
                    "name": "Warden",
                    "secret": self.web_client_secret,
                    "redirectURIs": self.redirect_uris,
                },
                {
                    # A public client: the kubectl credential plugin holds no secret. Without
                    # redirectURIs Dex accepts any loopback redirect (and the device flow).
                    "id": CLI_CLIENT_ID,
                    "name": "Warden CLI",
                    "public": True,
                },
                *self.extra_clients,
            ],
        }

    def start(self, timeout_s: float = 30.0) -> DexServer:
        self.ca_path = make_tls(self.folder)
        self.port = free_port()
        config = self.folder / "dex.json"  # JSON is YAML: Dex reads it as its config
        config.write_text(json.dumps(self.config(), indent=2))
        config.chmod(0o600)
        self.process = Process(
            "dex", [str(self.binary), "serve", str(config)], self.folder / "dex.log"
        ).start()
        deadline = time.monotonic() + timeout_s
        while not self.ready():
            self.process.check_alive()
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"dex not ready after {timeout_s:.0f}s; its log ends:\n"
                    + self.process.log_tail()
                )
            time.sleep(0.1)
        return self

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_path))

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"{self.issuer}/.well-known/openid-configuration",
                context=self.ssl_context(),
                timeout=2,
            ) as answer:
                return bool(answer.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def discovery(self) -> dict[str, object]:
        with urllib.request.urlopen(
            f"{self.issuer}/.well-known/openid-configuration", context=self.ssl_context()
        ) as answer:
            return dict(json.loads(answer.read()))

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
