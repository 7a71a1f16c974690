"""Types the apps share."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias, Union, cast

from django.http import HttpRequest

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser
    from django.contrib.auth.models import AnonymousUser, User

    class AuthenticatedRequest(HttpRequest):
        """A request behind `login_required`: its user is a signed-in account."""

        user: User

else:
    AuthenticatedRequest = HttpRequest

# Who did something, as the audit trail records it: a signed-in account, an anonymous visitor
# (a failed login), or None for Warden itself (schedules, workers, the directory sync).
Actor: TypeAlias = Union["AbstractBaseUser", "AnonymousUser", None]


def account_of(actor: Actor) -> User | None:
    """The account behind an actor, for a "created by" / "requested by" column: None for
    Warden itself and for an anonymous visitor (who never owns a row). Warden's accounts are
    Django's User (AUTH_USER_MODEL)."""
    if actor is None or not actor.is_authenticated:
        return None
    return cast("User", actor)
