"""Middleware of the people side."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse

from access.audit import current_request_id, new_request_id
from access.permissions import may_still_log_in

logger = logging.getLogger(__name__)


class RequestIdMiddleware:
    """Give each request an id (the caller's X-Request-ID, or a new one) for logs and audit."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = new_request_id(request.headers.get("X-Request-ID"))
        token = current_request_id.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            current_request_id.reset(token)
        response["X-Request-ID"] = request_id
        return response


class LeaverMiddleware:
    """End the session of an account that may no longer log in (it left the directory or was
    disabled) at its next request, pages and API alike; API tokens are checked the same way
    when they are read (access.services.tokens.authenticate)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and not may_still_log_in(user):
            logger.info("session of %s ended: no longer active", user.get_username())
            logout(request)
        return self.get_response(request)
