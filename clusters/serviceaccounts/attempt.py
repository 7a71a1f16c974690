"""One rotation attempt's state: what an attempt of one account did so far (for its RotationRun),
what it did on the clusters and targets (before it is written down), and what the attempts
rotated together in one batch share. Rotating (rotation.py), issuing, revoking and delivering all
work on it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

from clusters.models import Cluster, DeliveryTarget, ManagedServiceAccount, TokenGeneration
from clusters.serviceaccounts.declare import reached_clusters


@dataclass
class Progress:
    """What this attempt did on the clusters and targets, before it is written down."""

    issued: dict[str, dict[str, str]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    delivered: list[DeliveryTarget] = field(default_factory=list)
    undelivered: list[DeliveryTarget] = field(default_factory=list)
    failure: str = ""


@dataclass(eq=False)
class Batch:
    """What the attempts rotated together share: when their lease was last renewed, and the
    clusters that did not answer (not asked again by the others)."""

    held_at: float = field(default_factory=time.monotonic)
    unreachable: dict[str, str] = field(default_factory=dict)


@dataclass(eq=False)  # compared (and hashed) by identity
class Attempt:
    """What one rotation attempt of one account did, for its RotationRun."""

    account: ManagedServiceAccount
    lease: str
    started_at: datetime
    started: float
    steps: list[str] = field(default_factory=list)
    generation: TokenGeneration | None = None
    trigger: str = ""
    # The account's pending, active and in-grace generations, read once and kept up to date
    # in memory as this attempt changes them (it holds the lease: nobody else does).
    live: list[TokenGeneration] = field(default_factory=list)
    batch: Batch = field(default_factory=Batch)
    api_calls: int = 0
    # Why this attempt failed ("" while it has not); its run says so and the token in force
    # stays as it was.
    failure: str = ""
    # Another worker took the lease over: this attempt records nothing more.
    lost: bool = False
    released: bool = False
    progress: Progress = field(default_factory=Progress)
    _clusters: list[Cluster] | None = None
    _targets: list[DeliveryTarget] | None = None

    def clusters(self) -> list[Cluster]:
        """The clusters the account reaches, read once per attempt."""
        if self._clusters is None:
            self._clusters = reached_clusters(self.account)
        return self._clusters

    def targets(self) -> list[DeliveryTarget]:
        """The account's delivery targets, read once per attempt."""
        if self._targets is None:
            self._targets = list(self.account.targets.select_related("cluster"))
        return self._targets

    @property
    def going(self) -> bool:
        """Still under way: neither failed nor taken over."""
        return not (self.failure or self.lost)


class RotationFailed(Exception):
    """A rotation step did not complete; the generation in force is untouched."""
