"""The ``actions`` argument of ``start`` (Symbl's sendSummaryEmail on stop): checked the same way by
the daemon (at start) and by the SDK shape (before a request is sent)."""

from __future__ import annotations

import re
from typing import Any

ACTION_NAMES = ("sendSummaryEmail",)
INVOKE_ON = ("stop",)
MAX_RECIPIENTS = 50
# Deliberately simple: one @, no spaces/controls/angle brackets, a dotted domain (or localhost).
_ADDRESS = re.compile(r"^[^@\s<>()\[\],;:\"\\]{1,64}@([A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})*)$")


class ActionError(ValueError):
    """An ``actions`` argument that cannot be run; the message says what is wrong."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# -- validation ---------------------------------------------------------------------------------
def validate_actions(actions: object) -> list[dict[str, Any]]:
    """Check and normalise ``actions``; raise ActionError naming the first problem.

    ``None`` and ``{}`` (what the Symbl SDK sends when given no actions) mean no actions.
    """
    if actions is None or actions == {}:
        return []
    if not isinstance(actions, list):
        raise ActionError(f"actions must be a list of objects, not {type(actions).__name__}")
    out: list[dict[str, Any]] = []
    for i, action in enumerate(actions):
        where = f"actions[{i}]"
        if not isinstance(action, dict):
            raise ActionError(f"{where} must be an object")
        name = action.get("name")
        if name not in ACTION_NAMES:
            raise ActionError(f"{where}: unknown action name {name!r}; known: {list(ACTION_NAMES)}")
        invoke_on = action.get("invokeOn")
        if invoke_on not in INVOKE_ON:
            raise ActionError(f"{where}: invokeOn must be one of {list(INVOKE_ON)}, not {invoke_on!r}")
        params = action.get("parameters")
        if not isinstance(params, dict):
            raise ActionError(f'{where}: {name} needs "parameters": {{"emails": ["..."]}}')
        emails = params.get("emails")
        if not isinstance(emails, list) or not emails:
            raise ActionError(f"{where}: parameters.emails must be a non-empty list of addresses")
        if len(emails) > MAX_RECIPIENTS:
            raise ActionError(f"{where}: at most {MAX_RECIPIENTS} addresses")
        clean: list[str] = []
        for address in emails:
            if not isinstance(address, str) or not _ADDRESS.match(address.strip()):
                raise ActionError(f"{where}: bad email address {address!r}")
            if address.strip().lower() not in (a.lower() for a in clean):
                clean.append(address.strip())
        out.append({"invokeOn": invoke_on, "name": name, "parameters": {**params, "emails": clean}})
    return out


# -- the summary --------------------------------------------------------------------------------
