"""Saving some fields of many rows at once, each row with its own values.

Django's QuerySet.bulk_update() builds a CASE expression with a WHEN per row and field; for a
batch of rotations that costs more CPU than everything else the batch writes (measured with
bench/rotation.py). On PostgreSQL, update_rows() sends the rows as one VALUES list joined on
the primary key instead; elsewhere it is bulk_update().
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connections, models, router

# Rows per statement: keeps the parameter count far below PostgreSQL's 65535.
CHUNK = 500


def update_rows(objs: Sequence[models.Model], fields: Sequence[str]) -> None:
    """Write `fields` of every object (all of one model, already saved) as they are in memory,
    like bulk_update(objs, fields): no signals, no auto_now, other fields untouched."""
    if not objs:
        return
    model = type(objs[0])
    connection = connections[router.db_for_write(model)]
    if connection.vendor != "postgresql":
        model._default_manager.bulk_update(objs, list(fields))
        return
    meta = model._meta
    assert meta.pk is not None
    columns: list[models.Field[Any, Any]] = [meta.pk]
    for name in fields:
        column = meta.get_field(name)
        assert isinstance(column, models.Field) and column.concrete, f"{name} is not a column"
        columns.append(column)
    quote = connection.ops.quote_name
    # Each value cast to its column's type: a VALUES list has no types of its own.
    row = "(" + ", ".join(f"%s::{column.db_type(connection)}" for column in columns) + ")"
    names = [quote(str(c.column)) for c in columns]
    assignments = ", ".join(f"{name} = v.{name}" for name in names[1:])
    table, pk = quote(meta.db_table), names[0]
    with connection.cursor() as cursor:
        for start in range(0, len(objs), CHUNK):
            chunk = objs[start : start + CHUNK]
            params = [
                column.get_db_prep_save(getattr(obj, column.attname), connection)
                for obj in chunk
                for column in columns
            ]
            cursor.execute(
                f"UPDATE {table} SET {assignments} "  # noqa: S608 - names from the model
                f"FROM (VALUES {', '.join([row] * len(chunk))}) AS v ({', '.join(names)}) "
                f"WHERE {table}.{pk} = v.{pk}",
                params,
            )
