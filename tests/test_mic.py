"""The microphone through a real (private) PulseAudio: capture, fan-out, pause, device loss.

Capture runs in this process: the module fixture points libpulse at a private server
(tests/virtmic.py) through the environment, and MicHub re-initialises PortAudio so it sees it.
Speech is espeak-ng played into the null sink with paplay; assertions compare what the mic
delivered with the WAV itself (normalised cross-correlation, and where the energy is).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import wait_until
from speechgen import SENTENCES, synth, wer
from virtmic import VirtMic, missing_tools

from symbld.audio.base import FRAME_BYTES, SourceContext, SourceError
from symbld.audio.mic import MicHub, MicSource, MicUnavailable

ROOT = Path(__file__).resolve().parent.parent
SENTENCE = "can you send me the report by friday"

pytestmark = pytest.mark.timeout(60)


def _portaudio_missing() -> bool:
    try:
        import sounddevice  # noqa: F401
    except OSError:
        return True
    return False


needs_pulse = pytest.mark.skipif(
    bool(missing_tools()) or _portaudio_missing(),
    reason=f"needs pulseaudio/pulseaudio-utils and libportaudio2 (missing: {missing_tools()})",
)


@pytest.fixture(scope="module")
def vmic(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    if missing_tools() or _portaudio_missing():
        pytest.skip("pulseaudio or libportaudio2 not installed")
    mic = VirtMic(tmp_path_factory.mktemp("pulse"))
    mic.start()
    try:
        with pytest.MonkeyPatch.context() as mp:
            for k, v in mic.env_overrides.items():
                mp.setenv(k, v)
            yield mic
    finally:
        mic.stop()


@pytest.fixture(scope="module")
def speech(vmic: VirtMic, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    path = synth(SENTENCE)
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        ref = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    return path, ref


@pytest.fixture
def hub(vmic: VirtMic):  # type: ignore[no-untyped-def]
    h = MicHub({})
    try:
        yield h
    finally:
        h.close()


class Events:
    """A SourceContext whose emitted events are recorded with their arrival time."""

    def __init__(self, cid: str) -> None:
        self.items: list[tuple[float, str, dict[str, Any]]] = []
        self.ctx = SourceContext(cid, self._emit)

    def _emit(self, event_type: str, data: dict[str, Any]) -> None:
        self.items.append((time.monotonic(), event_type, data))

    def wait_for(self, event_type: str, timeout: float = 10.0) -> float:
        """When the first ``event_type`` arrived (waiting for it)."""
        return wait_until(f"a {event_type} (got {[e for _, e, _ in self.items]})",
                          lambda: next((t for t, et, _ in self.items if et == event_type), None), timeout)


class Collector:
    """Iterates a source's frames() on its own thread, as a session would."""

    def __init__(self, src: MicSource) -> None:
        self.src = src
        self.frames: list[tuple[float, bytes]] = []
        self._th = threading.Thread(target=self._run, daemon=True)
        self._th.start()

    def _run(self) -> None:
        for f in self.src.frames():
            self.frames.append((time.monotonic(), f))

    def mark(self) -> int:
        return len(self.frames)

    def audio(self, start: int = 0, end: int | None = None) -> np.ndarray:
        chunk = self.frames[start:end]
        assert all(len(f) == FRAME_BYTES for _, f in chunk)
        return np.frombuffer(b"".join(f for _, f in chunk), np.int16)

    def close(self) -> None:
        self.src.close()
        self._th.join(10)  # a deadline for a hang, not a speed figure
        assert not self._th.is_alive(), "frames() did not return after close()"

    def wait_frames(self, n: int, since: int | None = None) -> None:
        """Wait until ``n`` more frames than at ``since`` (default: now) have arrived."""
        start = self.mark() if since is None else since
        wait_until(f"{n} frames from the mic", lambda: self.mark() - start >= n, 10)


def best_match(cap: np.ndarray, ref: np.ndarray) -> tuple[int, float]:
    """Where ``ref`` sits inside ``cap`` and how well it matches there (normalised, 1.0 = same)."""
    c, r = cap.astype(np.float64), ref.astype(np.float64)
    n = 1 << int(np.ceil(np.log2(len(c) + len(r))))
    xc = np.fft.irfft(np.fft.rfft(c, n) * np.conj(np.fft.rfft(r, n)), n)[: len(c) - len(r) + 1]
    lag = int(np.argmax(xc))
    seg = c[lag : lag + len(r)]
    denom = np.linalg.norm(seg) * np.linalg.norm(r)
    return lag, float(np.dot(seg, r) / denom) if denom else 0.0


def play_and_capture(vmic: VirtMic, col: Collector, wav: Path) -> tuple[np.ndarray, float, int]:
    """Play ``wav`` into the mic; return the audio captured around it, the play start and the
    index of the first frame captured after it started."""
    start_idx = col.mark()
    col.wait_frames(10)  # 0.2 s of the mic before the speech
    t_play = time.monotonic()
    vmic.play(wav)
    col.wait_frames(15)  # and 0.3 s after it
    return col.audio(start_idx), t_play, start_idx


def assert_heard(cap: np.ndarray, ref: np.ndarray, min_ncc: float = 0.99) -> int:
    assert len(cap) > len(ref), f"captured {len(cap) / 16000:.2f} s, speech is {len(ref) / 16000:.2f} s"
    lag, ncc = best_match(cap, ref)
    assert ncc > min_ncc, f"captured audio does not match the played speech (ncc={ncc:.4f})"
    return lag


@needs_pulse
def test_capture_matches_played_speech(vmic: VirtMic, hub: MicHub, speech: tuple[Path, np.ndarray]) -> None:
    wav, ref = speech
    ev = Events("c1")
    src = hub.open(ev.ctx)
    col = Collector(src)
    col.wait_frames(1, since=0)
    cap, t_play, start_idx = play_and_capture(vmic, col, wav)
    lag = assert_heard(cap, ref)
    # energy in the right window: silent before the speech, the speech after paplay started
    assert np.abs(cap[:lag]).max(initial=0) < 50
    assert col.frames[start_idx + lag // 320][0] > t_play
    d = src.describe()
    assert d["kind"] == "mic" and d["state"] == "capturing" and d["device"] == "default"
    assert d["overflows"] == 0 and d["dropped"] == 0  # every frame delivered (its pace: bench/bench_mic.py)
    col.close()
    assert ev.items == []


@needs_pulse
def test_device_at_48k_is_resampled_to_16k(vmic: VirtMic, speech: tuple[Path, np.ndarray]) -> None:
    wav, ref = speech
    h = MicHub({"samplerate": 48000})  # the server upsamples, soxr brings it back to 16 kHz
    try:
        src = h.open(Events("c48").ctx)
        col = Collector(src)
        assert src.describe()["device_samplerate"] == 48000
        cap, _, _ = play_and_capture(vmic, col, wav)
        assert_heard(cap, ref, min_ncc=0.95)
        col.close()
    finally:
        h.close()


@needs_pulse
def test_two_sources_share_one_capture(vmic: VirtMic, hub: MicHub, speech: tuple[Path, np.ndarray]) -> None:
    wav, ref = speech
    wait_no_capture(vmic)
    a, b = Collector(hub.open(Events("a").ctx)), Collector(hub.open(Events("b").ctx))
    assert vmic.source_outputs() == 1, "two sources must share one capture stream"
    assert len(hub.describe()["captures"]) == 1
    assert a.src.describe()["shared_by"] == 2
    ia, ib = a.mark(), b.mark()
    a.wait_frames(10)
    b.wait_frames(10)
    vmic.play(wav)
    a.wait_frames(15)
    b.wait_frames(15)
    assert_heard(a.audio(ia), ref)
    assert_heard(b.audio(ib), ref)
    a.close()
    b.wait_frames(10)  # the other source keeps receiving after one closes
    b.close()
    wait_no_capture(vmic, "capture stream not closed after its last source")


def wait_no_capture(vmic: VirtMic, why: str = "a capture stream of an earlier test is still open") -> None:
    wait_until(why, lambda: vmic.source_outputs() == 0, 10)


@needs_pulse
def test_slow_consumer_drops_are_counted_not_silent(vmic: VirtMic) -> None:
    h = MicHub({"queue_frames": 10})
    try:
        src = h.open(Events("slow").ctx)
        # Frames arrive, nobody reads: only the newest 10 are kept, the rest are counted.
        wait_until("frames dropped and counted", lambda: src.describe()["dropped"] >= 15, 10)
        assert src.describe()["overflows"] == 0
        it = src.frames()
        got = [next(it) for _ in range(12)]
        assert all(len(f) == FRAME_BYTES for f in got)
        src.close()
    finally:
        h.close()


@needs_pulse
def test_pause_resume_and_mute(vmic: VirtMic, hub: MicHub, speech: tuple[Path, np.ndarray]) -> None:
    wav, ref = speech
    col = Collector(hub.open(Events("p").ctx))
    col.src.pause()
    assert col.src.describe()["state"] == "paused"
    cap, _, _ = play_and_capture(vmic, col, wav)
    assert np.abs(cap).max() == 0, "audio leaked while paused"
    assert len(cap) >= len(ref), "paused source must keep yielding silence in real time"
    col.src.resume()
    col.src.mute(True)
    assert col.src.describe()["state"] == "muted"
    i = col.mark()
    col.wait_frames(10)
    assert np.abs(col.audio(i)).max() == 0
    col.src.mute(False)
    assert col.src.describe()["state"] == "capturing"
    cap, _, _ = play_and_capture(vmic, col, wav)
    assert_heard(cap, ref)
    col.close()


@needs_pulse
def test_device_lost_and_back(vmic: VirtMic, hub: MicHub, speech: tuple[Path, np.ndarray]) -> None:
    wav, ref = speech
    ev = Events("lost")
    col = Collector(hub.open(ev.ctx))
    col.wait_frames(15)
    vmic.kill()
    ev.wait_for("device_lost")  # how soon: bench/bench_mic.py, not a wall-clock assertion here
    assert col.src.describe()["state"] == "device_lost"
    with pytest.raises(SourceError) as e:
        hub.check()  # a new `start --mic` is refused while the device is gone
    assert e.value.code == "device_unavailable"
    col.wait_frames(15)  # the source keeps yielding (silence) while the device is lost
    vmic.start()
    ev.wait_for("device_restored")
    restored = next(d for _, et, d in ev.items if et == "device_restored")
    assert restored["device"] == "default" and restored["downtime"] > 0
    assert col.src.describe()["state"] == "capturing"
    cap, _, _ = play_and_capture(vmic, col, wav)
    assert_heard(cap, ref)
    assert [et for _, et, _ in ev.items] == ["device_lost", "device_restored"]
    col.close()


def _run_child(code: str, env: dict[str, str]) -> list[str]:
    """Run ``code`` in a fresh interpreter; its result lines (log lines filtered out)."""
    env = dict(env, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return [line for line in out.stdout.splitlines() if line.startswith(("MicUnavailable|", "NO ERROR"))]


CHECK = """
import time
t0 = time.monotonic()
from symbld.audio.mic import MicHub
from symbld.audio.base import SourceContext
hub = MicHub({})
try:
    hub.check()
    print("NO ERROR")
except Exception as e:
    print(type(e).__name__, e.code, round(time.monotonic() - t0, 3), e.message, sep="|")
try:
    hub.open(SourceContext("x", lambda t, d: None))
    print("NO ERROR")
except Exception as e:
    print(type(e).__name__, e.code, sep="|")
"""


@pytest.mark.skipif(os.path.exists("/dev/snd"), reason="a sound card is present: 'no device' can't be staged")
def test_no_audio_server_fails_fast_with_clear_message(tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
           "XDG_RUNTIME_DIR": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path),
           "PULSE_SERVER": f"unix:{tmp_path}/nonexistent"}
    first, second = _run_child(CHECK, env)
    name, code, secs, message = first.split("|")
    assert (name, code) == ("MicUnavailable", "device_unavailable")
    assert float(secs) >= 0  # measured; no bound here (a hang is caught by the child's timeout)
    assert "no audio input device" in message and "PulseAudio" in message
    assert second == "MicUnavailable|device_unavailable"


def test_missing_portaudio_fails_at_check_not_import(tmp_path: Path) -> None:
    # Make ctypes find no libportaudio, so sounddevice's own import fails as on a bare machine.
    code = "import ctypes.util\nctypes.util.find_library = lambda name: None\n" + CHECK
    first = _run_child(code, dict(os.environ, HOME=str(tmp_path)))[0]
    name, code_, _, message = first.split("|")
    assert (name, code_) == ("MicUnavailable", "device_unavailable")
    assert message.startswith("PortAudio library not found: apt-get install libportaudio2")


@needs_pulse
def test_unknown_device_name_is_refused(vmic: VirtMic, hub: MicHub) -> None:
    with pytest.raises(MicUnavailable) as e:
        hub.open(Events("x").ctx, device="no-such-mic")
    assert "no-such-mic" in e.value.message and "default" in e.value.message


@needs_pulse
def test_stalled_source_is_lost_and_close_does_not_hang(vmic: VirtMic, speech: tuple[Path, np.ndarray]) -> None:
    # A pipe source with no writer: the stream opens fine and then delivers nothing (and closing
    # such a stream is known to hang in PortAudio's ALSA/pulse path).
    wav, ref = speech
    fifo = vmic.run_dir / "stall.fifo"
    module = vmic._pactl("load-module", "module-pipe-source", "source_name=stall", f"file={fifo}",
                         "format=s16le", "rate=16000", "channels=1").stdout.strip()
    vmic._pactl("set-default-source", "stall")
    h = MicHub({"first_data_timeout": 0.5, "close_timeout": 0.5})
    try:
        ev = Events("stall")
        col = Collector(h.open(ev.ctx))
        t_lost = ev.wait_for("device_lost")
        assert next(d for _, et, d in ev.items if et == "device_lost")["reason"] == "no_frames"
        i = col.mark()
        # Reopen attempts (every first_data_timeout) open fine but stay silent: no flapping device_restored
        # while the source goes on yielding silence (50 frames: 1 s, two reopen attempts).
        def a_second_of_silence() -> bool:
            assert [et for _, et, _ in ev.items] == ["device_lost"], "a silent reopen flapped device_restored"
            return col.mark() - i >= 50

        wait_until("a second of frames while the device is lost", a_second_of_silence, 30)
        assert col.mark() - i >= 50 and np.abs(col.audio(i)).max() == 0
        # the real mic comes back: capture resumes by itself and hears speech again
        vmic._pactl("set-default-source", "virtmic_sink.monitor")
        ev.wait_for("device_restored")
        assert ev.items[-1][0] > t_lost
        cap, _, _ = play_and_capture(vmic, col, wav)
        assert_heard(cap, ref)
        col.close()
    finally:
        closer = threading.Thread(target=h.close, daemon=True)
        closer.start()
        closer.join(30)  # a deadline for a hang (close_timeout is 0.5 s), not a speed figure
        assert not closer.is_alive(), "MicHub.close() hangs on a stalled stream"
        vmic._pactl("set-default-source", "virtmic_sink.monitor")
        vmic._pactl("unload-module", module)


@needs_pulse
@pytest.mark.speech
def test_mic_speech_is_transcribed_by_the_local_engine(vmic: VirtMic, hub: MicHub,
                                                       ) -> None:
    from symbld.engines.base import StreamConfig
    from symbld.engines.local import LocalEngine

    sentence = SENTENCES[0]  # heard without error in every variant (tests/test_fixture_margin.py)
    eng = LocalEngine({"num_workers": 1, "cpu_threads": 1})
    try:
        results: list[tuple[str, dict[str, Any]]] = []
        stream = eng.open(StreamConfig(connection_id="asr", conversation_id="asr"),
                          lambda t, d: results.append((t, d)))
        src = hub.open(Events("asr").ctx)

        def session() -> None:  # what the daemon's session thread does
            for pcm in src.frames():
                stream.feed(pcm)

        th = threading.Thread(target=session, daemon=True)
        th.start()
        wait_until("the mic records", vmic.source_outputs, 10)
        vmic.play(synth(sentence))
        # The trailing silence the mic goes on delivering closes the utterance.
        wait_until("a final", lambda: any(t == "transcript_response" and d["isFinal"] for t, d in results), 30)
        src.close()
        th.join(2)
        stream.finish()
        stream.close()
    finally:
        eng.close()
    finals = [d for t, d in results if t == "transcript_response" and d["isFinal"]]
    text = " ".join(d["payload"]["content"] for d in finals)
    assert wer(sentence, text) == 0, f"heard {text!r} for {sentence!r}"
