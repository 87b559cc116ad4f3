"""No import circle among the project's modules: the packages read floor by floor.

Every `import` is counted, at module level or inside a function (a deferred import still
ties two modules together), so moving an import into a function cannot hide a circle.
"""
import ast
from pathlib import Path

from graphlib import CycleError, TopologicalSorter

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("search_spaces", "latency_tables", "nas", "netadapt", "experiments")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def imported(tree: ast.AST, here: str, is_package: bool, known: set[str]) -> set[str]:
    """Project modules named by the imports of one module (a package's `from pkg import
    name` counts as importing `pkg.name` when that is a module, else `pkg` itself)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = here if is_package else here.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}".strip(".")
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != here:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    """{module: project modules it imports}."""
    modules = project_modules()
    return {name: imported(ast.parse(path.read_text(), str(path)), name, path.name == "__init__.py",
                           set(modules))
            for name, path in modules.items()}


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as e:
        return e.args[1]
    return None


def test_the_graph_sees_the_project():
    g = import_graph()
    assert {"search_spaces.ir", "latency_tables.table", "nas.cli", "netadapt.surgery"} <= set(g)
    assert "latency_tables.ops" in g["latency_tables.table"]
    assert "search_spaces.builder" in g["netadapt.surgery"]


def test_a_circle_is_found():
    # the checker itself: two modules importing each other, one of them only inside a function
    a = ast.parse("from pkg import b\n")
    b = ast.parse("def f():\n    from pkg.a import x\n")
    known = {"pkg", "pkg.a", "pkg.b"}
    g = {"pkg.a": imported(a, "pkg.a", False, known), "pkg.b": imported(b, "pkg.b", False, known)}
    assert set(find_circle(g)) == {"pkg.a", "pkg.b"}
    assert find_circle({"pkg.a": {"pkg.b"}, "pkg.b": set()}) is None


def test_no_import_circle():
    circle = find_circle(import_graph())
    if circle:
        pytest.fail(f"import circle: {' -> '.join(circle)}")
