from django.db import migrations, models

# SQLite now refuses DELETE as well as UPDATE of an event (PostgreSQL's trigger, from 0004,
# refuses both already). The DELETE trigger asks warden_audit_may_empty(), a function Warden
# registers on its own connections (access/apps.py), which says no unless the test harness is
# emptying the database between tests; any other connection (the sqlite3 shell) does not know
# the function, so its DELETE fails too.
SQLITE_SQL = [
    "DROP TRIGGER IF EXISTS access_auditevent_append_only",
    "CREATE TRIGGER access_auditevent_append_only BEFORE UPDATE ON access_auditevent "
    "BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END",
    "DROP TRIGGER IF EXISTS access_auditevent_no_delete",
    "CREATE TRIGGER access_auditevent_no_delete BEFORE DELETE ON access_auditevent "
    "WHEN NOT warden_audit_may_empty() "
    "BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END",
]
SQLITE_UNDO = ["DROP TRIGGER IF EXISTS access_auditevent_no_delete"]


def refuse_delete_on_sqlite(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "sqlite":
        for statement in SQLITE_SQL:
            schema_editor.execute(statement)


def allow_delete_on_sqlite(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "sqlite":
        for statement in SQLITE_UNDO:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [
        ("access", "0013_login_throttle_cache_table"),
    ]

    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="key_id",
            field=models.CharField(blank=True, default="", db_default="", max_length=16),
        ),
        migrations.RunPython(refuse_delete_on_sqlite, allow_delete_on_sqlite),
    ]
