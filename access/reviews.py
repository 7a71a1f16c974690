"""Access reviews: periodic campaigns where leads keep or revoke the standing access they vouch for.

An operator starts a campaign over a scope; Warden makes one item per grant in force. Each item's
reviewers are the grant's leads as the directory says now (a team's owners, a person's manager),
or the operators when there is none. A decision is taken once, under row locks, and audited with
the change it makes; revoking goes through `access.services.revoke_grant`, which reconciles the
clusters the grant reaches. Closing a campaign never revokes anything: it records what stayed
unreviewed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import EmailMessage, get_connection
from django.db import transaction
from django.db.models import Count, Prefetch, Q, QuerySet
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from access import audit, leads, services
from access.choices import CampaignState, Environment, GrantSource, ReviewDecision
from access.models import Grant, Person, ReviewCampaign, ReviewItem
from access.permissions import may_decide_review, person_of
from access.words import count_of
from core import queue
from core.types import Actor, account_of

logger = logging.getLogger(__name__)
# Items named one by one in a reminder email; the rest are counted and wait on the page.
EMAIL_ITEMS = 50


# --- reading --------------------------------------------------------------------------------


def in_force_q(now: datetime, prefix: str = "grant__") -> Q:
    """The grant (reached through `prefix`) is in force at `now`: not revoked, not expired."""
    return Q(**{f"{prefix}revoked_at__isnull": True}) & (
        Q(**{f"{prefix}expires_at__isnull": True}) | Q(**{f"{prefix}expires_at__gt": now})
    )


def with_details(items: QuerySet[ReviewItem]) -> QuerySet[ReviewItem]:
    """Everything a page shows about items, in a constant number of queries."""
    return items.select_related(
        "campaign",
        "decided_by",
        "grant__role",
        "grant__team",
        "grant__person__manager",
        "grant__created_by",
        "grant__revoked_by",
    ).prefetch_related(
        Prefetch(
            "grant__team__owners",
            queryset=Person.objects.filter(is_active=True).order_by("username"),
            to_attr="active_owners",
        )
    )


def item_leads(item: ReviewItem) -> list[Person]:
    """The item's reviewers from the directory (empty: nobody leads it; operators review)."""
    grant = item.grant
    team = grant.team
    if team is not None:
        if not team.is_active:
            return []
        owners = getattr(team, "active_owners", None)
        return list(owners) if owners is not None else leads.team_leads(team)
    manager = leads.manager_of(grant.person) if grant.person is not None else None
    return [manager] if manager is not None else []


def describe_subject(grant: Grant) -> str:
    if grant.team is not None:
        return f"team {grant.team.name}"
    person = grant.person
    if person is None:  # the database's grant_one_subject constraint rules this out
        return f"grant #{grant.pk}"
    name = f" ({person.display_name})" if person.display_name else ""
    return f"{person.username}{name}"


def describe_scope(grant: Grant) -> str:
    """The grant's scope in words: where the role applies."""
    parts = [
        f"environments {', '.join(grant.environments)}"
        if grant.environments
        else "every environment"
    ]
    if grant.tiers:
        parts.append(f"tiers {', '.join(grant.tiers)}")
    if grant.clusters:
        parts.append(f"clusters {', '.join(grant.clusters)}")
    if grant.cluster_selector:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(grant.cluster_selector.items()))
        parts.append(f"clusters labelled {labels}")
    parts.append(
        f"namespaces {', '.join(grant.namespaces)}"
        if grant.namespaces
        else "every namespace the role covers"
    )
    return "; ".join(parts)


def describe_end(grant: Grant, now: datetime) -> str:
    """Why the grant is no longer in force ("" while it is)."""
    if grant.revoked_at is not None:
        who = grant.revoked_by.get_username() if grant.revoked_by else "Warden"
        when = timezone.localtime(grant.revoked_at).strftime("%Y-%m-%d %H:%M")
        reason = f": {grant.revoke_reason}" if grant.revoke_reason else ""
        return f"revoked by {who} on {when}{reason}"
    if grant.expires_at is not None and grant.expires_at <= now:
        return f"expired on {timezone.localtime(grant.expires_at).strftime('%Y-%m-%d %H:%M')}"
    return ""


@dataclass
class ItemRow:
    """One item as a page or an email shows it."""

    item: ReviewItem
    leads: list[Person]
    subject: str
    scope: str
    since: datetime
    granted_by: str
    ended: str
    overdue: bool

    @property
    def no_lead(self) -> bool:
        return not self.leads

    @property
    def left(self) -> bool:
        """The grant's person has left the directory (their grace not over yet)."""
        person = self.item.grant.person
        return person is not None and not person.is_active

    @property
    def unreviewed(self) -> bool:
        return self.item.decision == ReviewDecision.PENDING and not self.ended


def rows(items: Iterable[ReviewItem], today: date | None = None) -> list[ItemRow]:
    """Page rows for items loaded `with_details`."""
    now = timezone.now()
    today = today or timezone.localdate()
    result = []
    for item in items:
        grant = item.grant
        ended = describe_end(grant, now)
        result.append(
            ItemRow(
                item=item,
                leads=item_leads(item),
                subject=describe_subject(grant),
                scope=describe_scope(grant),
                since=grant.starts_at or grant.created_at,
                granted_by=(
                    grant.created_by.get_username() if grant.created_by else "Warden (policy)"
                ),
                ended=ended,
                overdue=(
                    item.campaign.is_open
                    and item.decision == ReviewDecision.PENDING
                    and not ended
                    and today > item.campaign.due_on
                ),
            )
        )
    return result


@dataclass(frozen=True)
class CampaignCounts:
    """How far a campaign is: decisions taken, what waits, and what ended elsewhere."""

    total: int
    kept: int
    revoked: int
    unreviewed: int
    ended_elsewhere: int
    overdue: int

    @property
    def decided(self) -> int:
        return self.kept + self.revoked


def counts(campaign: ReviewCampaign, today: date | None = None) -> CampaignCounts:
    now = timezone.now()
    today = today or timezone.localdate()
    pending = Q(decision=ReviewDecision.PENDING)
    in_force = in_force_q(now)
    figures = campaign.items.aggregate(
        total=Count("id"),
        kept=Count("id", filter=Q(decision=ReviewDecision.KEPT)),
        revoked=Count("id", filter=Q(decision=ReviewDecision.REVOKED)),
        unreviewed=Count("id", filter=pending & in_force),
        ended=Count("id", filter=pending & ~in_force),
    )
    overdue = figures["unreviewed"] if campaign.is_open and today > campaign.due_on else 0
    return CampaignCounts(
        total=figures["total"],
        kept=figures["kept"],
        revoked=figures["revoked"],
        unreviewed=figures["unreviewed"],
        ended_elsewhere=figures["ended"],
        overdue=overdue,
    )


def unreviewed_items(campaign: ReviewCampaign) -> QuerySet[ReviewItem]:
    """Items nobody decided whose grant is still in force."""
    return campaign.items.filter(in_force_q(timezone.now()), decision=ReviewDecision.PENDING)


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
    figures = counts(locked)
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
    items = with_details(unreviewed_items(campaign)).order_by("id")
    by_email: dict[str, Letter] = {}
    operators: list[str] | None = None
    for row in rows(items, today):
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
