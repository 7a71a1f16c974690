"""Field types the API shares: durations as people write them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from access import durations


@extend_schema_field(
    {"type": "string", "example": "4h", "description": "30m, 4h, 7d, 1d12h or ISO 8601 (PT4H)"}
)
class HumanDurationField(serializers.Field):
    """A duration read as `4h`, `7d`, `1d12h` or ISO 8601, written as the shortest of `4h`."""

    default_error_messages = {"invalid": "{message}"}

    def to_internal_value(self, data: Any) -> timedelta:
        if not isinstance(data, str | int):
            self.fail("invalid", message="Write a duration such as 30m, 4h or 7d.")
        try:
            value = durations.parse(str(data))
        except ValueError as exc:
            self.fail("invalid", message=str(exc))
        return value

    def to_representation(self, value: timedelta) -> str:
        return durations.format(value)


@extend_schema_field(OpenApiTypes.OBJECT)
class StringMapField(serializers.DictField):
    """A mapping of strings (labels, a cluster selector)."""

    child = serializers.CharField(max_length=253, allow_blank=True)


class NameListField(serializers.ListField):
    """A list of names: namespaces, teams, clusters (each at most 253 characters)."""

    child = serializers.CharField(max_length=253)


class NameField(serializers.SlugRelatedField):
    """An object named by its name (a role, a team, a person), never by its id."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str) and "\x00" in data:
            self.fail("does_not_exist", slug_name=self.slug_field, value="(a NUL character)")
        return super().to_internal_value(data)
