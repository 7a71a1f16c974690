"""The one door to LDAP / Active Directory: connecting, paged reading, and what an entry means.

Everything that speaks to the directory goes through here, so python-ldap's exceptions become
DirectoryError with a message that says what to fix, and the rest of Warden sees plain records.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import re
import socket
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import ldap
import ldap.dn
import ldap.filter
import ldapurl
from django.conf import settings
from ldap.controls import SimplePagedResultsControl

logger = logging.getLogger(__name__)

# userAccountControl bit that AD sets on a disabled account (ACCOUNTDISABLE).
AD_ACCOUNT_DISABLED = 0x2
# Attributes that carry a stable identity across renames.
ID_ATTRIBUTES = ("entryUUID", "objectGUID")
GROUP_MEMBER_DN_ATTRS = ("member", "uniqueMember")
GROUP_MEMBER_UID_ATTR = "memberUid"
# AD answers at most MaxValRange (1,500 on Windows) values of a multi-valued attribute such as
# `member` as `member;range=0-1499`, and the rest only when asked for by range.
RANGE_OPTION = re.compile(r"^(?P<name>[^;]+);range=(?P<low>\d+)-(?P<high>\d+|\*)$", re.IGNORECASE)
DEFAULT_RANGE_SIZE = 1500
# The search scope of people's logins (access/auth.py), so that python-ldap has this one door.
SCOPE_SUBTREE = ldap.SCOPE_SUBTREE


class DirectoryError(Exception):
    """The directory could not be read completely; the message says what to fix."""


class DirectoryUnavailable(DirectoryError):
    """The directory did not answer (down, timeout, TLS or credentials)."""


class DirectoryIncomplete(DirectoryError):
    """The directory answered with less than everything (size limit, partial result)."""


@dataclass(frozen=True)
class DirectoryConfig:
    """Where the directory is and how its entries are shaped (settings.WARDEN_DIRECTORY)."""

    uri: str
    bind_dn: str = ""
    bind_password: str = field(default="", repr=False)
    schema: str = "openldap"
    user_base_dn: str = ""
    group_base_dn: str = ""
    user_filter: str = "(objectClass=inetOrgPerson)"
    group_filter: str = "(objectClass=groupOfNames)"
    username_attr: str = "uid"
    email_attr: str = "mail"
    display_name_attr: str = "displayName"
    disabled_attr: str = "pwdAccountLockedTime"
    group_name_attr: str = "cn"
    # A person's manager (a DN): their lead for access purposes (reviews, manager approval).
    manager_attr: str = "manager"
    # A group's owners (DNs; multi-valued `owner` on OpenLDAP, `managedBy` on AD): its leads.
    # Empty: the schema's default.
    group_owner_attr: str = ""
    user_dn_template: str = ""
    start_tls: bool = False
    ca_cert_file: str = ""
    tls_require_cert: bool = True
    page_size: int = 500
    # AD: how many `member` values to ask for at once (range retrieval); 0 never asks for ranges
    # (for servers that do not know them), though a ranged answer is still read to its end.
    member_range_size: int = DEFAULT_RANGE_SIZE
    timeout: int = 10
    admin_teams: tuple[str, ...] = ()
    max_deactivate_share: float = 0.10

    def __post_init__(self) -> None:
        if not self.group_owner_attr:
            default = "managedBy" if self.schema == "ad" else "owner"
            object.__setattr__(self, "group_owner_attr", default)

    @classmethod
    def from_settings(cls) -> DirectoryConfig:
        raw: dict[str, Any] = settings.WARDEN_DIRECTORY
        values = {name.lower(): value for name, value in raw.items()}
        values["admin_teams"] = tuple(values.get("admin_teams") or ())
        known = set(cls.__dataclass_fields__)
        return cls(**{key: value for key, value in values.items() if key in known})

    @property
    def configured(self) -> bool:
        return bool(self.uri)

    @property
    def is_ad(self) -> bool:
        return self.schema == "ad"

    @property
    def login_attributes(self) -> tuple[str, ...]:
        """What a person may type as their login name: AD also takes userPrincipalName
        (user@REALM), which the same search finds."""
        return (self.username_attr, "userPrincipalName") if self.is_ad else (self.username_attr,)

    def user_attributes(self) -> list[str]:
        # AD: a person's primary group (Domain Users, usually) is not in their memberOf, only
        # named by a RID relative to their objectSid.
        ad_only = ["primaryGroupID", "objectSid"] if self.is_ad else []
        return [
            self.username_attr,
            self.email_attr,
            self.display_name_attr,
            "cn",
            self.disabled_attr,
            self.manager_attr,
            "memberOf",
            *ID_ATTRIBUTES,
            *ad_only,
        ]

    def group_attributes(self) -> list[str]:
        member_attrs = list(GROUP_MEMBER_DN_ATTRS)
        if self.is_ad and self.member_range_size > 0:
            # Always by range on AD: Samba would send every value unasked, Windows 1,500.
            member_attrs[0] = range_attribute("member", 0, self.member_range_size)
        return [
            self.group_name_attr,
            "description",
            *member_attrs,
            GROUP_MEMBER_UID_ATTR,
            self.group_owner_attr,
            "memberOf",
            *ID_ATTRIBUTES,
        ]


@dataclass(frozen=True)
class DirectoryPerson:
    """A person entry as Warden mirrors it."""

    dn: str
    external_id: str | None
    username: str
    email: str
    display_name: str
    disabled: bool
    member_of: tuple[str, ...] = ()
    # Normalised DN of the person's manager; "" when the entry names none.
    manager_dn: str = ""

    @property
    def entry_hash(self) -> str:
        # The manager joins the digest only when there is one, so entries without one keep the
        # hash they had before managers were mirrored (no rewrite of everyone on upgrade).
        extra = (self.manager_dn,) if self.manager_dn else ()
        return digest(
            self.dn,
            self.external_id,
            self.username,
            self.email,
            self.display_name,
            self.disabled,
            *extra,
        )


@dataclass(frozen=True)
class DirectoryGroup:
    """A group entry: its members by DN (people or groups) and by uid (posixGroup)."""

    dn: str
    external_id: str | None
    name: str
    description: str
    member_dns: tuple[str, ...] = ()
    member_uids: tuple[str, ...] = ()
    member_of: tuple[str, ...] = ()
    # Normalised DNs of the group's owners (its leads), sorted.
    owner_dns: tuple[str, ...] = ()

    @property
    def entry_hash(self) -> str:
        # Owners join the digest only when there are some (see DirectoryPerson.entry_hash).
        extra = ("owners", *self.owner_dns) if self.owner_dns else ()
        return digest(self.dn, self.external_id, self.name, self.description, *extra)


@dataclass
class PageStats:
    """What a paged read met besides entries."""

    references_skipped: int = 0


def digest(*values: object) -> str:
    return hashlib.sha256("\x1f".join(str(v) for v in values).encode()).hexdigest()


# Characters that make a DN need python-ldap's full parser (escapes, quoting, multi-valued RDNs).
_DN_SPECIAL = frozenset('\\"+;<>#')


# Bounded: a directory sync meets every DN about four times (entry, member references).
@functools.lru_cache(maxsize=262144)
def normalize_dn(dn: str) -> str:
    """Canonical lower-case form, so `CN=Bob, OU=People` and `cn=bob,ou=people` are one DN."""
    if _DN_SPECIAL.isdisjoint(dn):
        # The common case, without the cost of a full parse and re-escape.
        return ",".join(
            "=".join(part.strip() for part in rdn.split("=", 1)) for rdn in dn.split(",")
        ).lower()
    try:
        return str(ldap.dn.dn2str(ldap.dn.str2dn(dn.strip()))).lower()
    except ldap.DECODING_ERROR:
        return dn.strip().lower()


def escape(value: str) -> str:
    """Escape a value for an LDAP filter (RFC 4515: `*`, `(`, `)`, `\\` and NUL)."""
    return str(ldap.filter.escape_filter_chars(value, escape_mode=1))


def person_filter(config: DirectoryConfig, username: str) -> str:
    return f"(&{config.user_filter}({config.username_attr}={escape(username)}))"


def login_filter(config: DirectoryConfig, placeholder: str = "%(user)s") -> str:
    """The login search's filter, with a placeholder django-auth-ldap fills in (escaped)."""
    # A literal % in the configured filter must not be taken for a placeholder.
    user_filter = config.user_filter.replace("%", "%%")
    terms = "".join(f"({attr}={placeholder})" for attr in config.login_attributes)
    if len(config.login_attributes) > 1:
        terms = f"(|{terms})"
    return f"(&{user_filter}{terms})"


# --- Connecting ---------------------------------------------------------------------------------


def connect(config: DirectoryConfig) -> Any:
    """An LDAP connection bound with Warden's service account; raises DirectoryUnavailable."""
    if not config.configured:
        raise DirectoryUnavailable(
            "No directory is configured: set LDAP_URI (e.g. ldaps://ldap:636)"
        )
    try:
        conn = ldap.initialize(config.uri)
    except ldap.LDAPError as exc:
        raise DirectoryUnavailable(
            f"LDAP_URI {config.uri!r} is not a valid LDAP URI: {_desc(exc)}"
        ) from exc
    apply_options(conn, config)
    try:
        if config.start_tls:
            conn.start_tls_s()
        conn.simple_bind_s(config.bind_dn, config.bind_password)
    except ldap.INVALID_CREDENTIALS as exc:
        raise DirectoryUnavailable(
            f"The directory refused Warden's bind as {config.bind_dn or 'anonymous'!r}: "
            "check LDAP_BIND_DN and LDAP_BIND_PASSWORD"
        ) from exc
    except ldap.CONNECT_ERROR as exc:
        raise DirectoryUnavailable(
            f"TLS with {config.uri} failed ({_desc(exc)}): check LDAP_CA_CERT_FILE and the "
            "server certificate"
        ) from exc
    except (ldap.SERVER_DOWN, ldap.TIMEOUT) as exc:
        if config.uri.lower().startswith("ldaps://") and _reachable(config.uri, config.timeout):
            # LDAPS: libldap reports a failed handshake as "can't contact"; the port answered.
            raise DirectoryUnavailable(
                f"TLS with {config.uri} failed ({_desc(exc)}): its certificate could not be "
                "verified; check LDAP_CA_CERT_FILE and the server certificate"
            ) from exc
        raise DirectoryUnavailable(
            f"The directory at {config.uri} does not answer ({_desc(exc)}): check that it is up "
            "and LDAP_URI is right"
        ) from exc
    except ldap.LDAPError as exc:
        raise DirectoryUnavailable(f"The directory at {config.uri} failed: {_desc(exc)}") from exc
    return conn


def _reachable(uri: str, timeout: float) -> bool:
    """Whether the URI's host accepts TCP connections on its port."""
    try:
        url = ldapurl.LDAPUrl(uri.split()[0])
        host, _sep, port = url.hostport.rpartition(":") if url.hostport else ("", "", "")
        if not host or not port.isdigit():
            host, port = url.hostport or "localhost", "636"
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def apply_options(conn: Any, config: DirectoryConfig) -> None:
    """Options shared by the sync connection and django-auth-ldap's login connection."""
    for option, value in connection_options(config).items():
        conn.set_option(option, value)


def connection_options(config: DirectoryConfig) -> dict[int, Any]:
    options: dict[int, Any] = {
        ldap.OPT_PROTOCOL_VERSION: ldap.VERSION3,
        # Referrals are not chased: a sync must not silently read another directory.
        ldap.OPT_REFERRALS: 0,
        ldap.OPT_NETWORK_TIMEOUT: config.timeout,
        ldap.OPT_TIMEOUT: config.timeout,
    }
    if config.ca_cert_file:
        options[ldap.OPT_X_TLS_CACERTFILE] = config.ca_cert_file
    options[ldap.OPT_X_TLS_REQUIRE_CERT] = (
        ldap.OPT_X_TLS_DEMAND if config.tls_require_cert else ldap.OPT_X_TLS_NEVER
    )
    # Must come last: makes libldap build a TLS context from the options above.
    options[ldap.OPT_X_TLS_NEWCTX] = 0
    return options


def _desc(exc: ldap.LDAPError) -> str:
    info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    parts = [str(info.get("desc", exc.__class__.__name__))]
    if info.get("info"):
        parts.append(str(info["info"]))
    return ": ".join(parts)


# --- Paged reading ------------------------------------------------------------------------------


def paged_search(
    conn: Any,
    base_dn: str,
    search_filter: str,
    attributes: Sequence[str],
    page_size: int,
    stats: PageStats | None = None,
    setting_name: str = "base DN",
) -> Iterator[list[tuple[str, dict[str, list[bytes]]]]]:
    """Yield the entries under base_dn a page at a time (RFC 2696 simple paged results).

    The next page is requested before the current one is handed out, so the directory prepares
    it while Warden processes this one. Raises DirectoryIncomplete on a size or admin limit, a
    partial result or a referral for the base itself, and DirectoryError for a missing base DN:
    a sync must see all or nothing.
    """
    if not base_dn:
        raise DirectoryError(f"{setting_name} is not set: name the subtree to read")
    stats = stats if stats is not None else PageStats()
    control = SimplePagedResultsControl(True, size=page_size, cookie="")
    pending: int | None = None
    try:
        with _search_errors(base_dn, search_filter, setting_name):
            pending = conn.search_ext(
                base_dn, ldap.SCOPE_SUBTREE, search_filter, list(attributes), serverctrls=[control]
            )
        while pending is not None:
            with _search_errors(base_dn, search_filter, setting_name):
                _rtype, rdata, _msgid, response_controls = conn.result3(pending)
                pending = None
                cookie = _next_cookie(response_controls)
                if cookie:
                    control.cookie = cookie
                    pending = conn.search_ext(
                        base_dn,
                        ldap.SCOPE_SUBTREE,
                        search_filter,
                        list(attributes),
                        serverctrls=[control],
                    )
            page = []
            for dn, attrs in rdata:
                if dn is None:  # a continuation reference to another naming context
                    stats.references_skipped += 1
                    continue
                page.append((dn, attrs))
            yield page
    finally:
        if pending is not None:  # the reader stopped early: tell the server to stop too
            with contextlib.suppress(ldap.LDAPError):
                conn.abandon(pending)


@contextlib.contextmanager
def _search_errors(base_dn: str, search_filter: str, setting_name: str) -> Iterator[None]:
    """Turn python-ldap's search exceptions into DirectoryErrors that say what to fix."""
    try:
        yield
    except ldap.NO_SUCH_OBJECT as exc:
        raise DirectoryError(
            f"{setting_name} {base_dn!r} does not exist in the directory: check the base DN"
        ) from exc
    except ldap.FILTER_ERROR as exc:
        raise DirectoryError(f"The filter {search_filter!r} is not valid LDAP: fix it") from exc
    except (ldap.SIZELIMIT_EXCEEDED, ldap.ADMINLIMIT_EXCEEDED) as exc:
        raise DirectoryIncomplete(
            f"The directory stopped reading {base_dn!r} at its size limit ({_desc(exc)}): "
            "raise the limit for Warden's bind account or enable paged results for it"
        ) from exc
    except (ldap.PARTIAL_RESULTS, ldap.REFERRAL) as exc:
        raise DirectoryIncomplete(
            f"The directory answered only part of {base_dn!r} ({_desc(exc)}): point the base "
            "DN at the server that holds it"
        ) from exc
    except (ldap.SERVER_DOWN, ldap.TIMEOUT, ldap.UNAVAILABLE, ldap.BUSY) as exc:
        raise DirectoryUnavailable(
            f"The directory stopped answering while reading {base_dn!r} ({_desc(exc)})"
        ) from exc
    except ldap.LDAPError as exc:
        raise DirectoryError(f"Reading {base_dn!r} failed: {_desc(exc)}") from exc


def _next_cookie(response_controls: list[Any]) -> bytes | None:
    for ctrl in response_controls:
        if ctrl.controlType == SimplePagedResultsControl.controlType:
            return ctrl.cookie or None
    return None


# --- Range retrieval and primary groups (AD) ----------------------------------------------------


class FollowUp:
    """A second connection for the reads an entry calls for while a paged search is in flight
    (the next ranges of `member`, primary groups), opened at the first such read.

    Not the paged search's own connection: Samba ends a paged search early, silently, when
    another search runs on its connection while the next page is being prepared.
    """

    def __init__(self, config: DirectoryConfig, conn: Any = None) -> None:
        self.config = config
        self._conn = conn
        self._owned = conn is None

    @property
    def conn(self) -> Any:
        if self._conn is None:
            self._conn = connect(self.config)
        return self._conn

    def close(self) -> None:
        if self._owned and self._conn is not None:
            with contextlib.suppress(ldap.LDAPError):
                self._conn.unbind_s()
            self._conn = None


def range_attribute(name: str, start: int, size: int) -> str:
    """`member;range=1500-2999`: the attribute's values from start, at most size of them."""
    return f"{name};range={start}-{start + size - 1}"


def parse_range(key: str) -> tuple[str, int, int | None] | None:
    """(name, first, last) of a ranged attribute description; last is None for the final range
    (`member;range=3000-*`). None when the description names no range."""
    match = RANGE_OPTION.match(key)
    if match is None:
        return None
    high = match["high"]
    return match["name"], int(match["low"]), None if high == "*" else int(high)


def complete_ranges(
    follow_up: FollowUp, dn: str, attrs: dict[str, list[bytes]]
) -> dict[str, list[bytes]]:
    """The entry with every ranged attribute read to its end and named plainly (`member`).

    The first range comes with the entry (asked for, or unasked as Windows sends it); each next
    range is read from the entry itself, starting right after the last value the server sent.
    A range that does not start where asked, or an entry that lost the attribute between reads,
    raises DirectoryIncomplete: a group read short would take access away.
    """
    ranged = [(key, parsed) for key in attrs if (parsed := parse_range(key)) is not None]
    if not ranged:
        return attrs
    complete = {key: values for key, values in attrs.items() if parse_range(key) is None}
    for key, (name, low, high) in ranged:
        if low != 0:
            raise DirectoryIncomplete(
                f"The directory sent {key!r} of {dn!r} without its first values: "
                "range retrieval skipped a range"
            )
        values = list(attrs[key])
        while high is not None:
            high, more = _read_range(follow_up, dn, name, high + 1)
            values.extend(more)
        # A server that also sent the plain attribute sent it empty (Windows) or whole.
        complete[name] = values
    return complete


def _read_range(
    follow_up: FollowUp, dn: str, name: str, start: int
) -> tuple[int | None, list[bytes]]:
    configured = follow_up.config.member_range_size
    size = configured if configured > 0 else DEFAULT_RANGE_SIZE
    asked = range_attribute(name, start, size)
    with _search_errors(dn, "(objectClass=*)", "group entry"):
        result = follow_up.conn.search_ext_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", [asked])
    for _dn, attrs in result:
        for key, values in (attrs or {}).items():
            parsed = parse_range(key)
            if parsed is None or parsed[0].lower() != name.lower():
                continue
            if parsed[1] != start:
                raise DirectoryIncomplete(
                    f"Asked the directory for {asked!r} of {dn!r}, it answered {key!r}: "
                    "range retrieval skipped a range"
                )
            return parsed[2], list(values)
    raise DirectoryIncomplete(
        f"{dn!r} lost values of {name!r} while they were read by range (it changed during "
        "the sync); the next sync reads it again"
    )


def sid_to_str(sid: bytes) -> str:
    """A binary objectSid as `S-1-5-21-...`."""
    count = sid[1]
    authority = int.from_bytes(sid[2:8], "big")
    subs = [int.from_bytes(sid[8 + 4 * i : 12 + 4 * i], "little") for i in range(count)]
    return "-".join(["S", str(sid[0]), str(authority), *map(str, subs)])


def with_primary_group(
    follow_up: FollowUp, attrs: dict[str, list[bytes]], cache: dict[str, str | None]
) -> dict[str, list[bytes]]:
    """The entry with its primary group (AD's primaryGroupID) added to memberOf.

    AD leaves the primary group out of both the group's `member` and the person's `memberOf`;
    it is the group whose SID is the person's domain SID with that RID. Each group is looked up
    once per read (by `<SID=...>`, which AD accepts as a base DN).
    """
    lowered = _lower_keys(attrs)
    rid, sid = lowered.get("primarygroupid"), lowered.get("objectsid")
    if not rid or not sid:
        return attrs
    domain_sid = sid_to_str(sid[0]).rsplit("-", 1)[0]
    group_sid = f"{domain_sid}-{rid[0].decode()}"
    if group_sid not in cache:
        base = f"<SID={group_sid}>"
        with _search_errors(base, "(objectClass=group)", "primary group"):
            found = follow_up.conn.search_ext_s(
                base, ldap.SCOPE_BASE, "(objectClass=group)", ["1.1"]
            )
        cache[group_sid] = next((dn for dn, _attrs in found if dn), None)
    group_dn = cache[group_sid]
    if group_dn is None:
        return attrs
    return {**lowered, "memberof": [*lowered.get("memberof", []), group_dn.encode()]}


# --- What entries mean --------------------------------------------------------------------------


def _lower_keys(attrs: dict[str, list[bytes]]) -> dict[str, list[bytes]]:
    # Attribute names are case-insensitive on the wire; servers answer with their own casing.
    return {key.lower(): values for key, values in attrs.items()}


def _text(attrs: dict[str, list[bytes]], name: str) -> str:
    values = attrs.get(name.lower())
    return values[0].decode("utf-8", errors="replace") if values else ""


def _values(attrs: dict[str, list[bytes]], name: str) -> list[str]:
    return [v.decode("utf-8", errors="replace") for v in attrs.get(name.lower(), ())]


def _dn_values(attrs: dict[str, list[bytes]], name: str) -> list[str]:
    """The non-empty values of a DN-valued attribute, normalised, in the order sent."""
    return [normalize_dn(v) for v in _values(attrs, name) if v.strip()]


def _external_id(attrs: dict[str, list[bytes]]) -> str | None:
    if guid := attrs.get("objectguid"):
        # AD sends the GUID as 16 raw bytes (little-endian fields).
        value = guid[0]
        return str(uuid.UUID(bytes_le=value)) if len(value) == 16 else value.decode().lower()
    if entry_uuid := attrs.get("entryuuid"):
        return entry_uuid[0].decode().lower()
    return None


def is_disabled(config: DirectoryConfig, attrs: dict[str, list[bytes]]) -> bool:
    """Whether the entry is a disabled account, by the schema's convention."""
    return _is_disabled(config, _lower_keys(attrs))


def _is_disabled(config: DirectoryConfig, attrs: dict[str, list[bytes]]) -> bool:
    value = _text(attrs, config.disabled_attr)
    if not value:
        return False
    if config.disabled_attr.lower() == "useraccountcontrol":
        try:
            return bool(int(value) & AD_ACCOUNT_DISABLED)
        except ValueError:
            return False
    # OpenLDAP ppolicy: a pwdAccountLockedTime (or any configured flag attribute) is present.
    return value.lower() not in ("false", "0")


def parse_person(
    config: DirectoryConfig, dn: str, attrs: dict[str, list[bytes]]
) -> DirectoryPerson | None:
    """A person record, or None for an entry without a username (it cannot be a subject)."""
    attrs = _lower_keys(attrs)
    username = _text(attrs, config.username_attr).strip()
    if not username:
        return None
    return DirectoryPerson(
        dn=normalize_dn(dn),
        external_id=_external_id(attrs),
        username=username,
        email=_text(attrs, config.email_attr).strip(),
        display_name=(_text(attrs, config.display_name_attr) or _text(attrs, "cn")).strip(),
        disabled=_is_disabled(config, attrs),
        member_of=tuple(sorted({normalize_dn(v) for v in _values(attrs, "memberOf")})),
        # `manager` is single-valued in both schemas; a custom attribute may not be: first wins.
        manager_dn=next(iter(_dn_values(attrs, config.manager_attr)), ""),
    )


def parse_group(
    config: DirectoryConfig, dn: str, attrs: dict[str, list[bytes]]
) -> DirectoryGroup | None:
    attrs = _lower_keys(attrs)
    name = _text(attrs, config.group_name_attr).strip()
    if not name:
        return None
    member_dns: set[str] = set()
    for attr in GROUP_MEMBER_DN_ATTRS:
        for value in _values(attrs, attr):
            if not value.strip():  # groupOfNames must list a member; empty groups list ""
                continue
            # groupOfUniqueNames may append an optional UID: "cn=x,dc=y#'0101'B".
            member_dns.add(normalize_dn(value.split("#", 1)[0] if "#'" in value else value))
    return DirectoryGroup(
        dn=normalize_dn(dn),
        external_id=_external_id(attrs),
        name=name,
        description=_text(attrs, "description").strip(),
        member_dns=tuple(sorted(member_dns)),
        member_uids=tuple(sorted({v.strip() for v in _values(attrs, GROUP_MEMBER_UID_ATTR)})),
        member_of=tuple(sorted({normalize_dn(v) for v in _values(attrs, "memberOf")})),
        owner_dns=tuple(sorted(set(_dn_values(attrs, config.group_owner_attr)))),
    )


def read_people(
    conn: Any, config: DirectoryConfig, stats: PageStats, follow_up_conn: Any = None
) -> Iterator[list[DirectoryPerson]]:
    """People a page at a time; follow_up_conn (default: a new one when needed) reads the
    ranges and primary groups their entries call for."""
    follow_up = FollowUp(config, follow_up_conn)
    primary_groups: dict[str, str | None] = {}
    try:
        for page in paged_search(
            conn,
            config.user_base_dn,
            config.user_filter,
            config.user_attributes(),
            config.page_size,
            stats,
            setting_name="LDAP_USER_BASE_DN",
        ):
            people = []
            for dn, attrs in page:
                entry = complete_ranges(follow_up, dn, attrs)
                if config.is_ad:
                    entry = with_primary_group(follow_up, entry, primary_groups)
                if (person := parse_person(config, dn, entry)) is not None:
                    people.append(person)
            yield people
    finally:
        follow_up.close()


def read_groups(
    conn: Any, config: DirectoryConfig, stats: PageStats, follow_up_conn: Any = None
) -> Iterator[list[DirectoryGroup]]:
    """Groups a page at a time, every `member` range read (see read_people for follow_up_conn)."""
    follow_up = FollowUp(config, follow_up_conn)
    try:
        for page in paged_search(
            conn,
            config.group_base_dn,
            config.group_filter,
            config.group_attributes(),
            config.page_size,
            stats,
            setting_name="LDAP_GROUP_BASE_DN",
        ):
            groups = []
            for dn, attrs in page:
                group = parse_group(config, dn, complete_ranges(follow_up, dn, attrs))
                if group is not None:
                    groups.append(group)
            yield groups
    finally:
        follow_up.close()


def find_person(config: DirectoryConfig, username: str) -> DirectoryPerson | None:
    """Look one person up by username (the value is escaped; `*` matches only a literal star)."""
    conn = connect(config)
    try:
        for page in paged_search(
            conn,
            config.user_base_dn,
            person_filter(config, username),
            config.user_attributes(),
            2,
            setting_name="LDAP_USER_BASE_DN",
        ):
            for dn, attrs in page:
                person = parse_person(config, dn, attrs)
                if person is not None and person.username == username:
                    return person
        return None
    finally:
        conn.unbind_s()


def ping(config: DirectoryConfig) -> None:
    """Bind and read the user base entry; raises DirectoryError saying what is wrong."""
    conn = connect(config)
    try:
        conn.search_s(config.user_base_dn or "", ldap.SCOPE_BASE, "(objectClass=*)", ["1.1"])
    except ldap.NO_SUCH_OBJECT as exc:
        raise DirectoryError(
            f"LDAP_USER_BASE_DN {config.user_base_dn!r} does not exist in the directory"
        ) from exc
    except ldap.LDAPError as exc:
        raise DirectoryUnavailable(f"The directory at {config.uri} failed: {_desc(exc)}") from exc
    finally:
        conn.unbind_s()
