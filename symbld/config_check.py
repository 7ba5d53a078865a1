"""Validate a configuration as a whole: unknown keys and tables, wrong types, bad enum values.

The schema is not written here: it is built from ``symbld.config.DEFAULTS`` (top-level keys)
and from each table's declaration named in ``symbld.config.TABLES`` (a module's dict of
defaults, its settings dataclass, or a msgspec Struct), so a key added to a declaration is known at once.
The type of a key is the type of its default (``None``: any value); a table declared by a Struct is
also decoded into it, so its keys' declared types and ranges hold (a wrong one is an error naming the key);
``ENUMS`` lists the allowed values of some keys; ``COMPAT`` names old keys that still work, with a warning.
One rule for unknown keys in every table: an error (with the closest known key).

tomllib gives no positions, so the line of a key is found by scanning the file's text
for ``key =`` inside its ``[table]`` header (``line_of``).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import re
from dataclasses import dataclass
from typing import Any

import msgspec


class ConfigError(Exception):
    """A configuration the daemon refuses, with every problem and its line."""


@dataclass(frozen=True)
class Declarations:
    """What ``symbld.config`` declares: top-level defaults, the tables and where their keys are declared,
    allowed values, compatibility keys and free-form tables. Passed in, so this module imports no config."""

    defaults: dict[str, Any]
    tables: dict[str, Any]
    enums: dict[str, tuple[Any, ...]]
    compat: dict[str, str]
    open_tables: dict[str, bool]
    types: dict[str, Any] = dataclasses.field(default_factory=dict)  # top-level keys wider than their default's type


@dataclass(frozen=True)
class Problem:
    path: str  # dotted: "engine.local.model_dir"
    message: str
    line: int | None = None

    def render(self, file: str | None) -> str:
        where = f"{file} line {self.line}: " if file and self.line else (f"{file}: " if file else "")
        return f"{where}{self.message}"


def _resolve_ref(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def _declared(ref: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(ref, dict):
        return ref
    obj = _resolve_ref(ref)
    if isinstance(obj, type) and issubclass(obj, msgspec.Struct):
        return _declared_struct(obj)
    if dataclasses.is_dataclass(obj):
        return {f.name: _field_default(f) for f in dataclasses.fields(obj)}
    return dict(obj)


def _struct_default(f: msgspec.structs.FieldInfo) -> Any:
    value = f.default_factory() if f.default_factory is not msgspec.NODEFAULT else f.default
    if isinstance(value, msgspec.Struct):  # a nested table ([telephony.limits]): its keys are known too
        return _declared_struct(type(value))
    return None if value is msgspec.NODEFAULT else value


def _declared_struct(struct: type[msgspec.Struct]) -> dict[str, Any]:
    return {f.name: _struct_default(f) for f in msgspec.structs.fields(struct)}


def _field_default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
        # a factory returns an instance, never a class: its __dict__ is a plain dict of its fields
        return _declared(vars(value)) if dataclasses.is_dataclass(value) and not isinstance(value, type) else value
    return None


def schema(decl: Declarations) -> dict[str, Any]:
    """The tree of known keys with their defaults (tables are nested dicts)."""
    tree: dict[str, Any] = {k: v for k, v in decl.defaults.items()}
    for name, refs in decl.tables.items():
        node = tree
        *parents, last = name.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        table: dict[str, Any] = {}
        for ref in refs if isinstance(refs, list) else [refs]:
            table.update(_declared(ref))
        node[last] = table
    return tree


def line_of(text: str, path: str) -> int | None:
    """The 1-based line where dotted ``path`` is set in TOML ``text`` (its table's line if only that)."""
    parts = path.split(".")
    table: list[str] = []
    table_line: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip() if '"' not in raw else raw.strip()
        header = re.match(r"^\[\[?\s*([^\]]+?)\s*\]\]?$", line)
        if header:
            table = [p.strip().strip('"\'') for p in header.group(1).split(".")]
            table_line.setdefault(".".join(table), number)
            continue
        m = re.match(r"^([A-Za-z0-9_\-.\"' ]+?)\s*=", line)
        if m:
            key = [p.strip().strip('"\'') for p in m.group(1).split(".")]
            if table + key == parts:
                return number
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in table_line:
            return table_line[".".join(parts[:i])]
    return None


def _type_ok(default: Any, value: Any) -> bool:
    if default is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, list | tuple):
        return isinstance(value, list | str)  # a list, or its "lo-hi"-style string form
    if isinstance(default, dict):
        return isinstance(value, dict)
    return True


def _type_name(default: Any) -> str:
    if isinstance(default, bool):
        return "true or false"
    return {int: "an integer", float: "a number", str: "a string", list: "a list", tuple: "a list",
            dict: "a table"}.get(type(default), type(default).__name__)


def _suggest(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check(data: dict[str, Any], decl: Declarations,
          tree: dict[str, Any] | None = None) -> tuple[list[Problem], list[Problem]]:
    """(errors, warnings) for a parsed configuration ``data``."""
    errors: list[Problem] = []
    warnings: list[Problem] = []
    _walk(data, tree if tree is not None else schema(decl), "", decl, errors, warnings)
    errors.extend(_struct_problems(data, decl, {p.path for p in errors}))
    return errors, warnings


def _struct_problems(data: dict[str, Any], decl: Declarations, reported: set[str]) -> list[Problem]:
    """The tables declared by a msgspec Struct, decoded into it: each key's declared type and range. msgspec
    stops at a table's first problem, so each key is decoded alone (every bad key is named); what only the
    keys together can break (``__post_init__``) is checked once no key of the table has a problem."""
    problems: list[Problem] = []
    for name, refs in decl.tables.items():
        node: Any = data
        for part in name.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            continue
        for ref in refs if isinstance(refs, list) else [refs]:
            struct = _resolve_ref(ref) if isinstance(ref, str) else None
            if isinstance(struct, type) and issubclass(struct, msgspec.Struct):
                problems.extend(_decode_problems(name, node, struct, reported))
    return problems


def _decode_problems(name: str, node: dict[str, Any], struct: type[msgspec.Struct],
                     reported: set[str]) -> list[Problem]:
    known = {f.encode_name for f in msgspec.structs.fields(struct)}
    problems: list[Problem] = []
    for key, value in node.items():
        if key not in known or any(p == f"{name}.{key}" or p.startswith(f"{name}.{key}.") for p in reported):
            continue
        problem = _decoded(name, {key: value}, struct, cross_key=False)
        if problem is not None and (problem.path + ".").startswith(f"{name}.{key}."):
            problems.append(problem)  # a complaint about the whole table waits for the whole table
    in_table = any(p == name or p.startswith(name + ".") for p in reported)
    if not problems and not in_table:
        whole = _decoded(name, node, struct)
        problems.extend([whole] if whole is not None else [])
    return problems


def _decoded(name: str, node: dict[str, Any], struct: type[msgspec.Struct], cross_key: bool = True) -> Problem | None:
    """None when ``node`` decodes into ``struct``, else the problem with the dotted key msgspec names.

    ``cross_key=False`` (one key decoded alone, the others at their defaults) ignores what ``__post_init__``
    says: a check across keys judged against defaults is not the user's table (``retry_max = 1`` with
    ``retry_initial = 0.3`` beside it was refused as less than the default 5)."""
    try:
        msgspec.convert(node, struct, strict=True)
        return None
    except msgspec.ValidationError as e:
        text = str(e)
    if not cross_key and " - at `$." not in text:
        return None
    message, _, where = text.partition(" - at `$.")
    key = re.sub(r"\[\d+\]", "", where.rstrip("`")).rstrip(".")
    first = message.split(" ", 1)[0]
    if not key and first in node:  # a __post_init__ check that names its key first: shown at that key's line
        key = first
    return Problem(f"{name}.{key}" if key else name, f"{name}.{key}: {message}" if key else f"[{name}]: {message}")


def _walk(data: dict[str, Any], tree: dict[str, Any], prefix: str, decl: Declarations, errors: list[Problem],
          warnings: list[Problem]) -> None:
    for key, value in data.items():
        path = prefix + key
        if path in decl.compat:
            warnings.append(Problem(path, f"{path} is kept for compatibility; use {decl.compat[path]}"))
            continue
        if key not in tree:
            where = f"[{prefix[:-1]}]" if prefix else "the top level"
            kind = "section" if isinstance(value, dict) else "key"
            shown = f"[{path}]" if isinstance(value, dict) else key
            errors.append(Problem(path, f"unknown {kind} {shown} in {where}" + _suggest(key, sorted(tree))))
            continue
        default = tree[key]
        if isinstance(default, dict) and isinstance(value, dict) and not decl.open_tables.get(path):
            _walk(value, default, path + ".", decl, errors, warnings)
            continue
        if path in decl.types:
            try:
                msgspec.convert(value, decl.types[path], strict=True)
            except msgspec.ValidationError as e:
                errors.append(Problem(path, f"{path}: {e}"))
            continue
        if not _type_ok(default, value):
            errors.append(Problem(path, f"{path} must be {_type_name(default)}, not {value!r}"))
            continue
        allowed = decl.enums.get(path)
        if allowed is not None and value not in allowed:
            errors.append(Problem(path, f"{path} = {value!r} is not one of "
                                        + ", ".join(repr(a) for a in allowed)))


def validate(data: dict[str, Any], text: str | None, file: str | None, decl: Declarations) -> list[str]:
    """Raise ``ConfigError`` listing every problem (with file lines); return the warnings as text."""
    errors, warnings = check(data, decl)
    if text is not None:
        errors = [dataclasses.replace(p, line=line_of(text, p.path)) for p in errors]
        warnings = [dataclasses.replace(p, line=line_of(text, p.path)) for p in warnings]
    if errors:
        lines = [p.render(file) for p in errors]
        head = "invalid configuration: " if len(lines) == 1 else f"invalid configuration ({len(lines)} problems):\n  "
        raise ConfigError(head + "\n  ".join(lines))
    return [p.render(file) for p in warnings]
