"""Login with the company directory: django-auth-ldap, configured from WARDEN_DIRECTORY.

After a successful bind the account is linked to its Person; disabled people, and people Warden
holds as inactive, are refused. When the directory cannot be reached, the login form says so
instead of pretending the password was wrong.
"""

from __future__ import annotations

from typing import Any

import ldap
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django_auth_ldap.backend import LDAPBackend, ldap_error
from django_auth_ldap.config import LDAPSearch, LDAPSettings

from access import directory, services
from access.directory import DirectoryConfig

DIRECTORY_ERROR_ATTR = "_warden_directory_error"
REFUSAL_ATTR = "_warden_login_refusal"


class DirectoryBackend(LDAPBackend):
    """django-auth-ldap with Warden's directory settings, read on every login."""

    @property  # type: ignore[override]
    def settings(self) -> LDAPSettings:
        config = DirectoryConfig.from_settings()
        values = LDAPSettings(self.settings_prefix, self.default_settings)
        values.SERVER_URI = config.uri
        values.BIND_DN = config.bind_dn
        values.BIND_PASSWORD = config.bind_password
        values.START_TLS = config.start_tls
        values.CONNECTION_OPTIONS = directory.connection_options(config)
        values.USER_ATTRLIST = config.user_attributes()
        if config.user_dn_template:
            values.USER_DN_TEMPLATE = config.user_dn_template
        else:
            # %(user)s is escaped by django-auth-ldap before it reaches the filter.
            values.USER_SEARCH = LDAPSearch(
                config.user_base_dn or "",
                ldap.SCOPE_SUBTREE,
                f"(&{config.user_filter}({config.username_attr}=%(user)s))",
                config.user_attributes(),
            )
        values.USER_ATTR_MAP = {"email": config.email_attr}
        values.ALWAYS_UPDATE_USER = True
        values.PERMIT_EMPTY_PASSWORD = False
        return values

    @settings.setter
    def settings(self, value: Any) -> None:  # django-auth-ldap's own setter; unused here
        pass

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> Any:
        if not username or not password or "\x00" in username or "\x00" in password:
            # An empty password would be an unauthenticated bind, which "succeeds".
            return None
        if not DirectoryConfig.from_settings().configured:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)

    def authenticate_ldap_user(self, ldap_user: Any, password: str) -> Any:
        user = super().authenticate_ldap_user(ldap_user, password)
        if user is None:
            return None
        config = DirectoryConfig.from_settings()
        attrs = {
            name: [v.encode() if isinstance(v, str) else v for v in values]
            for name, values in ldap_user.attrs.items()
        }
        entry = directory.parse_person(config, ldap_user.dn, attrs)
        request = ldap_user._request
        if entry is None:
            return None
        if entry.disabled:
            _refuse(request, "This account is disabled in the company directory.")
            return None
        try:
            person = services.record_login_person(entry, user)
        except ValidationError as exc:
            _refuse(request, " ".join(exc.messages))
            return None
        if not person.is_active:
            _refuse(
                request,
                "Warden holds this account as inactive (it left or was disabled in the "
                "directory); ask an operator to run a directory sync if that is wrong.",
            )
            return None
        user.refresh_from_db()
        return user


def _refuse(request: HttpRequest | None, message: str) -> None:
    if request is not None:
        setattr(request, REFUSAL_ATTR, message)


def _remember_directory_error(
    sender: Any, context: str, user: Any, request: Any = None, exception: Any = None, **kwargs: Any
) -> None:
    if request is not None:
        setattr(request, DIRECTORY_ERROR_ATTR, exception)


ldap_error.connect(_remember_directory_error, sender=DirectoryBackend)
