"""A service account's access is decided by the people side's approvals.

Declaring (or widening) an account files access requests with the policy service
(declare._propose); when one of them is decided, the people side sends
`service_account_request_decided` inside the deciding transaction and this module applies the
account's proposal (all approved) or drops it (one denied or cancelled).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from access.choices import RequestState
from clusters.choices import AccountState
from clusters.models import ManagedServiceAccount
from clusters.serviceaccounts import declare, legacy
from core.types import Actor


def on_request_decided(sender: Any, request: Any, actor: Actor = None, **kwargs: Any) -> None:
    """Apply or drop the proposal of the account this request belongs to."""
    account = (
        ManagedServiceAccount.objects.select_for_update(of=("self",))
        .filter(approval_requests=request)
        .first()
    )
    if account is None:
        return  # filed just now and not linked yet: declare._propose looks at it itself
    if request.state != RequestState.ACTIVE:
        declare.drop_proposal(account, request, actor)
        return
    if account.state == AccountState.PENDING and account.adopted:
        # A legacy token's ServiceAccount is taken over only once the account is approved,
        # and before its first token is asked for (callbacks run in the order registered).
        account_id = account.pk
        transaction.on_commit(lambda: legacy.adopt_migrated(account_id))
    declare.apply_approved(account, actor)
