"""scripts/demo.sh (what `make demo` runs) as a new user meets it: with a microphone it says which
one and listens; without one it says why and plays a generated meeting."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import cli_env
from conftest import wait_until
from speechgen import SENTENCES, synth
from virtmic import VirtMic, missing_tools

ROOT = Path(__file__).resolve().parent.parent


def demo(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sh", str(ROOT / "scripts" / "demo.sh")], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=cli_env({"SYMBLD_BIN": str(Path(sys.executable).parent), **env}))


def read_until(proc: subprocess.Popen[bytes], pattern: str, seen: bytearray, timeout: float) -> str:
    assert proc.stdout is not None

    def seen_pattern() -> bool:
        if select.select([proc.stdout], [], [], 0.2)[0]:
            chunk = os.read(proc.stdout.fileno(), 65536)  # type: ignore[union-attr]
            assert chunk or proc.poll() is None, seen.decode(errors="replace")
            seen.extend(chunk)
        return bool(re.search(pattern, seen.decode(errors="replace")))

    try:
        wait_until(f"{pattern!r} printed", seen_pattern, timeout, every=0)
    except AssertionError as e:
        raise AssertionError(f"{e}:\n{seen.decode(errors='replace')}") from None
    return seen.decode(errors="replace")


@pytest.fixture
def mic(tmp_path: Path) -> Iterator[VirtMic]:
    if missing_tools():
        pytest.skip(f"PulseAudio tools missing: {missing_tools()}")
    m = VirtMic(tmp_path / "pulse")
    m.start()
    yield m
    m.stop()


@pytest.mark.speech
def test_demo_listens_on_the_microphone_and_says_which(mic: VirtMic) -> None:
    env = {k: v for k, v in mic.env.items() if k in ("XDG_RUNTIME_DIR", "PULSE_RUNTIME_PATH", "PULSE_SERVER",
                                                    "XDG_CONFIG_HOME")}
    proc = demo(env)
    seen = bytearray()
    try:
        text = read_until(proc, r"Listening on microphone: .+\. Speak; Ctrl-C stops\.", seen, 120)
        assert re.search(r"Listening on microphone: \S.* \(device \d+\)\. Speak", text), text
        read_until(proc, r"\(Ctrl-C stops\)", seen, 60)  # the connection is live and subscribed
        mic.play(synth(SENTENCES[0]))
        read_until(proc, r"(?i)quarterly report", seen, 60)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal reaches the whole job
        proc.wait(60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.speech
def test_demo_without_a_microphone_says_why_and_plays_a_meeting() -> None:
    proc = demo({"DEMO_SOURCE": "file"})
    seen = bytearray()
    try:
        read_until(proc, r"\(no microphone: DEMO_SOURCE=file\)\nPlaying a generated meeting instead\.", seen, 120)
        text = read_until(proc, r"completed; conversationId \d+ connectionId [0-9a-f]{32}", seen, 180)
        assert proc.wait(60) == 0, text
        assert re.search(r"(?i)quarterly report before friday", text), text
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
