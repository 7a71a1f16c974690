"""Data: rotations a person asked for were recorded as "operator" (owner-team members ask too):
they become "person"; the first token of an account taken over from a legacy token becomes
"adopted" (it said "declared"). In batches, apart from the schema change (docs/upgrading.md)."""

from __future__ import annotations

from django.db import migrations

BATCH = 5000


def _in_batches(queryset, **values) -> None:
    while True:
        ids = list(queryset.values_list("pk", flat=True)[:BATCH])
        if not ids:
            return
        queryset.model.objects.filter(pk__in=ids).update(**values)


def forwards(apps, schema_editor) -> None:
    for name in ("RotationRun", "TokenGeneration"):
        model = apps.get_model("clusters", name)
        _in_batches(model.objects.filter(trigger="operator"), trigger="person")
    generations = apps.get_model("clusters", "TokenGeneration")
    _in_batches(
        generations.objects.filter(trigger="declared", number=1, account__adopted=True),
        trigger="adopted",
    )
    runs = apps.get_model("clusters", "RotationRun")
    _in_batches(
        runs.objects.filter(trigger="declared", account__adopted=True, generation__number=1),
        trigger="adopted",
    )


def backwards(apps, schema_editor) -> None:
    for name in ("RotationRun", "TokenGeneration"):
        model = apps.get_model("clusters", name)
        _in_batches(model.objects.filter(trigger="person"), trigger="operator")
        _in_batches(model.objects.filter(trigger="adopted"), trigger="declared")


class Migration(migrations.Migration):
    dependencies = [("clusters", "0012_rotation_trigger_person_and_adopted")]

    operations = [migrations.RunPython(forwards, backwards)]
