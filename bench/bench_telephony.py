"""Call setup time against a local sipp, and speech-end -> final transcript latency on a call.

    python bench/bench_telephony.py [CALLS]      # default 5 calls; needs sipp, espeak-ng, sox
    python bench/bench_telephony.py --ringing    # only the idle CPU of a ringing call

Per call: sipp (tests/sipp/uas_speak_pcmu.xml) rings, answers, streams espeak-ng speech as PCMU
and hangs up. Printed figures (milliseconds, median and max over the calls):
- INVITE -> 200 OK          (SIP setup on loopback)
- INVITE -> first 16 kHz frame out of ``frames()`` (setup + jitter buffer + resampler)
- last frame -> final transcript (the offline engine fed live from the call; ``finish()``
  returning means every final was emitted), when ``symbld.engines.local`` is importable.
- CPU of this process while one call rings unanswered (tests/sipp/uas_ring.xml), against the
  same process idle for the same time measured just before (the baseline).
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from symblctl import protocol  # noqa: E402
from symbld.audio.base import SourceContext  # noqa: E402
from symbld.audio.telephony.calls import TelephonyConfig, TelephonySource  # noqa: E402
from symbld.audio.telephony.table import TelephonyTable  # noqa: E402

SENTENCE = "Can you send me the quarterly report by Friday?"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_bound(port: int, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return
        time.sleep(0.02)


def open_engine():
    try:
        from symbld.engines.base import StreamConfig
        from symbld.engines.local import LocalEngine
    except ImportError:
        return None, None
    eng = LocalEngine({"num_workers": 1, "cpu_threads": 1})
    eng.load()
    return eng, StreamConfig


RING_SECONDS = 5.0


def reap(proc: subprocess.Popen) -> None:
    """Let sipp finish its scenario; kill it if it does not within 10 s."""
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cpu_share(seconds: float) -> float:
    """This process's CPU time (all threads) over ``seconds`` of wall time, as a share of one core."""
    c0, t0 = time.process_time(), time.monotonic()
    time.sleep(seconds)  # the measurement window itself, not a wait for an event
    return (time.process_time() - c0) / (time.monotonic() - t0)


def ringing_cpu(work: Path) -> tuple[float, float]:
    """(idle baseline, during a ringing call) CPU shares of one core."""
    import threading

    shutil.copy(ROOT / "tests" / "sipp" / "uas_ring.xml", work)
    port = free_port()
    sipp = subprocess.Popen(
        ["sipp", "-sf", "uas_ring.xml", "-i", "127.0.0.1", "-p", str(port), "-m", "1", "-nostdin",
         "-timeout", "30s", "-default_behaviors", "all,-abortunexp"],
        cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_bound(port)
        baseline = cpu_share(RING_SECONDS)
        ringing = threading.Event()
        cfg = TelephonyConfig.from_table(TelephonyTable(answer_timeout=60.0))
        src = TelephonySource(protocol.SipSource(uri=f"sip:bench@127.0.0.1:{port}"),
                              SourceContext("ring", lambda t, d: t == "call_ringing" and ringing.set()), cfg)
        src.start()
        if not ringing.wait(10):
            sys.exit("sipp never rang")
        during = cpu_share(RING_SECONDS)
        src.close()
        src.wait_closed(10)
    finally:
        reap(sipp)
    return baseline, during


def print_ringing(work: Path) -> None:
    baseline, during = ringing_cpu(work)
    print(f"{'CPU while a call rings (1 core = 100%)':<38} {during * 100:8.2f} %   "
          f"idle baseline {baseline * 100:.2f} %   difference {(during - baseline) * 100:+.2f} points "
          f"(over {RING_SECONDS:g} s)")


def main() -> None:
    if not shutil.which("sipp"):
        sys.exit("sipp not installed (Debian package sip-tester)")
    if sys.argv[1:] == ["--ringing"]:
        work = Path(tempfile.mkdtemp(prefix="bench-tel-"))
        try:
            print_ringing(work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    work = Path(tempfile.mkdtemp(prefix="bench-tel-"))
    env = dict(os.environ, XDG_RUNTIME_DIR=str(work), XDG_CONFIG_HOME=str(work))  # keep espeak's libpulse local
    subprocess.run(["espeak-ng", "-w", str(work / "s.wav"), SENTENCE], check=True, env=env,
                   stderr=subprocess.DEVNULL)
    subprocess.run(["sox", str(work / "s.wav"), "-r", "8000", "-c", "1", "-t", "ul", str(work / "speech.ulaw")],
                   check=True)
    shutil.copy(ROOT / "tests" / "sipp" / "uas_speak_pcmu.xml", work)
    eng, stream_config = open_engine()
    setup, first, final = [], [], []
    try:
        for i in range(n):
            port = free_port()
            sipp = subprocess.Popen(
                ["sipp", "-sf", "uas_speak_pcmu.xml", "-i", "127.0.0.1", "-p", str(port), "-mi", "127.0.0.1",
                 "-mp", str(20000 + 2 * i), "-m", "1", "-nostdin", "-timeout", "20s",
                 "-default_behaviors", "all,-abortunexp"],
                cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_bound(port)
                src = TelephonySource(protocol.SipSource(uri=f"sip:bench@127.0.0.1:{port}"),
                                      SourceContext(f"bench{i}", lambda t, d: None), TelephonyConfig.from_table())
                stream = eng.open(stream_config(connection_id=f"b{i}", conversation_id=f"b{i}"),
                                  lambda t, d: None) if eng else None
                for pcm in src.frames():
                    if stream:
                        stream.feed(pcm)
                last_frame = time.monotonic()
                if stream:
                    stream.finish()
                    final.append((time.monotonic() - last_frame) * 1000)
                    stream.close()
                d = src.describe()
                setup.append(d["setupMs"])
                first.append(d["firstAudioMs"])
                src.close()
            finally:
                reap(sipp)
    finally:
        if eng:
            eng.close()
        shutil.rmtree(work, ignore_errors=True)

    def row(name: str, xs: list[float]) -> None:
        print(f"{name:<38} median {statistics.median(xs):8.1f} ms   max {max(xs):8.1f} ms   (n={len(xs)})")

    print(f"telephony benchmark: {n} calls to local sipp (PCMU, loopback)")
    row("INVITE -> 200 OK", setup)
    row("INVITE -> first 16 kHz frame", first)
    if final:
        row("last call frame -> final transcript", final)
    else:
        print("last call frame -> final transcript      (skipped: symbld.engines.local not importable)")
    work = Path(tempfile.mkdtemp(prefix="bench-tel-"))
    try:
        print_ringing(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
