"""Pages of access reviews: thin callers of access.services.reviews, access.selectors and
access.permissions."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from access import permissions, selectors
from access.choices import ReviewDecision
from access.forms import ReviewDecisionForm, StartCampaignForm
from access.models import ReviewCampaign
from access.services import reviews as review_service
from core.types import AuthenticatedRequest

ITEMS_PER_PAGE = 100


@login_required
@never_cache
def mine(request: AuthenticatedRequest) -> HttpResponse:
    """The items the signed-in person reviews, in open campaigns; operators also see campaigns."""
    items = selectors.review_items_with_details(
        permissions.review_items_for(request.user)
    ).order_by("campaign__due_on", "campaign_id", "id")
    all_rows = selectors.review_rows(items)
    is_operator = permissions.is_operator(request.user)
    return render(
        request,
        "access/reviews/mine.html",
        {
            "pending": [r for r in all_rows if r.unreviewed],
            "done": [r for r in all_rows if not r.unreviewed],
            "is_operator": is_operator,
            "campaigns": (
                ReviewCampaign.objects.select_related("started_by")[:50] if is_operator else []
            ),
        },
    )


@login_required
def start(request: AuthenticatedRequest) -> HttpResponse:
    operator = permissions.require_operator(request.user)
    form = StartCampaignForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            campaign = review_service.start_campaign(actor=operator, **form.cleaned_data)
        except ValidationError as exc:
            _add_errors(form, exc)
        else:
            messages.success(
                request, f"Campaign “{campaign.name}” started; its reviewers have been told."
            )
            return redirect("review-campaign", pk=campaign.pk)
    return render(request, "access/reviews/start.html", {"form": form})


@login_required
@never_cache
def campaign(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    """A campaign's progress, every item with its reviewers, and what is overdue (operators)."""
    found = permissions.get_campaign_for_operator(request.user, pk)
    show = request.GET.get("show", "all")
    items = found.items.all()
    if show == "unreviewed":
        items = selectors.unreviewed_items(found)
    elif show == "decided":
        items = items.exclude(decision=ReviewDecision.PENDING)
    page = Paginator(
        selectors.review_items_with_details(items).order_by("id"), ITEMS_PER_PAGE
    ).get_page(request.GET.get("page"))
    return render(
        request,
        "access/reviews/campaign.html",
        {
            "campaign": found,
            "counts": selectors.review_counts(found),
            "rows": selectors.review_rows(page.object_list),
            "page": page,
            "show": show,
        },
    )


@login_required
@require_POST
def close(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    found = permissions.get_campaign_for_operator(request.user, pk)
    try:
        closed = review_service.close_campaign(found, actor=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        left = selectors.review_counts(closed).unreviewed
        messages.success(
            request,
            f"Campaign “{closed.name}” closed. Nothing was revoked by closing it; "
            f"{left} item{'s' if left != 1 else ''} stayed unreviewed (listed below).",
        )
    return redirect(reverse("review-campaign", kwargs={"pk": pk}) + "?show=unreviewed")


@login_required
@require_POST
def decide(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    # 404 unless the user leads the grant or is an operator: item ids reveal nothing.
    item = permissions.get_review_item_for_reviewer(request.user, pk)
    form = ReviewDecisionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose to keep or to revoke the access.")
        return _back(request)
    try:
        review_service.decide(
            item,
            actor=request.user,
            decision=form.cleaned_data["decision"],
            comment=form.cleaned_data["comment"],
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        subject = selectors.describe_subject(item.grant)
        if form.cleaned_data["decision"] == ReviewDecision.REVOKED:
            messages.success(
                request,
                f"Revoked {item.grant.role.name} of {subject}; it leaves every cluster now.",
            )
        else:
            messages.success(request, f"Kept {item.grant.role.name} of {subject}.")
    return _back(request)


def _back(request: HttpRequest) -> HttpResponse:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(target)
    return redirect("review-mine")


def _add_errors(form: StartCampaignForm, exc: ValidationError) -> None:
    if hasattr(exc, "error_dict"):
        for name, errors in exc.message_dict.items():
            form.add_error(name if name in form.fields else None, errors)
    else:
        form.add_error(None, exc.messages)
