"""A real Active Directory domain controller (Samba, server role dc) on a loopback address, for the
tests and the benchmark.

It provisions a throw-away domain with `samba-tool domain provision` in a work folder, bulk-loads
LDIF offline with `ldbadd` (through Samba's own module stack, so objectGUID, objectSid, member /
memberOf links and password hashes are made as the DC makes them), and starts `samba` in the
foreground with only its LDAP server, bound to one loopback address (127.0.0.N, so several DCs
can run side by side on AD's fixed ports), with a certificate from a throw-away CA for LDAPS and
StartTLS. Nothing here is used against a production directory. Needs root and Debian's samba,
samba-ad-dc, samba-ad-provision and ldb-tools packages.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SAMBA = os.environ.get("WARDEN_SAMBA", "/usr/sbin/samba")
SAMBA_TOOL = os.environ.get("WARDEN_SAMBA_TOOL", "/usr/bin/samba-tool")
LDBADD = os.environ.get("WARDEN_LDBADD", "/usr/bin/ldbadd")
PROGRAMS = (SAMBA, SAMBA_TOOL, LDBADD)
DEBIAN_PACKAGES = "samba samba-ad-dc samba-ad-provision ldb-tools"
# Bump when provision() changes what it makes, so saved templates are made again.
TEMPLATE_VERSION = 3


class SambaError(RuntimeError):
    """The domain could not be provisioned, loaded or started; the message carries the output."""


def missing_programs() -> list[str]:
    """The programs a local DC needs that are not installed (empty when it can run)."""
    return [program for program in PROGRAMS if not Path(program).exists()]


def free_loopback_address(first: int = 20, last: int = 99) -> str:
    """The first 127.0.0.N whose LDAP port is free: AD's ports are fixed, so each DC (a test
    session's, the benchmark's, another worktree's) takes an address of its own."""
    for n in range(first, last + 1):
        address = f"127.0.0.{n}"
        with socket.socket() as sock:
            try:
                sock.bind((address, 389))
            except OSError:
                continue
            return address
    raise SambaError(f"no free loopback address in 127.0.0.{first}-{last} for a DC's ports")


def unicode_pwd(password: str) -> str:
    """AD's unicodePwd value for LDIF (base64 of the quoted password in UTF-16-LE)."""
    return base64.b64encode(f'"{password}"'.encode("utf-16-le")).decode()


@dataclass
class LocalSambaDC:
    """One Samba AD DC for the domain `realm`, its files in `workdir`, listening on `address`."""

    workdir: Path
    address: str = "127.0.0.1"
    realm: str = "WARDEN.TEST"
    domain: str = "WARDEN"
    admin_password: str = field(default_factory=lambda: "Adm-" + secrets.token_urlsafe(12) + "9!")
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_dn(self) -> str:
        return ",".join(f"DC={part}" for part in self.realm.lower().split("."))

    @property
    def admin_dn(self) -> str:
        return f"CN=Administrator,CN=Users,{self.base_dn}"

    @property
    def uri(self) -> str:
        return f"ldap://{self.address}"

    @property
    def ldaps_uri(self) -> str:
        return f"ldaps://{self.address}"

    @property
    def ca_path(self) -> Path:
        return self.workdir / "tls" / "ca.pem"

    @property
    def conf_path(self) -> Path:
        return self.workdir / "etc" / "smb.conf"

    @property
    def sam_path(self) -> Path:
        return self.workdir / "private" / "sam.ldb"

    def provision(self) -> None:
        """A new domain in workdir, with a certificate for `address` signed by a new CA."""
        if missing := missing_programs():
            raise SambaError(
                f"{', '.join(missing)} not installed: apt-get install {DEBIAN_PACKAGES}"
            )
        cert, key = self.write_certificate()
        options = {
            # An address with a mask: Samba binds it even though no interface carries it.
            "interfaces": f"{self.address}/8",
            "bind interfaces only": "yes",
            # Only the LDAP server: no SMB, RPC, NetBIOS, DNS or Kerberos ports, no winbindd.
            "server services": "ldap",
            "log file": str(self.workdir / "log.%m"),
            "pid directory": str(self.workdir),
            "tls enabled": "yes",
            "tls keyfile": str(key),
            "tls certfile": str(cert),
            "tls cafile": str(self.ca_path),
        }
        command = [
            SAMBA_TOOL,
            "domain",
            "provision",
            f"--targetdir={self.workdir}",
            f"--realm={self.realm}",
            f"--domain={self.domain}",
            "--server-role=dc",
            "--dns-backend=NONE",
            "--backend-store=mdb",
            "--host-name=dc1",
            f"--adminpass={self.admin_password}",
            *(f"--option={name}={value}" for name, value in options.items()),
        ]
        result = subprocess.run(command, capture_output=True, check=False)  # noqa: S603
        if result.returncode != 0:
            output = result.stderr.decode(errors="replace")
            raise SambaError(f"samba-tool domain provision failed: {output[-2000:]}")
        # Not written by provision: a changed password replaces the old one at once (Samba's
        # default lets even LDAP simple binds use the old one for 60 more minutes).
        conf = self.conf_path.read_text(encoding="utf-8")
        conf = conf.replace("[global]\n", "[global]\n\told password allowed period = 0\n", 1)
        self.conf_path.write_text(conf, encoding="utf-8")

    def save_template(self, template: Path) -> None:
        """Keep this provisioned and loaded domain (stopped) for from_template(); atomic, so
        a concurrent run sees the whole template or none."""
        if self.process is not None:
            raise SambaError("save_template() copies a stopped domain; call it before start()")
        partial = template.with_name(f"{template.name}.{secrets.token_hex(4)}.partial")
        shutil.copytree(self.workdir, partial, symlinks=True)
        (partial / "admin-password").write_text(self.admin_password, encoding="utf-8")
        conf = partial / "etc" / "smb.conf"
        conf.write_text(
            conf.read_text(encoding="utf-8").replace(str(self.workdir), str(template)),
            encoding="utf-8",
        )
        try:
            partial.rename(template)
        except OSError:  # another run saved it first
            shutil.rmtree(partial, ignore_errors=True)

    @classmethod
    def from_template(cls, template: Path, workdir: Path, address: str) -> LocalSambaDC:
        """A copy of a saved domain in workdir, listening on `address` with a new certificate."""
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.copytree(template, workdir, symlinks=True)
        server = cls(
            workdir,
            address=address,
            admin_password=(workdir / "admin-password").read_text(encoding="utf-8"),
        )
        old = server.conf_path.read_text(encoding="utf-8")
        conf = []
        for line in old.replace(str(template), str(workdir)).splitlines():
            if line.strip().startswith("interfaces ="):
                line = f"\tinterfaces = {address}/8"
            conf.append(line)
        server.conf_path.write_text("\n".join(conf) + "\n", encoding="utf-8")
        server.write_certificate()
        return server

    def write_certificate(self) -> tuple[Path, Path]:
        """A new CA and a certificate for `address` in workdir/tls; returns (cert, key)."""
        from kubesim.server import make_tls_files

        ca_pem, cert, key = make_tls_files(self.workdir / "tls", addresses=(self.address,))
        self.ca_path.write_bytes(ca_pem)
        return cert, key

    def load(self, ldif: str) -> None:
        """Bulk-add LDIF entries offline (before start), in one ldbadd run."""
        if self.process is not None:
            raise SambaError("load() is offline (ldbadd on sam.ldb); call it before start()")
        path = self.workdir / f"load-{secrets.token_hex(4)}.ldif"
        path.write_text(ldif, encoding="utf-8")
        result = subprocess.run(  # noqa: S603 - fixed program, our own files
            [LDBADD, "--nosync", "-H", str(self.sam_path), str(path)],
            capture_output=True,
            check=False,
        )
        path.unlink()
        if result.returncode != 0:
            output = (result.stdout + result.stderr).decode(errors="replace")
            raise SambaError(f"ldbadd failed: {output[-2000:]}")

    def start(self, timeout: float = 60.0) -> str:
        """Start samba; returns the LDAPS URI once the LDAP server accepts connections."""
        log = (self.workdir / "samba.out").open("wb")
        self.process = subprocess.Popen(  # noqa: S603 - fixed program, our own files
            [SAMBA, "-i", "-M", "single", "-s", str(self.conf_path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                output = (self.workdir / "samba.out").read_text(errors="replace")
                raise SambaError(f"samba exited at start: {output[-2000:]}")
            try:
                with socket.create_connection((self.address, 636), timeout=0.5):
                    pass
            except OSError:
                time.sleep(0.2)
                continue
            # The port answers: make sure it is this samba, not one that held the address.
            time.sleep(0.5)
            if self.process.poll() is None:
                return self.ldaps_uri
        self.stop()
        raise SambaError(f"samba did not listen on {self.ldaps_uri} within {timeout:.0f}s")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
