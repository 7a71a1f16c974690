"""Benchmark: the approver inbox and "My access" with 10,000 pending and 200,000 past requests.

Seeds a fresh database (SQLite in a temporary folder, or `test_<name>` on the server that
DATABASE_URL names) with PEOPLE people in TEAMS teams, CLUSTERS cluster records, PENDING pending
requests waiting for the approvers team and HISTORICAL decided ones (denied, cancelled,
expired, revoked, and active with their grants), then renders each page ROUNDS times with
Django's test client and counts the SQL queries of each render. The query counts are measured
twice, on a small and on the full data set: the same count means no N+1.

Runs alone: `.venv/bin/python bench/requests.py [--pending N --historical N --rounds N]`.
The last line printed is one JSON object with inbox_p95_ms, inbox_queries, my_access_p95_ms and
my_access_queries (and more).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# This file is named after the benchmark, and so is the `requests` library the kubernetes
# client imports: take bench/ off the path so that the library is found, not this file.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))
BATCH = 5000


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=5000)
    parser.add_argument("--teams", type=int, default=200)
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--pending", type=int, default=10_000)
    parser.add_argument("--historical", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="warden-bench-requests-"))
    os.environ.setdefault("DEBUG", "1")
    os.environ["WARDEN_VAR_DIR"] = str(work)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django
    from django.conf import settings

    django.setup()
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    from django.db import connection

    settings.DATABASES["default"].setdefault("TEST", {})
    if connection.vendor == "sqlite":
        settings.DATABASES["default"]["TEST"]["NAME"] = str(work / "bench.sqlite3")
    log(f"creating a fresh {connection.vendor} database")
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        figures = run(args)
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(figures), flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    world = seed(args, pending=50, historical=500)
    small = measure(world, rounds=3)
    log(f"small data set: {small}")
    seed_more(world, args)
    full = measure(world, rounds=args.rounds)
    log(f"full data set: {full}")
    for page in ("inbox", "my_access"):
        if small[f"{page}_queries"] != full[f"{page}_queries"]:
            log(f"WARNING: {page} queries grow with the data: {small} -> {full}")
    return {
        "pending": world["pending"],
        "historical": world["historical"],
        "people": args.people,
        "clusters": args.clusters,
        **full,
        "inbox_queries_small": small["inbox_queries"],
        "my_access_queries_small": small["my_access_queries"],
    }


def seed(args: argparse.Namespace, pending: int, historical: int) -> dict[str, Any]:
    from django.contrib.auth import get_user_model

    from access.models import ApprovalPolicy, Membership, Person, Role, Team
    from clusters.models import Cluster

    log(f"seeding {args.people} people, {args.teams} teams, {args.clusters} clusters")
    User = get_user_model()
    people = Person.objects.bulk_create(
        [
            Person(dn=f"uid=u{i},ou=people", username=f"u{i}", email=f"u{i}@example.com")
            for i in range(args.people)
        ],
        batch_size=BATCH,
    )
    teams = Team.objects.bulk_create(
        [Team(dn=f"cn=t{i},ou=groups", name=f"t{i}") for i in range(args.teams)]
    )
    approvers = Team.objects.create(dn="cn=approvers,ou=groups", name="approvers")
    rng = random.Random(7)
    Membership.objects.bulk_create(
        [Membership(team=teams[i % len(teams)], person=p) for i, p in enumerate(people)]
        + [Membership(team=approvers, person=p) for p in people[:20]],
        batch_size=BATCH,
    )
    envs = ["dev", "staging", "prod"]
    Cluster.objects.bulk_create(
        [
            Cluster(
                name=f"c{i:04d}",
                environment=envs[i % 3],
                tier=f"tier-{i % 4}",
                api_url=f"https://c{i}.invalid",
                token="unused",
            )
            for i in range(args.clusters)
        ]
    )
    for policy in ApprovalPolicy.objects.all():
        policy.approver_teams.set([approvers])
    approver = User.objects.create_user("approver")
    people[0].user = approver
    people[0].save(update_fields=["user"])
    requester = User.objects.create_user("requester")
    people[100].user = requester
    people[100].save(update_fields=["user"])
    world = {
        "rng": rng,
        "people": people,
        "approvers": approvers,
        "approver": approver,
        "requester": requester,
        "roles": list(Role.objects.all()),
        "pending": 0,
        "historical": 0,
    }
    add_requests(world, pending=pending, historical=historical)
    return world


def seed_more(world: dict[str, Any], args: argparse.Namespace) -> None:
    add_requests(
        world,
        pending=args.pending - world["pending"],
        historical=args.historical - world["historical"],
    )


def add_requests(world: dict[str, Any], pending: int, historical: int) -> None:
    from django.utils import timezone

    from access.choices import GrantSource, RequestState
    from access.models import AccessRequest, Grant

    log(f"adding {pending} pending and {historical} past requests")
    rng, people, roles = world["rng"], world["people"], world["roles"]
    now = timezone.now()
    through = AccessRequest.approver_teams.through
    past_states = [RequestState.DENIED, RequestState.CANCELLED, RequestState.EXPIRED]
    past_states += [RequestState.REVOKED, RequestState.ACTIVE]
    made = 0
    total = pending + historical
    while made < total:
        batch = []
        for _ in range(min(BATCH, total - made)):
            is_pending = made < pending
            # the requester of "My access" has a share of the history, like a busy developer,
            # and a pending and a past request in every data set (so that the small and the
            # full set compare a page with requests to a page with more of them)
            mine = made in (0, pending) or rng.random() < 0.0005
            who = people[100] if mine else people[rng.randrange(50, len(people))]
            created = now - timedelta(minutes=rng.randrange(1, 60 * 24 * 365))
            batch.append(
                AccessRequest(
                    requester=who,
                    role=rng.choice(roles),
                    environments=[rng.choice(["dev", "staging", "prod"])],
                    namespaces=[f"ns-{rng.randrange(50)}"],
                    duration=timedelta(hours=4),
                    justification="benchmark request with a justification of some length",
                    state=RequestState.PENDING if is_pending else rng.choice(past_states),
                    approvals_required=1,
                    created_at=created,
                )
            )
            made += 1
        rows = AccessRequest.objects.bulk_create(batch, batch_size=BATCH)
        pending_rows = [r for r in rows if r.state == RequestState.PENDING]
        through.objects.bulk_create(
            [through(accessrequest_id=r.pk, team_id=world["approvers"].pk) for r in pending_rows],
            batch_size=BATCH,
        )
        active = [r for r in rows if r.state == RequestState.ACTIVE]
        grants = Grant.objects.bulk_create(
            [
                Grant(
                    person_id=r.requester_id,
                    role_id=r.role_id,
                    environments=r.environments,
                    namespaces=r.namespaces,
                    source=GrantSource.REQUEST,
                    expires_at=now + timedelta(hours=rng.randrange(1, 96)),
                )
                for r in active
            ],
            batch_size=BATCH,
        )
        for r, g in zip(active, grants, strict=True):
            r.grant_id = g.pk
        AccessRequest.objects.bulk_update(active, ["grant"], batch_size=BATCH)
        log(f"  {made}/{total}")
    world["pending"] += pending
    world["historical"] += historical


def measure(world: dict[str, Any], rounds: int) -> dict[str, Any]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    figures: dict[str, Any] = {}
    for page, url, user in (
        ("inbox", "/inbox/", world["approver"]),
        ("inbox_page_100", "/inbox/?page=100", world["approver"]),
        ("my_access", "/", world["requester"]),
    ):
        client = Client()
        client.force_login(user)
        client.get(url)  # warm: sessions, caches, the first query plans
        times = []
        queries = 0
        for _ in range(rounds):
            with CaptureQueriesContext(connection) as captured:
                started = time.perf_counter()
                response = client.get(url)
                times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (url, response.status_code)
            queries = len(captured.captured_queries)
        times.sort()
        figures[f"{page}_p50_ms"] = round(statistics.median(times), 1)
        figures[f"{page}_p95_ms"] = round(times[max(0, int(len(times) * 0.95) - 1)], 1)
        figures[f"{page}_queries"] = queries
    return figures


if __name__ == "__main__":
    main()
