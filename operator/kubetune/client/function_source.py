"""Cut a function's source out of its module so that it stands alone in a trial image.

A function's source stands alone when every module-level name it uses (in its
body, default values, decorators, and, without `from __future__ import annotations`,
its annotations), and every name those use in turn, is one of:

- bound by a top-level `import` / `from ... import` of its module (absolute, so it
  means the same in the image): the import is copied as written;
- a module, or a function or class importable by its module and name from another
  module: imported the same way;
- a function or class defined at the top level of the same module: its source is
  copied (and what it uses follows the same rules);
- a value whose `repr()` reads back as an equal literal (numbers, strings, tuples,
  lists, dicts, sets of those): assigned as that literal;
- a builtin, or not defined at all (then it fails in the trial as it would here).

Anything else, e.g. an object made at module level (a dataset, a model, a lock), or a
function nested in another one, does not stand alone: `standalone_source()` says
which name stopped it, and the caller pickles the function instead.

Used on the user's side (laptop, notebook); imports nothing from the cluster.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

_LITERALS = (int, float, complex, str, bytes, bool, type(None), tuple, list, dict, set, frozenset)


@dataclass
class _Cut:
    """What the shipped source needs, keyed by the line it had in the module."""

    future: bool = False
    imports: dict[tuple[int, int], str] = field(default_factory=dict)
    constants: dict[str, str] = field(default_factory=dict)
    definitions: dict[int, str] = field(default_factory=dict)


class NotStandalone(Exception):
    """The source does not stand alone; str() says which name or rule stopped it."""


def function_source(fn: Any) -> str:
    """The function's own source, dedented; raises NotStandalone when there is none."""
    try:
        return textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError) as exc:
        raise NotStandalone(f"its source is not available ({exc})") from None


def standalone_source(fn: Any) -> str:
    """Source that defines `fn` under its name with what it uses; raises NotStandalone."""
    if "<locals>" in fn.__qualname__ or fn.__closure__:
        free = ", ".join(fn.__code__.co_freevars) or "nothing"
        raise NotStandalone(f"it is defined inside another function (it closes over {free})")
    module = sys.modules.get(fn.__module__)
    if module is None or fn.__globals__.get(fn.__name__) is not fn:
        raise NotStandalone(f"{fn.__name__!r} in its module is not this function")
    text = _module_text(module)
    tree = _module_tree(text)
    cut = _Cut(future=_has_future_annotations(tree))
    imports = _top_level_imports(tree)
    defined = _top_level_definitions(tree)
    pending = [fn.__name__]
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen or name not in fn.__globals__:
            continue  # a builtin, or undefined here too
        seen.add(name)
        value = fn.__globals__[name]
        if name in imports:
            for key, statement in imports[name]:
                cut.imports[key] = statement
        elif value is fn or _defined_here(value, fn):
            node = defined.get(name)
            source = _segment(text, node) if node is not None else function_source(value)
            line = node.lineno if node is not None else 10**9 + len(cut.definitions)
            cut.definitions[line] = source
            pending.extend(_used_names(ast.parse(source), cut.future))
        elif (imported := _import_of(name, value)) is not None:
            cut.imports[(10**9, len(cut.imports))] = imported
        elif _is_literal(value):
            cut.constants[name] = f"{name} = {value!r}"
        else:
            raise NotStandalone(
                f"it uses {name!r}, a {type(value).__name__} made at module level, which "
                "source cannot rebuild")
    parts = ["from __future__ import annotations"] if cut.future else []
    parts += [cut.imports[k] for k in sorted(cut.imports)]
    parts += [cut.constants[k] for k in sorted(cut.constants)]
    text = "\n".join(parts) + "\n\n\n" + "\n\n\n".join(
        cut.definitions[k] for k in sorted(cut.definitions)) + "\n"
    compile(text, f"<{fn.__name__}>", "exec")  # a cut that does not parse is a bug here
    return text


def _module_text(module: ModuleType) -> str:
    try:
        return inspect.getsource(module)
    except (OSError, TypeError):
        return ""


def _module_tree(text: str) -> ast.Module:
    """The module's syntax tree; empty for a module without a source file (a notebook's
    __main__), whose names are then rebuilt from their values."""
    try:
        return ast.parse(text)
    except SyntaxError:
        return ast.Module(body=[], type_ignores=[])


def _segment(text: str, node: ast.stmt) -> str:
    """A top-level definition's lines, its decorators included."""
    decorators = getattr(node, "decorator_list", [])
    first = min([node.lineno, *(d.lineno for d in decorators)])
    return "\n".join(text.splitlines()[first - 1:node.end_lineno])


def _has_future_annotations(tree: ast.Module) -> bool:
    return any(isinstance(s, ast.ImportFrom) and s.module == "__future__"
               and any(a.name == "annotations" for a in s.names) for s in tree.body)


def _top_level_imports(tree: ast.Module) -> dict[str, list[tuple[tuple[int, int], str]]]:
    """Each name a top-level absolute import binds, with that import as one statement."""
    bound: dict[str, list[tuple[tuple[int, int], str]]] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Import):
            for i, alias in enumerate(stmt.names):
                name = alias.asname or alias.name.split(".")[0]
                text = ast.unparse(ast.Import(names=[alias]))
                bound.setdefault(name, []).append(((stmt.lineno, i), text))
        elif isinstance(stmt, ast.ImportFrom) and stmt.level == 0 and stmt.module != "__future__":
            for i, alias in enumerate(stmt.names):
                if alias.name == "*":
                    continue
                text = ast.unparse(ast.ImportFrom(module=stmt.module, names=[alias], level=0))
                bound[alias.asname or alias.name] = [((stmt.lineno, i), text)]
    return bound


def _top_level_definitions(tree: ast.Module) -> dict[str, ast.stmt]:
    return {s.name: s for s in tree.body
            if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)}


def _defined_here(value: Any, fn: Any) -> bool:
    return ((inspect.isfunction(value) or inspect.isclass(value))
            and getattr(value, "__module__", None) == fn.__module__)


def _used_names(tree: ast.AST, future_annotations: bool) -> Iterator[str]:
    """Names read anywhere in `tree`; annotations are skipped when they are never evaluated."""
    skipped: set[int] = set()
    if future_annotations:
        for node in ast.walk(tree):
            for attr in ("annotation", "returns"):
                child = getattr(node, attr, None)
                if isinstance(child, ast.AST):
                    skipped.update(id(n) for n in ast.walk(child))
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and id(node) not in skipped:
            yield node.id


def _import_of(name: str, value: Any) -> str | None:
    """An import binding `name` to `value` in a fresh process, if there is one."""
    if isinstance(value, ModuleType):
        if value.__name__ == "__main__":
            return None
        return (f"import {value.__name__}" if name == value.__name__
                else f"import {value.__name__} as {name}")
    module, qualname = getattr(value, "__module__", None), getattr(value, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or "." in qualname \
            or module == "__main__":
        return None
    try:
        if getattr(importlib.import_module(module), qualname) is not value:
            return None
    except (ImportError, AttributeError):
        return None
    return (f"from {module} import {qualname}" if name == qualname
            else f"from {module} import {qualname} as {name}")


def _is_literal(value: Any) -> bool:
    if type(value) not in _LITERALS:
        return False
    try:
        return bool(ast.literal_eval(repr(value)) == value)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False


__all__ = ["NotStandalone", "function_source", "standalone_source"]
