"""Admin site for operators. Directory data is read-only here: the directory is the truth."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from access.models import (
    DirectorySync,
    Grant,
    Membership,
    Person,
    ReviewCampaign,
    ReviewItem,
    Role,
    RoleDefinition,
    Team,
    TeamOwner,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Person)
class PersonAdmin(ReadOnlyAdmin):
    list_display = [
        "username",
        "display_name",
        "email",
        "manager",
        "is_active",
        "inactive_reason",
        "deactivated_at",
        "user",
    ]
    list_filter = ["is_active", "inactive_reason"]
    search_fields = ["username", "display_name", "email", "dn", "external_id"]
    list_select_related = ["user", "manager"]
    date_hierarchy = "first_seen_at"
    show_full_result_count = False  # no COUNT(*) over 50,000 people on every page


class MembershipInline(admin.TabularInline):
    model = Membership
    fields = ("person", "is_direct")
    readonly_fields = ("person", "is_direct")
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class TeamOwnerInline(admin.TabularInline):
    """The team's leads: the owners the directory names for the group."""

    model = TeamOwner
    fields = ("person",)
    readonly_fields = ("person",)
    extra = 0
    can_delete = False
    verbose_name = "lead (owner in the directory)"
    verbose_name_plural = "leads (owners in the directory)"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Team)
class TeamAdmin(ReadOnlyAdmin):
    list_display = ["name", "dn", "is_active", "deactivated_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "dn", "description", "external_id"]
    inlines = [TeamOwnerInline, MembershipInline]


@admin.register(Membership)
class MembershipAdmin(ReadOnlyAdmin):
    list_display = ["person", "team", "is_direct"]
    list_filter = ["is_direct", "team__is_active"]
    search_fields = ["person__username", "person__display_name", "team__name"]
    list_select_related = ["person", "team"]
    show_full_result_count = False


@admin.register(DirectorySync)
class DirectorySyncAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "started_at",
        "trigger",
        "status",
        "duration_s",
        "people_seen",
        "teams_seen",
        "people_created",
        "people_deactivated",
        "memberships_added",
        "memberships_removed",
        "requested_by",
    ]
    list_filter = ["status", "trigger"]
    search_fields = ["error"]
    list_select_related = ["requested_by"]
    date_hierarchy = "started_at"


class RoleDefinitionInline(admin.TabularInline):
    model = RoleDefinition
    extra = 0


@admin.register(Role)
class RoleAdmin(admin.ModelAdmin):
    list_display = ["name", "display_name", "rank"]
    inlines = [RoleDefinitionInline]


@admin.register(Grant)
class GrantAdmin(admin.ModelAdmin):
    list_display = ["id", "role", "team", "person", "source", "expires_at", "revoked_at"]
    list_filter = ["source", "role"]
    raw_id_fields = ["team", "person"]
    readonly_fields = ["created_by", "created_at", "revoked_by"]


# Access reviews are read-only here: decisions go through the review pages, which audit them.
@admin.register(ReviewCampaign)
class ReviewCampaignAdmin(ReadOnlyAdmin):
    list_display = ["name", "state", "due_on", "started_at", "started_by", "closed_at"]
    list_filter = ["state"]
    search_fields = ["name"]
    list_select_related = ["started_by"]


@admin.register(ReviewItem)
class ReviewItemAdmin(ReadOnlyAdmin):
    list_display = ["id", "campaign", "grant", "decision", "decided_by", "decided_at"]
    list_filter = ["decision", "campaign"]
    list_select_related = ["campaign", "grant", "decided_by"]
    show_full_result_count = False
