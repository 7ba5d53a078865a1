#!/usr/bin/env python3
"""Run every benchmark of the project and record the figures in docs/benchmarks.md.

    python bench/run.py                    # every bench/bench_*.py (what `make bench` runs)
    python bench/run.py transport engine   # only these (names without bench_ and .py)
    python bench/run.py --list             # what would run
    python bench/run.py --quick            # pass --quick to the benches that accept it

Each benchmark runs as its own process (one at a time: the machine has 2 cores and the
figures would disturb each other) with a time limit. A summary table goes to stdout; in
docs/benchmarks.md each benchmark has its own section (between markers) holding its output and
the exact command that produced it, so running a subset updates only those sections.
Benchmarks print figures and ratios; none of them asserts anything.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"
DOC = ROOT / "docs" / "benchmarks.md"
HEADER = """# Benchmarks

Produced by `make bench` (`python bench/run.py`): every `bench/bench_*.py`, one at a time, each
section with the command that produced it and its output as printed. Re-run one benchmark with
its command, or `python bench/run.py NAME` to refresh its section here.
"""


@dataclass
class Result:
    name: str
    command: list[str]
    returncode: int | None  # None: timed out
    seconds: float
    output: str
    when: str

    @property
    def status(self) -> str:
        if self.returncode is None:
            return "timed out"
        return "ok" if self.returncode == 0 else f"failed ({self.returncode})"


def discover() -> dict[str, Path]:
    return {p.stem.removeprefix("bench_"): p for p in sorted(BENCH_DIR.glob("bench_*.py"))}


def accepts(path: Path, flag: str) -> bool:
    return f'"{flag}"' in path.read_text(errors="replace")


def run_one(name: str, path: Path, timeout: float, quick: bool) -> Result:
    cmd = [sys.executable, str(path.relative_to(ROOT))]
    if quick and accepts(path, "--quick"):
        cmd.append("--quick")
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"→ {name}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # Its own process group, so a timeout also ends the daemons and helpers the benchmark started.
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         errors="replace", start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
        code: int | None = p.returncode
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        code = None
        out += f"\n[timed out after {timeout:.0f} s]"
    if code != 0 and err.strip():  # progress noise is dropped; a failure's stderr is kept, its tail
        out += "\n[stderr]\n" + "\n".join(err.rstrip().splitlines()[-30:])
    return Result(name, cmd, code, time.monotonic() - t0, out.rstrip(), when)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}, {platform.system()}"


def section(r: Result) -> str:
    shown = " ".join(["python", *r.command[1:]])
    # Benchmarks print markdown tables; plain lines between them read fine in markdown too, but
    # tracebacks and progress noise do not: a failed run is shown verbatim in a code block.
    body = r.output if r.returncode == 0 else f"```text\n{r.output}\n```"
    return (f"<!-- bench:{r.name} -->\n## {r.name}\n\n`{shown}` — {r.status}, {r.seconds:.0f} s, {r.when}; "
            f"{machine()}\n\n{body}\n<!-- /bench:{r.name} -->\n")


def update_doc(results: list[Result], names: list[str]) -> None:
    old = DOC.read_text() if DOC.exists() else HEADER
    sections = dict(re.findall(r"<!-- bench:([\w-]+) -->\n(.*?)<!-- /bench:\1 -->\n", old, flags=re.S))
    kept = {k: f"<!-- bench:{k} -->\n{v}<!-- /bench:{k} -->\n" for k, v in sections.items()}
    for r in results:
        kept[r.name] = section(r)
    order = [n for n in names if n in kept] + sorted(k for k in kept if k not in names)
    DOC.write_text(HEADER + "\n" + "\n".join(kept[n] for n in order))


def summary(results: list[Result]) -> str:
    rows = ["| benchmark | status | seconds | command |", "|---|---|---:|---|"]
    for r in results:
        rows.append(f"| {r.name} | {r.status} | {r.seconds:.0f} | `python {' '.join(r.command[1:])}` |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    ap.add_argument("--timeout", type=float, default=7200.0, help="seconds per benchmark (default 7200)")
    ap.add_argument("--quick", action="store_true", help="pass --quick to benchmarks that accept it")
    ap.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    ap.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    ns = ap.parse_args(argv)
    found = discover()
    if ns.list:
        print("\n".join(found))
        return 0
    unknown = [n for n in ns.names if n not in found]
    if unknown:
        print(f"bench/run.py: unknown benchmark(s) {unknown}; known: {list(found)}", file=sys.stderr)
        return 2
    names = ns.names or list(found)
    results = []
    for name in names:
        r = run_one(name, found[name], ns.timeout, ns.quick)
        results.append(r)
        print(f"\n## {name} ({r.status}, {r.seconds:.0f} s)\n\n{r.output}\n", flush=True)
    print(summary(results))
    if not ns.no_write:
        update_doc(results, list(found))
        print(f"\nwrote {DOC.relative_to(ROOT)}", file=sys.stderr)
    return 0 if all(r.returncode == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
