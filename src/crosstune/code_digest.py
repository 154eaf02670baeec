"""A digest of the crosstune source code a workflow script runs (a rule param: code changes rerun).

Snakemake reruns a job when its script changes (rerun trigger ``code``), but the
logic lives in this package, which Snakemake does not watch. Every rule with a
script therefore has a param ``code: digest(script)``: the SHA-256 of the
crosstune modules the script imports, found by walking the import statements
statically (``ast``, no module is executed) through ``src/crosstune``. A change
to, say, ``evaluate/extract.py`` changes the digest of ``score``'s script but not
``train``'s, so only the rules whose code changed rerun.

What is reached from a script: every ``import crosstune...`` / ``from crosstune...
import`` / relative import anywhere in a reached file (also those inside
functions), the ``__init__.py`` of every package on the way (Python runs them on
import) and a package's ``__main__.py`` (``python -m crosstune.train`` is how
training processes start). Only ``.py`` files count; bundled data files that a
rule reads are its inputs instead.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

PACKAGE = "crosstune"
ROOT = Path(__file__).resolve().parent  # src/crosstune


def module_file(name: str, root: Path = ROOT) -> Path | None:
    """The file of crosstune module ``name`` (a package's ``__init__.py``), or None."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = root.joinpath(*parts[1:])
    for path in (base / "__init__.py", base.with_suffix(".py") if parts[1:] else None):
        if path is not None and path.is_file():
            return path
    return None


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join([PACKAGE, *parts[:-1]] if parts[-1] == "__init__" else [PACKAGE, *parts])


def imported_names(path: Path, root: Path = ROOT) -> frozenset[str]:
    """Crosstune module names a file imports (``from a import b`` also names ``a.b``: b may be a module)."""
    inside = root in path.parents
    # the package a relative import starts from: the module itself when it is a package
    package = module_name(path, root) if inside and path.name == "__init__.py" else (
        module_name(path, root).rpartition(".")[0] if inside else ""
    )
    return _imported_names(path.read_bytes(), package)


@functools.cache  # by content: each file is parsed once per run (the DAG asks per rule)
def _imported_names(source: bytes, package: str) -> frozenset[str]:
    tree = ast.parse(source)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return frozenset(n for n in names if n == PACKAGE or n.startswith(f"{PACKAGE}."))


def reached_files(script: str | Path, root: Path = ROOT) -> list[Path]:
    """The crosstune source files ``script`` runs, transitively, sorted."""
    seen: set[Path] = set()
    todo = [Path(script).resolve()]
    while todo:
        path = todo.pop()
        for name in imported_names(path, root):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # the module and every package above it
                prefix = ".".join(parts[:i])
                found = [module_file(prefix, root)]
                if (root.joinpath(*parts[1:i]) / "__init__.py").is_file():
                    found.append(module_file(f"{prefix}.__main__", root))
                for f in found:
                    if f is not None and f not in seen:
                        seen.add(f)
                        todo.append(f)
    return sorted(seen)


def digest(script: str | Path, root: Path = ROOT) -> str:
    """SHA-256 over the relative paths and bytes of :func:`reached_files` (16 hex digits)."""
    h = hashlib.sha256()
    for path in reached_files(script, root):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]
