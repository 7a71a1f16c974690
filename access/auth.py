"""Login with the company directory: django-auth-ldap, configured from WARDEN_DIRECTORY.

Search-then-bind (or a direct bind with LDAP_USER_DN_TEMPLATE) over the same TLS options the
sync uses. After the password is accepted, and before any Django account is made or updated,
the entry is read as the sync reads it: disabled accounts and people Warden holds as inactive
are refused. The account is then linked to its Person (services.record_login_person), which
also sets staff/superuser from the admin teams.

The login form learns why a login failed from two request attributes set here: the directory
could not be used (down, TLS, a wrong service password or base DN), or the person was refused.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django_auth_ldap.backend import LDAPBackend, ldap_error
from django_auth_ldap.config import LDAPSearch, LDAPSettings

from access import directory, selectors, services
from access.directory import DirectoryConfig, DirectoryPerson
from access.models import Person

DIRECTORY_ERROR_ATTR = "_warden_directory_error"
NOT_CONFIGURED_ATTR = "_warden_directory_not_configured"
REFUSAL_ATTR = "_warden_login_refusal"
ENTRY_ATTR = "_warden_entry"

DISABLED_MESSAGE = "This account is disabled in the company directory."
INACTIVE_MESSAGE = (
    "Warden holds this account as inactive (it left or was disabled in the directory); "
    "ask an operator to run a directory sync if that is wrong."
)


class DirectoryBackend(LDAPBackend):
    """django-auth-ldap with Warden's directory settings, read on every login."""

    @property
    def settings(self) -> LDAPSettings:
        # Built per use, not cached: settings overrides (tests, the demo) apply at once.
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
            # Without a service account, the person reads their own entry after the bind.
            values.BIND_AS_AUTHENTICATING_USER = not config.bind_dn
        else:
            # %(user)s is escaped by django-auth-ldap before it reaches the filter. On AD the
            # same search also finds user@REALM (userPrincipalName).
            values.USER_SEARCH = LDAPSearch(
                config.user_base_dn or "",
                directory.SCOPE_SUBTREE,
                directory.login_filter(config),
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
            # An empty password would be an unauthenticated bind, which "succeeds"; NUL cannot
            # be part of a real name and python-ldap would cut the value at it.
            return None
        if not DirectoryConfig.from_settings().configured:
            _note(request, NOT_CONFIGURED_ATTR, True)
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)

    def get_or_build_user(self, username: str, ldap_user: Any) -> tuple[Any, bool]:
        """Called after a successful bind: refuse before any Django account is touched."""
        entry = _entry_of(ldap_user)
        refusal = _refusal(entry)
        if entry is None or refusal:
            _note(ldap_user._request, REFUSAL_ATTR, refusal)
            raise ldap_user.AuthenticationFailed(refusal)
        setattr(ldap_user, ENTRY_ATTR, entry)
        # The directory's spelling of the name, not what was typed ("ALICE", " alice").
        built: tuple[Any, bool] = super().get_or_build_user(entry.username, ldap_user)
        return built

    def authenticate_ldap_user(self, ldap_user: Any, password: str) -> Any:
        user = super().authenticate_ldap_user(ldap_user, password)
        entry: DirectoryPerson | None = getattr(ldap_user, ENTRY_ATTR, None)
        if user is None or entry is None:
            return None
        request = ldap_user._request
        try:
            person = services.record_login_person(entry, user)
        except ValidationError as exc:
            _note(request, REFUSAL_ATTR, " ".join(exc.messages))
            return None
        if not person.is_active:
            _note(request, REFUSAL_ATTR, INACTIVE_MESSAGE)
            return None
        user.refresh_from_db()
        return user


class LocalAccountBackend(ModelBackend):
    """Password login for the local accounts WARDEN_LOCAL_ACCOUNTS names, and for nobody else.

    A directory person's account never logs in here, whatever password it has: an operator who
    sets one (or a shell, or the database) cannot become that person. A local account taken off
    the list loses the sessions it has."""

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> Any:
        if not username or username not in settings.WARDEN_LOCAL_ACCOUNTS:
            return None
        user = super().authenticate(request, username=username, password=password, **kwargs)
        return user if user is not None and is_local_account(user) else None

    def get_user(self, user_id: Any) -> Any:
        user = super().get_user(user_id)
        return user if user is not None and is_local_account(user) else None


def is_local_account(user: Any) -> bool:
    """A Warden account no directory person stands behind, named by WARDEN_LOCAL_ACCOUNTS."""
    username = user.get_username()
    return (
        username in settings.WARDEN_LOCAL_ACCOUNTS
        and not Person.objects.filter(user_id=user.pk).exists()
    )


def _entry_of(ldap_user: Any) -> DirectoryPerson | None:
    """The bound person's entry as the sync would read it (django-auth-ldap decoded it)."""
    config = DirectoryConfig.from_settings()
    attrs = {
        name: [v.encode() if isinstance(v, str) else v for v in values]
        for name, values in (ldap_user.attrs or {}).items()
    }
    return directory.parse_person(config, ldap_user.dn, attrs)


def _refusal(entry: DirectoryPerson | None) -> str:
    if entry is None:
        return "Your directory entry cannot be read by Warden; ask an operator."
    if entry.disabled:
        return DISABLED_MESSAGE
    person = selectors.person_for_entry(entry)
    if person is not None and not person.is_active:
        return INACTIVE_MESSAGE
    return ""


def _note(request: HttpRequest | None, attr: str, value: Any) -> None:
    if request is not None:
        setattr(request, attr, value)


def _remember_directory_error(
    sender: Any, context: str, user: Any, request: Any = None, exception: Any = None, **kwargs: Any
) -> None:
    # django-auth-ldap has already logged the error; the form only needs to know it happened.
    _note(request, DIRECTORY_ERROR_ATTR, exception)


ldap_error.connect(_remember_directory_error, sender=DirectoryBackend)
