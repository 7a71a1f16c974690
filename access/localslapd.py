"""A real OpenLDAP server (slapd) on loopback, for the demo, the tests and the benchmarks.

It writes a slapd.conf into a work folder, bulk-loads LDIF offline with slapadd (much faster than
ldapadd for the benchmark's 110,000 entries), starts slapd in the foreground on a free port and
stops it again. Nothing here is used against a production directory.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SLAPD = os.environ.get("WARDEN_SLAPD", "/usr/sbin/slapd")
SLAPADD = os.environ.get("WARDEN_SLAPADD", "/usr/sbin/slapadd")
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")
# The part of Active Directory's schema Warden reads, so AD-shaped entries (user, group,
# sAMAccountName, userAccountControl, memberOf) can be served by a real slapd.
AD_SCHEMA = Path(__file__).resolve().parent / "ldap" / "ad.schema"
BASE_SCHEMAS = ("core", "cosine", "inetorgperson", "nis")


class SlapdError(RuntimeError):
    """slapd could not be configured, loaded or started; the message carries its output."""


def ssha(password: str) -> str:
    """An RFC 2307 {SSHA} userPassword value, as OpenLDAP stores it."""
    salt = secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode() + salt).digest()  # noqa: S324 - the LDAP format
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalSlapd:
    """One slapd process with one mdb database under `suffix`, its files in `workdir`."""

    workdir: Path
    suffix: str = "dc=example,dc=com"
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    ad_schema: bool = True
    # Limits for non-admin binds (None: slapd's default of 500, unlimited for paged searches).
    size_limit: int | None = None
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    # Serve StartTLS on the ldap:// port and LDAPS on a second one, with a generated CA.
    tls: bool = False
    tls_port: int = 0
    ca_pem: bytes = b""

    @property
    def admin_dn(self) -> str:
        return f"cn=admin,{self.suffix}"

    @property
    def uri(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_uri(self) -> str:
        return f"ldaps://127.0.0.1:{self.tls_port}"

    @property
    def ca_path(self) -> Path:
        return self.workdir / "ca.pem"

    @property
    def conf_path(self) -> Path:
        return self.workdir / "slapd.conf"

    def configure(self) -> None:
        """Write slapd.conf and an empty database folder."""
        if not Path(SLAPD).exists():
            raise SlapdError(f"{SLAPD} is not installed: run `make setup` (Debian package slapd)")
        (self.workdir / "db").mkdir(parents=True, exist_ok=True)
        schemas = [SCHEMA_DIR / f"{name}.schema" for name in BASE_SCHEMAS]
        if self.ad_schema:
            schemas.append(AD_SCHEMA)
        includes = "\n".join(f"include {path}" for path in schemas)
        tls_conf = ""
        if self.tls:
            from kubesim.server import make_tls_files

            self.ca_pem, cert, key = make_tls_files(self.workdir / "tls")
            self.ca_path.write_bytes(self.ca_pem)
            tls_conf = (
                f"TLSCACertificateFile {self.ca_path}\nTLSCertificateFile {cert}\n"
                f"TLSCertificateKeyFile {key}\n"
            )
        limit = "unlimited" if self.size_limit is None else str(self.size_limit)
        pr_total = "unlimited" if self.size_limit is None else str(self.size_limit)
        self.conf_path.write_text(
            f"""{includes}
modulepath {MODULE_DIR}
moduleload back_mdb
moduleload ppolicy
pidfile {self.workdir / "slapd.pid"}
argsfile {self.workdir / "slapd.args"}
loglevel none
{tls_conf}
database mdb
maxsize 4294967296
suffix "{self.suffix}"
rootdn "{self.admin_dn}"
rootpw {ssha(self.admin_password)}
directory {self.workdir / "db"}
# Password policy: an entry with pwdAccountLockedTime is locked, as OpenLDAP shops disable people.
overlay ppolicy
ppolicy_default "cn=default,ou=policies,{self.suffix}"
index objectClass eq
index uid,cn,member,uniqueMember,memberUid,sAMAccountName eq
limits users size.soft={limit} size.hard={limit} size.prtotal={pr_total}
access to attrs=userPassword
    by self write
    by anonymous auth
    by * none
access to *
    by users read
    by * none
""",
            encoding="utf-8",
        )

    def load(self, ldif: str | Path) -> None:
        """Bulk-load LDIF (text or a file) offline; only before start()."""
        if self.process is not None:
            raise SlapdError("load() is offline (slapadd); call it before start()")
        path = Path(ldif) if isinstance(ldif, Path) else None
        if path is None:
            path = self.workdir / f"load-{secrets.token_hex(4)}.ldif"
            path.write_text(str(ldif), encoding="utf-8")
        result = subprocess.run(  # noqa: S603 - fixed program, our own files
            [SLAPADD, "-q", "-f", str(self.conf_path), "-l", str(path)],
            capture_output=True,
            check=False,
        )
        if result.returncode != 0:
            raise SlapdError(f"slapadd failed: {result.stderr.decode(errors='replace')[-2000:]}")

    def start(self, timeout: float = 15.0, preexec_fn: Callable[[], None] | None = None) -> str:
        """Start slapd on a free loopback port; returns its URI once it answers.

        preexec_fn runs in the child before slapd (the demo's die-with-parent).
        """
        self.port = self.port or free_port()
        urls = self.uri
        if self.tls:
            self.tls_port = self.tls_port or free_port()
            urls += " " + self.ldaps_uri
        self.process = subprocess.Popen(  # noqa: S603 - fixed program, our own files
            [SLAPD, "-d", "0", "-h", urls, "-f", str(self.conf_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=preexec_fn,  # only the single-threaded demo passes one
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = (
                    self.process.stderr.read().decode(errors="replace")
                    if self.process.stderr
                    else ""
                )
                code, self.process = self.process.returncode, None
                why = err.strip()[-2000:] or (
                    f"no message (exit code {code}); is another slapd starting or stopping in "
                    f"{self.workdir}, such as a demo still shutting down?"
                )
                raise SlapdError(f"slapd exited at start: {why}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self.uri
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise SlapdError(f"slapd did not listen on {self.uri} within {timeout:.0f}s")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stderr:
            self.process.stderr.close()
        self.process = None

    def restart(self) -> None:
        """Stop and start again on the same port (the directory 'comes back')."""
        self.stop()
        self.start()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def base_ldif(suffix: str, service_dn: str, service_password: str) -> str:
    """The root entry, the usual OUs and a read-only service account for Warden to bind as."""
    dc = suffix.split(",")[0].split("=", 1)[1]
    service_cn = service_dn.split(",")[0].split("=", 1)[1]
    return f"""dn: {suffix}
objectClass: top
objectClass: dcObject
objectClass: organization
o: {dc}
dc: {dc}

dn: ou=people,{suffix}
objectClass: organizationalUnit
ou: people

dn: ou=groups,{suffix}
objectClass: organizationalUnit
ou: groups

dn: ou=services,{suffix}
objectClass: organizationalUnit
ou: services

dn: ou=policies,{suffix}
objectClass: organizationalUnit
ou: policies

dn: cn=default,ou=policies,{suffix}
objectClass: applicationProcess
objectClass: pwdPolicy
cn: default
pwdAttribute: userPassword
pwdLockout: TRUE

dn: {service_dn}
objectClass: applicationProcess
objectClass: simpleSecurityObject
cn: {service_cn}
userPassword: {ssha(service_password)}
"""
