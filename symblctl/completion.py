"""Shell completion for symblctl (bash, zsh, fish) with argcomplete: the scripts it makes, and
where ``symblctl completion SHELL --install`` puts them so each shell finds them by itself."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

SHELLS = ("bash", "zsh", "fish")
PROG = "symblctl"


def requested() -> bool:
    """Whether the shell asked for completions (the variable argcomplete's shell hook sets)."""
    return "_ARGCOMPLETE" in os.environ


def autocomplete(parser: argparse.ArgumentParser) -> None:
    """Answer a completion request from the shell (and exit) when there is one; else do nothing.
    argcomplete is imported only then: every other run of symblctl skips its import."""
    if not requested():
        return
    import argcomplete

    argcomplete.autocomplete(parser)


def script(shell: str) -> str:
    from argcomplete.shell_integration import shellcode

    return shellcode([PROG], shell=shell)


def install_path(shell: str) -> Path:
    """Where each shell loads completions from without editing its rc file (zsh: a dir to add to fpath)."""
    home = Path.home()
    data = Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share")
    config = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    return {
        "bash": data / "bash-completion" / "completions" / PROG,  # bash-completion's per-user directory
        "zsh": data / "zsh" / "site-functions" / f"_{PROG}",
        "fish": config / "fish" / "completions" / f"{PROG}.fish",
    }[shell]


def run(shell: str, install: bool) -> int:
    text = script(shell)
    if not install:
        sys.stdout.write(text)
        return 0
    path = install_path(shell)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as e:
        print(f"symblctl: cannot write {path}: {e}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    if shell == "zsh":
        print(f"add to ~/.zshrc (before compinit): fpath=({path.parent} $fpath)")
    else:
        print("open a new shell to use it")
    return 0
