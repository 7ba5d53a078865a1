"""Every command the daemon serves: importing the modules that declare them registers them in the registry."""

from __future__ import annotations

from symbld.control import commands, conversation_commands, listing
from symbld.control.registry import COMMANDS, Command
from symbld.insights import summary_command
from symbld.web import command as page_command

MODULES = (commands, conversation_commands, listing, summary_command, page_command)


def load_all() -> dict[str, Command]:
    return COMMANDS
