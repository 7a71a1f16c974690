"""Errors the services raise, as API answers: what to fix, never a stack trace."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from kombu.exceptions import OperationalError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus: a service's ValidationError is a 400 naming each problem, and a
    broker that does not answer is a 503 (the change itself was committed or not made)."""
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            errors: Any = {field: list(messages) for field, messages in exc.message_dict.items()}
            detail = " ".join(m for ms in errors.values() for m in ms)
            return Response({"detail": detail, "errors": errors}, status=400)
        return Response(
            {"detail": " ".join(exc.messages), "errors": list(exc.messages)}, status=400
        )
    if isinstance(exc, OperationalError):
        return Response(
            {"detail": "The task queue is not answering; try again in a moment."},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
    return drf_exception_handler(exc, context)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """A URL nothing answers: JSON under /api/ (clients parse it), the 404 page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)
