"""The client distribution alone: a fresh venv with only ``pip install ./symblctl`` (pyzmq comes
from PyPI) runs the ``symblctl`` CLI and ``import symblctl as symbl`` against a real daemon, and
has none of the model stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DaemonProc

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("client-venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(ROOT / "symblctl")], check=True, timeout=600,
                   cwd=venv.parent)
    return venv


def _run(venv: Path, *argv: str, daemon: DaemonProc) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(SYMBLD_CONTROL=daemon.control, SYMBLD_EVENTS=daemon.events)
    # cwd outside the repository: nothing may be imported from the source tree.
    return subprocess.run(list(argv), capture_output=True, text=True, env=env, timeout=120, cwd=venv.parent)


def test_no_model_stack_in_the_client_venv(client_venv: Path, daemon: DaemonProc) -> None:
    for module in ("numpy", "faster_whisper", "ctranslate2", "onnxruntime", "symbld"):
        r = _run(client_venv, str(client_venv / "bin" / "python"), "-c", f"import {module}", daemon=daemon)
        assert r.returncode != 0 and "ModuleNotFoundError" in r.stderr, (module, r.stderr)


def test_client_venv_cli_and_sdk_against_a_daemon(client_venv: Path, daemon: DaemonProc) -> None:
    cli = str(client_venv / "bin" / "symblctl")
    ping = _run(client_venv, cli, "--json", "ping", daemon=daemon)
    assert ping.returncode == 0, ping.stderr
    assert json.loads(ping.stdout)["pong"] is True
    status = _run(client_venv, cli, "--json", "status", daemon=daemon)
    assert status.returncode == 0, status.stderr
    assert "connections" in json.loads(status.stdout)
    code = ("import symblctl as symbl, json; c = symbl.Client(); "
            "conn = c.start(source={'type': 'push'}); "
            "print(json.dumps([symbl.__file__, c.stop(conn['connectionId'])]))")
    r = _run(client_venv, str(client_venv / "bin" / "python"), "-c", code, daemon=daemon)
    assert r.returncode == 0, r.stderr
    where, final = json.loads(r.stdout)
    assert where.startswith(str(client_venv)) and final["state"] == "stopped"
