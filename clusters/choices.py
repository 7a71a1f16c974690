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


class DiscoveryKind(models.TextChoices):
    """Where a discovery source finds clusters."""

    CLUSTER_API = "cluster-api", "Cluster API management cluster"
    KUBECONFIG_DIR = "kubeconfig-dir", "Directory of kubeconfig files"


class DiscoveryStatus(models.TextChoices):
    RUNNING = "running", "Running"
    # The source answered; some clusters may still have failed (see the run's problems).
    SUCCEEDED = "succeeded", "Succeeded"
    # The source itself could not be read: nothing was registered or retired.
    FAILED = "failed", "Failed"
    # Another run of the same source held its lock: nothing to do, a normal outcome.
    SKIPPED = "skipped", "Skipped"


class DiscoveryTrigger(models.TextChoices):
    SCHEDULE = "schedule", "Schedule"
    OPERATOR = "operator", "Operator"
