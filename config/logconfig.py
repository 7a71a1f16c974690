"""Warden's logging: plain or JSON lines, each with its request/task id, and never a secret.

`logging_config()` builds the dictConfig that settings.LOGGING, gunicorn (config/gunicorn.py)
and Celery (config/celery.py) all use, so every process of a deployment logs the same way.

No secret reaches a log line. `ScrubSecrets`, a filter on every handler, rewrites each record
before it is formatted: its message (with the arguments merged in), its exception and stack
text and its extra fields. It blanks out
- every secret value Warden knows: those in the settings (SECRET_KEY, the encryption keys, the
  directory bind password, database/broker/mail passwords, the webhook and metrics secrets) and
  those met at run time — cluster and discovery tokens as an Endpoint is built, values
  decrypted from the database, tokens the API server issues (`remember()`);
- what looks like a secret whatever its value: `Authorization`/`Bearer` credentials, JSON Web
  Tokens (service-account tokens are JWTs), Fernet ciphertexts, PEM private keys, passwords in
  URLs, and values under secret-looking keys (`token: …`, `"password": "…"`, kubeconfig
  `client-key-data`), the same key names the audit trail redacts.
The formatters scrub their finished line once more, so a handler configured without the filter
still leaks nothing.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from pythonjsonlogger.json import JsonFormatter

REDACTED = "[redacted]"
# Shorter values are too likely to be ordinary words to be blanked out everywhere.
MIN_SECRET_LENGTH = 8
# Secrets met at run time that are remembered (the oldest are forgotten past this many).
MAX_REMEMBERED = 20_000

# The key names whose values are secret, as access.audit.redact matches them.
SECRET_KEY_NAMES = r"token|password|passwd|secret|private|credential|kubeconfig|client-key-data"  # noqa: S105
_SECRET_KEY = re.compile(SECRET_KEY_NAMES, re.I)
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # PEM private keys, whole.
    (
        re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
        REDACTED,
    ),
    # Authorization headers and bearer credentials.
    (re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)[^'\"\r\n,}]+"), r"\1" + REDACTED),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}"), r"\1 " + REDACTED),
    # JSON Web Tokens (Kubernetes service-account tokens) and Fernet ciphertexts.
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), REDACTED),
    (re.compile(r"\bgAAAAA[A-Za-z0-9_-]{20,}={0,2}"), REDACTED),
    # Passwords in URLs: scheme://user:password@host.
    (
        re.compile(r"(?<![a-z0-9+.-])([a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s/]+@", re.I),
        r"\1" + REDACTED + "@",
    ),
]
# key: value, key=value, "key": "value": every such pair is found in one linear pass, and its
# value blanked out when the key looks secret (a pattern with the key names inside a word
# would be tried at every character of a line, in quadratic time).
_KEY_VALUE = re.compile(
    r"(?<![\w.-])([\"']?([\w.-]+)[\"']?\s*[:=]\s*)(?:\"[^\"]*\"|'[^']*'|[^\s,;}&)\]]+)"
)


def _redact_pairs(text: str) -> str:
    """Blank out the value of every pair whose key looks secret; the value of any other pair
    is searched too (url=https://host/?token=…, user:\n  token: …)."""
    out, pos = [], 0
    while match := _KEY_VALUE.search(text, pos):
        out.append(text[pos : match.end(1)])
        if _SECRET_KEY.search(match[2]):
            out.append(REDACTED)
            pos = match.end()
        else:
            pos = match.end(1)
    out.append(text[pos:])
    return "".join(out)


_remembered: OrderedDict[str, None] = OrderedDict()
_remembered_lock = threading.Lock()
_version = 0  # bumped whenever a secret is remembered
_known: tuple[tuple[int, tuple[str, ...]], tuple[str, ...], dict[str, tuple[str, ...]]] = (
    (-1, ()),
    (),
    {},
)
# Up to this many known secrets, each is searched for in a line; past it, the prefix index.
LINEAR_SCAN_MAX = 64


def remember(*values: str | None) -> None:
    """Blank these values out of every log line of this process from now on.

    Called where a secret enters the process: a cluster's token as its Endpoint is built, a
    value decrypted from the database, a token the API server issued.
    """
    global _version
    with _remembered_lock:
        for value in values:
            if isinstance(value, str) and len(value) >= MIN_SECRET_LENGTH:
                if value not in _remembered:
                    _version += 1
                _remembered[value] = None
                _remembered.move_to_end(value)
        while len(_remembered) > MAX_REMEMBERED:
            _remembered.popitem(last=False)


def _settings_secrets() -> list[str]:
    """The secret values of the settings, once Django's settings are loaded."""
    try:
        from django.conf import settings

        if not settings.configured:
            return []
        found = [
            getattr(settings, "SECRET_KEY", ""),
            getattr(settings, "WARDEN_WEBHOOK_SECRET", ""),
            getattr(settings, "METRICS_TOKEN", ""),
            getattr(settings, "EMAIL_HOST_PASSWORD", ""),
            *getattr(settings, "WARDEN_ENCRYPTION_KEYS", []),
            str((getattr(settings, "WARDEN_DIRECTORY", {}) or {}).get("BIND_PASSWORD") or ""),
        ]
        for database in getattr(settings, "DATABASES", {}).values():
            found.append(str(database.get("PASSWORD") or ""))
        found.append(_url_password(str(getattr(settings, "CELERY_BROKER_URL", ""))))
        return [s for s in found if isinstance(s, str) and len(s) >= MIN_SECRET_LENGTH]
    except Exception:  # logging must never fail because settings are half-loaded
        return []


def _url_password(url: str) -> str:
    try:
        return unquote(urlsplit(url).password or "")
    except ValueError:
        return ""


def _known_values() -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
    """Every secret value to blank out, longest first (a secret may contain a shorter one),
    and the same indexed by their first MIN_SECRET_LENGTH characters."""
    global _known
    from_settings = tuple(_settings_secrets())
    key = (_version, from_settings)
    if _known[0] != key:
        with _remembered_lock:
            values = tuple(sorted({*_remembered, *from_settings}, key=len, reverse=True))
        by_prefix: dict[str, list[str]] = {}
        for value in values:
            by_prefix.setdefault(value[:MIN_SECRET_LENGTH], []).append(value)
        _known = (key, values, {k: tuple(v) for k, v in by_prefix.items()})
    return _known[1], _known[2]


def scrub(text: str) -> str:
    """`text` with every secret it holds replaced by [redacted]."""
    if not text:
        return text
    values, by_prefix = _known_values()
    if len(values) <= LINEAR_SCAN_MAX:
        found: Iterable[str] = [value for value in values if value in text]
    else:
        # Thousands of remembered tokens: look up each place of the text by its first
        # characters instead of searching the text once per secret.
        hits: set[str] = set()
        for i in range(len(text) - MIN_SECRET_LENGTH + 1):
            for value in by_prefix.get(text[i : i + MIN_SECRET_LENGTH], ()):
                if text.startswith(value, i):
                    hits.add(value)
        found = sorted(hits, key=len, reverse=True)
    for value in found:  # longest first: a secret may contain a shorter one
        text = text.replace(value, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return _redact_pairs(text)


def scrub_value(value: Any) -> Any:
    """A structure (extra= fields) with secret keys redacted and every string scrubbed."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, Mapping):
        return {
            str(k): (
                REDACTED if _SECRET_KEY.search(str(k)) and v not in (None, "") else scrub_value(v)
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [scrub_value(v) for v in value]
    return value


# The attributes every LogRecord has; anything else came in through `extra=`.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "request_id",
}


class ScrubSecrets(logging.Filter):
    """Rewrite a record so that no secret is left in it (see the module's docstring)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_warden_scrubbed", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep what there is, scrubbed
            message = f"{record.msg} {record.args!r}"
        record.msg, record.args = scrub(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
            # Formatters would print the exception afresh from exc_info, unscrubbed.
            record.exc_info = None
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        for key, value in list(record.__dict__.items()):
            if key in _STANDARD or key.startswith("_"):
                continue
            if _SECRET_KEY.search(key) and value not in (None, ""):
                setattr(record, key, REDACTED)
            else:
                setattr(record, key, scrub_value(value) if _is_data(value) else value)
        record._warden_scrubbed = True
        return True


def _is_data(value: Any) -> bool:
    return isinstance(value, str | Mapping | list | tuple | set | frozenset)


class RequestId(logging.Filter):
    """Put the id of the web request or Celery task being served on the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", ""):
            # access.audit holds the context variable; it is only read once something (the
            # middleware, a task) has imported it, so logging never imports Django models.
            audit = sys.modules.get("access.audit")
            record.request_id = audit.current_request_id.get() if audit is not None else ""
        return True


class PlainFormatter(logging.Formatter):
    """One human-readable line: time, level, logger, [request id], message."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


class JsonLineFormatter(JsonFormatter):
    """One JSON object per line: time, level, logger, message, request_id and extra fields."""

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return {key: scrub_value(value) for key, value in log_data.items()}


JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s"
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
FORMATS = ("plain", "json")


def logging_config(
    level: str = "INFO",
    fmt: str = "plain",
    extra_loggers: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The dictConfig of every Warden process: one stderr handler, both filters, `fmt` lines."""
    if fmt not in FORMATS:
        raise ValueError(f"LOG_FORMAT={fmt!r}: use one of {', '.join(FORMATS)}")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "request_id": {"()": "config.logconfig.RequestId"},
            "scrub_secrets": {"()": "config.logconfig.ScrubSecrets"},
        },
        "formatters": {
            "plain": {"()": "config.logconfig.PlainFormatter", "format": PLAIN_FORMAT},
            "json": {
                "()": "config.logconfig.JsonLineFormatter",
                "fmt": JSON_FIELDS,
                "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            },
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": fmt,
                "filters": ["request_id", "scrub_secrets"],
            },
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # Gunicorn's own loggers go through the same handler (config/gunicorn.py).
            "gunicorn.error": {"handlers": [], "propagate": True},
            "gunicorn.access": {"handlers": [], "propagate": True},
            **{name: dict(conf) for name, conf in (extra_loggers or {}).items()},
        },
    }
