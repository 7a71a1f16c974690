# The shared cache's table (login throttling counts), made where `migrate` runs so that no extra
# step is needed: `createcachetable` does nothing for a cache that is not in the database
# (CACHE_URL=redis://...) or a table that exists already.

from django.core.management import call_command
from django.db import migrations


def create_cache_table(apps, schema_editor):  # type: ignore[no-untyped-def]
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies = [
        ("access", "0012_merge_covers_and_break_glass"),
    ]

    operations = [
        migrations.RunPython(create_cache_table, migrations.RunPython.noop, elidable=False),
    ]
