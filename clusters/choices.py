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


class AccountState(models.TextChoices):
    # Declared, waiting for the approvals its policy asks for: nothing on clusters, no token.
    PENDING = "pending", "Waiting for approval"
    ACTIVE = "active", "Active"
    # Its tokens are revoked and its ServiceAccount and bindings leave every cluster.
    RETIRED = "retired", "Retired"


class GenerationState(models.TextChoices):
    # Being issued and delivered; the previous generation is still the one in use.
    PENDING = "pending", "Being issued"
    ACTIVE = "active", "Active"
    # Superseded: still valid until its grace period ends, so consumers can switch.
    GRACE = "grace", "In grace period"
    REVOKED = "revoked", "Revoked"
    # Given up before it was delivered (the account was retired); its tokens are revoked.
    ABANDONED = "abandoned", "Abandoned"


class DeliveryKind(models.TextChoices):
    SECRET = "secret", "Kubernetes Secret"
    WEBHOOK = "webhook", "Webhook (external secret store)"


class RotationStatus(models.TextChoices):
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class RotationTrigger(models.TextChoices):
    SCHEDULE = "schedule", "Schedule"
    # A person asked (an owner-team member or an operator; who is on the generation).
    PERSON = "person", "Requested by a person"
    DECLARED = "declared", "First token of a new account"
    ADOPTED = "adopted", "First token of an account taken over from a legacy token"
    RECREATED = "recreated", "The ServiceAccount was recreated"
    RETIRE = "retire", "Account retired"


class LegacyTokenState(models.TextChoices):
    FOUND = "found", "Found"
    # The account it serves is now managed by Warden with rotated tokens.
    MIGRATED = "migrated", "Migrated to managed rotation"
    DELETED = "deleted", "Deleted by an operator"
    # Not seen at the last scan: removed by someone else.
    GONE = "gone", "Gone"
