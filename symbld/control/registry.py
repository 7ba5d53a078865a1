"""The control commands, each one small declared unit: name, argument schema, handler, docs.

Handlers receive the daemon and validated args and return the ``result`` object of the
reply, or raise ControlError. ``slow`` commands (they may wait on an engine or a device) run
on a worker thread so they never block the control socket for other clients.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from symbld.control.envelope import Request
from symbld.control.schema import Arg, validate
from symbld.core.errors import ControlError

if TYPE_CHECKING:
    from symbld.app import Daemon

Handler = Callable[["Daemon", dict[str, Any], Request], dict[str, Any]]


@dataclass(frozen=True)
class Command:
    name: str
    handler: Handler
    args: dict[str, Arg] = field(default_factory=dict)
    slow: bool = False
    mutating: bool = False  # changes state: logged with the peer's credentials

    @property
    def doc(self) -> str:
        return inspect.cleandoc(self.handler.__doc__ or "")

    def run(self, daemon: Daemon, req: Request) -> dict[str, Any]:
        args = validate(self.args, req.args, self.name)
        if isinstance(args.get("connectionId"), str):  # a conversationId names its connection too
            args["connectionId"] = daemon.resolve_connection_id(args["connectionId"])
        return self.handler(daemon, args, req)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "summary": self.doc.split("\n", 1)[0],
            "args": {k: {"type": a.type_name(), "required": a.required, "doc": a.doc} for k, a in self.args.items()},
        }


COMMANDS: dict[str, Command] = {}


def command(name: str, *, slow: bool = False, mutating: bool = False, **args: Arg) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        if name in COMMANDS:
            raise RuntimeError(f"command {name} declared twice")
        COMMANDS[name] = Command(name=name, handler=fn, args=args, slow=slow, mutating=mutating)
        return fn

    return register


def lookup(name: str) -> Command:
    cmd = COMMANDS.get(name)
    if cmd is None:
        raise ControlError("unknown_command", f"unknown command {name!r}", {"commands": sorted(COMMANDS)})
    return cmd


def _connection_id_check(value: str) -> str | None:
    return None if value and len(value) <= 128 else "must be a non-empty string of at most 128 characters"


CONNECTION_ID = Arg(str, required=True, check=_connection_id_check, doc="the connection's id")
