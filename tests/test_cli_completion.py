"""Shell completion from ``symblctl completion SHELL``: loaded in a real bash, and installed where
each shell looks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import cli_env, symblctl


@pytest.fixture
def on_path(tmp_path: Path) -> dict[str, str]:
    """An environment where ``symblctl`` on PATH is this tree's CLI (as after pip install)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "symblctl"
    exe.write_text(f"#!/bin/sh\nexec {sys.executable} -m symblctl \"$@\"\n")
    exe.chmod(0o755)
    env = cli_env()
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    return env


def _bash_complete(env: dict[str, str], script: Path, words: list[str]) -> list[str]:
    line = " ".join(words)
    program = f"""
source {script}
COMP_LINE={line!r}; COMP_POINT=${{#COMP_LINE}}
COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}
_python_argcomplete symblctl {words[-1]!r} {words[-2]!r}
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    r = subprocess.run(["bash", "--norc", "-c", program], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    return sorted(w.strip() for w in r.stdout.splitlines() if w.strip())


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_bash_completes_commands_and_option_values(on_path: dict[str, str], tmp_path: Path) -> None:
    script = tmp_path / "symblctl.bash"
    r = subprocess.run(["symblctl", "completion", "bash"], capture_output=True, text=True, env=on_path, timeout=60)
    assert r.returncode == 0 and "complete " in r.stdout
    script.write_text(r.stdout)
    assert _bash_complete(on_path, script, ["symblctl", "tra"]) == ["transcript"]
    assert _bash_complete(on_path, script, ["symblctl", "st"]) == ["start", "status", "stop"]
    assert _bash_complete(on_path, script, ["symblctl", "transcript", "ID", "--format", ""]) == [
        "json", "md", "srt", "txt", "vtt"]


@pytest.mark.parametrize("shell,where", [
    ("bash", "data/bash-completion/completions/symblctl"),
    ("zsh", "data/zsh/site-functions/_symblctl"),
    ("fish", "config/fish/completions/symblctl.fish"),
])
def test_install_writes_where_the_shell_looks(tmp_path: Path, shell: str, where: str) -> None:
    env = {"XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    r = symblctl(None, "completion", shell, "--install", env=env)
    assert r.returncode == 0, r.stderr
    path = tmp_path / where
    assert r.stdout.splitlines()[0] == f"wrote {path}"
    text = path.read_text()
    assert ("#compdef symblctl" in text) if shell == "zsh" else ("symblctl" in text)
    if shell == "fish":
        assert "complete --command symblctl" in text or "complete -c symblctl" in text
