"""Seed approval policies an operator can edit: easy on dev, two approvals on prod."""

from __future__ import annotations

from datetime import timedelta

from django.db import migrations

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
DEFAULTS = [
    # name, environment, role, approvals, max, default, break-glass (duration or None)
    ("Anywhere else", "", None, 1, 7 * DAY, DAY, None),
    ("Development", "dev", None, 1, 30 * DAY, 7 * DAY, None),
    ("Development, viewer: granted at once", "dev", "viewer", 0, 90 * DAY, 30 * DAY, None),
    ("Staging", "staging", None, 1, 14 * DAY, 3 * DAY, None),
    # Break-glass is off everywhere: an operator turns it on naming teams and roles (0011).
    ("Production", "prod", None, 2, DAY, 4 * HOUR, None),
]


def seed(apps, schema_editor):  # type: ignore[no-untyped-def]
    Policy = apps.get_model("access", "ApprovalPolicy")
    Role = apps.get_model("access", "Role")
    for name, environment, role_name, approvals, longest, usual, glass in DEFAULTS:
        role = Role.objects.filter(name=role_name).first() if role_name else None
        if role_name and role is None:
            continue
        Policy.objects.get_or_create(
            environment=environment,
            tier="",
            role=role,
            defaults={
                "name": name,
                "approvals_required": approvals,
                "max_duration": longest,
                "default_duration": usual,
                "break_glass_allowed": glass is not None,
                "break_glass_duration": glass,
            },
        )


class Migration(migrations.Migration):
    dependencies = [("access", "0005_requests_and_policies")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
