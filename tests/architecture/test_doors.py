"""One door per outside system (DESIGN.md): python-ldap only in access/directory.py, the
Kubernetes client only in clusters/k8s.py, webhooks only through core/webhooks.py, the identity
provider only through access/oidc.py (with mozilla-django-oidc, which speaks `requests`), so that
every call to the outside goes through the checks of its door."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("access", "ascode", "clusters", "config", "core")
DOORS = {
    "ldap": {"access/directory.py"},
    "ldapurl": {"access/directory.py"},
    "kubernetes": {"clusters/k8s.py"},
    "urllib.request": {"core/webhooks.py"},
    "http.client": {"core/webhooks.py"},
    "requests": {"access/oidc.py"},
    "httpx": set(),
}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def sources() -> list[Path]:
    return sorted(
        path
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "migrations" not in path.parts
    )


@pytest.mark.parametrize("module", sorted(DOORS))
def test_each_outside_system_has_one_door(module):
    importers = {
        str(path.relative_to(ROOT))
        for path in sources()
        for name in imported_modules(path)
        if name == module or name.startswith(module + ".")
    }

    assert importers <= DOORS[module], f"{module} imported outside its door"


def test_the_check_sees_the_doors_themselves():
    # A walk that found nothing would pass the test above for any code.
    assert "ldap" in imported_modules(ROOT / "access/directory.py")
    assert "kubernetes" in {n.split(".")[0] for n in imported_modules(ROOT / "clusters/k8s.py")}
    assert "urllib.request" in imported_modules(ROOT / "core/webhooks.py")
