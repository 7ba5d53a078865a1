"""The ``actions`` of a start request (Symbl's: the summary e-mail when the connection stops) as a connection
keeps them, for the action runner (``symbld.integrations.mail``) to run when it ends."""

from __future__ import annotations

from typing import Any

from symblctl import protocol


def normalised_actions(actions: list[protocol.Action]) -> list[dict[str, Any]]:
    """Decoded actions as the runner keeps them (integrations/mail.py): each address trimmed and once."""
    if not actions:
        return []
    out: list[dict[str, Any]] = []
    for action in actions:
        clean: list[str] = []
        for address in action.parameters.emails:
            if address.strip().lower() not in (a.lower() for a in clean):
                clean.append(address.strip())
        out.append({"invokeOn": action.invoke_on, "name": action.name, "parameters": {"emails": clean}})
    return out
