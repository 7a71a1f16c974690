"""Access-review campaigns: leads from a real slapd keep or revoke standing access, audited.

The company: heidi manages alice and bob; ivan owns the payments team (alice, bob); nobody
manages carol; judy leads nothing; olivia is an operator (warden-admins).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from access import selectors, services
from access.choices import CampaignState, GrantSource, ReviewDecision
from access.models import AuditEvent, Grant, Person, ReviewCampaign, ReviewItem, Role, Team
from access.services import reviews
from access.tasks import send_review_reminders_task
from tests.fixtures.services import needs_postgresql

pytestmark = pytest.mark.django_db


def role(name: str) -> Role:
    return Role.objects.get_or_create(name=name, defaults={"display_name": name.title()})[0]


@dataclass
class Company:
    directory: Any
    users: dict[str, Any]
    grants: dict[str, Grant]

    def person(self, username: str) -> Person:
        return Person.objects.get(username=username, is_active=True)

    def login(self, client: Client, username: str) -> Client:
        client.force_login(self.users[username])
        return client


@pytest.fixture
def company(directory, settings, django_user_model) -> Company:
    settings.WARDEN_DIRECTORY = directory.settings(ADMIN_TEAMS=["warden-admins"])
    directory.add_person("alice", manager="heidi")
    directory.add_person("bob", manager="heidi")
    directory.add_person("carol")
    directory.add_person("heidi", display_name="Heidi Hall")
    directory.add_person("ivan")
    directory.add_person("judy")
    directory.add_person("olivia")
    directory.add_group("payments", people=["alice", "bob"], owners=["ivan"])
    directory.add_group("warden-admins", people=["olivia"])
    services.sync_directory()
    users = {}
    for person in Person.objects.all():
        users[person.username] = django_user_model.objects.create_user(person.username)
        person.user = users[person.username]
        person.save(update_fields=["user"])
    assert services.sync_directory().status == "succeeded"  # olivia becomes staff
    for user in users.values():
        user.refresh_from_db()
    assert users["olivia"].is_staff and not users["heidi"].is_staff

    payments = Team.objects.get(name="payments")
    alice, carol, bob = (Person.objects.get(username=u) for u in ("alice", "carol", "bob"))
    grants = {
        "payments": services.grant_access(
            role=role("developer"), team=payments, environments=["dev"], reason="team policy"
        ),
        "alice": services.grant_access(
            role=role("viewer"), person=alice, environments=["prod"], actor=users["olivia"]
        ),
        "carol": services.grant_access(role=role("viewer"), person=carol),
    }
    # out of scope by default: a request's grant, a revoked and an expired standing grant
    request_grant = Grant.objects.create(
        person=bob, role=role("developer"), source=GrantSource.REQUEST, environments=["dev"]
    )
    Grant.objects.filter(pk=request_grant.pk).update(created_at=timezone.now() - timedelta(days=40))
    grants["bob-request"] = request_grant
    revoked = services.grant_access(role=role("viewer"), person=bob)
    services.revoke_grant(revoked, reason="gone")
    grants["bob-expired"] = Grant.objects.create(
        person=bob, role=role("viewer"), expires_at=timezone.now() - timedelta(hours=1)
    )
    return Company(directory, users, grants)


def start(company: Company, **kwargs: Any) -> ReviewCampaign:
    values: dict[str, Any] = {
        "name": "Q3 review",
        "due_on": timezone.localdate() + timedelta(days=14),
        "actor": company.users["olivia"],
    }
    values.update(kwargs)
    return reviews.start_campaign(**values)


def item_for(campaign: ReviewCampaign, grant: Grant) -> ReviewItem:
    return ReviewItem.objects.get(campaign=campaign, grant=grant)


def decide_url(item: ReviewItem) -> str:
    return reverse("review-decide", kwargs={"pk": item.pk})


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("seq"))


def make_overdue(campaign: ReviewCampaign, days: int = 1) -> None:
    ReviewCampaign.objects.filter(pk=campaign.pk).update(
        due_on=timezone.localdate() - timedelta(days=days)
    )
    campaign.refresh_from_db()


# --- starting ---------------------------------------------------------------------------------


def test_a_campaign_has_one_item_per_standing_grant_in_force_and_tells_its_reviewers(
    company, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        campaign = start(company)

    grants = set(campaign.items.values_list("grant_id", flat=True))
    assert grants == {company.grants[g].pk for g in ("payments", "alice", "carol")}
    started = events("review.started")
    assert len(started) == 1 and started[0].after["items"] == 3
    assert started[0].actor_name == "olivia"
    # each lead hears of their own items; operators of the one nobody leads
    inbox = {m.to[0]: m for m in mail.outbox}
    assert set(inbox) == {"heidi@example.com", "ivan@example.com", "olivia@example.com"}
    assert "alice (Alice)" in inbox["heidi@example.com"].body
    assert "team payments" in inbox["ivan@example.com"].body
    assert "carol" in inbox["olivia@example.com"].body
    assert "no lead in the directory" in inbox["olivia@example.com"].body
    assert "alice" not in inbox["ivan@example.com"].body


def test_a_scope_of_environments_takes_the_grants_that_reach_them(company):
    campaign = start(company, environments=["prod"])

    grants = set(campaign.items.values_list("grant_id", flat=True))
    # alice's prod grant, and carol's grant limited to no environment (it reaches prod too)
    assert grants == {company.grants["alice"].pk, company.grants["carol"].pk}


def test_grants_from_requests_are_in_scope_only_when_older_than_asked(company):
    older_than_30 = start(company, request_grants_older_than_days=30)
    older_than_60 = start(company, name="other", request_grants_older_than_days=60)

    request_grant = company.grants["bob-request"].pk
    assert older_than_30.items.filter(grant_id=request_grant).exists()
    assert not older_than_60.items.filter(grant_id=request_grant).exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"due_on": timezone.localdate() - timedelta(days=1)}, "is in the past"),
        ({"name": "   "}, "Give the campaign a name"),
        ({"environments": ["qa"]}, "Unknown environment(s) qa"),
        ({"request_grants_older_than_days": 0}, "1 or more"),
    ],
)
def test_it_refuses_a_campaign_with_bad_input(company, kwargs, message):
    with pytest.raises(ValidationError) as refused:
        start(company, **kwargs)
    assert message in " ".join(refused.value.messages)
    assert not ReviewCampaign.objects.exists()


def test_it_refuses_a_campaign_with_nothing_to_review(company):
    Grant.objects.update(revoked_at=timezone.now())

    with pytest.raises(ValidationError, match="nothing to review"):
        start(company)


def test_an_operator_starts_a_campaign_from_the_page(company, client):
    company.login(client, "olivia")

    refused = client.post(
        reverse("review-start"),
        {"name": "Q3", "due_on": (timezone.localdate() - timedelta(days=2)).isoformat()},
    )
    assert refused.status_code == 200
    assert "is in the past" in refused.content.decode()

    response = client.post(
        reverse("review-start"),
        {
            "name": "Q3",
            "due_on": (timezone.localdate() + timedelta(days=7)).isoformat(),
            "environments": ["prod"],
        },
    )
    campaign = ReviewCampaign.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("review-campaign", kwargs={"pk": campaign.pk})
    assert campaign.environments == ["prod"] and campaign.items.count() == 2


def test_only_operators_start_look_at_and_close_campaigns(company, client):
    campaign = start(company)
    company.login(client, "heidi")

    assert client.get(reverse("review-start")).status_code == 403
    assert client.post(reverse("review-start"), {"name": "x"}).status_code == 403
    assert client.get(reverse("review-campaign", kwargs={"pk": campaign.pk})).status_code == 403
    assert client.post(reverse("review-close", kwargs={"pk": campaign.pk})).status_code == 403
    campaign.refresh_from_db()
    assert campaign.state == CampaignState.OPEN


# --- who reviews what -------------------------------------------------------------------------


def test_each_lead_sees_the_items_they_review_with_what_the_access_means(company, client):
    start(company)

    heidi = company.login(client, "heidi").get(reverse("review-mine")).content.decode()
    assert "alice (Alice)" in heidi
    assert "environments prod; every namespace the role covers" in heidi
    assert "olivia" in heidi  # who granted alice's access
    assert "team payments" not in heidi and "carol" not in heidi

    ivan = company.login(client, "ivan").get(reverse("review-mine")).content.decode()
    assert "team payments" in ivan and "Warden (policy)" in ivan and "team policy" in ivan
    assert "alice (Alice)" not in ivan

    judy = company.login(client, "judy").get(reverse("review-mine")).content.decode()
    assert "Nothing waits for your review." in judy

    olivia = company.login(client, "olivia").get(reverse("review-mine")).content.decode()
    assert "carol" in olivia and "no lead in the directory" in olivia
    assert "alice (Alice)" not in olivia  # led by heidi: on the campaign page for operators


def test_the_campaign_page_names_each_items_reviewers(company, client):
    campaign = start(company)

    page = (
        company.login(client, "olivia")
        .get(reverse("review-campaign", kwargs={"pk": campaign.pk}))
        .content.decode()
    )

    assert "heidi" in page and "ivan" in page
    assert 'operators <span class="flag">no lead in the directory</span>' in page
    assert "0 of 3 decided" in page


def test_the_pages_cost_the_same_queries_for_many_items(company, client):
    def queries_for(url: str) -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(url).status_code == 200
        return len(queries)

    company.login(client, "olivia")
    small = start(company)
    for i in range(8):
        services.grant_access(
            role=role("viewer"), team=Team.objects.get(name="payments"), namespaces=[f"ns{i}"]
        )
        services.grant_access(role=role("viewer"), person=company.person("bob"), clusters=[f"c{i}"])
    large = start(company, name="large")
    assert large.items.count() == small.items.count() + 16

    small_url = reverse("review-campaign", kwargs={"pk": small.pk})
    large_url = reverse("review-campaign", kwargs={"pk": large.pk})
    assert queries_for(large_url) == queries_for(small_url)


# --- deciding ---------------------------------------------------------------------------------


def test_a_manager_revokes_access_with_a_comment(company, client):
    campaign = start(company)
    item = item_for(campaign, company.grants["alice"])

    response = company.login(client, "heidi").post(
        decide_url(item), {"decision": "revoked", "comment": "moved to the data team"}
    )

    assert response.status_code == 302
    item.refresh_from_db()
    grant = Grant.objects.get(pk=company.grants["alice"].pk)
    assert item.decision == ReviewDecision.REVOKED and item.decided_by == company.users["heidi"]
    assert grant.revoked_at is not None and grant.revoked_by == company.users["heidi"]
    assert "moved to the data team" in grant.revoke_reason
    (event,) = events("review.revoked")
    assert (event.actor_name, event.reason) == ("heidi", "moved to the data team")
    assert event.after["grant"] == grant.pk and event.before == {"decision": "pending"}


def test_a_team_owner_keeps_the_teams_access(company, client):
    campaign = start(company)
    item = item_for(campaign, company.grants["payments"])

    company.login(client, "ivan").post(decide_url(item), {"decision": "kept", "comment": ""})

    item.refresh_from_db()
    assert item.decision == ReviewDecision.KEPT
    assert Grant.objects.get(pk=company.grants["payments"].pk).revoked_at is None
    assert [e.actor_name for e in events("review.kept")] == ["ivan"]
    assert selectors.review_counts(campaign).kept == 1


def test_revoking_needs_a_comment(company, client):
    campaign = start(company)
    item = item_for(campaign, company.grants["alice"])

    response = company.login(client, "heidi").post(
        decide_url(item), {"decision": "revoked", "comment": "  "}, follow=True
    )

    assert "Say why the access is revoked" in response.content.decode()
    item.refresh_from_db()
    assert item.decision == ReviewDecision.PENDING
    assert Grant.objects.get(pk=company.grants["alice"].pk).revoked_at is None


def test_nobody_else_can_see_or_decide_an_item(company, client):
    campaign = start(company)
    alice_item = item_for(campaign, company.grants["alice"])
    team_item = item_for(campaign, company.grants["payments"])
    decision = {"decision": "revoked", "comment": "mine now"}

    # judy leads nothing; ivan owns payments but does not manage alice; heidi manages the
    # team's members but does not own the team; an unknown id looks the same
    assert company.login(client, "judy").post(decide_url(alice_item), decision).status_code == 404
    assert company.login(client, "ivan").post(decide_url(alice_item), decision).status_code == 404
    assert company.login(client, "heidi").post(decide_url(team_item), decision).status_code == 404
    missing = reverse("review-decide", kwargs={"pk": 999999})
    assert client.post(missing, decision).status_code == 404
    # someone logged out is sent to log in
    client.logout()
    assert client.post(decide_url(alice_item), decision).status_code == 302

    assert set(campaign.items.values_list("decision", flat=True)) == {ReviewDecision.PENDING}
    assert not Grant.objects.filter(pk=company.grants["alice"].pk, revoked_at__isnull=False)
    assert not events("review.revoked")


def test_an_operator_may_decide_any_item(company, client):
    campaign = start(company)
    item = item_for(campaign, company.grants["alice"])

    company.login(client, "olivia").post(decide_url(item), {"decision": "kept"})

    item.refresh_from_db()
    assert item.decision == ReviewDecision.KEPT and item.decided_by == company.users["olivia"]


def test_deciding_needs_the_csrf_token(company):
    campaign = start(company)
    item = item_for(campaign, company.grants["alice"])
    client = Client(enforce_csrf_checks=True)
    company.login(client, "heidi")

    assert client.post(decide_url(item), {"decision": "kept"}).status_code == 403
    page = client.get(reverse("review-mine")).content.decode()
    assert "csrfmiddlewaretoken" in page


def test_a_reviewer_who_is_no_longer_the_manager_cannot_decide(company, client):
    # given heidi had alice's item when the campaign started
    campaign = start(company)
    item = item_for(campaign, company.grants["alice"])
    # when the directory now says ivan manages alice
    company.directory.set_manager("alice", "ivan")
    services.sync_directory()
    # then heidi can no longer decide it, through the page or the service
    response = company.login(client, "heidi").post(decide_url(item), {"decision": "kept"})
    assert response.status_code == 404
    with pytest.raises(PermissionDenied, match="no longer lead"):
        reviews.decide(item, actor=company.users["heidi"], decision=ReviewDecision.KEPT)
    item.refresh_from_db()
    assert item.decision == ReviewDecision.PENDING
    # and ivan, the new manager, can
    company.login(client, "ivan").post(decide_url(item), {"decision": "kept"})
    item.refresh_from_db()
    assert item.decided_by == company.users["ivan"]


def test_an_owner_removed_from_the_group_cannot_decide(company):
    campaign = start(company)
    item = item_for(campaign, company.grants["payments"])
    company.directory.set_owners("payments", [])
    services.sync_directory()

    with pytest.raises(PermissionDenied):
        reviews.decide(item, actor=company.users["ivan"], decision=ReviewDecision.KEPT)

    # nobody leads the team now: it falls to the operators
    (row,) = selectors.review_rows(
        selectors.review_items_with_details(ReviewItem.objects.filter(pk=item.pk))
    )
    assert row.no_lead


def test_an_item_of_a_closed_campaign_cannot_be_decided(company, client):
    campaign = start(company)
    item = item_for(campaign, company.grants["alice"])
    reviews.close_campaign(campaign, actor=company.users["olivia"])

    response = company.login(client, "heidi").post(
        decide_url(item), {"decision": "revoked", "comment": "late"}, follow=True
    )

    assert "was closed; its items can no longer be decided" in response.content.decode()
    item.refresh_from_db()
    assert item.decision == ReviewDecision.PENDING
    assert Grant.objects.get(pk=company.grants["alice"].pk).revoked_at is None


def test_a_grant_revoked_by_someone_else_is_not_decided_again(company, client):
    campaign = start(company)
    item = item_for(campaign, company.grants["alice"])
    services.revoke_grant(
        Grant.objects.get(pk=company.grants["alice"].pk),
        actor=company.users["olivia"],
        reason="left the project",
    )

    response = company.login(client, "heidi").post(
        decide_url(item), {"decision": "kept"}, follow=True
    )

    page = response.content.decode()
    assert "already revoked by olivia" in page and "left the project" in page
    item.refresh_from_db()
    assert item.decision == ReviewDecision.PENDING
    counted = selectors.review_counts(campaign)
    assert (counted.unreviewed, counted.ended_elsewhere) == (2, 1)
    assert not events("review.kept")


def test_a_decision_is_taken_once(company):
    campaign = start(company)
    item = item_for(campaign, company.grants["alice"])
    reviews.decide(item, actor=company.users["heidi"], decision=ReviewDecision.KEPT)

    with pytest.raises(ValidationError, match="already kept by heidi"):
        reviews.decide(
            item, actor=company.users["olivia"], decision=ReviewDecision.REVOKED, comment="no"
        )

    assert Grant.objects.get(pk=company.grants["alice"].pk).revoked_at is None


def test_a_person_cannot_keep_their_own_access(company, django_user_model):
    # olivia (an operator) holds a grant of her own that nobody leads
    olivia = company.person("olivia")
    own = services.grant_access(role=role("admin"), person=olivia)
    campaign = start(company)
    item = item_for(campaign, own)

    with pytest.raises(PermissionDenied, match="your own access"):
        reviews.decide(item, actor=company.users["olivia"], decision=ReviewDecision.KEPT)

    # giving it up is fine
    reviews.decide(item, actor=company.users["olivia"], decision="revoked", comment="not needed")
    assert Grant.objects.get(pk=own.pk).revoked_at is not None


@pytest.mark.django_db(transaction=True)
def test_two_decisions_at_once_count_once(company):
    needs_postgresql("concurrent writers need PostgreSQL's row locks (CI runs it)")
    campaign = start(company)
    item = item_for(campaign, company.grants["alice"])
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def press(user: Any, decision: str) -> None:
        try:
            barrier.wait()
            reviews.decide(item.pk, actor=user, decision=decision, comment="both at once")
            outcomes.append(decision)
        except ValidationError as exc:
            outcomes.append(" ".join(exc.messages))
        finally:
            connection.close()

    threads = [
        threading.Thread(target=press, args=(company.users["heidi"], ReviewDecision.REVOKED)),
        threading.Thread(target=press, args=(company.users["olivia"], ReviewDecision.KEPT)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sum("already" in o for o in outcomes) == 1, outcomes
    item.refresh_from_db()
    decided = events("review.kept") + events("review.revoked")
    assert len(decided) == 1 and decided[0].after["decision"] == item.decision
    revoked = Grant.objects.get(pk=company.grants["alice"].pk).revoked_at is not None
    assert revoked == (item.decision == ReviewDecision.REVOKED)


# --- overdue, reminders and closing ---------------------------------------------------------


def test_overdue_items_are_flagged_on_the_campaign_page(company, client):
    campaign = start(company)
    reviews.decide(
        item_for(campaign, company.grants["payments"]),
        actor=company.users["ivan"],
        decision=ReviewDecision.KEPT,
    )
    make_overdue(campaign)

    page = (
        company.login(client, "olivia")
        .get(reverse("review-campaign", kwargs={"pk": campaign.pk}))
        .content.decode()
    )

    assert '<span class="flag bad">2 overdue</span>' in page
    assert page.count('<span class="flag bad">overdue</span>') == 2
    assert selectors.review_counts(campaign).overdue == 2


def test_reviewers_of_overdue_items_are_reminded_once_a_day(company):
    campaign = start(company)
    reviews.decide(
        item_for(campaign, company.grants["payments"]),
        actor=company.users["ivan"],
        decision=ReviewDecision.KEPT,
    )
    assert reviews.send_overdue_reminders() == 0  # nothing is overdue yet
    make_overdue(campaign)
    mail.outbox.clear()

    # when beat runs the daily task (eager here), twice the same day
    assert send_review_reminders_task.delay().get() == 2
    assert send_review_reminders_task.delay().get() == 0

    # then heidi hears of alice, the operators of carol, and ivan (who decided) of nothing
    inbox = {m.to[0]: m for m in mail.outbox}
    assert set(inbox) == {"heidi@example.com", "olivia@example.com"}
    assert inbox["heidi@example.com"].subject.startswith("Overdue access review “Q3 review”")
    assert "alice" in inbox["heidi@example.com"].body
    assert "/reviews/" in inbox["heidi@example.com"].body
    # and the next day again
    tomorrow = timezone.localdate() + timedelta(days=1)
    assert reviews.send_overdue_reminders(today=tomorrow) == 2


def test_the_daily_reminder_is_scheduled(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["access-review-reminders"]
    assert entry["task"] == send_review_reminders_task.name
    assert entry["schedule"].hour == {settings.REVIEW_REMINDER_HOUR}


def test_closing_revokes_nothing_and_lists_what_stayed_unreviewed(company, client):
    campaign = start(company)
    reviews.decide(
        item_for(campaign, company.grants["alice"]),
        actor=company.users["heidi"],
        decision=ReviewDecision.REVOKED,
        comment="left",
    )
    company.login(client, "olivia")
    url = reverse("review-campaign", kwargs={"pk": campaign.pk})
    assert "Closing never revokes anything" in client.get(url).content.decode()

    response = client.post(reverse("review-close", kwargs={"pk": campaign.pk}), follow=True)

    page = response.content.decode()
    assert "Nothing was revoked by closing it; 2 items stayed unreviewed" in page
    assert "Stayed unreviewed" in page and "team payments" in page and "carol" in page
    campaign.refresh_from_db()
    assert campaign.state == CampaignState.CLOSED and campaign.closed_by == company.users["olivia"]
    in_force = Grant.objects.filter(
        pk__in=[company.grants["payments"].pk, company.grants["carol"].pk], revoked_at=None
    )
    assert in_force.count() == 2
    (closed,) = events("review.closed")
    assert closed.after["unreviewed"] == 2 and closed.after["revoked"] == 1
    assert set(closed.after["unreviewed_grants"]) == {g.pk for g in in_force}
    # closing twice is refused, and closed campaigns send no reminders
    with pytest.raises(ValidationError, match="already closed"):
        reviews.close_campaign(campaign, actor=company.users["olivia"])
    make_overdue(campaign)
    assert reviews.send_overdue_reminders() == 0
