"""Login throttling: failed logins counted per username and per client address, separately.

The counts live in the shared cache (the database by default, Redis when CACHE_URL names it), so
every web process sees the same figures: spreading guesses over workers or replicas gains
nothing. The client address is REMOTE_ADDR, unless that is a proxy named in
WARDEN_TRUSTED_PROXIES: then the nearest X-Forwarded-For entry that is not itself a trusted proxy.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_address(request: HttpRequest) -> str:
    """The address of whoever is logging in, trusting only the proxies settings name."""
    peer = str(request.META.get("REMOTE_ADDR", ""))
    proxies = _networks(settings.WARDEN_TRUSTED_PROXIES)
    if not proxies or not _within(peer, proxies):
        return peer
    forwarded = str(request.META.get("HTTP_X_FORWARDED_FOR", ""))
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    # Each proxy appends the address it saw: read from the right, past our own proxies.
    for hop in reversed(hops):
        if not _within(hop, proxies):
            return hop if _is_address(hop) else peer
    return hops[0] if hops else peer


def is_locked(username: str, address: str) -> bool:
    """Whether this username, or this address, has failed too often lately."""
    return (username != "" and _count(_username_key(username)) >= _per_username()) or (
        address != "" and _count(_address_key(address)) >= _per_address()
    )


def record_failure(username: str, address: str) -> None:
    if username:
        _increment(_username_key(username))
    if address:
        _increment(_address_key(address))


def record_success(username: str) -> None:
    """A right password clears the username's count (never the address's: a sprayer's own
    account must not reset it)."""
    cache.delete(_username_key(username))


def _per_username() -> int:
    return int(settings.WARDEN_LOGIN_FAILURES_PER_USERNAME)


def _per_address() -> int:
    return int(settings.WARDEN_LOGIN_FAILURES_PER_ADDRESS)


def _username_key(username: str) -> str:
    digest = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
    return f"login-failures:user:{digest}"


def _address_key(address: str) -> str:
    return f"login-failures:addr:{hashlib.sha256(address.encode()).hexdigest()[:32]}"


def _count(key: str) -> int:
    return int(cache.get(key) or 0)


def _increment(key: str) -> None:
    seconds = int(settings.WARDEN_LOGIN_LOCKOUT_SECONDS)
    cache.add(key, 0, seconds)
    try:
        cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, seconds)


def _networks(entries: Iterable[str]) -> list[IPNetwork]:
    return [ipaddress.ip_network(entry.strip(), strict=False) for entry in entries if entry.strip()]


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _within(text: str, networks: list[IPNetwork]) -> bool:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    return any(address in network for network in networks)
