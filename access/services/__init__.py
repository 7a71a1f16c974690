"""State changes of the people side. Views, API, tasks and commands call these and nothing else.

Split by subject: the directory (sync, logins), grants and the role catalogue, access requests.
"""

from __future__ import annotations

from access.services.directory import (
    confirm_blocked_sync,
    record_login_person,
    sync_directory,
)
from access.services.grants import (
    expire_grants,
    grant_access,
    remove_role_definition,
    revoke_grant,
    set_role_definition,
)

__all__ = [
    "confirm_blocked_sync",
    "expire_grants",
    "grant_access",
    "record_login_person",
    "remove_role_definition",
    "revoke_grant",
    "set_role_definition",
    "sync_directory",
]
