"""CLI subcommands made from the command declarations in ``symblctl.protocol``.

Every declared command without a written-out subcommand in ``symblctl.cli`` (those with their own
options or live output: start, stop, subscribe, history, conversations, devices, mute) gets one here:
its connection id as the positional ``ID``, every other field as ``--kebab-case`` option typed from
the declaration (``--flag/--no-flag`` for booleans, ``choices`` for enumerations, JSON for objects).
A new command thus reaches the command line with no CLI code; a presentation (examples, a printer)
is optional.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import msgspec
from msgspec import inspect as mi

from symblctl import protocol

# Declared commands with a written-out subcommand in symblctl.cli (own options, live output, or one
# subcommand for a group): the declaration -> the subcommand that sends it.
WRITTEN_OUT = {name: name for name in ("start", "stop", "subscribe", "history", "conversations", "devices", "mute")}
WRITTEN_OUT |= {"voices_add": "voices", "voices_list": "voices", "voices_remove": "voices"}
POSITIONAL = {"connection_id": ("id", "ID", "a connectionId or a conversationId"),
              "conversation_id": ("conversation", "CONVERSATION_ID", "Symbl's conversationId")}


def declared_for_cli() -> list[type[protocol.Command]]:
    """The declared commands the CLI builds itself (a binary payload cannot come from the command line)."""
    return [d for name, d in protocol.COMMANDS.items() if name not in WRITTEN_OUT and not d.payload]


def summary_of(decl: type[protocol.Command]) -> str:
    text = (decl.__doc__ or decl.name).strip().split("\n", 1)[0].rstrip(".")
    return text if text[1:2].isupper() or text[1:2] == "'" else text[:1].lower() + text[1:]  # NATS, Symbl's


def add_arguments(parser: argparse.ArgumentParser, decl: type[protocol.Command]) -> None:
    struct = mi.type_info(decl)
    assert isinstance(struct, mi.StructType)  # a declaration is a Struct
    for field in struct.fields:
        if field.name in POSITIONAL:
            dest, metavar, text = POSITIONAL[field.name]
            parser.add_argument(dest, metavar=metavar, help=text, nargs=None if field.required else "?")
            continue
        flag = "--" + field.name.replace("_", "-")
        info, description = _unwrap(field.type)
        parser.add_argument(flag, dest=field.name, default=None, required=field.required,
                            help=_help(info, description, field), **_option(info))


def request_from(decl: type[protocol.Command], ns: argparse.Namespace) -> protocol.Command:
    values: dict[str, Any] = {}
    for f in msgspec.structs.fields(decl):
        key = POSITIONAL[f.name][0] if f.name in POSITIONAL else f.name
        value = getattr(ns, key, None)
        if value is not None:
            values[f.name] = value
    return decl(**values)


def _unwrap(t: mi.Type) -> tuple[mi.Type, str]:
    """An optional or annotated type as its one real type and its description (``int | None`` → int)."""
    description = ""
    while True:
        if isinstance(t, mi.Metadata):
            description = (t.extra_json_schema or {}).get("description", description)
            t = t.type
            continue
        real = [x for x in t.types if not isinstance(x, mi.NoneType)] if isinstance(t, mi.UnionType) else []
        if len(real) == 1:
            t = real[0]
            continue
        return t, description


def _option(t: mi.Type) -> dict[str, Any]:
    if isinstance(t, mi.BoolType):
        return {"action": argparse.BooleanOptionalAction}
    if isinstance(t, mi.IntType):
        return {"type": int, "metavar": "N"}
    if isinstance(t, mi.FloatType):
        return {"type": float, "metavar": "X"}
    if isinstance(t, mi.LiteralType):
        return {"choices": list(t.values)}
    if isinstance(t, mi.StrType):
        return {"metavar": "TEXT"}
    if isinstance(t, mi.ListType) and isinstance(_unwrap(t.item_type)[0], mi.StrType):
        return {"type": _comma_list, "metavar": "A,B"}
    return {"type": json.loads, "metavar": "JSON"}


def _help(t: mi.Type, text: str, field: mi.Field) -> str:
    if field.default not in (msgspec.NODEFAULT, None) and not isinstance(t, mi.BoolType):
        text = f"{text} (default {field.default})".strip()
    return text


def _comma_list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]
