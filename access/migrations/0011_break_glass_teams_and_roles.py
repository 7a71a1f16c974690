"""Break-glass names who may break glass (teams) and for which roles; it is off until it does.

Policies that allowed break-glass before named no one, so it was open to everyone for every role:
this migration turns it off on each of them (docs/upgrading.md, "Upgrading to the security release").
"""

from __future__ import annotations

from django.db import migrations, models


def close_break_glass(apps, schema_editor):  # type: ignore[no-untyped-def]
    Policy = apps.get_model("access", "ApprovalPolicy")
    Policy.objects.filter(break_glass_allowed=True).update(
        break_glass_allowed=False, break_glass_duration=None
    )


class Migration(migrations.Migration):
    dependencies = [
        ("access", "0010_api_tokens"),
    ]

    operations = [
        migrations.AddField(
            model_name="approvalpolicy",
            name="break_glass_roles",
            field=models.ManyToManyField(
                blank=True, related_name="break_glass_policies", to="access.role"
            ),
        ),
        migrations.AddField(
            model_name="approvalpolicy",
            name="break_glass_teams",
            field=models.ManyToManyField(
                blank=True, related_name="may_break_glass", to="access.team"
            ),
        ),
        migrations.RunPython(close_break_glass, migrations.RunPython.noop),
    ]
