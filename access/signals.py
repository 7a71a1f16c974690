"""Signals the people side sends for the machine side to act on, without importing it."""

from __future__ import annotations

from django.dispatch import Signal

# A request for a managed service account was decided (approved, denied or cancelled), inside
# the transaction that decided it. Sent with `request` (the AccessRequest).
service_account_request_decided = Signal()
