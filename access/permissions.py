"""Authorization of the people side: who may see and do what."""

from __future__ import annotations

from typing import Any, cast

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied


def is_operator(user: Any) -> bool:
    """Operators are staff: members of WARDEN_ADMIN_TEAMS (or a local superuser)."""
    return bool(user.is_authenticated and user.is_active and user.is_staff)


def require_operator(user: Any) -> AbstractBaseUser:
    """The user, known to be an operator; PermissionDenied (403) for anyone else."""
    if not is_operator(user):
        raise PermissionDenied("Only Warden operators may do this.")
    return cast(AbstractBaseUser, user)
