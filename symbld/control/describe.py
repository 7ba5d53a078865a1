"""What ``describe`` publishes of the declarations: each command's flags and its request and reply, and each
event type's scope and ``data``, as JSON Schema."""

from __future__ import annotations

import functools
import inspect
from typing import Any, Literal

import msgspec

from symblctl import events, protocol

REF = "#/schemas/{name}"  # JSON pointer into describe's result


@functools.cache
def command_catalog() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(commands, schemas): one entry per declared command, and every type they name, by name."""
    types: list[Any] = []
    for decl in protocol.COMMANDS.values():
        types.append(decl)
        types.append(decl.reply if decl.reply is not None else dict[str, Any])
    refs, schemas = msgspec.json.schema_components(types, ref_template=REF)
    commands = []
    for i, decl in enumerate(protocol.COMMANDS.values()):
        doc = inspect.cleandoc(decl.__doc__ or "")
        commands.append({
            "name": decl.name,
            "summary": doc.split("\n", 1)[0],
            "slow": decl.slow,
            "mutating": decl.mutating,
            "payload": decl.payload,
            "args": _args_summary(schemas[decl.__name__]),
            "request": refs[2 * i],
            "reply": refs[2 * i + 1],
        })
    return commands, schemas


@functools.cache
def event_catalog() -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """(events, schemas): each declared event type (``symblctl.events``) with its scope, who publishes it, the
    first line of its doc and its ``data``'s schema, and every type those name, by name."""
    decls = list(events.EVENTS.values())
    refs, schemas = msgspec.json.schema_components(decls, ref_template=REF)
    catalog = {}
    for (name, decl), ref in zip(events.EVENTS.items(), refs, strict=True):
        catalog[name] = {"scope": decl.scope, "publisher": decl.publisher,  # type: ignore[attr-defined]
                         "summary": _first_sentence(decl.__doc__ or ""), "data": ref}
    return catalog, schemas


def _first_sentence(doc: str) -> str:
    paragraph = " ".join(inspect.cleandoc(doc).split("\n\n", 1)[0].split())
    head, dot, _ = paragraph.partition(". ")
    return head + dot.strip()


def _args_summary(schema: dict[str, Any]) -> dict[str, Any]:
    """The flat form earlier clients read: name → {type, required, doc}."""
    required = set(schema.get("required", ()))
    return {name: {"type": _type_name(prop), "required": name in required, "doc": prop.get("description", "")}
            for name, prop in schema.get("properties", {}).items()}


def _type_name(prop: dict[str, Any]) -> str:
    if "type" in prop:
        return str(prop["type"])
    options = prop.get("anyOf") or prop.get("oneOf") or []
    names = [str(o.get("type") or o.get("$ref", "").rpartition("/")[2]) for o in options]
    return " or ".join(n for n in names if n and n != "null") or "object"


@functools.cache
def config_catalog() -> tuple[dict[str, dict[str, str]], dict[str, Any]]:
    """(config, schemas): each configuration table as written in the TOML (``symbld.config.TABLES``; ``""`` for
    the top-level keys) with a reference to its JSON Schema, and every type those name, by name."""
    from symbld.config import TABLES

    structs = [_top_level_struct()] + [_table_struct(name, refs) for name, refs in TABLES.items()]
    refs, schemas = msgspec.json.schema_components(structs, ref_template=REF)
    return dict(zip(["", *TABLES], refs, strict=True)), schemas


def _top_level_struct() -> type[msgspec.Struct]:
    """The top-level keys as a Struct, derived from ``DEFAULTS`` (a key's type is its default's, ``None``: any),
    ``ENUMS`` (its allowed values) and ``TYPES`` (declared wider), as the check reads them (``symbld.config_check``)."""
    from symbld.config import DEFAULTS, ENUMS, TYPES

    fields = []
    for key, default in DEFAULTS.items():
        kind: Any = Literal[ENUMS[key]] if key in ENUMS else (Any if default is None else type(default))
        kind = TYPES.get(key, kind)
        fields.append((key, kind, default))
    return msgspec.defstruct("TopLevelConfig", fields, kw_only=True)


def _table_struct(name: str, refs: Any) -> type[msgspec.Struct]:
    """The table's declaring Struct; a table whose keys two Structs share gets one Struct with both's fields."""
    from symbld.config_check import _resolve_ref

    decls = [_resolve_ref(ref) for ref in (refs if isinstance(refs, list) else [refs])]
    if len(decls) == 1:
        return decls[0]  # type: ignore[no-any-return]
    fields: list[Any] = []
    for decl in decls:
        for f in msgspec.structs.fields(decl):
            if f.default_factory is not msgspec.NODEFAULT:
                fields.append((f.encode_name, f.type, msgspec.field(default_factory=f.default_factory)))
            elif f.default is not msgspec.NODEFAULT:
                fields.append((f.encode_name, f.type, f.default))
            else:
                fields.append((f.encode_name, f.type))
    title = "".join(part.title().replace("_", "") for part in name.split(".")) + "Table"
    return msgspec.defstruct(title, fields, kw_only=True,
                             namespace={"__doc__": "The keys of " + " and ".join(d.__name__ for d in decls)})
