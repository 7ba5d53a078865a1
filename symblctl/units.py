"""Put symbld's systemd units in place for a pip-installed ``symbld`` (``symblctl install-service``).

The unit texts are the ones in the source tree's ``systemd/`` folder (or, in a wheel,
``symblctl/data/systemd/``); only ``ExecStart=``'s executable is rewritten to ``exec_path``.
Nothing here talks to systemd: the caller (or the user) runs ``systemctl [--user] daemon-reload``
and, for the system scope, ``systemd-sysusers`` and ``systemd-tmpfiles --create`` (see
``system_commands()``/``user_commands()``).
"""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path
from typing import Literal

# TimeoutStopSec= of the installed units: the one setting both the unit's limit and the daemon's stop
# budget derive from (symbld.config takes UNIT_STOP_SECONDS from here).
UNIT_STOP_SECONDS = 30

Scope = Literal["user", "system"]

UNIT_NAME = "symbld.service"
# template file name -> installed file name, per scope
_USER_FILES = {"symbld.service": UNIT_NAME}
_SYSTEM_FILES = {"symbld-system.service": UNIT_NAME}
_SYSTEM_EXTRAS = {"symbld.sysusers.conf": "symbld.conf", "symbld.tmpfiles.conf": "symbld.conf"}

_EXEC_START = re.compile(r"^ExecStart=(\S+)", re.MULTILINE)


def templates_dir() -> Path:
    """Where the unit templates live: package data first, then the source checkout's ``systemd/``."""
    candidates = [Path(str(resources.files("symblctl"))) / "data" / "systemd",
                  Path(__file__).resolve().parents[1] / "systemd"]
    for candidate in candidates:
        if (candidate / "symbld.service").is_file():
            return candidate
    raise FileNotFoundError(f"symbld's systemd unit templates are missing (looked in {candidates})")


def default_unit_dir(scope: Scope) -> Path:
    if scope == "system":
        return Path("/etc/systemd/system")
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "systemd" / "user"


def render_unit(template: str, exec_path: str) -> str:
    """Point ``ExecStart=`` at ``exec_path`` (absolute; quoted if it holds spaces), keeping the arguments."""
    if not os.path.isabs(exec_path):
        raise ValueError(f"ExecStart needs an absolute path, got {exec_path!r}")
    if any(c in exec_path for c in "\"\n"):
        raise ValueError(f"unsupported characters in exec path {exec_path!r}")
    # '%' starts a specifier and '$' a variable in unit files: double them so the path stays literal.
    literal = exec_path.replace("%", "%%").replace("$", "$$")
    value = f'"{literal}"' if any(c.isspace() for c in literal) else literal
    text, count = _EXEC_START.subn(lambda _m: f"ExecStart={value}", template, count=1)
    if count != 1:
        raise ValueError("template has no ExecStart= line")
    # The daemon's stop budget (symbld.config) is derived from the same number.
    return re.sub(r"(?m)^TimeoutStopSec=.*$", f"TimeoutStopSec={UNIT_STOP_SECONDS}", text)


def install_units(
    scope: Scope,
    exec_path: str,
    dest: Path | None = None,
    *,
    sysusers_dir: Path | None = None,
    tmpfiles_dir: Path | None = None,
) -> list[Path]:
    """Write the unit (and, for ``system``, the sysusers.d and tmpfiles.d files); return the paths written.

    ``dest`` defaults to ``~/.config/systemd/user`` (user) or ``/etc/systemd/system`` (system).
    System extras go to ``/etc/sysusers.d/symbld.conf`` and ``/etc/tmpfiles.d/symbld.conf``; when
    ``dest`` is given (staging, packaging) they go into ``dest`` as ``symbld.sysusers.conf`` and
    ``symbld.tmpfiles.conf`` unless ``sysusers_dir``/``tmpfiles_dir`` say otherwise.
    """
    if scope not in ("user", "system"):
        raise ValueError(f"scope must be 'user' or 'system', got {scope!r}")
    source = templates_dir()
    unit_dir = Path(dest) if dest is not None else default_unit_dir(scope)
    written: list[Path] = []

    for template_name, installed_name in (_USER_FILES if scope == "user" else _SYSTEM_FILES).items():
        text = render_unit((source / template_name).read_text(), exec_path)
        written.append(_write(unit_dir / installed_name, text))

    if scope == "system":
        staging = dest is not None
        targets = {
            "symbld.sysusers.conf": sysusers_dir or (unit_dir if staging else Path("/etc/sysusers.d")),
            "symbld.tmpfiles.conf": tmpfiles_dir or (unit_dir if staging else Path("/etc/tmpfiles.d")),
        }
        for template_name, target_dir in targets.items():
            name = template_name if staging and target_dir == unit_dir else _SYSTEM_EXTRAS[template_name]
            written.append(_write(Path(target_dir) / name, (source / template_name).read_text()))
    return written


def user_commands() -> list[list[str]]:
    """What to run after a user install."""
    return [["systemctl", "--user", "daemon-reload"], ["systemctl", "--user", "enable", "--now", "symbld"]]


def system_commands() -> list[list[str]]:
    """What to run (as root) after a system install."""
    return [["systemd-sysusers"], ["systemd-tmpfiles", "--create"], ["systemctl", "daemon-reload"],
            ["systemctl", "enable", "--now", "symbld"]]


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)
    tmp.replace(path)  # atomic: systemd never reads a half-written unit
    return path
