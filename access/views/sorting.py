"""Sortable table columns: ?sort=name or ?sort=-name, among the columns a page offers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest


@dataclass(frozen=True)
class Sorting:
    """The column a table is sorted by, and links that sort it by another."""

    key: str
    descending: bool
    columns: dict[str, tuple[str, ...]]
    other_params: str

    def apply(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        sign = "-" if self.descending else ""
        return queryset.order_by(*(f"{sign}{field}" for field in self.columns[self.key]), "-pk")

    def link(self, key: str) -> str:
        """The query string that sorts by `key`: ascending first, reversed when it is current."""
        descending = key == self.key and not self.descending
        query = f"sort={'-' if descending else ''}{key}"
        return f"?{self.other_params}&{query}" if self.other_params else f"?{query}"

    def state(self, key: str) -> str:
        """aria-sort of a column: ascending, descending or none."""
        if key != self.key:
            return "none"
        return "descending" if self.descending else "ascending"


def sorting_of(request: HttpRequest, columns: dict[str, tuple[str, ...]], default: str) -> Sorting:
    """The page's sorting from ?sort= (an unknown column falls back to the default)."""
    wanted = request.GET.get("sort", "") or default
    key = wanted.lstrip("-")
    if key not in columns:
        wanted, key = default, default.lstrip("-")
    params = request.GET.copy()
    params.pop("sort", None)
    params.pop("page", None)
    return Sorting(key, wanted.startswith("-"), columns, params.urlencode())
