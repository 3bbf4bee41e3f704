"""The package's layout holds: no import cycle, and no module reaches into another package's
private modules (``_name``), skiptune's or a dependency's.

Scanned from the source, so the test needs nothing imported and names the offending line:
cycles from every module-level import (``TYPE_CHECKING`` blocks included; imports inside
functions are deliberate deferrals), private modules from every import anywhere.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import skiptune

ROOT = Path(skiptune.__file__).resolve().parent
# The one module allowed to use Optuna's private side (each use canaried in
# tests/tuner/test_optuna_private.py).
OPTUNA_PRIVATE = "skiptune._optuna_private"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def module_level(statements: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements run at import: the body, and inside if/try/with blocks (TYPE_CHECKING too)."""
    for statement in statements:
        yield statement
        if isinstance(statement, ast.If | ast.With):
            yield from module_level(statement.body)
            yield from module_level(getattr(statement, "orelse", []))
        elif isinstance(statement, ast.Try):
            for block in (statement.body, statement.orelse, statement.finalbody,
                          *(h.body for h in statement.handlers)):
                yield from module_level(block)


def imported(name: str, path: Path, *, anywhere: bool = False) -> Iterator[tuple[int, str]]:
    """(line, module) of each module-level import (``anywhere``: of each import, in functions
    too); ``from a import b`` names a.b if it is a module, else a."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    for statement in ast.walk(tree) if anywhere else module_level(tree.body):
        if isinstance(statement, ast.Import):
            for alias in statement.names:
                yield statement.lineno, alias.name
        elif isinstance(statement, ast.ImportFrom):
            base = statement.module or ""
            if statement.level:
                anchor = package.split(".")[: len(package.split(".")) - statement.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in statement.names:
                candidate = f"{base}.{alias.name}"
                yield statement.lineno, candidate if candidate in MODULES else base


def private_owner(module: str) -> str | None:
    """The package whose private module ``module`` is (``a.b`` for ``a.b._c.d``), or None."""
    parts = module.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:i])
    return None


def test_the_scan_sees_the_package() -> None:
    assert {"skiptune.cli", "skiptune.tuner.search._run", "skiptune.storage._schema"} <= set(
        MODULES)
    edges = dict.fromkeys(m for _, m in imported("skiptune.tuner.search._run",
                                                 MODULES["skiptune.tuner.search._run"]))
    assert "skiptune._failpoints" in edges and "skiptune.tuner.study" in edges


def test_no_module_imports_another_packages_private_module() -> None:
    offences = []
    for name, path in MODULES.items():
        for line, target in imported(name, path, anywhere=True):
            owner = private_owner(target)
            if owner is None or (name == OPTUNA_PRIVATE and target.startswith("optuna.")):
                continue
            inside = name == owner or name.startswith(owner + ".")
            if not inside:
                offences.append(f"{path.relative_to(ROOT.parent)}:{line} imports {target}")
    assert not offences, "private modules imported from outside their package:\n" + "\n".join(
        offences)


def test_there_is_no_import_cycle() -> None:
    graph = {
        name: sorted({t for _, t in imported(name, path) if t in MODULES and t != name})
        for name, path in MODULES.items()
    }
    state: dict[str, int] = {}              # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for target in graph[node]:
            if state.get(target) == 1:
                cycles.append([*trail[trail.index(target):], target])
            elif target not in state:
                visit(target, [*trail, target])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_study_record_and_results_never_import_the_search() -> None:
    for name, path in MODULES.items():
        if name.startswith(("skiptune.tuner.study", "skiptune.tuner.results")):
            targets = [t for _, t in imported(name, path)]
            assert not [t for t in targets if t.startswith("skiptune.tuner.search")], name
