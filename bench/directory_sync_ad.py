"""Benchmark: directory sync of a 20,000-person Active Directory (a real Samba AD DC).

Provisions a throw-away domain (access/localsamba.py) and seeds it offline with ldbadd: PEOPLE
people in two OUs and GROUPS groups, BIG of them with BIG_MEMBERS members each (read by range:
`member;range=0-1499`, then the next ranges) and the rest with MEMBERS members (one group in ten
also nests the next group). It then measures, in one run against the same server:
  bare_read_s  a bare paged read of the same entries and attributes with python-ldap, every
               range of `member` included (the floor),
  full_sync_s  the first sync into an empty database,
  noop_sync_s  a second sync with nothing changed,
  in_chain_s   nested membership the other way: one LDAP_MATCHING_RULE_IN_CHAIN search
               (1.2.840.113556.1.4.1941) per group for its people however deep, over
               --chain-sample (20) groups, and in_chain_all_s that time scaled to every
               group. The sync's own walk of the member lists it reads anyway is inside
               full_sync_s.
Runs alone, as root: `.venv/bin/python bench/directory_sync_ad.py [--people N --groups N]`. The
database is a fresh one (SQLite in a temporary folder, or `test_<name>` on DATABASE_URL's
server). The last line printed is one JSON object of figures.

Measured on 2 shared cores, SQLite (load with ldbadd: 23 min, most of it adding people one by
one through Samba's module stack): bare read 3.87 s, full sync 5.19 s (1.34x), no-change sync
4.35 s (1.12x); in chain 177.5 s for 20 groups, ~17,750 s for all 2,000: the walk stays.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# bench/requests.py would stand in for the `requests` library the kubernetes client imports.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

from bench.directory_sync import log, timed  # noqa: E402

DOMAIN = "DC=bench,DC=test"
PEOPLE_DN = f"OU=People,OU=Bench,{DOMAIN}"
GROUPS_DN = f"OU=Groups,OU=Bench,{DOMAIN}"
SERVICE_DN = f"CN=svc-warden,CN=Users,{DOMAIN}"
SERVICE_PASSWORD = "Bench-Service-1!"


def person_dn(i: int) -> str:
    # Two OUs, as people usually sit in several.
    return f"CN=user{i:06d},OU={'Engineering' if i % 2 else 'Operations'},{PEOPLE_DN}"


def write_ldif(args: argparse.Namespace) -> str:
    from access.localsamba import unicode_pwd

    rng = random.Random(42)
    out = [f"dn: {dn}\nobjectClass: organizationalUnit\n" for dn in _ous()]
    out.append(
        f"dn: {SERVICE_DN}\nobjectClass: user\nsAMAccountName: svc-warden\n"
        f"userAccountControl: 512\nunicodePwd:: {unicode_pwd(SERVICE_PASSWORD)}\n"
    )
    for i in range(args.people):
        uid = f"user{i:06d}"
        out.append(
            f"dn: {person_dn(i)}\nobjectClass: user\nsAMAccountName: {uid}\n"
            f"userPrincipalName: {uid}@bench.test\ndisplayName: User Number {i}\n"
            f"mail: {uid}@bench.example\nuserAccountControl: {514 if i % 100 == 99 else 512}\n"
        )
    # Nested groups are added after the group they nest: the last group first.
    for g in reversed(range(args.groups)):
        size = args.big_members if g < args.big else args.members
        lines = [f"member: {person_dn(p)}" for p in rng.sample(range(args.people), size)]
        if g % 10 == 0 and g + 1 < args.groups:  # nest the next group instead of one person
            lines[-1] = f"member: CN=group{g + 1:05d},{GROUPS_DN}"
        out.append(
            f"dn: CN=group{g:05d},{GROUPS_DN}\nobjectClass: group\n"
            f"sAMAccountName: group{g:05d}\n" + "\n".join(lines) + "\n"
        )
    return "\n".join(out)


def _ous() -> list[str]:
    return [
        f"OU=Bench,{DOMAIN}",
        PEOPLE_DN,
        f"OU=Engineering,{PEOPLE_DN}",
        f"OU=Operations,{PEOPLE_DN}",
        GROUPS_DN,
    ]


def connect(uri: str, ca_path: str):  # type: ignore[no-untyped-def]
    import ldap

    conn = ldap.initialize(uri)
    conn.set_option(ldap.OPT_REFERRALS, 0)
    conn.set_option(ldap.OPT_X_TLS_CACERTFILE, ca_path)
    conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
    conn.simple_bind_s(SERVICE_DN, SERVICE_PASSWORD)
    return conn


def paged(conn, base: str, flt: str, attrs: list[str], page_size: int):  # type: ignore[no-untyped-def]
    import ldap
    from ldap.controls import SimplePagedResultsControl

    control = SimplePagedResultsControl(True, size=page_size, cookie="")
    while True:
        msgid = conn.search_ext(base, ldap.SCOPE_SUBTREE, flt, attrs, serverctrls=[control])
        _t, data, _m, controls = conn.result3(msgid)
        yield from data
        cookie = next((c.cookie for c in controls if c.controlType == control.controlType), b"")
        if not cookie:
            return
        control.cookie = cookie


def bare_read(config, page_size: int) -> tuple[float, int, int]:  # type: ignore[no-untyped-def]
    """The floor: page through the same entries and attributes, and the rest of every ranged
    `member`, parsing nothing."""
    import ldap

    conn, side = (connect(config.uri, config.ca_cert_file) for _ in range(2))
    started = time.perf_counter()
    entries = values = 0
    for base, flt, attrs in (
        (config.user_base_dn, config.user_filter, config.user_attributes()),
        (config.group_base_dn, config.group_filter, config.group_attributes()),
    ):
        for dn, found in paged(conn, base, flt, attrs, page_size):
            if dn is None:
                continue
            entries += 1
            for key, got in found.items():
                values += len(got)
                while ";range=" in key and not key.endswith("-*"):
                    start = int(key.rsplit("-", 1)[1]) + 1
                    asked = f"member;range={start}-{start + 1499}"
                    [(_dn, more)] = side.search_ext_s(
                        dn, ldap.SCOPE_BASE, "(objectClass=*)", [asked]
                    )
                    [(key, got)] = more.items()
                    values += len(got)
    elapsed = time.perf_counter() - started
    conn.unbind_s()
    side.unbind_s()
    return elapsed, entries, values


def in_chain(config, sample: int) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    """Nested membership by AD's matching rule: one paged search per group for its people."""
    conn = connect(config.uri, config.ca_cert_file)
    groups = [f"CN=group{g:05d},{GROUPS_DN}" for g in range(sample)]
    started = time.perf_counter()
    found = 0
    for group in groups:
        flt = f"(&{config.user_filter}(memberOf:1.2.840.113556.1.4.1941:={group}))"
        found += sum(1 for dn, _ in paged(conn, config.user_base_dn, flt, ["1.1"], 1000) if dn)
    elapsed = time.perf_counter() - started
    conn.unbind_s()
    return elapsed, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=20_000)
    parser.add_argument("--groups", type=int, default=2_000)
    parser.add_argument("--members", type=int, default=30)
    parser.add_argument("--big", type=int, default=10, help="groups of --big-members")
    parser.add_argument("--big-members", type=int, default=5_000)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--chain-sample", type=int, default=20)
    parser.add_argument("--profile", action="store_true", help="print where each sync spends time")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="warden-bench-ad-"))
    os.environ.setdefault("DEBUG", "1")
    os.environ["WARDEN_VAR_DIR"] = str(work)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

    from access.localsamba import LocalSambaDC, free_loopback_address

    server = LocalSambaDC(
        work / "dc", address=free_loopback_address(), realm="BENCH.TEST", domain="BENCH"
    )
    log("provisioning the domain")
    server.provision()
    log(
        f"loading with ldbadd: {args.people} people, {args.groups} groups ({args.big} of "
        f"{args.big_members} members, the rest {args.members})"
    )
    t0 = time.perf_counter()
    server.load(write_ldif(args))
    log(f"loaded in {time.perf_counter() - t0:.1f}s; starting samba")
    try:
        server.start()
        run_bench(args, server)
    finally:
        server.destroy()
        shutil.rmtree(work, ignore_errors=True)


def run_bench(args: argparse.Namespace, server) -> None:  # type: ignore[no-untyped-def]
    import django
    from django.conf import settings

    django.setup()
    from django.db import connection

    settings.DATABASES["default"].setdefault("TEST", {})
    if connection.vendor == "sqlite":
        settings.DATABASES["default"]["TEST"]["NAME"] = str(
            Path(os.environ["WARDEN_VAR_DIR"]) / "bench.sqlite3"
        )
    log(f"creating a fresh {connection.vendor} database")
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        from access import services
        from access.directory import DirectoryConfig
        from access.models import Membership

        # The AD settings of docs/configuration.md.
        config = DirectoryConfig(
            uri=server.ldaps_uri,
            bind_dn=SERVICE_DN,
            bind_password=SERVICE_PASSWORD,
            schema="ad",
            user_base_dn=PEOPLE_DN,
            group_base_dn=GROUPS_DN,
            user_filter="(&(objectCategory=person)(objectClass=user))",
            group_filter="(objectClass=group)",
            username_attr="sAMAccountName",
            disabled_attr="userAccountControl",
            ca_cert_file=str(server.ca_path),
            page_size=args.page_size,
            max_deactivate_share=1.0,
        )
        log("bare paged read")
        bare_s, entries, values = bare_read(config, args.page_size)
        log(f"bare read: {entries} entries, {values} values in {bare_s:.2f}s")

        log("full sync")
        full, full_s = timed(lambda: services.sync_directory(config=config), args.profile)
        assert full.status == "succeeded", full.error
        log(
            f"full sync: {full_s:.2f}s ({full.people_created} people, {full.teams_created} teams, "
            f"{full.memberships_added} memberships)"
        )
        if args.big:  # the last big group nests none: its direct members are its member list
            name = f"group{args.big - 1:05d}"
            big = Membership.objects.filter(team__name=name, is_direct=True).count()
            assert big == args.big_members, f"{name} has {big} members, not {args.big_members}"

        log("no-change sync")
        noop, noop_s = timed(lambda: services.sync_directory(config=config), args.profile)
        assert noop.status == "succeeded", noop.error
        assert not noop.changed_anything, "a no-change sync changed something"
        log(f"no-change sync: {noop_s:.2f}s")
        memberships = Membership.objects.count()

        sample = min(args.chain_sample, args.groups)
        log(f"nested membership by LDAP_MATCHING_RULE_IN_CHAIN, {sample} groups")
        chain_s, chain_found = in_chain(config, sample)
        log(f"in chain: {chain_found} people in {chain_s:.2f}s")
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)

    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures = {
        "people": args.people,
        "groups": args.groups,
        "big_groups": args.big,
        "big_group_members": args.big_members,
        "memberships": memberships,
        "database": connection.vendor,
        "bare_read_s": round(bare_s, 2),
        "full_sync_s": round(full_s, 2),
        "noop_sync_s": round(noop_s, 2),
        "full_vs_bare": round(full_s / bare_s, 2),
        "noop_vs_bare": round(noop_s / bare_s, 2),
        "in_chain_groups": sample,
        "in_chain_s": round(chain_s, 2),
        "in_chain_all_s": round(chain_s * args.groups / sample, 2),
        "peak_rss_mb": round(peak_rss_mb, 1),
    }
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
