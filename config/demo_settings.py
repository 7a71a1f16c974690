"""Settings of `make run`'s demo: production's settings, with the secrets made for it.

The demo runs as production does (DEBUG off: Warden's own error pages, never Django's debug page
listing every URL), so it needs what production needs. A laptop has no secret store, so the
secret key, the encryption key, the audit key and the metrics token are made at the first run
and kept in var/ (readable by their owner only); variables set in the environment still win.
config.settings itself is unchanged: without these files or variables it still refuses to start
with DEBUG off.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

from cryptography.fernet import Fernet

_VAR = Path(
    os.environ.get("WARDEN_VAR_DIR") or Path(__file__).resolve().parent.parent / "var"
).resolve()


def _kept(name: str, make: Callable[[], str]) -> str:
    """The path of var/<name>, written once with make() and kept for the next runs."""
    path = _VAR / name
    if not path.exists():
        _VAR.mkdir(parents=True, exist_ok=True)
        # Written whole under another name, then linked: a process starting at the same moment
        # sees no file or the whole one, and the first link wins.
        tmp = path.with_name(f".{name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(make())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return str(path)


os.environ["WARDEN_VAR_DIR"] = str(_VAR)  # the worker, beat and web server share one var/
if not os.environ.get("SECRET_KEY"):
    os.environ.setdefault(
        "SECRET_KEY_FILE", _kept("demo-secret-key", lambda: secrets.token_urlsafe(50))
    )
if not os.environ.get("WARDEN_ENCRYPTION_KEYS"):
    os.environ.setdefault(
        "WARDEN_ENCRYPTION_KEYS_FILE",
        _kept("demo-encryption-key", lambda: Fernet.generate_key().decode()),
    )
if not os.environ.get("WARDEN_AUDIT_KEYS"):
    os.environ.setdefault(
        "WARDEN_AUDIT_KEYS_FILE", _kept("demo-audit-key", lambda: secrets.token_urlsafe(32))
    )
if not os.environ.get("METRICS_TOKEN"):
    os.environ.setdefault(
        "METRICS_TOKEN_FILE", _kept("demo-metrics-token", lambda: secrets.token_urlsafe(32))
    )
# The demo is served over plain http on loopback: cookies marked Secure would never come back.
os.environ.setdefault("SESSION_COOKIE_SECURE", "0")
os.environ.setdefault("CSRF_COOKIE_SECURE", "0")

from config.settings import *  # noqa: E402, F403
