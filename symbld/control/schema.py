"""Argument schemas for control commands: small, declarative, with clear error messages.

Unknown arguments are allowed and ignored (so newer clients work with older daemons), but
known ones are checked for type and range before a handler ever runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from symbld.core.errors import ControlError

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
               list: "an array", dict: "an object"}


@dataclass(frozen=True)
class Arg:
    type: type | tuple[type, ...]
    required: bool = False
    default: Any = None
    choices: tuple[Any, ...] | None = None
    min: float | None = None
    max: float | None = None
    max_len: int | None = None
    check: Callable[[Any], str | None] | None = None  # returns an error text, or None when fine
    doc: str = ""

    def type_name(self) -> str:
        types = self.type if isinstance(self.type, tuple) else (self.type,)
        return " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)


def _is_type(value: Any, expected: type | tuple[type, ...]) -> bool:
    types = expected if isinstance(expected, tuple) else (expected,)
    for t in types:
        if t is float and isinstance(value, int | float) and not isinstance(value, bool):
            return True
        if t is int and isinstance(value, bool):
            continue
        if isinstance(value, t):
            return True
    return False


def validate(schema: dict[str, Arg], args: dict[str, Any], cmd: str) -> dict[str, Any]:
    """Return the args with defaults filled in, or raise ControlError(bad_request)."""
    out = dict(args)
    for name, spec in schema.items():
        if name not in args or args[name] is None:
            if spec.required:
                raise ControlError("bad_request", f"{cmd}: missing argument '{name}' ({spec.type_name()})",
                                   {"argument": name})
            out[name] = spec.default() if callable(spec.default) else spec.default
            continue
        value = args[name]
        if not _is_type(value, spec.type):
            raise ControlError(
                "bad_request", f"{cmd}: '{name}' must be {spec.type_name()}, got {type(value).__name__}",
                {"argument": name},
            )
        if spec.choices is not None and value not in spec.choices:
            raise ControlError("bad_request", f"{cmd}: '{name}' must be one of {list(spec.choices)}, got {value!r}",
                               {"argument": name, "choices": list(spec.choices)})
        if spec.min is not None and value < spec.min:
            raise ControlError("bad_request", f"{cmd}: '{name}' must be ≥ {spec.min}", {"argument": name})
        if spec.max is not None and value > spec.max:
            raise ControlError("bad_request", f"{cmd}: '{name}' must be ≤ {spec.max}", {"argument": name})
        if spec.max_len is not None and len(value) > spec.max_len:
            raise ControlError("bad_request", f"{cmd}: '{name}' is longer than {spec.max_len}", {"argument": name})
        if spec.check is not None:
            problem = spec.check(value)
            if problem:
                raise ControlError("bad_request", f"{cmd}: '{name}' {problem}", {"argument": name})
    return out
