"""`warden token`: kubectl's credential plugin, signing the person in at the OIDC provider.

kubectl runs it (a kubeconfig user's `exec`) and reads an ExecCredential holding the person's
ID token. The token is cached (0600) per issuer and client, refreshed with its refresh token
when it is about to expire, and when there is neither the person signs in with the device
code flow (a URL and code printed on stderr, to open in any browser). A refresh the provider
refuses (the person left, or was disabled, in the directory) clears the cache and fails.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

EXPIRY_MARGIN_S = 60
EXEC_API_VERSION = "client.authentication.k8s.io/v1"


class SignInError(Exception):
    """The person could not be signed in; the message says what to do."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "warden" / "oidc"


def cache_file(issuer: str, client_id: str) -> Path:
    key = hashlib.sha256(f"{issuer}\n{client_id}".encode()).hexdigest()[:32]
    return cache_dir() / f"{key}.json"


def claims_of(id_token: str) -> dict[str, Any]:
    """The ID token's payload, unverified: only its expiry is read here (the API server
    verifies the signature)."""
    try:
        payload = id_token.split(".")[1]
        return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))
    except (IndexError, ValueError) as exc:
        raise SignInError("the cached ID token is malformed") from exc


class Provider:
    """An OIDC provider, read from its discovery document, for one public client."""

    def __init__(self, issuer: str, client_id: str, ca_file: str | None, scopes: str) -> None:
        self.issuer, self.client_id, self.scopes = issuer.rstrip("/"), client_id, scopes
        self.context = ssl.create_default_context(cafile=ca_file) if ca_file else None
        self._discovery: dict[str, Any] | None = None

    def _call(self, url: str, form: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        request = urllib.request.Request(url, data=data)  # noqa: S310 - the configured issuer
        request.add_header("Accept", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30, context=self.context) as answer:  # noqa: S310
                return answer.status, dict(json.loads(answer.read() or b"{}"))
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, dict(json.loads(exc.read() or b"{}"))
            except ValueError:
                return exc.code, {}
        except (urllib.error.URLError, OSError) as exc:
            raise SignInError(
                f"the identity provider {self.issuer} does not answer: {exc}"
            ) from None

    def discovery(self) -> dict[str, Any]:
        if self._discovery is None:
            status, found = self._call(f"{self.issuer}/.well-known/openid-configuration")
            if status != 200 or found.get("issuer") != self.issuer:
                raise SignInError(f"{self.issuer} publishes no matching discovery document")
            self._discovery = found
        return self._discovery

    def refresh(self, refresh_token: str) -> dict[str, Any] | None:
        status, answer = self._call(
            self.discovery()["token_endpoint"],
            {
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "client_id": self.client_id,
            },
        )
        return answer if status == 200 and answer.get("id_token") else None

    def device_sign_in(self, tell: Any, timeout_s: float = 600) -> dict[str, Any]:
        endpoint = self.discovery().get("device_authorization_endpoint")
        if not endpoint:
            raise SignInError(f"{self.issuer} offers no device code sign-in")
        status, grant = self._call(endpoint, {"client_id": self.client_id, "scope": self.scopes})
        if status != 200:
            raise SignInError(f"the identity provider refused to start a sign-in ({status})")
        where = grant.get("verification_uri_complete") or grant["verification_uri"]
        tell.write(f"To sign in, open {where}\n  and enter the code {grant['user_code']}\n")
        tell.flush()
        interval = float(grant.get("interval") or 5)
        deadline = time.monotonic() + min(timeout_s, float(grant.get("expires_in") or timeout_s))
        while time.monotonic() < deadline:
            time.sleep(interval)
            status, answer = self._call(
                self.discovery()["token_endpoint"],
                {
                    "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                    "device_code": grant["device_code"],
                    "client_id": self.client_id,
                },
            )
            if status == 200 and answer.get("id_token"):
                return answer
            error = answer.get("error")
            if error == "slow_down":
                interval += 5
            elif error != "authorization_pending":
                raise SignInError(f"sign-in did not complete: {error or status}")
        raise SignInError("sign-in timed out; run the command again")


def load(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def save(path: Path, tokens: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({k: tokens[k] for k in ("id_token", "refresh_token") if tokens.get(k)}, handle)
    os.replace(tmp, path)


def id_token(provider: Provider, *, interactive: bool = True, tell: Any = None) -> str:
    """A valid ID token: cached, refreshed, or (if `interactive`) signed in anew."""
    tell = tell or sys.stderr
    path = cache_file(provider.issuer, provider.client_id)
    cached = load(path)
    token = cached.get("id_token", "")
    if token and float(claims_of(token).get("exp", 0)) > time.time() + EXPIRY_MARGIN_S:
        return str(token)
    if cached.get("refresh_token"):
        fresh = provider.refresh(cached["refresh_token"])
        if fresh is not None:
            fresh.setdefault("refresh_token", cached["refresh_token"])
            save(path, fresh)
            return str(fresh["id_token"])
        path.unlink(missing_ok=True)
        if not interactive:
            raise SignInError(
                "the identity provider refused to renew your sign-in (you may have left, or "
                "been disabled in, the company directory); run `warden token` to sign in again"
            )
    if not interactive:
        raise SignInError("not signed in; run `warden token` to sign in")
    tokens = provider.device_sign_in(tell)
    save(path, tokens)
    return str(tokens["id_token"])


def exec_credential(token: str) -> dict[str, Any]:
    """What kubectl reads from a credential plugin."""
    expires = datetime.fromtimestamp(float(claims_of(token).get("exp", 0)), tz=UTC)
    return {
        "apiVersion": EXEC_API_VERSION,
        "kind": "ExecCredential",
        "status": {"token": token, "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ")},
    }
