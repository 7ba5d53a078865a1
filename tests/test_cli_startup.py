"""What ``symblctl status`` loads: the client and the command table, not msgspec or the declarations.

The figure (CPU against ``import zmq``) is bench/bench_cli.py's; this test holds the property behind it, which
an eager import anywhere on the path would break without any test about behaviour noticing.
"""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import DaemonProc

HEAVY = ("msgspec", "symblctl.protocol", "symblctl.sdk", "structlog", "argcomplete", "dataclasses", "asyncio")

PROBE = f"""
import json, sys
from symblctl.cli import main
code = main(sys.argv[1:])
print(json.dumps({{"code": code, "loaded": sorted(m for m in {HEAVY!r} if m in sys.modules)}}))
"""


def test_status_runs_without_the_heavy_imports(daemon: DaemonProc) -> None:
    r = subprocess.run([sys.executable, "-c", PROBE, "--control", daemon.control, "--json", "status"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    status_line, probe_line = r.stdout.strip().splitlines()[-2:]
    assert "connections" in json.loads(status_line)
    probe = json.loads(probe_line)
    assert probe == {"code": 0, "loaded": []}, probe


def test_a_command_with_options_still_loads_its_declaration(daemon: DaemonProc) -> None:
    r = subprocess.run([sys.executable, "-c", PROBE, "--control", daemon.control, "--json", "get", "nope"],
                       capture_output=True, text=True, timeout=60)
    probe = json.loads(r.stdout.strip().splitlines()[-1])
    assert probe["code"] == 1 and "msgspec" in probe["loaded"], (probe, r.stderr)
