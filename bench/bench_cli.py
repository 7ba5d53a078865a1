#!/usr/bin/env python3
"""How long ``symblctl status`` takes against a running daemon, as a ratio of ``python -c 'import zmq'``.

Both commands run alternately, ``--runs`` times each, in fresh processes with the same Python. The CPU time
(user + system, from ``getrusage`` of the children) is the figure the ratio is taken on: it counts the work
of imports and parser building and is far less moved by other load on the machine than wall time, which is
printed beside it. The goal (issue 22) is a ratio of at most 1.5.

    python bench/bench_cli.py [--runs 30]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import DaemonProc  # the real daemon, as the tests start it


def _cost(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(cpu seconds, wall seconds) of one run of argv."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--quick", action="store_true", help="10 runs")
    args = ap.parse_args()
    runs = 10 if args.quick else args.runs
    with tempfile.TemporaryDirectory() as tmp:
        daemon = DaemonProc(Path(tmp), args=["--no-preload"]).start()
        try:
            env = {**os.environ, "SYMBLD_CONTROL": daemon.control, "SYMBLD_EVENTS": daemon.events}
            # An installed package has its .pyc files (pip compiles them); without them every run would
            # compile the client's modules from source, which is not what a user's symblctl does.
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            cases = {
                "python -c 'import zmq'": [sys.executable, "-c", "import zmq"],
                "symblctl status": [sys.executable, "-m", "symblctl", "status"],
                "symblctl --help": [sys.executable, "-m", "symblctl", "--help"],
            }
            figures: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
            for _ in range(2):  # warm the page cache and .pyc files
                for argv in cases.values():
                    _cost(argv, env)
            for _ in range(runs):
                for name, argv in cases.items():
                    figures[name].append(_cost(argv, env))
        finally:
            daemon.stop()
    base_cpu = statistics.median(c for c, _ in figures["python -c 'import zmq'"])
    print(f"{'command':<26} {'cpu p50 ms':>10} {'wall p50 ms':>11} {'cpu ratio':>9}   ({runs} runs each)")
    for name, values in figures.items():
        cpu = statistics.median(c for c, _ in values)
        wall = statistics.median(w for _, w in values)
        print(f"{name:<26} {cpu * 1000:>10.1f} {wall * 1000:>11.1f} {cpu / base_cpu:>8.2f}x")


if __name__ == "__main__":
    main()
