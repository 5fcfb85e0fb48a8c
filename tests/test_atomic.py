"""Atomic writes (bundle/atomic.py) and the import graph of bundle/: no import cycle, lazy imports included."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from bundle.atomic import atomic_write, atomic_write_all

REPO_ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(p.stem for p in (REPO_ROOT / "bundle").glob("*.py") if p.stem != "__init__")


def test_atomic_write_replaces_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "sub" / "a.nii.gz"
    assert atomic_write(path, lambda tmp: Path(tmp).write_text("new")) == path
    assert path.read_text() == "new" and path.stat().st_mode & 0o777 == 0o644
    with pytest.raises(RuntimeError, match="boom"):
        atomic_write(path, lambda tmp: (_ for _ in ()).throw(RuntimeError("boom")))
    assert path.read_text() == "new" and sorted(p.name for p in path.parent.iterdir()) == ["a.nii.gz"]


def test_atomic_write_all_is_all_or_nothing(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("old")

    def fail(tmp: str) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write_all([(a, lambda tmp: Path(tmp).write_text("new")), (b, fail)])
    assert a.read_text() == "old" and not b.exists() and [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    assert atomic_write_all([(a, lambda tmp: Path(tmp).write_text("A")), (b, lambda tmp: Path(tmp).write_text("B"))]) \
        == [a, b]
    assert (a.read_text(), b.read_text()) == ("A", "B")


def _bundle_imports(tree: ast.AST, module: str, top_level: bool) -> set[str]:
    """The bundle modules that ``module``'s source imports: its top-level statements only, or every import
    (also those inside functions: a lazy import still closes a cycle)."""
    nodes = tree.body if top_level else ast.walk(tree)
    out: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[1] for a in node.names if a.name.startswith("bundle."))
        elif isinstance(node, ast.ImportFrom):
            name = ".".join(p for p in ("bundle" if node.level else "", node.module or "") if p)
            if name == "bundle":  # from bundle import clinical
                out.update(a.name for a in node.names if a.name in MODULES)
            elif name and name.startswith("bundle."):
                out.add(name.split(".")[1])
    return out - {module}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (as the list of its modules, first = last), or None when it is acyclic."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:  # path: from the start to node, node included
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt, path + [nxt])):
                return found
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node, [node])):
            return found
    return None


def test_cycle_finder():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert _cycle({"io": {"regression"}, "regression": {"weights"}, "weights": {"io"}}) == \
        ["io", "regression", "weights", "io"]


@pytest.mark.parametrize("top_level", [True, False], ids=["module_level", "with_lazy_imports"])
def test_no_import_cycle_in_bundle(top_level):
    graph = {}
    for m in MODULES:
        tree = ast.parse((REPO_ROOT / "bundle" / f"{m}.py").read_text())
        graph[m] = _bundle_imports(tree, m, top_level)
    assert set().union(*graph.values()) <= set(MODULES)
    assert _cycle(graph) is None, f"import cycle among bundle modules: {' -> '.join(_cycle(graph))}"


def test_each_bundle_module_imports_on_its_own():
    """In a fresh interpreter, each bundle module imported first (every ``bundle.*`` dropped from ``sys.modules``
    before the next; torch and MONAI stay loaded, so one interpreter serves all)."""
    code = (
        "import importlib, sys\n"
        f"for m in {MODULES!r}:\n"
        "    for k in [k for k in sys.modules if k == 'bundle' or k.startswith('bundle.')]:\n"
        "        del sys.modules[k]\n"
        "    importlib.import_module('bundle.' + m)\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
