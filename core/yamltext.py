"""YAML that people paste or keep in files, read the one way Warden reads it: an error names the
line to fix and never quotes the text (a kubeconfig's line may hold a token)."""

from __future__ import annotations

from typing import Any

import yaml


class NotValidYAML(ValueError):
    """The text is not YAML; `line` and `column` (1-based) say where, when the parser knows."""

    def __init__(self, line: int | None, column: int | None, problem: str) -> None:
        self.line, self.column, self.problem = line, column, problem
        super().__init__("not valid YAML" + (f" at line {line}" if line else ""))


def position(exc: yaml.YAMLError) -> tuple[int | None, int | None]:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return (mark.line + 1, mark.column + 1) if mark is not None else (None, None)


def not_valid(exc: yaml.YAMLError) -> NotValidYAML:
    """Warden's error for a parser error: the line and the parser's problem, not the text."""
    line, column = position(exc)
    return NotValidYAML(line, column, str(getattr(exc, "problem", None) or "unreadable"))


def safe_load(text: str) -> Any:
    """yaml.safe_load, with NotValidYAML for text that is not YAML."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise not_valid(exc) from None
