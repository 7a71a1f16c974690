"""The import graph runs one way between the apps, has layers, and has no circles.

- The apps, lowest first (APPS): core; access, the people side; clusters, the machine side,
  which builds on the people side (it reads people, roles and grants through access.specs) and
  answers the people side's questions about the fleet through the interface access.fleet
  declares; ascode, access as code, which declares what both hold. A module imports only its
  own app and those below it: access never imports clusters or ascode, not even its pages.
- Layers, each importing only itself and those below it (LAYERS, lowest first): core; the
  people side's base (people, teams, the catalogue and grants as models and specs, the audit
  trail, permissions, notices, the fleet interface); the access features (requests and their
  previews, grants, reviews, the pure "why forbidden?" and "who can?"); the cluster engine
  (registry, compiler, reconciler, the Kubernetes door, a cluster's answers); managed service
  accounts (approved through access requests); access as code; and on top the pages, the API,
  tasks, commands and app wiring.
- No two of Warden's modules import each other, directly or round a circle, counting imports
  inside functions too (an import moved into a function to dodge a cycle is still the cycle).
  Imports under `if TYPE_CHECKING:` are for the type checker only and are not counted.
- Tasks are the top layer: a tasks module is imported only by what sits above the services
  (views, the API, app configs, management commands, the Celery app). Services queue work by the
  task's registered name through core/queue.py, and every name they send is a registered task.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

from core import queue
from tests.architecture.test_doors import ROOT, sources

APPS = ["core", "access", "clusters", "ascode"]
LAYERS = [
    ("core", r"^(core(\.|$)|config\.(logconfig|metrics)$)"),
    (
        "people",
        r"^access\.(models|choices|audit|words|durations|namespace_patterns|leads|notify"
        r"|permissions|signals|directory|ldap(\..*)?|throttle|localslapd|localsamba|role_words"
        r"|sync|demo(\..*)?|specs|fleet)$",
    ),
    ("access features", r"^access\.(services(\..*)?|selectors|forbidden|whocan)$"),
    (
        "cluster engine",
        r"^clusters\.(models|choices|compiler|plan|planning|reconcile|k8s|crypto|bulk|locks"
        r"|kubeconfig|metrics|signals|selectors|permissions|services(\..*)?|discovery|answers"
        r"|fleet)$",
    ),
    ("service accounts", r"^clusters\.serviceaccounts(\..*)?$"),
    ("access as code", r"^ascode(\.(apply|checks|diff|format|plan|state|files))?$"),
    ("pages, API, tasks, wiring", r".*"),
]
ABOVE_THE_TASKS = re.compile(
    r"(/views/|/views\.py$|/api/|/apps\.py$|/management/|^config/|/tasks\.py$)"
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in sources()}


def _owner(name: str) -> str:
    """The Warden module an imported name lives in ('' for other libraries)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def imports_of(path: Path) -> set[str]:
    """Warden modules `path` imports, at any depth, but not under TYPE_CHECKING."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.update(_owner(alias.name) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                for alias in child.names:
                    # `from package import module` imports that module
                    full = f"{child.module}.{alias.name}"
                    found.add(full if full in MODULES else _owner(child.module))
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    found.discard("")
    found.discard(module_name(path))
    return found


def graph() -> dict[str, set[str]]:
    return {name: imports_of(path) for name, path in MODULES.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(edges.get(node, ())):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            connect(node)
    return found


def test_no_modules_import_each_other_round_a_circle():
    assert circles(graph()) == []


def layer_of(module: str) -> int:
    return next(i for i, (_name, pattern) in enumerate(LAYERS) if re.match(pattern, module))


def test_every_import_goes_down_the_layers():
    upward = sorted(
        f"{module} ({LAYERS[layer_of(module)][0]}) imports {imported} "
        f"({LAYERS[layer_of(imported)][0]})"
        for module, imported_modules in graph().items()
        for imported in imported_modules
        if layer_of(imported) > layer_of(module)
    )

    assert upward == []


def test_each_layer_holds_modules():
    # A pattern that matched nothing would leave its modules on top, where anything goes.
    held = {name: 0 for name, _pattern in LAYERS}
    for module in MODULES:
        held[LAYERS[layer_of(module)][0]] += 1
    assert all(count > 0 for count in held.values()), held


def test_the_circle_finder_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_only_the_layers_above_import_a_tasks_module():
    importers: dict[str, set[str]] = defaultdict(set)
    for _name, path in MODULES.items():
        for imported in imports_of(path):
            if imported.endswith(".tasks"):
                importers[imported].add(str(path.relative_to(ROOT)))
    below = {
        task_module: sorted(p for p in paths if not ABOVE_THE_TASKS.search(p))
        for task_module, paths in importers.items()
    }

    assert below == {name: [] for name in importers}
    assert "access.tasks" in importers  # the walk sees the views that do import tasks


def test_every_task_name_queued_by_name_is_a_registered_task():
    sent = {
        match.group(1)
        for path in sources()
        for match in re.finditer(r"queue\.send(?:_on_commit)?\(\s*\"([\w.]+)\"", path.read_text())
    }

    assert len(sent) >= 8
    for name in sorted(sent):
        assert queue.task(name).name == name


def app_of(module: str) -> int | None:
    top = module.split(".")[0]
    return APPS.index(top) if top in APPS else None


def test_the_apps_import_one_way():
    upward = sorted(
        f"{module} imports {imported}"
        for module, imported_modules in graph().items()
        for imported in imported_modules
        if app_of(module) is not None
        and app_of(imported) is not None
        and app_of(imported) > app_of(module)  # type: ignore[operator]
    )

    assert upward == []
