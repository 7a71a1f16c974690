"""Migrations run on a live database: nothing after the baseline locks an existing table for long.

The policy (docs/upgrading.md), enforced on the SQL each new migration issues on
PostgreSQL (`manage.py sqlmigrate`), for every table that existed at the baseline:
- an index is built CONCURRENTLY (AddIndexConcurrently, in a migration with atomic = False);
- no column changes type (a table rewrite under an exclusive lock);
- no SET NOT NULL on an existing column (a full scan under an exclusive lock);
- a new foreign key or check constraint is added NOT VALID (validated later, without the lock),
  and no new column carries an inline CHECK (PositiveIntegerField: use IntegerField + a
  validator, or a NOT VALID constraint);
- a new NOT NULL column has a DEFAULT (instant on PostgreSQL 11+);
- nothing is renamed (the release still running during a rolling upgrade reads the old name).
New tables are free of these rules: nothing uses them yet.
"""

from __future__ import annotations

import io
import re

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.loader import MigrationLoader

from tests.fixtures.services import needs_postgresql

APPS = ("access", "clusters")
# The migrations written before this policy; every later one is checked.
BASELINE = {
    ("access", name)
    for name in (
        "0001_initial",
        "0002_role_grant_roledefinition",
        "0003_default_roles",
        "0004_audit",
        "0005_requests_and_policies",
        "0006_default_policies",
        "0007_directory_leads",
        "0008_access_reviews",
    )
} | {
    ("clusters", name)
    for name in (
        "0001_initial",
        "0002_discovery_sources",
        "0003_shadow_access",
        "0004_drop_cluster_lock",
    )
}
CREATE_TABLE = re.compile(r'CREATE TABLE "(\w+)"')


def sql_of(app: str, name: str) -> str:
    out = io.StringIO()
    call_command("sqlmigrate", app, name, stdout=out)
    return out.getvalue()


def problems(sql: str, existing: set[str]) -> list[str]:
    """What in `sql` would hold a lock on one of the `existing` tables for long."""
    found = []
    for statement in (s.strip() for s in sql.split(";")):
        if not statement or statement.startswith("--"):
            statement = "\n".join(
                line for line in statement.splitlines() if not line.startswith("--")
            ).strip()
            if not statement:
                continue
        index = re.match(r'CREATE (?:UNIQUE )?INDEX (CONCURRENTLY )?.*? ON "(\w+)"', statement)
        if index and index.group(2) in existing and not index.group(1):
            found.append(
                f"an index on {index.group(2)} built without CONCURRENTLY blocks its writes: use "
                "AddIndexConcurrently in a migration with atomic = False"
            )
        table_match = re.match(r'ALTER TABLE "(\w+)"', statement)
        if not table_match or table_match.group(1) not in existing:
            continue
        table = table_match.group(1)
        if re.search(r'ALTER COLUMN "\w+" TYPE', statement):
            found.append(f"a column type change rewrites {table} under an exclusive lock")
        if re.search(r"SET NOT NULL", statement):
            found.append(f"SET NOT NULL scans {table} under an exclusive lock")
        if re.search(r"ADD CONSTRAINT .*(FOREIGN KEY|CHECK)", statement) and (
            "NOT VALID" not in statement
        ):
            found.append(f"a constraint validated on {table} while it is locked: add it NOT VALID")
        if re.search(r"ADD COLUMN .* CHECK", statement):
            found.append(f"a new column's CHECK scans {table} under an exclusive lock")
        if re.search(r"ADD COLUMN .* NOT NULL", statement) and "DEFAULT" not in statement:
            found.append(f"a NOT NULL column without a DEFAULT cannot be added to {table}")
        if re.search(r"RENAME (COLUMN|TO)", statement):
            found.append(f"a rename on {table} breaks the release still running")
    return found


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ('CREATE INDEX "i" ON "clusters_cluster" ("name");', "without CONCURRENTLY"),
        ('ALTER TABLE "access_grant" ALTER COLUMN "role_id" TYPE bigint;', "rewrites"),
        ('ALTER TABLE "access_grant" ALTER COLUMN "x" SET NOT NULL;', "SET NOT NULL"),
        (
            'ALTER TABLE "access_grant" ADD CONSTRAINT "f" FOREIGN KEY ("x") REFERENCES "y";',
            "NOT VALID",
        ),
        (
            'ALTER TABLE "access_grant" ADD COLUMN "n" integer DEFAULT 0 CHECK ("n" >= 0);',
            "CHECK",
        ),
        ('ALTER TABLE "access_grant" ADD COLUMN "n" integer NOT NULL;', "DEFAULT"),
        ('ALTER TABLE "access_grant" RENAME COLUMN "a" TO "b";', "rename"),
    ],
)
def test_the_rules_catch_what_locks_a_live_table(sql, expected):
    found = problems(sql, {"clusters_cluster", "access_grant"})
    assert found and expected in found[0]


def test_the_rules_let_through_what_a_live_table_bears():
    safe = """
        CREATE INDEX CONCURRENTLY "i" ON "clusters_cluster" ("name");
        ALTER TABLE "access_grant" ADD COLUMN "note" text NULL;
        ALTER TABLE "access_grant" ADD COLUMN "n" integer DEFAULT 0 NOT NULL;
        ALTER TABLE "access_grant" ADD CONSTRAINT "f" FOREIGN KEY ("x") REFERENCES "y" NOT VALID;
        CREATE TABLE "clusters_new" ("id" bigint NOT NULL);
        CREATE INDEX "j" ON "clusters_new" ("id");
        ALTER TABLE "clusters_new" ADD CONSTRAINT "g" FOREIGN KEY ("id") REFERENCES "clusters_x";
    """
    assert problems(safe, {"clusters_cluster", "access_grant"}) == []


@pytest.mark.django_db
def test_migrations_after_the_baseline_hold_no_long_lock_on_existing_tables():
    needs_postgresql("the policy is about PostgreSQL's locks (DATABASE_URL=postgres://..., as CI)")
    loader = MigrationLoader(connection, ignore_no_migrations=True)
    ours = sorted(key for key in loader.disk_migrations if key[0] in APPS)
    assert set(ours) >= BASELINE
    existing: set[str] = set()
    for app, name in sorted(BASELINE):
        existing |= set(CREATE_TABLE.findall(sql_of(app, name)))
    assert {"clusters_cluster", "clusters_reconcilerun", "access_auditevent"} <= existing

    report = {
        f"{app}.{name}": found
        for app, name in ours
        if (app, name) not in BASELINE and (found := problems(sql_of(app, name), existing))
    }

    assert report == {}
