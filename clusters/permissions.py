"""Authorization of the machine side.

The cluster registry and discovery are operators' work. Service accounts: members of an
account's owner team may see it and see its new token once; operators, and members of the owner
team while every role of the account is one SERVICE_ACCOUNT_SELF_SERVICE_ROLES lists, may change
it, say where its tokens go and rotate it. What a declaration grants is decided by the approval
policies (clusters.serviceaccounts.declare), for operators too. Everyone else does not learn
that an account exists (404).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404

from access.models import Role, Team
from access.permissions import is_operator, person_of, require_operator
from clusters.models import Cluster, DiscoverySource, ManagedServiceAccount, TokenGeneration

__all__ = [
    "accounts_visible_to",
    "check_may_change",
    "check_may_declare",
    "get_account_for_user",
    "get_cluster_for_operator",
    "get_generation_to_reveal",
    "get_source_for_operator",
    "is_operator",
    "require_operator",
    "teams_user_may_own",
]


def get_cluster_for_operator(user: Any, pk: int) -> Cluster:
    """The cluster, for an operator; 403 for anyone else (before the 404, so ids do not leak)."""
    require_operator(user)
    return get_object_or_404(Cluster, pk=pk)


def get_source_for_operator(user: Any, pk: int) -> DiscoverySource:
    """The discovery source, for an operator; 403 for anyone else."""
    require_operator(user)
    return get_object_or_404(DiscoverySource, pk=pk)


def get_cluster_named_for_operator(user: Any, name: str) -> Cluster:
    """The cluster by name, for an operator; 403 for anyone else (before the 404)."""
    require_operator(user)
    return get_object_or_404(Cluster, name=name)


def teams_user_may_own(user: Any) -> QuerySet[Team]:
    """Teams that may own the accounts this user declares: theirs, or any for operators."""
    teams = Team.objects.filter(is_active=True)
    if is_operator(user):
        return teams
    person = person_of(user)
    if person is None:
        return teams.none()
    return teams.filter(memberships__person=person).distinct()


def accounts_visible_to(user: Any) -> QuerySet[ManagedServiceAccount]:
    accounts = ManagedServiceAccount.objects.select_related("owner_team")
    if is_operator(user):
        return accounts
    person = person_of(user)
    if person is None or not user.is_authenticated:
        return accounts.none()
    return accounts.filter(owner_team__memberships__person=person).distinct()


def get_account_for_user(user: Any, pk: int) -> ManagedServiceAccount:
    """The account, if this user is an operator or in its owner team; 404 otherwise."""
    account = accounts_visible_to(user).filter(pk=pk).first()
    if account is None:
        raise Http404("No such service account.")
    return account


def check_may_declare(user: Any, team: Team, roles: Iterable[Role]) -> None:
    """Operators declare anything; a team member only for their team, with self-service roles."""
    if is_operator(user):
        return
    if not teams_user_may_own(user).filter(pk=team.pk).exists():
        raise PermissionDenied(f"Only members of {team.name} (or operators) may do this.")
    allowed = set(settings.SERVICE_ACCOUNT_SELF_SERVICE_ROLES)
    beyond = sorted(role.name for role in roles if role.name not in allowed)
    if beyond:
        raise PermissionDenied(
            "Only operators may give a service account these roles: " + ", ".join(beyond)
        )


def check_may_change(user: Any, account: ManagedServiceAccount) -> None:
    """Changing an account, adding or removing where its tokens go, and asking for a new token
    take the same permission as declaring it: an operator, or a member of its owner team when
    its roles are all self-service ones."""
    check_may_declare(user, account.owner_team, account.roles.all())


def get_generation_to_reveal(
    user: Any, account: ManagedServiceAccount, number: int
) -> TokenGeneration:
    """A generation of an account the user may manage (the caller fetched the account)."""
    generation = account.generations.filter(number=number).first()
    if generation is None:
        raise Http404("No such generation.")
    return generation
