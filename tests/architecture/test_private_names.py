"""A name with a leading underscore is private to its file (CONVENTIONS.md): no module imports
another's private name or reaches into it (`module._name`). If another file needs it, it is made
public where it lives."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIRST_PARTY = (
    "access",
    "ascode",
    "clusters",
    "core",
    "config",
    "kubesim",
    "warden_cli",
    "tests",
    "bench",
)


def is_module(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def reaches_into_privates(path: Path, text: str | None = None) -> list[str]:
    tree = ast.parse(path.read_text() if text is None else text, str(path))
    modules: set[str] = set()  # local names bound to first-party modules
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] not in FIRST_PARTY:
                continue
            for alias in node.names:
                if private(alias.name):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: imports {alias.name}")
                if is_module(f"{node.module}.{alias.name}"):
                    modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in FIRST_PARTY:
                    modules.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and private(node.attr)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
        ):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_no_file_uses_another_files_private_names():
    files = [
        path
        for package in FIRST_PARTY
        for path in (ROOT / package).rglob("*.py")
        if "migrations" not in path.parts
    ]

    found = [line for path in files for line in reaches_into_privates(path)]

    assert found == []


def test_the_check_finds_a_private_import_and_a_reach_into_a_module():
    sample = (
        "from clusters.services import _queue_on_commit\n"
        "from clusters import k8s\n"
        "k8s._clients.clear()\n"
        "self._own = 1\n"
    )

    found = reaches_into_privates(ROOT / "tests" / "sample.py", sample)

    assert found == [
        "tests/sample.py:1: imports _queue_on_commit",
        "tests/sample.py:3: k8s._clients",
    ]
