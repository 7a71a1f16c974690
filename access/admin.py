"""Admin site for operators. Directory data is read-only here: the directory is the truth."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest

from access import audit
from access.models import (
    AccessRequest,
    ApprovalPolicy,
    AuditEvent,
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
from access.services import catalogue, policies
from access.services.catalogue import ROLE_FIELDS


# Django's admin and form classes are generic in its type stubs only (not subscriptable at run
# time): their type arguments are left out, hence the type-arg ignores in this module.
class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# Warden accounts are made by logins (directory, single sign-on) and by createsuperuser for the
# local accounts WARDEN_LOCAL_ACCOUNTS names; operators and approvers come from the directory.
# Django's own user admin would let an operator set a password on an approver's account, or
# make anyone an operator: here accounts are shown, never edited, and Django groups are unused.
admin.site.unregister(Group)
admin.site.unregister(get_user_model())


@admin.register(get_user_model())
class AccountAdmin(ReadOnlyAdmin):
    list_display = ["username", "person", "is_staff", "is_active", "last_login", "date_joined"]
    list_filter = ["is_staff", "is_active"]
    search_fields = ["username", "email"]
    fields = readonly_fields = (
        "username",
        "email",
        "is_staff",
        "is_superuser",
        "is_active",
        "last_login",
    )

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).select_related("person")


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


class MembershipInline(admin.TabularInline):  # type: ignore[type-arg]
    model = Membership
    fields = ("person", "is_direct")
    readonly_fields = ("person", "is_direct")
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class TeamOwnerInline(admin.TabularInline):  # type: ignore[type-arg]
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


class RoleDefinitionInline(admin.TabularInline):  # type: ignore[type-arg]
    """Shown here; changed on Warden's role page, which shows the plan and reconciles."""

    model = RoleDefinition
    extra = 0
    can_delete = False
    readonly_fields = [
        "environment",
        "tier",
        "cluster_role",
        "rules",
        "scope",
        "namespaces",
        "allowed",
    ]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _facts(obj: Any, fields: list[str]) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in fields}


@admin.register(Role)
class RoleAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Names and descriptions of roles; what they become in Kubernetes is edited at /roles/."""

    list_display = ["name", "display_name", "rank"]
    inlines = [RoleDefinitionInline]
    FIELDS = ROLE_FIELDS

    def save_model(self, request: HttpRequest, obj: Role, form: Any, change: bool) -> None:
        with transaction.atomic():
            before = _facts(Role.objects.get(pk=obj.pk), self.FIELDS) if change else None
            super().save_model(request, obj, form, change)
            audit.record(
                "role.saved",
                actor=request.user,
                obj=obj,
                before=before,
                after=_facts(obj, self.FIELDS),
            )

    def delete_model(self, request: HttpRequest, obj: Role) -> None:
        catalogue.delete_role(obj, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        # "Delete selected": one audited delete per role, policies that go with it included.
        with transaction.atomic():
            for role in queryset.order_by("pk"):
                catalogue.delete_role(role, actor=request.user)


@admin.register(Grant)
class GrantAdmin(ReadOnlyAdmin):
    """Read-only: grants are given and revoked at /grants/, with a plan and a reconcile."""

    list_display = ["id", "role", "team", "person", "source", "expires_at", "revoked_at"]
    list_filter = ["source", "role"]
    list_select_related = ["role", "team", "person"]


class ApprovalPolicyAdminForm(forms.ModelForm):  # type: ignore[type-arg]
    """The admin's policy form, checked by the same rules as Warden's policy pages."""

    class Meta:
        model = ApprovalPolicy
        fields = list(ApprovalPolicy.SETTINGS)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        many = ("approver_teams", "break_glass_teams", "break_glass_roles")
        values = {k: v for k, v in cleaned.items() if k not in many}
        try:
            policy = ApprovalPolicy(**values)
            policies.check_policy(policy)
            policies.check_break_glass(
                policy,
                cleaned.get("break_glass_teams") or [],
                cleaned.get("break_glass_roles") or [],
            )
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                self.add_error(field if field in self.fields else None, messages)
        return cleaned


@admin.register(ApprovalPolicy)
class ApprovalPolicyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Who approves where; every change is audited (it changes who can get access).

    Warden's own pages at /policies/ do the same through access.services.policies.
    """

    form = ApprovalPolicyAdminForm
    list_display = [
        "name",
        "environment",
        "tier",
        "role",
        "approvals_required",
        "max_duration",
        "break_glass_allowed",
    ]
    list_filter = ["environment", "tier", "break_glass_allowed"]
    filter_horizontal = ["approver_teams", "break_glass_teams", "break_glass_roles"]

    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        with transaction.atomic():
            object_id = kwargs.get("object_id") or (args[0] if args else None)
            existing = ApprovalPolicy.objects.filter(pk=object_id).first() if object_id else None
            request._warden_before = policies.policy_facts(existing) if existing else None  # type: ignore[attr-defined]
            return super().changeform_view(request, *args, **kwargs)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        policies.record_policy_saved(
            form.instance, before=getattr(request, "_warden_before", None), actor=request.user
        )

    def delete_model(self, request: HttpRequest, obj: ApprovalPolicy) -> None:
        policies.delete_policy(obj, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        # "Delete selected": one audited delete per policy, not a silent bulk delete.
        for policy in queryset:
            policies.delete_policy(policy, actor=request.user)


@admin.register(AccessRequest)
class AccessRequestAdmin(ReadOnlyAdmin):
    list_display = ["id", "requester", "role", "state", "break_glass", "created_at", "expires_at"]
    list_filter = ["state", "break_glass", "role"]
    search_fields = ["requester__username", "justification", "ticket"]
    list_select_related = ["requester", "role"]
    date_hierarchy = "created_at"
    show_full_result_count = False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["seq", "created_at", "actor_name", "action", "object_type", "object_id"]
    list_filter = ["action"]
    search_fields = ["actor_name", "object_repr", "reason", "request_id"]


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
