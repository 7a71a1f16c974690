"""Middleware of the people side."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from access.audit import current_request_id, new_request_id


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
