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


class Environment(models.TextChoices):
    """Where a cluster sits on the road to production; ordered dev < staging < prod."""

    DEV = "dev", "Development"
    STAGING = "staging", "Staging"
    PROD = "prod", "Production"


class Tier(models.TextChoices):
    """How critical a cluster is: tier-0 carries the business, tier-3 is a sandbox."""

    TIER0 = "tier-0", "Tier 0 (critical)"
    TIER1 = "tier-1", "Tier 1 (important)"
    TIER2 = "tier-2", "Tier 2 (standard)"
    TIER3 = "tier-3", "Tier 3 (sandbox)"


class RoleScope(models.TextChoices):
    CLUSTER = "cluster", "Cluster-wide"
    NAMESPACES = "namespaces", "Namespaces"


class GrantSource(models.TextChoices):
    STANDING = "standing", "Standing policy"
    REQUEST = "request", "Approved request"


class RequestState(models.TextChoices):
    """Where an access request stands. pending -> active | denied | cancelled; active -> expired |
    revoked. "active" means approved and granted: the grant exists from that moment."""

    PENDING = "pending", "Pending approval"
    ACTIVE = "active", "Active"
    DENIED = "denied", "Denied"
    CANCELLED = "cancelled", "Cancelled"
    EXPIRED = "expired", "Expired"
    REVOKED = "revoked", "Revoked"


class Decision(models.TextChoices):
    APPROVE = "approve", "Approved"
    DENY = "deny", "Denied"


class CampaignState(models.TextChoices):
    """An access-review campaign is open for decisions until an operator closes it."""

    OPEN = "open", "Open"
    CLOSED = "closed", "Closed"


class ReviewDecision(models.TextChoices):
    """What a reviewer decided about one grant."""

    PENDING = "pending", "Not reviewed yet"
    KEPT = "kept", "Kept"
    REVOKED = "revoked", "Revoked"
