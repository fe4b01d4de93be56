"""Which repository files a module runs: its import closure, read from the source (ast).

Make's code dependencies (``CODE_<STAGE>`` in ``vars.mk``, written by
``stages.resolve_config``) and the training fingerprint (``pipeline.train.fold``) both come from
here, so "editing a module a stage runs re-runs that stage" holds without a hand-kept list
that goes stale. Standard library only: the Makefile runs it with the bare system Python at
parse time.

A module's code is every repository module it imports, directly or through other repository
modules, at module level or inside a function (a function-level import runs when the stage
does), plus the package ``__init__.py`` files on the way. A ``"package.module:function"``
string naming a repository module counts as an import too: the backbone registry names the
converted-weight builders of ``pipeline.models.weights`` that way and imports them only when one is
built. Imports of other packages (numpy, keras, ...) are left out: the environment, not the
repository, owns them.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_ENTRY_POINT = re.compile(r"([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):[A-Za-z_]\w*")


def _package_of(path: Path, root: Path) -> list[str]:
    """The dotted package a source file belongs to, as parts (for relative imports)."""
    return list(path.relative_to(root).parts[:-1])  # a package's __init__.py: itself


@functools.cache  # a Make parse computes every stage's closure: parse each file once
def imported_names(path: Path, root: Path = ROOT) -> frozenset[str]:
    """Dotted names a source file imports anywhere in it (and names in entry-point strings).

    ``from a.b import c`` gives ``a.b`` and ``a.b.c`` (``c`` may be a module or a name in
    ``a.b``; :func:`module_files` keeps what is a file).
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = _package_of(path, root)
                package = package[: len(package) - node.level + 1]
                base = ".".join([*package, *([base] if base else [])])
            if base:
                names.add(base)
            names.update(
                f"{base}.{alias.name}" if base else alias.name
                for alias in node.names
                if alias.name != "*"
            )
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = _ENTRY_POINT.fullmatch(node.value)
            if match:
                names.add(match.group(1))
    return frozenset(names)


def module_files(name: str, root: Path = ROOT) -> list[Path]:
    """The repository files importing ``name`` runs: its packages' ``__init__.py`` files and
    the module itself; empty for anything outside the repository."""
    parts = name.split(".")
    files = []
    for i, part in enumerate(parts):
        here = root.joinpath(*parts[:i], part)
        if (here / "__init__.py").is_file():
            files.append(here / "__init__.py")
        elif here.with_name(f"{part}.py").is_file():
            files.append(here.with_name(f"{part}.py"))
            break
        else:
            break
    return files


def code_closure(entries: Iterable[str | Path], root: Path = ROOT) -> list[str]:
    """Every repository file that running the ``entries`` (module files relative to
    ``root``, as ``python -m`` runs them) executes, transitively, as sorted root-relative
    POSIX paths: the entries, their packages' ``__init__.py`` and every import."""
    todo: list[Path] = []
    for entry in entries:
        if not (root / entry).is_file():
            raise FileNotFoundError(f"{root / entry}: no such module to compute the imports of")
        todo += module_files(".".join(Path(entry).with_suffix("").parts), root)
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            for name in imported_names(path, root):
                todo += module_files(name, root)
    return sorted(p.relative_to(root).as_posix() for p in seen)
