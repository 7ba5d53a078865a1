"""Every command the daemon serves: importing the modules that declare them registers them in the registry."""

from __future__ import annotations

from symbld.control import commands, conversation_commands, listing, speaker_commands
from symbld.control.registry import COMMANDS, Command
from symbld.insights import summary_command

MODULES = (commands, conversation_commands, listing, speaker_commands, summary_command)


def load_all() -> dict[str, Command]:
    return COMMANDS
