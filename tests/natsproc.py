"""A real nats-server with JetStream for tests and benchmarks: private port, store in a temp dir, a token."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

TOKEN = "fleet-test-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NatsServer:
    def __init__(self, root: Path, token: str = TOKEN, port: int | None = None,
                 extra: list[str] | None = None) -> None:
        self.root = root
        self.token = token
        self.port = port or free_port()
        self.store = root / "jetstream"
        self.log_path = root / "nats-server.log"
        self.extra = list(extra or [])
        self.proc: subprocess.Popen[bytes] | None = None
        root.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, wait: float = 30.0) -> NatsServer:
        exe = shutil.which("nats-server") or "/usr/sbin/nats-server"
        cmd = [exe, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store), *self.extra]
        if self.token:
            cmd += ["--auth", self.token]
        ready_before = self._full_log().count("Server is ready")  # a restart appends to the same log
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.proc.returncode}:\n{self.log()}")
            if self._full_log().count("Server is ready") > ready_before:
                return self
            time.sleep(0.05)
        raise RuntimeError(f"nats-server not ready within {wait} s:\n{self.log()}")

    def _full_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except FileNotFoundError:
            return ""

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


def nats_config(url: str, node: str, token: str = TOKEN, **extra: object) -> str:
    """The [nats] table of a daemon's config file."""
    lines = ["[nats]", f'url = "{url}"', f'node = "{node}"', f'token = "{token}"']
    for k, v in extra.items():
        lines.append(f"{k} = {v!r}" if not isinstance(v, str) else f'{k} = "{v}"')
    return "\n".join(lines) + "\n"
