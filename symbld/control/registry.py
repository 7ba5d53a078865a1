"""The server half of each control command: its declaration (``symblctl.protocol``) and its handler.

A handler receives the connection service (``symbld.control.service.Service``), the request's
``args`` decoded into the command's typed request, and the raw request (for a binary payload), and
returns the reply's ``result`` (the declared reply, ``Command.reply``, or a dict in its wire shape) or
raises ControlError. Decoding is the validation: a request whose args do not fit the declaration is
answered ``bad_request`` naming the argument, before any handler runs. A reply is checked against its
declaration when ``check_replies(True)`` (the daemon under ``SYMBLD_CHECK_EVENTS=1``, as the tests run it):
one that does not fit raises ``ReplyShapeError`` in the handler's command. ``slow`` commands run on a
worker thread so they never block the control socket.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from symblctl import protocol
from symbld.control.envelope import Request
from symbld.core.bus import caused_by
from symbld.errors import ControlError

if TYPE_CHECKING:
    from symbld.control.service import Service

Decl = TypeVar("Decl", bound=protocol.Command)
Result = dict[str, Any] | protocol.Shape  # the declared reply, or a dict in its wire shape
Handler = Callable[["Service", Any, Request], Result]

_checking = False


class ReplyShapeError(TypeError):
    """A handler's reply does not fit its declaration (raised only while replies are checked)."""


def check_replies(on: bool) -> None:
    """Check every reply against its declaration from now on (the tests' daemons: ``SYMBLD_CHECK_EVENTS=1``)."""
    global _checking
    _checking = on


def reply_result(declaration: type[protocol.Command], result: Result) -> dict[str, Any]:
    """A handler's result as the reply's ``result`` object; checked against ``declaration.reply`` when on."""
    if isinstance(result, msgspec.Struct):
        if _checking and declaration.reply is not None and not isinstance(result, declaration.reply):
            raise ReplyShapeError(f"{declaration.name} replied {type(result).__name__}, declared "
                                  f"{declaration.reply.__name__}")
        out: dict[str, Any] = msgspec.to_builtins(result)
        return out
    if _checking and declaration.reply is not None:
        try:
            msgspec.convert(result, declaration.reply, strict=True)
        except msgspec.ValidationError as e:
            raise ReplyShapeError(f"{declaration.name}'s reply does not fit {declaration.reply.__name__}: {e}") \
                from None
    return result


def decode_args(declaration: type[Decl], args: dict[str, Any]) -> Decl:
    """``args`` as the command's typed request, or ControlError(bad_request) saying what is wrong where."""
    present = {k: v for k, v in args.items() if v is not None}  # null means "not given", as it always has
    try:
        return msgspec.convert(present, declaration, strict=True)
    except msgspec.ValidationError as e:
        text = str(e)
        where = text.rpartition(" - at `$.")[2].rstrip("`") if " - at `$." in text else None
        argument = where.split(".")[0].split("[")[0] if where else _missing_field(text)
        raise ControlError("bad_request", f"{declaration.name}: {text}",
                           {"argument": argument} if argument else {}) from None


def _missing_field(text: str) -> str | None:
    _, sep, rest = text.partition("missing required field `")
    return rest.split("`")[0] if sep else None


@dataclass(frozen=True)
class Command:
    declaration: type[protocol.Command]
    handler: Handler

    @property
    def name(self) -> str:
        return self.declaration.name

    @property
    def slow(self) -> bool:
        return self.declaration.slow

    @property
    def mutating(self) -> bool:
        return self.declaration.mutating

    @property
    def doc(self) -> str:
        return inspect.cleandoc(self.declaration.__doc__ or "")

    def run(self, service: Service, req: Request) -> dict[str, Any]:
        args = decode_args(self.declaration, req.args)
        cid = getattr(args, "connection_id", None)
        if self.declaration.names_connection and isinstance(cid, str):  # a conversationId names its connection
            args = msgspec.structs.replace(args, connection_id=service.resolve_connection_id(cid))
        token = caused_by.set(req.id or None)  # the events it publishes on this thread carry req.id
        try:
            return reply_result(self.declaration, self.handler(service, args, req))
        finally:
            caused_by.reset(token)


COMMANDS: dict[str, Command] = {}


def handles(declaration: type[Decl]) -> Callable[[Callable[[Service, Decl, Request], Result]],
                                                  Callable[[Service, Decl, Request], Result]]:
    """Register the handler of one declared command."""
    def register(fn: Callable[[Service, Decl, Request], Result]) -> Callable[[Service, Decl, Request], Result]:
        if declaration.name in COMMANDS:
            raise RuntimeError(f"command {declaration.name} handled twice")
        COMMANDS[declaration.name] = Command(declaration, fn)
        return fn

    return register


def lookup(name: str) -> Command:
    cmd = COMMANDS.get(name)
    if cmd is None:
        raise ControlError("unknown_command", f"unknown command {name!r}", {"commands": sorted(COMMANDS)})
    return cmd
