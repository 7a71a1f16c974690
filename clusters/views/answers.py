"""\"Why forbidden?\" (anyone signed in, about their own access) and \"Who can?\" (operators only:
it shows other people's access, so anyone else gets 403 before anything is looked up).

GET forms, so an answer can be linked and reloaded; htmx swaps in just the answer.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.utils.http import urlencode
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from access import forbidden
from access.permissions import require_operator
from clusters import answers, selectors
from clusters.forms import ForbiddenForm, WhoCanForm
from core.types import AuthenticatedRequest

PEOPLE_PAGE_SIZE = 50
FORBIDDEN_FIELDS = ("verb", "resource", "api_group", "namespace", "name", "path")
WHO_CAN_FIELDS = ("verb", "resource", "api_group", "namespace", "path")


@login_required
@require_safe
@never_cache
def why_forbidden(request: AuthenticatedRequest) -> HttpResponse:
    """Paste a Kubernetes forbidden message (or type the request): which roles would allow it."""
    wants_answer = bool(request.GET)
    form = ForbiddenForm(request.GET if wants_answer else None, initial=_only_cluster())
    explanation = None
    request_url = ""
    if wants_answer and form.is_valid() and form.attempt is not None:
        explanation = answers.forbidden_explanation(
            request.user, form.attempt, form.cleaned_data["cluster"]
        )
        query = forbidden.request_query(explanation)
        if query:
            request_url = f"{reverse('request-new')}?{urlencode(query)}"
    context = {
        "form": form,
        "typed_fields": [form[name] for name in FORBIDDEN_FIELDS],
        "explanation": explanation,
        "request_url": request_url,
    }
    partial = request.headers.get("HX-Request") == "true"
    template = "_why_forbidden.html" if partial else "why_forbidden.html"
    response = render(request, f"clusters/answers/{template}", context)
    patch_vary_headers(response, ["HX-Request"])
    return response


def _only_cluster() -> dict[str, str]:
    """Preselect the cluster when there is just one to choose from."""
    names = selectors.live_cluster_names(2)
    return {"cluster": names[0]} if len(names) == 1 else {}


@login_required
@require_safe
@never_cache
def who_can(request: AuthenticatedRequest) -> HttpResponse:
    """Who can do an action on a cluster: the grants, roles and people that allow it there."""
    require_operator(request.user)
    asked = bool(request.GET.get("verb") or request.GET.get("cluster"))
    form = WhoCanForm(request.GET if asked else None)
    answer = None
    people = None
    if asked and form.is_valid() and form.attempt is not None:
        answer = answers.who_can_answer(form.attempt, form.cleaned_data["cluster"])
        people = Paginator(answer.people, PEOPLE_PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "form": form,
        "typed_fields": [form[name] for name in WHO_CAN_FIELDS],
        "answer": answer,
        "page": people,
        "query": query.urlencode(),
    }
    partial = request.headers.get("HX-Request") == "true"
    template = "_who_can.html" if partial else "who_can.html"
    response = render(request, f"clusters/answers/{template}", context)
    patch_vary_headers(response, ["HX-Request"])
    return response
