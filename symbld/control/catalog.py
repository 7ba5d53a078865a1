"""Every command the daemon serves: each declaration in ``symblctl.protocol`` with its handler."""

from __future__ import annotations

from symblctl import protocol
from symbld.control import commands
from symbld.control.registry import COMMANDS, Command


def load_all() -> dict[str, Command]:
    """The registry, checked complete: a declared command without a handler (or the reverse) is a bug."""
    assert commands.GROUPS  # importing the package registered the handlers
    unhandled = sorted(set(protocol.COMMANDS) - set(COMMANDS))
    undeclared = sorted(set(COMMANDS) - set(protocol.COMMANDS))
    if unhandled or undeclared:
        raise RuntimeError(f"commands declared without a handler: {unhandled}; handled but not declared: {undeclared}")
    return COMMANDS
