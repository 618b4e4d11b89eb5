"""The shape of py/embed_worker (its __init__.py draws the tree), checked from the source: imports
go one way, wire/ is standard library, and files and functions stay a readable size. The Python
twin of test/architecture.test.ts."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "embed_worker"
LIFECYCLE = {"worker", "__main__", "startup", "threads", "lifeline"}
FAMILIES = {"esm2", "dnabert_s"}
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 80
LONG_REASON = "# long:"  # a function longer than MAX_FUNCTION_LINES says why on its def line or above


def modules() -> dict[str, Path]:
    """Every module as its dotted name inside the package ("esm2.model", "worker", ...)."""
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        parts = p.relative_to(PKG).with_suffix("").parts
        out[".".join(parts)] = p
    return out


def imports(name: str, path: Path) -> tuple[set[str], set[str]]:
    """(package modules, top-level outside packages) that a module imports, anywhere in it (lazy
    imports inside functions included). Package modules as dotted names inside embed_worker."""
    tree = ast.parse(path.read_text())
    package = name.split(".")[:-1] if path.name != "__init__.py" else name.split(".")
    ours, outside = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "embed_worker" or a.name.startswith("embed_worker."):
                    ours.add(a.name.removeprefix("embed_worker").lstrip("."))
                else:
                    outside.add(a.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                mod = node.module or ""
                if mod == "embed_worker" or mod.startswith("embed_worker."):
                    base = mod.removeprefix("embed_worker").lstrip(".")
                else:
                    outside.add(mod.split(".")[0])
                    continue
            else:
                up = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                base = ".".join(up + ([node.module] if node.module else []))
            for a in node.names:  # `from . import x` may name a module
                full = f"{base}.{a.name}" if base else a.name
                ours.add(full if full in MODULES or f"{full}.__init__" in MODULES else base)
    ours.discard("")
    return {m for m in ours if m != name}, outside


MODULES = modules()
IMPORTS = {name: imports(name, path) for name, path in MODULES.items()}


def area(module: str) -> str:
    """The folder a module is in, or its own name at the top."""
    return module.split(".")[0]


def test_the_tree_is_what_the_package_docstring_draws():
    folders = {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == {"wire", "esm2", "dnabert_s", "gpu", "tools"}
    doc = (PKG / "__init__.py").read_text()
    for folder in folders:
        assert f"{folder}/" in doc, folder


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_family_imports_no_gpu_no_wire_no_tools_no_other_family(family):
    for name, (ours, _) in IMPORTS.items():
        if area(name) != family:
            continue
        allowed = {family, "errors", "log", "checkpoint", "hub", "upload"}
        bad = sorted(m for m in ours if area(m) not in allowed)
        assert not bad, f"{name} imports {bad}: a model family stays a flat reference (gpu/ arranges it)"


def test_wire_is_standard_library_and_imports_nothing_else_of_ours():
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    for name, (ours, outside) in IMPORTS.items():
        if area(name) != "wire":
            continue
        assert all(area(m) in ("wire", "errors") for m in ours), (name, ours)
        foreign = outside - stdlib - ({"torch"} if name == "wire.ring" else set())
        assert not foreign, f"{name} imports {sorted(foreign)}; wire/ is standard library (ring.py's slot views: torch)"
    assert IMPORTS["wire.protocol"][1] <= stdlib, "the wire contract runs anywhere: standard library only"


def test_gpu_arranges_families_and_knows_no_wire_tools_or_lifecycle():
    for name, (ours, _) in IMPORTS.items():
        if area(name) == "gpu":
            bad = sorted(m for m in ours if area(m) in {"wire", "tools"} | LIFECYCLE)
            assert not bad, (name, bad)


def test_shared_leaves_import_no_folder_and_nothing_imports_the_worker():
    for leaf in ("errors", "log", "checkpoint", "hub", "upload"):
        assert all(area(m) in ("errors", "log") for m in IMPORTS[leaf][0]), (leaf, IMPORTS[leaf][0])
    for name, (ours, _) in IMPORTS.items():
        if name != "__main__":
            assert "worker" not in ours, f"{name} imports the worker: imports go down the tree, not up"
        if area(name) in {"tools", "gpu", "wire", "esm2", "dnabert_s"}:
            # A tool running its own process pool sizes it as the worker sizes its threads and
            # binds its processes to itself: threads and lifeline are standard-library leaves.
            allowed = {"threads", "lifeline"} if area(name) == "tools" else set()
            assert not {area(m) for m in ours} & (LIFECYCLE - allowed), (name, ours)


def test_the_import_checker_sees_lazy_and_relative_imports():
    """The checks above can fail: the checker resolves relative imports and the ones made inside
    functions (the worker imports gpu.arrange lazily; tools.doctor imports gpu lazily too)."""
    assert "gpu.arrange" in IMPORTS["worker"][0]
    assert "esm2.model" in IMPORTS["gpu.arrange"][0]
    assert {"gpu.arrange", "esm2.attention"} <= IMPORTS["tools.doctor"][0]
    assert "checkpoint" in IMPORTS["dnabert_s.weights"][0]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_files_and_functions_stay_readable(name):
    path = MODULES[name]
    text = path.read_text()
    lines = text.splitlines()
    assert len(lines) <= MAX_FILE_LINES, f"{path.name}: {len(lines)} lines; split it by concern"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = node.end_lineno - node.lineno + 1
            start = node.decorator_list[0].lineno if node.decorator_list else node.lineno
            said = any(LONG_REASON in lines[i - 1] for i in range(max(1, start - 1), node.lineno + 1))
            assert n <= MAX_FUNCTION_LINES or said, f"{path.name}: {node.name} is {n} lines with no reason beside it"
