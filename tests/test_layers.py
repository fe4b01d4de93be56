"""Imports point one way: stages -> pipeline, never back (DESIGN "Imports point one way")."""

from __future__ import annotations

import ast
import sys

from tests.conftest import ROOT

UPPER_LAYERS = ("stages", "benchmarks", "tests", "scripts")


def _imports(path) -> list[tuple[int, str]]:
    """(line, module) of every import in a file, function-level ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def test_library_never_imports_the_cli_layer():
    files = sorted((ROOT / "pipeline").rglob("*.py"))
    assert len(files) > 20  # the walk sees the library
    upward = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in files
        for line, name in _imports(path)
        if name.split(".")[0] in UPPER_LAYERS
    ]
    assert not upward, "pipeline/ must not import stages/benchmarks:\n" + "\n".join(upward)


def test_the_walk_sees_function_level_imports(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("import os\n\ndef f():\n    from stages.common import cli\n")
    assert (4, "stages.common") in _imports(src)


def test_only_inference_owns_embeddings():
    """No module imports Two-Flow to get an embedding: only the predictor (which runs the
    Two-Flow member), the export (which converts it) and Two-Flow's own stage import it."""
    importers = sorted(
        str(path.relative_to(ROOT))
        for folder in ("pipeline", "stages", "benchmarks")
        for path in (ROOT / folder).rglob("*.py")
        if any(name == "pipeline.members.twoflow" for _, name in _imports(path))
    )
    assert importers == ["pipeline/export.py", "pipeline/predict.py", "stages/twoflow.py"]


def _module_graph() -> dict[str, set[str]]:
    """Repository module -> the repository modules it imports (anywhere in the file)."""
    from pipeline.code_deps import imported_names, module_files

    files = [
        p for folder in ("pipeline", "stages", "benchmarks") for p in (ROOT / folder).rglob("*.py")
    ]
    graph = {}
    for path in files:
        here = path.relative_to(ROOT).as_posix()
        deps = {
            f.relative_to(ROOT).as_posix()
            for name in imported_names(path, ROOT)
            for f in module_files(name, ROOT)
            if f.name != "__init__.py"
        }
        graph[here] = deps - {here}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    """No two modules import each other, directly or around a loop (function-level and
    type-checking imports count): each module can be read, tested and moved on its own."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert not _cycles(_module_graph())


def test_no_module_imports_a_private_name_of_another():
    """``from x import _name`` across modules reaches into another's internals."""
    found = []
    for folder in ("pipeline", "stages", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module:
                    found += [
                        f"{path.relative_to(ROOT)}: {node.module}.{a.name}"
                        for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")
                    ]
    assert not found, "\n".join(found)


def test_the_exported_runtime_runs_without_the_repository():
    """``make export`` copies the package ``pipeline/runtime/`` (its
    :data:`pipeline.export.RUNTIME_MODULES`) into the export: they
    import each other only relatively, and of other packages only the standard library and
    the runtime's own dependencies (no TensorFlow, Keras, scikit-learn or pandas). The one
    exception: a head's ``fit`` may import scikit-learn inside itself (`make frozen` fits
    heads; the export only scores them)."""
    from pipeline.export import RUNTIME_MODULES

    allowed = {"numpy", "cv2", "PIL", "onnxruntime", "xgboost"}
    package = ROOT / "pipeline" / "runtime"
    shipped = {p.stem for p in package.glob("*.py")} - {"__init__"}
    assert shipped == set(RUNTIME_MODULES), "every module of pipeline/runtime/ is shipped"
    bad = []
    for name in RUNTIME_MODULES:
        path = package / f"{name}.py"
        tree = ast.parse(path.read_text(), filename=str(path))
        in_fit = {
            id(n)
            for f in ast.walk(tree)
            if isinstance(f, ast.FunctionDef) and f.name == "fit"
            for n in ast.walk(f)
        }
        for node in ast.walk(tree):
            if id(node) in in_fit and isinstance(node, ast.ImportFrom):
                if (node.module or "").split(".")[0] == "sklearn":
                    continue
            if isinstance(node, ast.ImportFrom) and node.level:
                if node.level != 1 or node.module not in RUNTIME_MODULES:
                    bad.append(f"{name}.py:{node.lineno} imports .{node.module}")
                continue
            mods = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for mod in mods:
                top = mod.split(".")[0]
                if (
                    top != "__future__"
                    and top not in allowed
                    and top not in sys.stdlib_module_names
                ):
                    bad.append(f"{name}.py:{node.lineno} imports {mod}")
    assert not bad, "the exported runtime must stand alone:\n" + "\n".join(bad)


#: the only modules that turn a config into member names (the registry, and the config's
#: own checks of the names it is given)
MEMBER_OWNERS = {"pipeline/members/registry.py", "pipeline/config/schema.py"}


def test_members_come_only_through_the_registry():
    """Member names, kinds and fold-file folders are read from
    :mod:`pipeline.members.registry`: no other module builds them from the config
    (``frozen_members()``, ``pseudo_twins``, ``pseudo_members``)."""
    makers = {"frozen_members", "pseudo_twins", "pseudo_members"}
    found = []
    for folder in ("pipeline", "stages", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.relative_to(ROOT).as_posix()
            if rel in MEMBER_OWNERS:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                name = (
                    node.attr
                    if isinstance(node, ast.Attribute)
                    else node.id
                    if isinstance(node, ast.Name)
                    else None
                )
                if name in makers:
                    found.append(f"{rel}:{node.lineno} {name}")
    assert not found, "read members from pipeline.members.registry:\n" + "\n".join(found)


def test_library_is_packages_by_concept():
    """``pipeline/`` holds packages by concept and a few cross-cutting modules, no more."""
    top = {p.name for p in (ROOT / "pipeline").iterdir() if p.name != "__pycache__"}
    packages = {p for p in top if (ROOT / "pipeline" / p / "__init__.py").is_file()}
    assert packages == {
        "augment", "config", "data", "demo", "ensemble", "members", "models", "report",
        "runtime", "train",
    }  # fmt: skip
    modules = {p.removesuffix(".py") for p in top - packages}
    assert modules == {
        "__init__", "artifacts", "cluster", "code_deps", "distributed", "export", "metrics",
        "predict", "serve", "similar",
    }  # fmt: skip
