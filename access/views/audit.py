"""The audit trail for operators: filter, page through, export as CSV or JSON, verify."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import QuerySet
from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache

from access import audit
from access.forms import AuditFilterForm
from access.models import AuditEvent
from access.permissions import require_operator
from access.views.sorting import sorting_of
from core.types import AuthenticatedRequest

PAGE_SIZE = 50


def filtered(form: AuditFilterForm) -> QuerySet[AuditEvent]:
    events = AuditEvent.objects.order_by("-seq")
    if not form.is_valid():
        return events.none()
    data = form.cleaned_data
    if data["action"]:
        events = events.filter(action__startswith=data["action"].strip())
    if data["actor"]:
        events = events.filter(actor_name=data["actor"].strip())
    if data["object_type"]:
        events = events.filter(object_type=data["object_type"].strip())
    if data["object_id"]:
        events = events.filter(object_id=data["object_id"].strip())
    if data["since"]:
        events = events.filter(created_at__gte=data["since"])
    if data["until"]:
        events = events.filter(created_at__lt=data["until"])
    return events


@login_required
@never_cache
def audit_log(request: AuthenticatedRequest) -> HttpResponse | StreamingHttpResponse:
    require_operator(request.user)
    form = AuditFilterForm(request.GET or None)
    events = filtered(form) if request.GET else AuditEvent.objects.order_by("-seq")
    export = request.GET.get("format")
    if export in ("csv", "json"):
        return _export(events, export)
    sorting = sorting_of(request, AUDIT_COLUMNS, default="-seq")
    page = Paginator(sorting.apply(events), PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    verification = audit.verify() if request.GET.get("verify") else None
    return render(
        request,
        "access/audit.html",
        {
            "form": form,
            "page": page,
            "query": query.urlencode(),
            "verification": verification,
            "sorting": sorting,
        },
    )


# The audit table's sortable columns and what each sorts by.
AUDIT_COLUMNS = {
    "seq": ("seq",),
    "when": ("created_at", "seq"),
    "who": ("actor_name", "seq"),
    "action": ("action", "seq"),
    "object": ("object_type", "object_id", "seq"),
}


def _row(event: AuditEvent) -> dict[str, Any]:
    return {name: getattr(event, name) for name in audit.EVENT_FIELDS}


def _export(events: QuerySet[AuditEvent], kind: str) -> StreamingHttpResponse:
    """Stream every matching event, oldest first, without holding them all in memory."""
    rows = events.order_by("seq").iterator(chunk_size=2000)
    if kind == "json":
        response = StreamingHttpResponse(_json_lines(rows), content_type="application/x-ndjson")
        response["Content-Disposition"] = 'attachment; filename="warden-audit.jsonl"'
    else:
        response = StreamingHttpResponse(_csv_lines(rows), content_type="text/csv")
        response["Content-Disposition"] = 'attachment; filename="warden-audit.csv"'
    return response


def _json_lines(rows: Iterator[AuditEvent]) -> Iterator[str]:
    for event in rows:
        yield json.dumps(_row(event), cls=DjangoJSONEncoder, sort_keys=True) + "\n"


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_lines(rows: Iterator[AuditEvent]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(audit.EVENT_FIELDS)
    for event in rows:
        row = _row(event)
        for name in ("before", "after"):
            row[name] = json.dumps(row[name], cls=DjangoJSONEncoder, sort_keys=True)
        yield writer.writerow([_safe_cell(row[name]) for name in audit.EVENT_FIELDS])


def _safe_cell(value: Any) -> Any:
    """Spreadsheets run a cell that starts with = + - @ as a formula: neutralise it."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
