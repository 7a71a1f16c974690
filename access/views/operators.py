"""Operators' question "what can P do?" (who can do X on cluster Y: clusters/views/answers.py).

It shows other people's access, so it is for operators only (403 for anyone else, before
anything is looked up).
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from access import selectors
from access.models import Person
from access.permissions import require_operator
from access.views.sorting import sorting_of
from core.types import AuthenticatedRequest

PEOPLE_PAGE_SIZE = 50


@login_required
@require_safe
def people(request: AuthenticatedRequest) -> HttpResponse:
    """Find a person (by username, name or email) to see what they can do."""
    require_operator(request.user)
    query = request.GET.get("q", "").strip()
    found = selectors.find_people(query) if query else Person.objects.none()
    sorting = sorting_of(request, PEOPLE_COLUMNS, default="-state")
    page = Paginator(sorting.apply(found), PEOPLE_PAGE_SIZE).get_page(request.GET.get("page"))
    kept = request.GET.copy()
    kept.pop("page", None)
    return render(
        request,
        "access/operators/people.html",
        {"q": query, "page": page, "query": kept.urlencode(), "sorting": sorting},
    )


# The people table's sortable columns (active people first by default).
PEOPLE_COLUMNS = {
    "username": ("username",),
    "name": ("display_name", "username"),
    "email": ("email",),
    "state": ("is_active", "deactivated_at"),
}


@login_required
@require_safe
@never_cache
def person_detail(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    """What a person can do: every grant in force (personal and through teams), where, until
    when, and its rollout on each cluster; their teams and their open requests."""
    require_operator(request.user)
    person = get_object_or_404(Person.objects.select_related("manager"), pk=pk)
    return render(
        request,
        "access/operators/person.html",
        {
            "person": person,
            "grants": selectors.person_access(person),
            "teams": selectors.teams_of(person),
            "requests": selectors.requests_of(person, limit=10),
        },
    )
