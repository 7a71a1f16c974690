"""Enumerations of the machine side."""

from __future__ import annotations

from django.db import models


class ClusterState(models.TextChoices):
    ACTIVE = "active", "Active"
    UNREACHABLE = "unreachable", "Unreachable"
    RETIRED = "retired", "Retired"


class ReconcileStatus(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    # Another worker held this cluster's lock: nothing to do, a normal outcome.
    SKIPPED = "skipped", "Skipped"


class ReconcileTrigger(models.TextChoices):
    SCHEDULE = "schedule", "Schedule"
    CHANGE = "change", "A grant, role, membership or cluster changed"
    OPERATOR = "operator", "Operator"
    RETIRE = "retire", "Cluster retired"
