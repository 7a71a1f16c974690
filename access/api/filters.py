"""Filters of the people side's lists (django-filter): each names what a person would search by."""

from __future__ import annotations

from typing import Any

import django_filters as filters
from django.db.models import Q, QuerySet
from django.utils import timezone

from access.choices import GrantSource, RequestState, ReviewDecision
from access.models import AccessRequest, AuditEvent, Grant, Person, ReviewItem, Team


class PersonFilter(filters.FilterSet):
    username = filters.CharFilter()
    team = filters.CharFilter(field_name="memberships__team__name", label="member of this team")
    q = filters.CharFilter(method="search", label="username, name or email contains")
    is_active = filters.BooleanFilter()

    class Meta:
        model = Person
        fields = ["username", "team", "is_active"]

    def search(self, queryset: QuerySet[Person], name: str, value: str) -> QuerySet[Person]:
        return queryset.filter(
            Q(username__icontains=value)
            | Q(display_name__icontains=value)
            | Q(email__icontains=value)
        )


class TeamFilter(filters.FilterSet):
    name = filters.CharFilter()
    q = filters.CharFilter(field_name="name", lookup_expr="icontains", label="name contains")
    is_active = filters.BooleanFilter()

    class Meta:
        model = Team
        fields = ["name", "is_active"]


class GrantFilter(filters.FilterSet):
    role = filters.CharFilter(field_name="role__name")
    team = filters.CharFilter(field_name="team__name")
    person = filters.CharFilter(field_name="person__username")
    source = filters.ChoiceFilter(choices=GrantSource.choices)
    in_force = filters.BooleanFilter(method="filter_in_force", label="in force now")

    class Meta:
        model = Grant
        fields = ["role", "team", "person", "source"]

    def filter_in_force(
        self, queryset: QuerySet[Grant], name: str, value: bool | None
    ) -> QuerySet[Grant]:
        if value is None:
            return queryset
        live = Grant.objects.in_force(timezone.now()).values("pk")
        return queryset.filter(pk__in=live) if value else queryset.exclude(pk__in=live)


class AccessRequestFilter(filters.FilterSet):
    state = filters.ChoiceFilter(choices=RequestState.choices)
    role = filters.CharFilter(field_name="role__name")
    requester = filters.CharFilter(field_name="requester__username")
    mine = filters.BooleanFilter(method="filter_mine", label="only my own requests")
    awaiting_review = filters.BooleanFilter(
        method="filter_awaiting_review",
        label="break-glass access granted at once and not reviewed yet (true), or reviewed",
    )

    class Meta:
        model = AccessRequest
        fields = ["state", "role", "requester"]

    def filter_awaiting_review(
        self, queryset: QuerySet[Any], name: str, value: bool | None
    ) -> QuerySet[Any]:
        if value is None:
            return queryset
        glass = queryset.filter(break_glass=True, grant__isnull=False)
        return glass.filter(reviewed_at__isnull=value)

    def filter_mine(self, queryset: QuerySet[Any], name: str, value: bool | None) -> QuerySet[Any]:
        if not value:
            return queryset
        return queryset.filter(requester__user_id=self.request.user.pk)


class AuditEventFilter(filters.FilterSet):
    action = filters.CharFilter(field_name="action", lookup_expr="startswith")
    actor = filters.CharFilter(field_name="actor_name")
    object_type = filters.CharFilter()
    object_id = filters.CharFilter()
    since = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields = ["action", "actor", "object_type", "object_id", "since", "until"]


class ReviewItemFilter(filters.FilterSet):
    campaign = filters.NumberFilter(field_name="campaign_id")
    decision = filters.ChoiceFilter(choices=ReviewDecision.choices)

    class Meta:
        model = ReviewItem
        fields = ["campaign", "decision"]
