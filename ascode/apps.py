from __future__ import annotations

from django.apps import AppConfig


class AscodeConfig(AppConfig):
    """Access as code: the roles, policies, standing grants, clusters and service accounts of
    both apps as one reviewed YAML file (export, diff, plan, apply). It sits above both apps."""

    name = "ascode"
