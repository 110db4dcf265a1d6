"""What code a job runs, as one digest: a param of every rule and part of the training checkpoints'
fingerprint, so a change to the code a result came from re-runs it (and a checkpoint written by
other code is never resumed).

Snakemake by itself re-runs a job when its *script* changes; FedAudit's scripts are thin and the
logic lives in ``src/fedaudit``, so that alone misses almost every change (a new loss in
``federation/local.py`` planned nothing). A job's code is taken here as its **import closure**:
the script, every ``fedaudit`` module it imports (at any depth, imports inside functions
included, since those run too), and the code the threat catalog loads by name -- each plugin
folder's ``plugin.py`` and the ``"module:function"`` references of its specs (defense hooks,
aggregation rules, client attacks, server behaviours, methods, table builders). Which references a
job follows depends on what it can call (:data:`PROFILES`): training never builds a table, so a
table builder's change does not re-train.

Each module counts by its syntax tree without docstrings (``ast.dump`` has no line numbers or
comments), so a comment, a docstring or a re-wrapped line changes nothing while any change to
what runs does. Files of a study's own plugin folders count whole (every ``.py`` in them).
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import sys
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

PACKAGE_ROOT = Path(__file__).resolve().parent
SRC = PACKAGE_ROOT.parent
# A catalog reference: "module:function", the module absolute (fedaudit.x) or relative (.x).
_REF = re.compile(r"^(\.+[\w.]*|fedaudit(\.\w+)*):\w+$")
# Which spec references a job follows, by what it can run: spec calls (``TableSpec(...)``) or
# keywords (``method=``) listed here are skipped.
PROFILES: dict[str, frozenset[str]] = {
    # training, evaluation, figures: the hooks a federation resolves, no table, no attack recipe
    "run": frozenset({"TableSpec", "method"}),
    # an attack's steps: its recipes too (the gradient-inversion suite runs every method)
    "attack": frozenset({"TableSpec"}),
    # the tables and the front page: the builders and findings as well
    "report": frozenset(),
}


class CodeDigestError(ValueError):
    """A module that cannot be parsed; the message names the file."""


@cache
def _module_file(name: str) -> Path | None:
    """``fedaudit.a.b`` -> its file under src/, or None when it is not a FedAudit module."""
    parts = name.split(".")
    if parts[0] != "fedaudit":
        return None
    base = SRC.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _package_of(path: Path) -> tuple[str, ...] | None:
    """The package parts a module file lives in (``fedaudit/a/b.py`` -> (fedaudit, a)), or None
    for a file outside src/ (a script, a study's plugin folder)."""
    try:
        rel = path.resolve().relative_to(SRC)
    except ValueError:
        return None
    return rel.parts[:-1]


def _absolute(module: str, level: int, path: Path) -> str | None:
    """An import's absolute module name; relative imports resolve against ``path``'s package
    (None outside src/: a plugin folder's relative imports are its own files, counted whole)."""
    if level == 0:
        return module
    pkg = _package_of(path)
    if pkg is None or level > len(pkg):
        return None
    base = ".".join(pkg[: len(pkg) - level + 1])
    return f"{base}.{module}" if module else base


def _parents(name: str) -> list[str]:
    """``fedaudit.a.b`` -> [fedaudit, fedaudit.a, fedaudit.a.b]: importing a module runs every
    package ``__init__`` above it."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return tree


def _refs(node: ast.AST, context: frozenset[str] = frozenset()
          ) -> Iterable[tuple[str, frozenset[str]]]:
    """Every catalog reference under ``node`` with the spec calls and keywords enclosing it."""
    if isinstance(node, ast.Constant):
        if isinstance(node.value, str) and _REF.match(node.value):
            yield node.value, context
        return
    if isinstance(node, ast.Call):
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        inner = context | {name}
        for arg in (node.func, *node.args):
            yield from _refs(arg, inner)
        for kw in node.keywords:
            yield from _refs(kw.value, inner | {kw.arg} if kw.arg else inner)
        return
    for child in ast.iter_child_nodes(node):
        yield from _refs(child, context)


def _facts(tree: ast.Module, path: Path
           ) -> tuple[tuple[str, ...], tuple[tuple[str, frozenset[str]], ...]]:
    """(modules and sibling scripts ``path`` imports, its catalog references with context)."""
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node.module or "", node.level, path)
            if base is None:
                continue
            names.append(base)
            # ``from fedaudit.a import b``: b may be a module
            names += [f"{base}.{a.name}" for a in node.names if a.name != "*"]
            if node.level == 0 and node.module and _package_of(path) is None:
                sibling = path.parent / f"{node.module}.py"  # a script's helper module
                if sibling.is_file():
                    names.append(str(sibling))
    refs = []
    for ref, context in _refs(tree):
        module = ref.split(":")[0]
        level = len(module) - len(module.lstrip("."))
        name = _absolute(module.lstrip("."), level, path)
        if name is not None:
            refs.append((name, context))
    return tuple(names), tuple(refs)


# An optional memo on disk of each file's record, keyed by its size, mtime and the Python version
# (ast.dump's form): a Snakefile parse -- once per job on a cluster -- then parses only the files
# that changed instead of ~100 modules (~1 s).
_DISK: dict[str, Any] = {}
_DISK_PATH: Path | None = None
_DISK_CHANGED = False
_CACHE_VERSION = 1


def use_disk_cache(path: str | Path) -> None:
    """Keep file records in ``path`` (JSON) between processes; an unreadable file is ignored."""
    global _DISK_PATH
    _DISK_PATH = Path(path)
    try:
        data = json.loads(_DISK_PATH.read_text())
        _DISK.update(data["files"] if data.get("version") == _CACHE_VERSION else {})
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass


def save_disk_cache() -> None:
    """Write the memo back when a file was parsed anew (atomic: parallel jobs never read half a
    file)."""
    if _DISK_PATH is None or not _DISK_CHANGED:
        return
    from fedaudit.atomic import WriteError, write_text

    try:
        write_text(json.dumps({"version": _CACHE_VERSION, "files": _DISK}), _DISK_PATH)
    except WriteError:
        pass  # a memo only: the digests are right without it


@cache
def _record(path: Path) -> tuple[str, tuple[str, ...], tuple[tuple[str, frozenset[str]], ...]]:
    """(digest of the syntax tree without docstrings, imports, catalog references) of a file."""
    try:
        st = path.stat()
    except OSError as err:
        raise CodeDigestError(f"{path}: cannot read it as Python: {err}") from err
    stamp = [st.st_size, st.st_mtime_ns, list(sys.version_info[:2])]
    hit = _DISK.get(str(path))
    if hit is not None and hit.get("stamp") == stamp:
        return (hit["digest"], tuple(hit["imports"]),
                tuple((n, frozenset(c)) for n, c in hit["refs"]))
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, UnicodeDecodeError) as err:
        raise CodeDigestError(f"{path}: cannot read it as Python: {err}") from err
    imports, refs = _facts(tree, path)
    # docstrings are never catalog references, so they go only after the facts are read
    digest = hashlib.sha256(ast.dump(_strip_docstrings(tree)).encode()).hexdigest()
    global _DISK_CHANGED
    _DISK_CHANGED = True
    _DISK[str(path)] = {"stamp": stamp, "digest": digest, "imports": list(imports),
                        "refs": [[n, sorted(c)] for n, c in refs]}
    return digest, imports, refs


@cache
def _dependencies(path: Path, skip: frozenset[str]) -> frozenset[Path]:
    """The FedAudit module files ``path`` imports or names in a catalog reference not under a
    skipped spec call or keyword, and its sibling scripts (``_common``) when it is a script."""
    _, imports, refs = _record(path)
    names = [*imports, *(name for name, context in refs if not context & skip)]
    found: set[Path] = set()
    for name in names:
        if name.endswith(".py"):
            found.add(Path(name).resolve())
            continue
        for parent in _parents(name):
            f = _module_file(parent)
            if f is not None:
                found.add(f)
    return frozenset(found)


def closure(roots: Iterable[str | Path], skip: frozenset[str] = PROFILES["run"]) -> set[Path]:
    """Every file the roots (module names or ``.py`` paths) import, at any depth, with the
    catalog references not in ``skip`` followed."""
    todo: list[Path] = []
    for r in roots:
        f = Path(r) if str(r).endswith(".py") else _module_file(str(r))
        if f is None:
            raise CodeDigestError(f"{r}: not a FedAudit module or Python file")
        todo.append(f if f.is_absolute() else f.resolve())
    seen: set[Path] = set()
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        todo += [d for d in _dependencies(f, skip) if d not in seen]
    return seen


def plugin_roots(folders: Iterable[str | Path]) -> list[Path]:
    """The files of the catalog's plugin folders that count: ``plugin.py`` of a built-in folder
    (its references are followed), every ``.py`` file of a study's own folder except its
    tests (``tests/``, ``test_*.py``: no job runs them)."""
    return list(_plugin_roots(tuple(str(f) for f in folders)))


@cache
def _plugin_roots(folders: tuple[str, ...]) -> tuple[Path, ...]:
    # memoised: the Snakefile asks once per rule (~60 times) for the same folders
    out: list[Path] = []
    for folder in folders:
        folder = Path(folder).resolve()
        if _package_of(folder / "plugin.py") is not None:
            out.append(folder / "plugin.py")
        else:
            out += sorted(f for f in folder.rglob("*.py")
                          if not f.name.startswith("test_")
                          and "tests" not in f.relative_to(folder).parts)
    return tuple(out)


def code_digest(roots: Iterable[str | Path], plugin_folders: Iterable[str | Path] = (),
                profile: str = "run") -> str:
    """The digest of the code a job runs: the closure of ``roots`` and of the plugin folders
    (:func:`plugin_roots`) under ``profile`` (:data:`PROFILES`). Paths enter it relative to src/
    or by name, so a moved checkout has the same digest."""
    return _code_digest(tuple(str(r) for r in roots), tuple(str(f) for f in plugin_folders),
                        profile)


@cache
def _code_digest(roots: tuple[str, ...], plugin_folders: tuple[str, ...], profile: str) -> str:
    # memoised: rules that share a script and profile (every table, every step of an attack)
    # share a digest, and the Snakefile asks for one per rule on every invocation
    skip = PROFILES[profile]
    files = closure([*roots, *plugin_roots(plugin_folders)], skip)
    h = hashlib.sha256()
    for f in sorted(files, key=_label):
        h.update(_label(f).encode())
        h.update(_record(f)[0].encode())
    return h.hexdigest()[:16]


def clear_caches() -> None:
    """Forget every file record and digest of this process: for a caller that edits code
    between two digests (the workflow parses once, so it never needs to)."""
    for fn in (_record, _dependencies, _plugin_roots, _code_digest, _label):
        fn.cache_clear()


@cache
def _label(path: Path) -> str:
    """A file's name in the digest, independent of where the checkout lies."""
    try:
        return path.relative_to(SRC).as_posix()
    except ValueError:
        return f"{path.parent.name}/{path.name}"


def catalog_folders(cat: Any) -> list[str]:
    """Every plugin folder of a catalog (:class:`fedaudit.catalog.Catalog`): the built-in ones
    and the study's own."""
    groups = (cat.attacks, cat.defenses, cat.aggregators, cat.client_attacks, cat.servers,
              cat.comparisons)
    return sorted({str(Path(spec.folder).resolve()) for group in groups
                   for spec in group.values() if getattr(spec, "folder", None) is not None})


def rule_digest(rule: Any, cat: Any, step_script: str | Path, table_script: str | Path,
                plugin_folders: Iterable[str | Path]) -> str:
    """The code digest of a Snakemake rule with a ``script:``: its script, for a catalog step
    (``step_script`` with a param ``attack``) that attack's steps module under the ``attack``
    profile, for a table (``table_script``) or the front page the ``report`` profile."""
    script = Path(str(rule.script))
    if not script.is_absolute():
        script = Path(str(rule.basedir.get_path_or_uri(secret_free=True))) / script
    roots: list[str | Path] = [script]
    profile = "run"
    attack = getattr(rule.params, "attack", None)
    if script == Path(step_script) and isinstance(attack, str):
        spec = cat.attacks[attack]
        steps = spec.package + spec.steps if spec.steps.startswith(".") else spec.steps
        profile = "attack"
        if steps.startswith("fedaudit."):  # a study's own steps count with its folder
            roots.append(steps)
    elif script == Path(table_script) or rule.name == "front_page":
        profile = "report"
    return code_digest(roots, plugin_folders, profile)
