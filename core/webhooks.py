"""The one door to webhook receivers: signed HTTPS POSTs of JSON, for every webhook Warden sends
(service-account tokens to external secret stores, request events to chat).

The body is signed with HMAC-SHA256 over "<timestamp>.<body>" with a key shared with the
receiver, sent as `X-Warden-Signature: t=<timestamp>,v1=<hex>`; a receiver recomputes it, and
refuses old timestamps to stop replays (a webhook configured without a key goes unsigned).
HTTPS only, redirects are not followed (a POST must go where it was configured to go),
link-local and metadata addresses are refused (core/outbound.py), every call has a timeout, and
error messages never include the body or the reason phrase.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ssl
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping

from core import outbound

SIGNATURE_HEADER = "X-Warden-Signature"
DELIVERY_HEADER = "X-Warden-Delivery"
TIMEOUT_S = 10.0


class WebhookError(Exception):
    """The receiver did not take the delivery; the message says why, without the payload."""


def signature(key: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(key.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(key: str, header: str, body: bytes, max_age_s: float = 300) -> bool:
    """What a receiver does; Warden's tests use it as the receiver would."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs(time.time() - timestamp) > max_age_s:
        return False
    return hmac.compare_digest(signature(key, timestamp, body), header)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        raise WebhookError(f"the receiver answered {code} (a redirect); Warden does not follow it")


def post_signed(
    url: str,
    body: bytes,
    key: str,
    ca_pem: str = "",
    headers: Mapping[str, str] | None = None,
    timeout_s: float = TIMEOUT_S,
) -> int:
    """POST the body, signed with `key` when there is one; the 2xx status, or WebhookError."""
    problem = outbound.refusal(url, what="the webhook URL", http_ok=False)
    if problem:
        raise WebhookError(problem)
    context = ssl.create_default_context(cadata=ca_pem or None)
    request = urllib.request.Request(url, data=body, method="POST")  # noqa: S310 - https only
    request.add_header("Content-Type", "application/json")
    request.add_header("User-Agent", "Warden")
    if key:
        request.add_header(SIGNATURE_HEADER, signature(key, int(time.time()), body))
    request.add_header(DELIVERY_HEADER, uuid.uuid4().hex)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=context), _NoRedirect()
    )
    try:
        with opener.open(request, timeout=timeout_s) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        # The code only: the reason phrase and the body are the receiver's to choose.
        raise WebhookError(f"the receiver answered {exc.code}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        raise WebhookError(f"the receiver at {url} is unreachable: {reason}") from None
    if not 200 <= status < 300:
        raise WebhookError(f"the receiver answered {status}")
    return status
