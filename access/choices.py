"""Enumerations of the people side."""

from __future__ import annotations

from django.db import models


class InactiveReason(models.TextChoices):
    DISABLED = "disabled", "Disabled in the directory"
    REMOVED = "removed", "No longer in the directory"


class SyncStatus(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    # The safety guard stopped it: it would have deactivated too much. Nothing was changed.
    BLOCKED = "blocked", "Blocked by the safety guard"
    # Another sync held the lock; this one did nothing, which is a normal outcome.
    SKIPPED = "skipped", "Skipped (another sync was running)"


class SyncTrigger(models.TextChoices):
    SCHEDULE = "schedule", "Schedule"
    COMMAND = "command", "Command line"
    OPERATOR = "operator", "Operator"
    CONFIRMATION = "confirmation", "Operator confirmation of a blocked sync"
