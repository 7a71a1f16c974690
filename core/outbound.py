"""Where Warden may send credentials: the checks on every URL it connects to with a secret.

Cluster API servers, discovery sources' management clusters and webhook receivers get a token
or a signed token with every request, so their URLs must be https:// (http:// API URLs only for
local testing, WARDEN_ALLOW_HTTP_API_URLS, refused when DEBUG is off), and must not reach
link-local or cloud-metadata addresses (169.254.0.0/16, fe80::/10, AWS's fd00:ec2::254,
metadata.google.internal, ...), where a request made by Warden's pod could read the node's
cloud credentials (SSRF). WARDEN_BLOCKED_NETWORKS lists the refused ranges and
WARDEN_ALLOWED_NETWORKS the exceptions. The name is resolved and every address it has is
checked, so a DNS name (or a decimal or IPv4-mapped spelling) for such an address is refused too.

The services check when a URL is saved (a ValidationError saying what to fix) and the doors
(clusters/k8s.py, core/webhooks.py) check again when they connect.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_BLOCKED_NETWORKS = (
    "169.254.0.0/16",  # IPv4 link-local: AWS, GCP, Azure, OpenStack metadata at 169.254.169.254
    "fe80::/10",  # IPv6 link-local
    "fd00:ec2::254/128",  # AWS metadata over IPv6 (Nitro)
    "100.100.100.200/32",  # Alibaba Cloud metadata
)
# Names that are the metadata service wherever they resolve (or before they resolve at all).
BLOCKED_HOSTNAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
    }
)


def parse_networks(values: list[str] | tuple[str, ...], name: str) -> tuple[IPNetwork, ...]:
    """CIDR ranges from a setting; ValueError naming the setting and the bad value."""
    out = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"{name}: {value!r} is not an address range ({exc})") from exc
    return tuple(out)


@functools.cache
def _networks(
    blocked: tuple[str, ...], allowed: tuple[str, ...]
) -> tuple[tuple[IPNetwork, ...], ...]:
    return (
        parse_networks(blocked, "WARDEN_BLOCKED_NETWORKS"),
        parse_networks(allowed, "WARDEN_ALLOWED_NETWORKS"),
    )


def _setting(name: str, default: object) -> object:
    return getattr(settings, name, default) if settings.configured else default


def is_blocked(address: IPAddress) -> bool:
    """Whether Warden refuses to connect to this address (blocked and not allowed)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    blocked, allowed = _networks(
        tuple(_setting("WARDEN_BLOCKED_NETWORKS", DEFAULT_BLOCKED_NETWORKS)),  # type: ignore[arg-type]
        tuple(_setting("WARDEN_ALLOWED_NETWORKS", ())),  # type: ignore[arg-type]
    )
    if any(address in network for network in allowed if network.version == address.version):
        return False
    return any(address in network for network in blocked if network.version == address.version)


def _addresses(host: str, port: int) -> list[IPAddress]:
    """The addresses a host name stands for (itself, if it is one); [] if it does not resolve
    (then nothing can be reached there either, and the connection says so)."""
    try:
        return [ipaddress.ip_address(host.split("%", 1)[0])]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    found = []
    for info in infos:
        try:
            found.append(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]))
        except ValueError:
            continue
    return found


def refusal(url: str, *, what: str = "The URL", http_ok: bool | None = None) -> str:
    """Why Warden will not send credentials to `url` ("" when it may), in words for the
    person who typed it. Nothing of the remote server is asked but the resolver."""
    if http_ok is None:
        http_ok = bool(_setting("WARDEN_ALLOW_HTTP_API_URLS", False))
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return f"{what} is not a URL"
    scheme = parts.scheme.lower()
    if scheme != "https" and not (scheme == "http" and http_ok):
        return (
            f"{what} must start with https:// (Warden's token travels with every request, and "
            "never in clear)"
        )
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        return f"{what} names no host"
    if host in BLOCKED_HOSTNAMES:
        return (
            f"{what} points at {host}, a cloud metadata service: Warden sends no credentials there"
        )
    for address in _addresses(host, port or (443 if scheme == "https" else 80)):
        if is_blocked(address):
            return (
                f"{what} points at {address}, a link-local or cloud-metadata address: Warden "
                "sends no credentials there (an operator may allow a range with "
                "WARDEN_ALLOWED_NETWORKS)"
            )
    return ""


def check_api_url(url: str, *, what: str = "The API server URL") -> None:
    """ValidationError when a cluster's or a management cluster's API URL is refused."""
    problem = refusal(url, what=what)
    if problem:
        raise ValidationError(problem)


def check_webhook_url(url: str) -> None:
    """ValidationError when a webhook receiver's URL is refused (https:// only, always)."""
    problem = refusal(url, what="The webhook URL", http_ok=False)
    if problem:
        raise ValidationError(problem)
