"""Access as code, the way in: export, load, diff, plan and apply a file (see the package)."""

from __future__ import annotations

from ascode.apply import apply
from ascode.checks import load
from ascode.diff import Change, Diff, diff
from ascode.format import AsCodeError, Declared, Item, document, dump
from ascode.plan import plan_text, rbac_plan
from ascode.state import current, export

__all__ = [
    "AsCodeError",
    "Change",
    "Declared",
    "Diff",
    "Item",
    "apply",
    "current",
    "diff",
    "document",
    "dump",
    "export",
    "load",
    "plan_text",
    "rbac_plan",
]
