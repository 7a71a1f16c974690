"""Seed the role catalogue with sensible defaults an operator can edit."""

from __future__ import annotations

from django.db import migrations

DEFAULTS = [
    # name, display, rank, description, [(environment, tier, cluster_role, scope, allowed)]
    (
        "viewer",
        "Viewer",
        10,
        "Read most objects in a namespace (no Secrets).",
        [("", "", "view", "namespaces", True)],
    ),
    (
        "developer",
        "Developer",
        20,
        "Create and change workloads in a namespace; read-only in production.",
        [("", "", "edit", "namespaces", True), ("prod", "", "view", "namespaces", True)],
    ),
    (
        "operator",
        "Operator",
        30,
        "Full control of a namespace, including its RoleBindings.",
        [("", "", "admin", "namespaces", True)],
    ),
    (
        "admin",
        "Cluster admin",
        40,
        "Everything on the cluster. Not available in production.",
        [("", "", "cluster-admin", "cluster", True), ("prod", "", "", "cluster", False)],
    ),
]


def seed(apps, schema_editor):  # type: ignore[no-untyped-def]
    Role = apps.get_model("access", "Role")
    RoleDefinition = apps.get_model("access", "RoleDefinition")
    for name, display, rank, description, definitions in DEFAULTS:
        role, created = Role.objects.get_or_create(
            name=name, defaults={"display_name": display, "rank": rank, "description": description}
        )
        if not created:
            continue
        for environment, tier, cluster_role, scope, allowed in definitions:
            RoleDefinition.objects.create(
                role=role,
                environment=environment,
                tier=tier,
                cluster_role=cluster_role,
                scope=scope,
                allowed=allowed,
            )


class Migration(migrations.Migration):
    dependencies = [("access", "0002_role_grant_roledefinition")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
