"""Options that Warden's Celery tasks share, said once.

Every task is acknowledged after it ran (`acks_late`: a worker that dies mid-task leaves it to
another). A task that talks to something outside (a mail server, a webhook, a cluster) is retried
with exponential back-off when that thing does not answer: an OSError (sockets, smtplib) or the
errors named.
"""

from __future__ import annotations

from typing import Any

ONCE: dict[str, Any] = {"acks_late": True}


def retried(*errors: type[Exception], tries: int, backoff_max_s: int = 600) -> dict[str, Any]:
    """`tries` more attempts after the first, waiting 1, 2, 4… s up to `backoff_max_s`."""
    return {
        **ONCE,
        "autoretry_for": (OSError, *errors),
        "retry_backoff": True,
        "retry_backoff_max": backoff_max_s,
        "max_retries": tries,
    }
