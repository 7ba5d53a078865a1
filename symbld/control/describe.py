"""The command catalog ``describe`` publishes: each command's flags and its request and reply as JSON Schema."""

from __future__ import annotations

import functools
import inspect
from typing import Any

import msgspec

from symblctl import protocol

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
