"""Access reviews: periodic campaigns where leads keep or revoke the standing access they vouch
for. This module makes the changes (start, decide, close, remind); access.selectors reads them.

An operator starts a campaign over a scope; Warden makes one item per grant in force. Each item's
reviewers are the grant's leads as the directory says now (a team's owners, a person's manager),
or the operators when there is none. A decision is taken once, under row locks, and audited with
the change it makes; revoking goes through `access.services.revoke_grant`, which reconciles the
clusters the grant reaches. Closing a campaign never revokes anything: it records what stayed
unreviewed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import EmailMessage, get_connection
from django.db import transaction
from django.db.models import Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from access import audit, services
from access.choices import CampaignState, Environment, GrantSource, ReviewDecision
from access.models import Grant, ReviewCampaign, ReviewItem
from access.permissions import may_decide_review, person_of
from access.selectors import (
    ItemRow,
    describe_end,
    describe_scope,
    describe_subject,
    review_counts,
    review_items_with_details,
    review_rows,
    unreviewed_items,
)
from access.words import count_of
from core import queue
from core.types import Actor, account_of

logger = logging.getLogger(__name__)
# Items named one by one in a reminder email; the rest are counted and wait on the page.
EMAIL_ITEMS = 50


# --- starting -------------------------------------------------------------------------------


def grants_in_scope(
    environments: Sequence[str], request_grants_older_than_days: int | None, now: datetime
) -> list[int]:
    """Ids of the grants in force a campaign over this scope reviews.

    Standing grants always; grants from approved requests only when the operator asks for those
    at least N days old (the others expire on their own). A grant limited to no environment
    reaches every one, so it is in scope of any environment.
    """
    sources = Q(source=GrantSource.STANDING)
    if request_grants_older_than_days is not None:
        cutoff = now - timedelta(days=request_grants_older_than_days)
        sources |= Q(source=GrantSource.REQUEST, created_at__lte=cutoff)
    candidates = Grant.objects.in_force(now).filter(sources).order_by("id")
    wanted = set(environments)
    # JSON containment differs between PostgreSQL and SQLite; the lists are short.
    return [
        pk
        for pk, envs in candidates.values_list("id", "environments").iterator(chunk_size=2000)
        if not wanted or not envs or wanted.intersection(envs)
    ]


@transaction.atomic
def start_campaign(
    *,
    name: str,
    due_on: date,
    actor: Actor,
    environments: Sequence[str] = (),
    request_grants_older_than_days: int | None = None,
) -> ReviewCampaign:
    """Start a campaign: one item per grant in force within the scope; reviewers are told."""
    name = name.strip()
    errors: dict[str, str] = {}
    if not name:
        errors["name"] = "Give the campaign a name, e.g. “2025 Q3 production access”."
    if due_on < timezone.localdate():
        errors["due_on"] = f"The due date {due_on:%Y-%m-%d} is in the past; pick today or later."
    unknown = sorted(set(environments) - set(Environment.values))
    if unknown:
        errors["environments"] = (
            f"Unknown environment(s) {', '.join(unknown)}; use {', '.join(Environment.values)}."
        )
    if request_grants_older_than_days is not None and request_grants_older_than_days < 1:
        errors["request_grants_older_than_days"] = "Use a number of days of 1 or more."
    if errors:
        raise ValidationError(errors)
    now = timezone.now()
    grant_ids = grants_in_scope(environments, request_grants_older_than_days, now)
    if not grant_ids:
        raise ValidationError(
            "No grant in force is in this scope, so there is nothing to review: widen the scope."
        )
    campaign = ReviewCampaign.objects.create(
        name=name,
        due_on=due_on,
        environments=sorted(set(environments)),
        request_grants_older_than_days=request_grants_older_than_days,
        started_by=account_of(actor),
    )
    ReviewItem.objects.bulk_create(
        [ReviewItem(campaign=campaign, grant_id=pk) for pk in grant_ids], batch_size=1000
    )
    audit.record(
        "review.started",
        actor=actor,
        obj=campaign,
        after={
            "name": name,
            "due_on": due_on.isoformat(),
            "environments": campaign.environments,
            "request_grants_older_than_days": request_grants_older_than_days,
            "items": len(grant_ids),
        },
    )
    transaction.on_commit(lambda: _queue_start_notice(campaign.pk))
    return campaign


def _queue_start_notice(campaign_id: int) -> None:
    queue.send("access.tasks.notify_review_started_task", campaign_id)


# --- deciding -------------------------------------------------------------------------------


@transaction.atomic
def decide(item: ReviewItem | int, *, actor: Actor, decision: str, comment: str = "") -> ReviewItem:
    """Keep or revoke one item's grant; counted once however many reviewers press at once.

    Locks the campaign (as closing does), the item and the grant, in that order, then checks
    again what the page showed: the actor still leads the grant (or is an operator), the
    campaign is open, nobody decided the item, and the grant is still in force.
    """
    pk = item.pk if isinstance(item, ReviewItem) else item
    comment = comment.strip()
    if decision not in (ReviewDecision.KEPT, ReviewDecision.REVOKED):
        raise ValidationError("Decide either to keep or to revoke the access.")
    if decision == ReviewDecision.REVOKED and not comment:
        raise ValidationError(
            "Say why the access is revoked: the comment is kept with the grant and in the audit "
            "trail."
        )
    campaign_id = ReviewItem.objects.filter(pk=pk).values_list("campaign_id", flat=True).first()
    if campaign_id is None:
        raise ValidationError("This review item does not exist.")
    campaign = ReviewCampaign.objects.select_for_update().get(pk=campaign_id)
    locked = (
        ReviewItem.objects.select_for_update(of=("self",)).select_related("decided_by").get(pk=pk)
    )
    grant = (
        Grant.objects.select_for_update(of=("self",))
        .select_related("team", "person__manager", "role", "revoked_by")
        .get(pk=locked.grant_id)
    )
    if not may_decide_review(actor, grant):
        raise PermissionDenied(
            "You no longer lead this access in the directory (team owner or manager), so you "
            "cannot decide it; its current lead or an operator can."
        )
    if not campaign.is_open:
        raise ValidationError(
            f"The campaign “{campaign.name}” was closed; its items can no longer be decided."
        )
    if locked.decision != ReviewDecision.PENDING:
        who = locked.decided_by.get_username() if locked.decided_by else "someone"
        raise ValidationError(
            f"This item was already {locked.get_decision_display().lower()} by {who}; "
            "a decision is taken once."
        )
    reviewer = person_of(actor)
    if decision == ReviewDecision.KEPT and reviewer is not None and grant.person_id == reviewer.pk:
        raise PermissionDenied("You cannot confirm your own access; your lead or an operator can.")
    now = timezone.now()
    ended = describe_end(grant, now)
    if ended:
        raise ValidationError(f"This access was already {ended}; nothing is left to decide.")
    locked.decision = decision
    locked.decided_by = account_of(actor)
    locked.decided_at = now
    locked.comment = comment
    locked.save(update_fields=["decision", "decided_by", "decided_at", "comment"])
    if decision == ReviewDecision.REVOKED:
        services.revoke_grant(
            grant, actor=actor, reason=f"Access review “{campaign.name}”: {comment}"
        )
    audit.record(
        f"review.{decision}",
        actor=actor,
        obj=locked,
        before={"decision": ReviewDecision.PENDING.value},
        after={
            "decision": decision,
            "campaign": campaign.pk,
            "grant": grant.pk,
            "subject": describe_subject(grant),
            "role": grant.role.name,
            "scope": describe_scope(grant),
        },
        reason=comment,
    )
    return locked


# --- closing --------------------------------------------------------------------------------


@transaction.atomic
def close_campaign(campaign: ReviewCampaign, *, actor: Actor) -> ReviewCampaign:
    """Close a campaign. It revokes nothing: what nobody reviewed stays, and is recorded."""
    locked = ReviewCampaign.objects.select_for_update().get(pk=campaign.pk)
    if not locked.is_open:
        raise ValidationError(f"The campaign “{locked.name}” is already closed.")
    figures = review_counts(locked)
    unreviewed = list(unreviewed_items(locked).values_list("grant_id", flat=True)[:1000])
    locked.state = CampaignState.CLOSED
    locked.closed_by = account_of(actor)
    locked.closed_at = timezone.now()
    locked.save(update_fields=["state", "closed_by", "closed_at"])
    audit.record(
        "review.closed",
        actor=actor,
        obj=locked,
        before={"state": CampaignState.OPEN.value},
        after={
            "state": CampaignState.CLOSED.value,
            "kept": figures.kept,
            "revoked": figures.revoked,
            "unreviewed": figures.unreviewed,
            "unreviewed_grants": unreviewed,
        },
        reason="Closing revokes nothing; unreviewed access stays as it was.",
    )
    return locked


# --- telling reviewers ----------------------------------------------------------------------


@dataclass
class Letter:
    """The items one reviewer is asked about in one email."""

    email: str
    rows: list[ItemRow] = field(default_factory=list)


def _operator_emails() -> list[str]:
    users = get_user_model().objects.filter(is_active=True, is_staff=True).select_related("person")
    emails = {u.email or getattr(getattr(u, "person", None), "email", "") for u in users}
    return sorted(e for e in emails if e)


def letters_for(campaign: ReviewCampaign, *, overdue_only: bool) -> list[Letter]:
    """Who is asked about which unreviewed items: each lead, and operators for the unled."""
    today = timezone.localdate()
    items = review_items_with_details(unreviewed_items(campaign)).order_by("id")
    by_email: dict[str, Letter] = {}
    operators: list[str] | None = None
    for row in review_rows(items, today):
        if overdue_only and not row.overdue:
            continue
        if row.leads:
            emails = [lead.email for lead in row.leads if lead.email]
            if not emails:
                logger.warning(
                    "access review %s: the leads of item %s have no email address",
                    campaign.pk,
                    row.item.pk,
                )
        else:
            operators = operators if operators is not None else _operator_emails()
            emails = operators
            if not emails:
                logger.warning(
                    "access review %s: item %s has no lead and no operator has an email address",
                    campaign.pk,
                    row.item.pk,
                )
        for email in emails:
            by_email.setdefault(email, Letter(email)).rows.append(row)
    return list(by_email.values())


def _send(campaign: ReviewCampaign, letters: list[Letter], kind: str) -> int:
    base = getattr(settings, "WARDEN_BASE_URL", "")
    link = f"{base}{reverse('review-mine')}"
    messages = []
    for letter in letters:
        context = {
            "campaign": campaign,
            "rows": letter.rows[:EMAIL_ITEMS],
            "more": max(0, len(letter.rows) - EMAIL_ITEMS),
            "count": len(letter.rows),
            "link": link,
            "kind": kind,
        }
        if kind == "overdue":
            items = count_of(len(letter.rows), "item")
            subject = f"Overdue access review “{campaign.name}”: {items} wait for you"
        else:
            subject = (
                f"Access review “{campaign.name}”: "
                f"{count_of(len(letter.rows), 'item')} to review by "
                f"{campaign.due_on:%Y-%m-%d}"
            )
        body = render_to_string("access/reviews/email.txt", context)
        messages.append(EmailMessage(subject=subject, body=body, to=[letter.email]))
    if not messages:
        return 0
    return int(get_connection().send_messages(messages) or 0)


def notify_started(campaign_id: int) -> int:
    """Tell every reviewer of a new campaign what waits for them; returns emails sent."""
    campaign = ReviewCampaign.objects.filter(pk=campaign_id, state=CampaignState.OPEN).first()
    if campaign is None:
        return 0  # closed (or gone) before the notice went out: nothing to ask for
    return _send(campaign, letters_for(campaign, overdue_only=False), "started")


def send_overdue_reminders(today: date | None = None) -> int:
    """The daily reminder: each reviewer of items past their campaign's due date gets one email
    per campaign. Each campaign's day is claimed with a conditional update in the same
    transaction as the sending, so two runs on one day send once, and a failed send is retried.
    """
    today = today or timezone.localdate()
    sent = 0
    due = ReviewCampaign.objects.filter(state=CampaignState.OPEN, due_on__lt=today)
    for campaign in due.order_by("id"):
        with transaction.atomic():
            claimed = (
                ReviewCampaign.objects.filter(pk=campaign.pk, state=CampaignState.OPEN)
                .exclude(reminded_on=today)
                .update(reminded_on=today)
            )
            if not claimed:
                continue
            sent += _send(campaign, letters_for(campaign, overdue_only=True), "overdue")
    return sent
