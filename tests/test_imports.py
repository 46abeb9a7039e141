"""The package's import graph has no circle (issue 14): `cli` imports the commands, the commands
import `commands.app` and `console`, and the library never imports the command line.

Every `import` statement counts, also those inside functions (a deferred import is still a
dependency: a circle through one only waits for the first call to bite)."""

from __future__ import annotations

import ast
from pathlib import Path

import sdpm_cli

PKG = Path(sdpm_cli.__file__).parent


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_pkg else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                # `from pkg import sub` depends on the module pkg.sub (and, through it, on pkg's
                # __init__, which a module inside pkg already runs under); `from mod import name` on mod
                subs = [f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in modules]
                targets = subs + ([mod] if len(subs) < len(node.names) else [])
            for t in targets:
                if t in modules and t != name:
                    graph[name].add(t)
    # importing a.b.c imports the packages a.b and a first
    for name in list(graph):
        for t in list(graph[name]):
            parts = t.split(".")
            for k in range(1, len(parts)):
                parent = ".".join(parts[:k])
                if parent in graph and parent != name and not name.startswith(parent + "."):
                    graph[name].add(parent)
    return graph


def _find_cycle(graph: dict[str, set[str]]):
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_the_package_has_no_import_circle():
    cycle = _find_cycle(_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_only_the_entry_points_import_the_cli():
    graph = _graph()
    users = sorted(m for m, deps in graph.items() if "sdpm_cli.cli" in deps)
    assert users == ["sdpm_cli.__main__"], users


def test_the_library_never_imports_the_commands():
    graph = _graph()
    library = [m for m in graph if not m.startswith("sdpm_cli.commands") and m not in ("sdpm_cli.cli", "sdpm_cli.__main__")]
    offenders = sorted((m, d) for m in library for d in graph[m] if d.startswith("sdpm_cli.commands"))
    assert offenders == [], offenders


def test_the_walker_sees_a_circle():
    # the check itself can fail: a two-module circle is found
    assert _find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_every_subpackage_ships_in_the_wheel():
    # pyproject lists the packages by hand (models/ is mapped in as sdpm_cli.shipped_models): a new
    # subpackage missing from the list installs in editable mode and vanishes from the wheel
    import tomllib

    listed = set(tomllib.loads((PKG.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {_module_name(p.parent / "__init__.py") for p in PKG.rglob("__init__.py")}
    assert on_disk - listed == set(), f"add to [tool.setuptools] packages: {sorted(on_disk - listed)}"
