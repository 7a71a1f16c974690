"""Benchmark: directory sync of a 100,000-person directory into the database.

Seeds a real slapd (offline, slapadd) with PEOPLE people and GROUPS groups of 30 members each
(one group in ten also nests another group), then measures:
  bare_read_s  a bare paged read of the same entries with python-ldap (the floor),
  full_sync_s  the first sync into an empty database,
  noop_sync_s  a second sync with nothing changed.
With --leads, every person also names a manager (one in ten people manages the next nine) and
every group two owners, so the sync resolves 100,000 manager and 20,000 owner references.
Runs alone: `.venv/bin/python bench/directory_sync.py [--people N --groups N --leads]`. The
database is a fresh one: SQLite in a temporary folder, or `test_<name>` on the server
DATABASE_URL names. The last line printed is one JSON object of figures.
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
SUFFIX = "dc=bench,dc=test"
SERVICE_DN = f"cn=warden,ou=services,{SUFFIX}"
SERVICE_PASSWORD = "bench-service"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def manager_of(i: int) -> int | None:
    """--leads: user i0 manages users i1..i9; user i00 manages the i0s; user 0 has none."""
    for step in (10, 100, 1000, 10000, 100000):
        if i % step:
            return i - i % step
    return None


def write_ldif(path: Path, people: int, groups: int, members: int, leads: bool = False) -> None:
    from access.localslapd import base_ldif, ssha

    rng = random.Random(42)
    password = ssha("bench")
    with path.open("w", encoding="utf-8") as out:
        out.write(base_ldif(SUFFIX, SERVICE_DN, SERVICE_PASSWORD))
        for i in range(people):
            uid = f"user{i:06d}"
            out.write(
                f"\ndn: uid={uid},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: {uid}\n"
                f"cn: User {i}\nsn: {i}\ndisplayName: User Number {i}\n"
                f"mail: {uid}@bench.example\nuserPassword: {password}\n"
            )
            boss = manager_of(i) if leads else None
            if boss is not None:
                out.write(f"manager: uid=user{boss:06d},ou=people,{SUFFIX}\n")
        for g in range(groups):
            chosen = rng.sample(range(people), members)
            lines = [f"member: uid=user{p:06d},ou=people,{SUFFIX}" for p in chosen]
            if g % 10 == 0 and g + 1 < groups:  # nest the next group instead of one person
                lines[-1] = f"member: cn=group{g + 1:05d},ou=groups,{SUFFIX}"
            if leads:
                lines += [f"owner: uid=user{p:06d},ou=people,{SUFFIX}" for p in chosen[:2]]
            out.write(
                f"\ndn: cn=group{g:05d},ou=groups,{SUFFIX}\nobjectClass: groupOfNames\n"
                f"cn: group{g:05d}\n" + "\n".join(lines) + "\n"
            )


def bare_read(uri: str, page_size: int) -> tuple[float, int]:
    """The floor: page through the same entries and attributes, parsing nothing."""
    import ldap
    from ldap.controls import SimplePagedResultsControl

    from access.directory import DirectoryConfig

    conn = ldap.initialize(uri)
    conn.simple_bind_s(SERVICE_DN, SERVICE_PASSWORD)
    config = DirectoryConfig(uri=uri)
    searches = [
        (f"ou=people,{SUFFIX}", "(objectClass=inetOrgPerson)", config.user_attributes()),
        (f"ou=groups,{SUFFIX}", "(objectClass=groupOfNames)", config.group_attributes()),
    ]
    started = time.perf_counter()
    count = 0
    for base, flt, attrs in searches:
        control = SimplePagedResultsControl(True, size=page_size, cookie="")
        while True:
            msgid = conn.search_ext(base, ldap.SCOPE_SUBTREE, flt, attrs, serverctrls=[control])
            _t, data, _m, controls = conn.result3(msgid)
            count += len(data)
            cookie = next((c.cookie for c in controls if c.controlType == control.controlType), b"")
            if not cookie:
                break
            control.cookie = cookie
    conn.unbind_s()
    return time.perf_counter() - started, count


def timed(call, profile: bool):  # type: ignore[no-untyped-def]
    """Run call(); with profile, print the 25 costliest functions (skews the time)."""
    if not profile:
        t0 = time.perf_counter()
        result = call()
        return result, time.perf_counter() - t0
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    t0 = time.perf_counter()
    result = profiler.runcall(call)
    elapsed = time.perf_counter() - t0
    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    return result, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--members", type=int, default=30)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--leads", action="store_true", help="managers and group owners too")
    parser.add_argument("--profile", action="store_true", help="print where each sync spends time")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="warden-bench-sync-"))
    os.environ.setdefault("DEBUG", "1")
    os.environ["WARDEN_VAR_DIR"] = str(work)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

    from access.localslapd import LocalSlapd

    server = LocalSlapd(work / "slapd", suffix=SUFFIX)
    server.configure()
    ldif = work / "seed.ldif"
    log(f"writing LDIF: {args.people} people, {args.groups} groups x {args.members} members")
    write_ldif(ldif, args.people, args.groups, args.members, args.leads)
    log("loading slapd with slapadd")
    t0 = time.perf_counter()
    server.load(ldif)
    log(f"loaded in {time.perf_counter() - t0:.1f}s; starting slapd")
    try:
        uri = server.start()
        run_bench(args, uri)
    finally:
        server.destroy()
        shutil.rmtree(work, ignore_errors=True)


def run_bench(args: argparse.Namespace, uri: str) -> None:
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

        config = DirectoryConfig(
            uri=uri,
            bind_dn=SERVICE_DN,
            bind_password=SERVICE_PASSWORD,
            user_base_dn=f"ou=people,{SUFFIX}",
            group_base_dn=f"ou=groups,{SUFFIX}",
            page_size=args.page_size,
        )
        log("bare paged read")
        bare_s, entries = bare_read(uri, args.page_size)
        log(f"bare read: {entries} entries in {bare_s:.2f}s")

        log("full sync")
        full, full_s = timed(lambda: services.sync_directory(config=config), args.profile)
        assert full.status == "succeeded", full.error
        log(
            f"full sync: {full_s:.2f}s ({full.people_created} people, {full.teams_created} teams, "
            f"{full.memberships_added} memberships)"
        )

        log("no-change sync")
        noop, noop_s = timed(lambda: services.sync_directory(config=config), args.profile)
        assert noop.status == "succeeded", noop.error
        assert not noop.changed_anything, "a no-change sync changed something"
        log(f"no-change sync: {noop_s:.2f}s")
        memberships = Membership.objects.count()
        leads_changed = full.leads_changed
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)

    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures = {
        "people": args.people,
        "groups": args.groups,
        "memberships": memberships,
        "leads": args.leads,
        "leads_set": leads_changed,
        "database": connection.vendor,
        "bare_read_s": round(bare_s, 2),
        "full_sync_s": round(full_s, 2),
        "noop_sync_s": round(noop_s, 2),
        "full_vs_bare": round(full_s / bare_s, 2),
        "noop_vs_bare": round(noop_s / bare_s, 2),
        "peak_rss_mb": round(peak_rss_mb, 1),
    }
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
