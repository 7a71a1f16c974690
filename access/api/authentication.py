"""Personal API tokens in the Authorization header: `Authorization: Bearer wdn_<id>_<secret>`."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from access.services import tokens


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """Acts as the token's owner. No CSRF check: the header cannot be sent by another site."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(
                "Send the token as `Authorization: Bearer wdn_...`, with nothing else."
            )
        try:
            raw = header[1].decode()
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("That is not a Warden token.") from None
        token = tokens.authenticate(raw)
        if token is None:
            # One message for unknown, expired, revoked and leavers: nothing to probe.
            raise exceptions.AuthenticationFailed(
                "The token is not valid: it may be mistyped, expired or revoked, or its owner "
                "may have left. Make a new one on Warden's API tokens page."
            )
        return token.owner, token

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="warden"'


class BearerTokenScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """Tells the OpenAPI schema how the token is sent."""

    target_class = "access.api.authentication.BearerTokenAuthentication"
    name = "PersonalToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A personal API token (wdn_...), from the API tokens page.",
        }
