"""Model shapes both apps share (abstract: no tables of their own)."""

from __future__ import annotations

import time

from django.db import models
from django.utils import timezone


class Run(models.Model):
    """A recorded run of a job (a directory sync, a reconcile, a discovery pass, a rotation):
    its status and trigger (each kind names its own choices), when it ended, how long it took
    and why it failed. Each kind says when it starts (`started_at`) and what it counted."""

    status = models.CharField(max_length=16)
    trigger = models.CharField(max_length=16)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_s = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        abstract = True

    def mark_finished(self, started: float) -> None:
        """Set when it ended and how long it took since `started` (a time.monotonic() reading
        taken when it began); the caller saves it."""
        self.finished_at = timezone.now()
        self.duration_s = round(time.monotonic() - started, 3)
