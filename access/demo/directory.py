"""The demo directory `make run` serves from a real slapd: a small company, shaped like OpenLDAP.

Every demo person's password is `demo-<username>`, so a new user can log in as anyone.
"""

from __future__ import annotations

import uuid

from access.localslapd import base_ldif, ssha

SUFFIX = "dc=demo,dc=warden"
SERVICE_DN = f"cn=warden,ou=services,{SUFFIX}"
SERVICE_PASSWORD = "demo-service-password"  # noqa: S105 - the demo's own throwaway directory

# username, display name
PEOPLE = [
    ("alice", "Alice Adams"),
    ("bob", "Bob Brown"),
    ("carol", "Carol Chen"),
    ("dave", "Dave Diaz"),
    ("erin", "Erin Evans"),
    ("frank", "Frank Fischer"),
    ("grace", "Grace Green"),
    ("heidi", "Heidi Hall"),
    ("ivan", "Ivan Ito"),
    ("judy", "Judy Jones"),
    ("olivia", "Olivia Ortiz"),
    ("peggy", "Peggy Park"),
]
DISABLED = ["mallory"]
# team, members, nested teams
TEAMS = [
    ("payments", ["alice", "bob", "mallory"], []),
    ("checkout", ["carol", "dave"], []),
    ("sre", ["erin", "frank"], []),
    ("platform", ["grace"], ["sre"]),
    ("engineering", ["heidi", "ivan"], ["payments", "checkout", "platform"]),
    ("approvers", ["judy", "peggy"], []),
    ("warden-admins", ["olivia"], []),
]
ADMIN_TEAMS = ["warden-admins"]
APPROVER_TEAM = "approvers"
# person -> manager, and team -> owners: the leads who review standing access.
MANAGERS = {
    "alice": "heidi",
    "bob": "heidi",
    "carol": "ivan",
    "dave": "ivan",
    "erin": "grace",
    "frank": "grace",
    "grace": "ivan",
    "heidi": "ivan",
    "judy": "olivia",
    "peggy": "olivia",
}
OWNERS = {
    "payments": ["heidi"],
    "checkout": ["ivan"],
    "sre": ["grace"],
    "platform": ["grace", "ivan"],
    "engineering": ["ivan"],
    "approvers": ["olivia"],
}


def password_for(username: str) -> str:
    return f"demo-{username}"


def entry_uuid(dn: str) -> str:
    """The same entryUUID for a DN at every run: the reseeded directory is the same directory,
    so the kept database sees no change (a new UUID would be a new person, and the sync guard
    would stop a sync that replaces everyone)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ldap:///{dn}"))


def demo_ldif() -> str:
    parts = [base_ldif(SUFFIX, SERVICE_DN, SERVICE_PASSWORD)]
    for username, name in [*PEOPLE, *[(u, u.title()) for u in DISABLED]]:
        given, _, family = name.partition(" ")
        dn = f"uid={username},ou=people,{SUFFIX}"
        entry = [
            f"dn: {dn}",
            f"entryUUID: {entry_uuid(dn)}",
            "objectClass: inetOrgPerson",
            f"uid: {username}",
            f"cn: {name}",
            f"sn: {family or given}",
            f"givenName: {given}",
            f"displayName: {name}",
            f"mail: {username}@demo.example",
            f"userPassword: {ssha(password_for(username))}",
        ]
        if username in DISABLED:
            entry.append("pwdAccountLockedTime: 000001010000Z")
        if username in MANAGERS:
            entry.append(f"manager: uid={MANAGERS[username]},ou=people,{SUFFIX}")
        parts.append("\n".join(entry) + "\n")
    for team, members, nested in TEAMS:
        dn = f"cn={team},ou=groups,{SUFFIX}"
        lines = [f"dn: {dn}", f"entryUUID: {entry_uuid(dn)}", "objectClass: groupOfNames"]
        lines.append(f"cn: {team}")
        lines += [f"member: uid={m},ou=people,{SUFFIX}" for m in members]
        lines += [f"member: cn={t},ou=groups,{SUFFIX}" for t in nested]
        lines += [f"owner: uid={o},ou=people,{SUFFIX}" for o in OWNERS.get(team, [])]
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def environment(uri: str) -> dict[str, str]:
    """The settings (as environment variables) that point Warden at the demo directory."""
    return {
        "LDAP_URI": uri,
        "LDAP_BIND_DN": SERVICE_DN,
        "LDAP_BIND_PASSWORD": SERVICE_PASSWORD,
        "LDAP_SCHEMA": "openldap",
        "LDAP_USER_BASE_DN": f"ou=people,{SUFFIX}",
        "LDAP_GROUP_BASE_DN": f"ou=groups,{SUFFIX}",
        "WARDEN_ADMIN_TEAMS": ",".join(ADMIN_TEAMS),
    }
