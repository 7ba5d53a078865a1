"""The microphone: one capture stream per input device, fanned out to any number of sources.

Data path (one device)::

    PortAudio thread ── callback: copy block ─> bounded raw queue   (never blocks; full = overflow)
    pump thread      ── raw queue ─> downmix ─> soxr ─> 20 ms frames ─> each MicSource's queue
    session thread   ── MicSource.frames() ─> engine

The pump thread is also the watchdog: when no block arrives for ``stall_timeout`` or the
stream goes inactive (what PortAudio does when PulseAudio dies: no status flag, no exception),
the device is *lost*: the stream is closed on a helper thread with a timeout (closing a stalled
ALSA/pulse stream can hang forever), every source gets ``device_lost``, and the pump keeps
feeding sources real-time silence while it retries every ``retry_interval``. A retry
re-initialises PortAudio (it scans devices only at initialisation, so a restarted server is
invisible otherwise) and reopens the device; on success every source gets ``device_restored``.

``sounddevice`` is imported lazily: a machine without libportaudio2 can still import the daemon
and run file/push sessions; only ``MicHub.check``/``open`` then fail, with a clear message.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Annotated, Any

import msgspec
import numpy as np
import structlog

from .base import FRAME_BYTES, FRAME_MS, SAMPLE_RATE, SourceContext, SourceError

log = structlog.get_logger(__name__)

SILENCE = bytes(FRAME_BYTES)
FRAME_S = FRAME_MS / 1000

class MicTable(msgspec.Struct, kw_only=True):
    """The [mic] table, declared: the config check decodes it, so a value out of range stops the daemon naming
    the key and its line (blocksize_ms, the timeouts and queue_frames used to be clamped without a word)."""

    device: str | int | None = None  # None = the system default input; or a name (substring) or PortAudio index
    # PortAudio block; capture adds at most this before a frame is queued
    blocksize_ms: Annotated[int, msgspec.Meta(ge=5, le=FRAME_MS)] = 20
    queue_frames: Annotated[int, msgspec.Meta(ge=2)] = 50  # bounded queues (raw blocks and per-source frames): 1 s
    stall_timeout: Annotated[float, msgspec.Meta(gt=0, le=2)] = 1.0  # no block for this long = device lost
    first_data_timeout: Annotated[float, msgspec.Meta(gt=0, le=2)] = 2.0  # same, right after opening
    close_timeout: Annotated[float, msgspec.Meta(gt=0)] = 1.0  # a longer stream close is abandoned (it may hang)
    retry_interval: Annotated[float, msgspec.Meta(gt=0)] = 0.5  # while lost: how often to reopen
    # None = 16 kHz if the device takes it, else its default rate (resampled)
    samplerate: Annotated[int, msgspec.Meta(ge=8000, le=384_000)] | None = None


HINT_NO_DEVICE = (
    "no audio input device: no audio server is reachable and there is no sound card "
    "(is PulseAudio or PipeWire running for the daemon's user, with the same XDG_RUNTIME_DIR"
    "{server}? PortAudio reaches it through ALSA: apt-get install libasound2-plugins)"
)


class MicUnavailable(SourceError):
    """No microphone can be used: the message names what is missing and how to fix it."""

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__("device_unavailable", message, details)


# ---------------------------------------------------------------------------------------------
# PortAudio: one per process, shared by every hub
# ---------------------------------------------------------------------------------------------


class _PortAudio:
    """Lazy import, re-initialisation and the set of open streams (PortAudio is process-global)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()  # serialises query/open/reinit; never held while closing
        self._sd: ModuleType | None = None
        self._error: str | None = None
        self.open_streams: set[int] = set()  # id() of started streams that are not known dead
        self.abandoned = 0  # closes that timed out

    def module(self) -> ModuleType:
        if self._sd is None and self._error is None:
            try:
                import sounddevice as sd  # lazy on purpose: libportaudio2 may be missing

                self._sd = sd
            except OSError as e:  # sounddevice raises OSError when libportaudio is missing
                self._error = f"PortAudio library not found: apt-get install libportaudio2 ({e})"
            except ImportError as e:
                self._error = f"python package sounddevice is not installed: pip install sounddevice ({e})"
        if self._sd is None:
            raise MicUnavailable(self._error or "PortAudio unavailable", {"missing": "portaudio"})
        return self._sd

    def reinit(self, force: bool = False) -> bool:
        """Re-scan devices. Skipped (False) while other streams are open, unless ``force``:
        terminating PortAudio would kill them."""
        sd = self.module()
        with self.lock:
            if self.open_streams and not force:
                return False
            t0 = time.monotonic()
            sd._terminate()
            sd._initialize()
            log.debug("portaudio_reinitialised", ms=round((time.monotonic() - t0) * 1000, 1))
            return True


_PA = _PortAudio()


def _server_hint() -> str:
    server = os.environ.get("PULSE_SERVER")
    return f"; PULSE_SERVER={server}" if server else ""


def _resolve(sd: ModuleType, device: str | int | None) -> dict[str, Any]:
    """PortAudio's info dict for an input device, or MicUnavailable with a useful message."""
    try:
        return dict(sd.query_devices(device, "input"))
    except ValueError as e:  # a name that matches nothing, or several devices
        names = [d["name"] for d in sd.query_devices() if d["max_input_channels"] > 0]
        raise MicUnavailable(
            f"{e}; input devices: {', '.join(names) or 'none'} (see `symblctl devices`)",
            {"device": device, "available": names},
        ) from None
    except sd.PortAudioError as e:
        if not any(d["max_input_channels"] > 0 for d in sd.query_devices()):
            raise MicUnavailable(HINT_NO_DEVICE.format(server=_server_hint()), {"device": device}) from None
        raise MicUnavailable(f"input device {device!r} not found ({e}); see `symblctl devices`",
                             {"device": device}) from None


def _choose_format(sd: ModuleType, info: dict[str, Any], wanted: int | None) -> tuple[int, int]:
    """16 kHz mono when the device takes it (no resampling), else its native format.

    Also the cheapest real probe (~1 ms): PortAudio's device list is a snapshot taken at
    initialisation, and only this call finds out whether the server behind it is still there.
    """
    native = int(info["default_samplerate"])
    rates = [int(wanted)] if wanted else [SAMPLE_RATE, native]
    for rate in rates:
        for ch in (1, min(2, info["max_input_channels"])):
            try:
                sd.check_input_settings(device=info["index"], samplerate=rate, channels=ch, dtype="int16")
                return rate, ch
            except Exception:  # noqa: BLE001 - PortAudioError / ValueError: try the next combination
                continue
    raise MicUnavailable(
        f"input device {info['name']!r} cannot be opened for 16-bit input at {' or '.join(map(str, rates))} Hz",
        {"device": info["name"]})


def _probe(sd: ModuleType, spec: str | int | None, wanted: int | None) -> tuple[dict[str, Any], int, int]:
    """Resolve ``spec`` and check it opens; re-initialise PortAudio once if the snapshot is stale
    (server restarted or started since, device plugged in). Caller holds _PA.lock."""
    try:
        info = _resolve(sd, spec)
        return (info, *_choose_format(sd, info, wanted))
    except MicUnavailable:
        if not _PA.reinit():  # other streams open: cannot re-scan without killing them
            raise
    info = _resolve(sd, spec)
    return (info, *_choose_format(sd, info, wanted))


def list_input_devices(refresh: bool = True) -> list[dict[str, Any]]:
    """Input devices as ``[{"index", "name", "default", "channels", "samplerate"}]``.

    ``refresh`` re-scans first (when no stream is open), so a server started after the daemon
    shows up. Raises MicUnavailable when PortAudio itself is missing.
    """
    sd = _PA.module()
    with _PA.lock:
        if refresh:
            _PA.reinit()
        default_in = sd.default.device[0]
        return [
            {
                "index": d["index"],
                "name": d["name"],
                "default": d["index"] == default_in,
                "channels": d["max_input_channels"],
                "samplerate": d["default_samplerate"],
                "hostapi": sd.query_hostapis(d["hostapi"])["name"],
            }
            for d in sd.query_devices()
            if d["max_input_channels"] > 0
        ]


def _close_with_timeout(stream: Any, timeout: float, device: str) -> bool:
    """Close a PortAudio stream on a helper thread; abandon it if it does not finish in time."""
    done = threading.Event()

    def run() -> None:
        try:
            stream.close(ignore_errors=True)
        except Exception as e:  # noqa: BLE001 - a dead server makes PortAudio complain; nothing to do about it
            log.debug("mic_close_error", device=device, error=str(e))
        finally:
            done.set()

    threading.Thread(target=run, name=f"mic-close-{device}", daemon=True).start()
    if done.wait(timeout):
        return True
    _PA.abandoned += 1
    log.error("mic_close_abandoned", device=device, timeout=timeout, abandoned_total=_PA.abandoned)
    return False


class _Throttle:
    """Say a thing at most once per ``every`` seconds (overflow warnings must not flood logs)."""

    def __init__(self, every: float = 5.0) -> None:
        self.every = every
        self._last = -1e9

    def ready(self) -> bool:
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            return True
        return False


# ---------------------------------------------------------------------------------------------
# One capture stream per device
# ---------------------------------------------------------------------------------------------


class _Capture:
    """Owns one PortAudio input stream and the pump/watchdog thread that fans its frames out."""

    def __init__(self, spec: str | int | None, name: str, cfg: dict[str, Any]) -> None:
        self.spec = spec  # what was asked for; reopened by this after a loss (indices may change)
        self.name = name
        self.cfg = cfg
        self.state = "starting"  # starting | capturing | device_lost | closed
        self.samplerate = 0
        self.channels = 0
        self._raw: queue.Queue[tuple[float, bytes]] = queue.Queue(maxsize=cfg["queue_frames"])
        self._subs: list[MicSource] = []
        self._subs_lock = threading.Lock()
        self._stream: Any = None
        self._resampler: Any = None
        self._pending = bytearray()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"mic-pump-{name}", daemon=True)
        # counters (read by describe(); ints written by one thread each, so no lock needed)
        self.overflows_portaudio = 0  # input_overflow flags from PortAudio
        self.overflows_queue = 0  # blocks dropped because the raw queue was full
        self.blocks = 0
        self.losses = 0
        self.restores = 0
        self.opens = 0
        self.opened_at = 0.0
        self.first_block_at = 0.0
        self._lost_at = 0.0
        self._overflow_warn = _Throttle()
        self._warned_total = 0
        self._next_silence = 0.0
        self._next_retry = 0.0

    # -- stream ------------------------------------------------------------------------------

    def _open(self) -> None:
        """Resolve the device again and start a stream (caller holds _PA.lock)."""
        sd = _PA.module()
        info, self.samplerate, self.channels = _probe(sd, self.spec, self.cfg["samplerate"])
        blocksize = max(1, self.samplerate * self.cfg["blocksize_ms"] // 1000)
        self._resampler = None
        if self.samplerate != SAMPLE_RATE:
            import soxr  # only needed when the device cannot do 16 kHz

            self._resampler = soxr.ResampleStream(self.samplerate, SAMPLE_RATE, 1, dtype="int16")
        self._pending.clear()
        try:
            stream = sd.RawInputStream(
                samplerate=self.samplerate, blocksize=blocksize, device=info["index"],
                channels=self.channels, dtype="int16", latency="low", callback=self._callback,
            )
            stream.start()
        except Exception as e:  # noqa: BLE001 - PortAudioError, or ALSA refusing the format at the last moment
            raise MicUnavailable(f"cannot open input device {self.name!r}: {e}",
                                 {"device": self.name}) from None
        self._stream = stream
        _PA.open_streams.add(id(stream))
        self.opens += 1
        self.opened_at = time.monotonic()
        self.first_block_at = 0.0
        log.info("mic_opened", device=self.name, index=info["index"], samplerate=self.samplerate,
                 channels=self.channels, blocksize=blocksize, resampling=self._resampler is not None)

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            _PA.open_streams.discard(id(stream))
            _close_with_timeout(stream, self.cfg["close_timeout"], self.name)
        # a block the callback queued just before the end must not leak into the next stream
        while True:
            try:
                self._raw.get_nowait()
            except queue.Empty:
                break

    def _callback(self, indata: Any, frames: int, time_info: Any, status: Any) -> None:
        # PortAudio's thread: copy and return, nothing that can block.
        if status and status.input_overflow:
            self.overflows_portaudio += 1
        try:
            self._raw.put_nowait((time.monotonic(), bytes(indata)))
        except queue.Full:
            self.overflows_queue += 1

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        with _PA.lock:
            self._open()
        self.state = "capturing"
        self._thread.start()

    def shutdown(self) -> None:
        """Stop the pump and close the stream; never blocks longer than ~close_timeout."""
        self.state = "closed"
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(self.cfg["close_timeout"] + 0.5)
        self._close_stream()

    def add(self, src: MicSource) -> None:
        with self._subs_lock:
            self._subs.append(src)

    def remove(self, src: MicSource) -> int:
        with self._subs_lock:
            if src in self._subs:
                self._subs.remove(src)
            return len(self._subs)

    def subscribers(self) -> list[MicSource]:
        with self._subs_lock:
            return list(self._subs)

    # -- pump / watchdog ---------------------------------------------------------------------

    def _run(self) -> None:
        last_block = time.monotonic()
        try:
            while not self._stop.is_set():
                if self.state == "device_lost":
                    self._lost_tick()
                    continue
                try:
                    t, raw = self._raw.get(timeout=0.05)
                except queue.Empty:
                    now = time.monotonic()
                    limit = self.cfg["stall_timeout" if self.first_block_at else "first_data_timeout"]
                    stream = self._stream
                    if stream is None or not stream.active:
                        self._lost("stream_inactive")
                    elif now - max(last_block, self.opened_at) > limit:  # opened_at: after a restore
                        self._lost("no_frames")
                    continue
                last_block = time.monotonic()
                if not self.first_block_at:
                    self.first_block_at = last_block
                self.blocks += 1
                self._convert(t, raw)
                self._warn_overflows()
        except Exception:
            log.exception("mic_pump_crashed", device=self.name)
            self.state = "closed"
            for src in self.subscribers():
                src._end()

    def _convert(self, t: float, raw: bytes) -> None:
        if self.channels == 1 and self._resampler is None:
            self._pending += raw
        else:
            x = np.frombuffer(raw, dtype=np.int16)
            if self.channels > 1:
                x = x.reshape(-1, self.channels).mean(axis=1).astype(np.int16)
            if self._resampler is not None:
                x = self._resampler.resample_chunk(x)
            self._pending += x.tobytes()
        while len(self._pending) >= FRAME_BYTES:
            frame = bytes(self._pending[:FRAME_BYTES])
            del self._pending[:FRAME_BYTES]
            self._fanout(t, frame)

    def _fanout(self, t: float, frame: bytes) -> None:
        for src in self.subscribers():
            src._push(t, frame)

    def _warn_overflows(self) -> None:
        total = self.overflows_portaudio + self.overflows_queue
        if total != self._warned_total and self._overflow_warn.ready():
            self._warned_total = total
            log.warning("mic_overflow", device=self.name, portaudio=self.overflows_portaudio,
                        queue_full=self.overflows_queue)

    def _lost(self, reason: str) -> None:
        self.state = "device_lost"
        self.losses += 1
        self._lost_at = time.monotonic()
        log.warning("mic_device_lost", device=self.name, reason=reason, losses=self.losses)
        self._close_stream()
        data = {"device": self.name, "reason": reason,
                "message": f"input device {self.name!r} stopped delivering audio ({reason}); "
                           "sending silence and retrying until it is back"}
        for src in self.subscribers():
            src._emit("device_lost", data)
        self._next_silence = time.monotonic()
        self._next_retry = time.monotonic() + self.cfg["retry_interval"]

    def _lost_tick(self) -> None:
        """While lost: real-time silence to every source, and reopen attempts. A reopened stream
        is on trial until its first block arrives (a stalled server opens fine and then delivers
        nothing), so ``device_restored`` means audio is really flowing again."""
        now = time.monotonic()
        if self._stream is not None:  # on trial
            try:
                t, raw = self._raw.get_nowait()
            except queue.Empty:
                if now - self.opened_at > self.cfg["first_data_timeout"]:
                    log.debug("mic_reopen_silent", device=self.name)
                    self._close_stream()
                    self._next_retry = time.monotonic() + self.cfg["retry_interval"]
            else:
                self._restored()
                self.first_block_at = time.monotonic()
                self.blocks += 1
                self._convert(t, raw)
                return
        elif now >= self._next_retry:
            if not self._try_reopen():
                self._next_retry = time.monotonic() + self.cfg["retry_interval"]
            now = time.monotonic()
        if now - self._next_silence > 0.2:  # fell behind (a slow retry): no burst of silence
            self._next_silence = now
        while self._next_silence <= now:
            self._fanout(now, SILENCE)
            self._next_silence += FRAME_S
        wake = self._next_silence if self._stream is not None else min(self._next_silence, self._next_retry)
        self._stop.wait(max(0.0, wake - time.monotonic()))

    def _try_reopen(self) -> bool:
        if self._stop.is_set():  # shutting down: never reopen behind shutdown()'s back
            return False
        with _PA.lock:
            # PortAudio must be re-initialised to see a restarted server (_probe does it when the
            # device does not answer; while another stream is open, only a plain reopen is tried).
            try:
                self._open()
            except MicUnavailable as e:
                log.debug("mic_reopen_failed", device=self.name, error=e.message)
                return False
            except Exception as e:  # noqa: BLE001 - whatever PortAudio throws, the pump must keep retrying
                log.debug("mic_reopen_failed", device=self.name, error=repr(e))
                return False
        if self._stop.is_set():
            self._close_stream()
            return False
        return True

    def _restored(self) -> None:
        downtime = round(time.monotonic() - self._lost_at, 3)
        self.state = "capturing"
        self.restores += 1
        log.info("mic_device_restored", device=self.name, downtime_s=downtime)
        data = {"device": self.name, "downtime": downtime}
        for src in self.subscribers():
            src._emit("device_restored", data)

    def describe(self) -> dict[str, Any]:
        first = self.first_block_at
        return {
            "device": self.name, "state": self.state, "samplerate": self.samplerate,
            "channels": self.channels, "blocksize_ms": self.cfg["blocksize_ms"],
            "sources": len(self.subscribers()),
            "overflows": self.overflows_portaudio + self.overflows_queue,
            "overflows_portaudio": self.overflows_portaudio, "overflows_queue": self.overflows_queue,
            "blocks": self.blocks, "opens": self.opens, "device_losses": self.losses,
            "restores": self.restores,
            "first_block_ms": round((first - self.opened_at) * 1000, 1) if first else None,
        }


# ---------------------------------------------------------------------------------------------
# What sessions see
# ---------------------------------------------------------------------------------------------


class MicSource:
    """One connection's view of a (shared) capture. Satisfies ``AudioSource``."""

    kind = "mic"

    def __init__(self, hub: MicHub, capture: _Capture, ctx: SourceContext, queue_frames: int) -> None:
        self._hub = hub
        self._capture = capture
        self._ctx = ctx
        self._q: queue.Queue[tuple[float, bytes | None]] = queue.Queue(maxsize=queue_frames)
        self._paused = False
        self._muted = False
        self._closed = threading.Event()
        self.dropped = 0  # frames dropped because this consumer fell a whole queue behind
        self.frames_out = 0
        self._delay_sum = 0.0
        self._delay_max = 0.0
        self._drop_warn = _Throttle()

    # called by the pump thread
    def _push(self, t: float, frame: bytes) -> None:
        if self._closed.is_set():
            return
        try:
            self._q.put_nowait((t, frame))
        except queue.Full:  # slow consumer: keep the newest audio, count what is thrown away
            with contextlib.suppress(queue.Empty):
                self._q.get_nowait()
            self.dropped += 1
            if self._drop_warn.ready():
                log.warning("mic_frames_dropped", connection=self._ctx.connection_id, dropped=self.dropped)
            try:
                self._q.put_nowait((t, frame))
            except queue.Full:
                self.dropped += 1

    def _emit(self, event_type: str, data: dict[str, Any]) -> None:
        if self._closed.is_set():
            return
        try:
            self._ctx.emit(event_type, dict(data))
        except Exception:  # a broken consumer must not kill the shared pump
            log.exception("mic_emit_failed", connection=self._ctx.connection_id, event=event_type)

    def _end(self) -> None:
        """The capture ended for good (pump crash): make frames() return."""
        self._closed.set()
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(queue.Full):  # when full, frames() sees _closed within 100 ms
            self._q.put_nowait((0.0, None))

    # the AudioSource contract
    def frames(self) -> Iterator[bytes]:
        """16 kHz mono s16le 20 ms frames until close(); silence while paused, muted or lost."""
        while not self._closed.is_set():
            try:
                t, frame = self._q.get(timeout=0.1)
            except queue.Empty:
                continue
            if frame is None:
                break
            delay = time.monotonic() - t
            self._delay_sum += delay
            self._delay_max = max(self._delay_max, delay)
            self.frames_out += 1
            yield SILENCE if (self._paused or self._muted) else frame

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    def mute(self, on: bool = True) -> None:
        self._muted = bool(on)

    @property
    def state(self) -> str:
        if self._closed.is_set():
            return "closed"
        if self._capture.state == "device_lost":
            return "device_lost"
        if self._paused:
            return "paused"
        return "muted" if self._muted else "capturing"

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._wake()
        self._hub._release(self._capture, self)

    def describe(self) -> dict[str, Any]:
        cap = self._capture
        n = self.frames_out
        return {
            "kind": self.kind, "device": cap.name, "state": self.state,
            "paused": self._paused, "muted": self._muted,
            "overflows": cap.overflows_portaudio + cap.overflows_queue, "dropped": self.dropped,
            "frames": n, "samplerate": SAMPLE_RATE, "device_samplerate": cap.samplerate,
            "device_channels": cap.channels, "shared_by": len(cap.subscribers()),
            "device_losses": cap.losses,
            # time from the PortAudio callback to frames() handing the frame over
            "queue_delay_ms": {"mean": round(self._delay_sum / n * 1000, 2) if n else None,
                               "max": round(self._delay_max * 1000, 2)},
        }


class MicHub:
    """The daemon's microphones: one capture per device, shared by every source opened on it."""

    def __init__(self, config: MicTable | dict[str, Any] | None = None) -> None:
        # A dict (tests, benchmarks) is decoded as the config check decoded the daemon's [mic] table.
        table = config if isinstance(config, MicTable) else msgspec.convert(config or {}, MicTable, strict=True)
        self.config: dict[str, Any] = msgspec.structs.asdict(table)
        self._captures: dict[str, _Capture] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._shutdowns: list[threading.Thread] = []  # captures closing in the background

    def _spec(self, device: str | int | None) -> str | int | None:
        spec = self.config["device"] if device is None else device
        if isinstance(spec, str) and spec.strip().isdigit():
            return int(spec)
        return spec if spec != "" else None

    def check(self, device: str | int | None = None) -> None:
        """Raise MicUnavailable (a SourceError, code ``device_unavailable``) at once when the
        device cannot be used; the message names what is missing and how to fix it."""
        self._check(self._spec(device))

    def _check(self, spec: str | int | None) -> dict[str, Any]:
        sd = _PA.module()
        with _PA.lock:
            info, _, _ = _probe(sd, spec, self.config["samplerate"])
        cap = self._captures.get(info["name"])
        if cap is not None and cap.state == "device_lost":
            raise MicUnavailable(
                f"input device {info['name']!r} was lost and is not back yet "
                f"(audio server gone or device unplugged{_server_hint()})", {"device": info["name"]})
        return info

    def open(self, ctx: SourceContext, device: str | int | None = None) -> MicSource:
        """A new source on ``device`` (default: the hub's configured device, else the system default).
        Joins the running capture of that device if there is one."""
        if self._closed:
            raise MicUnavailable("the microphone hub is closed")
        spec = self._spec(device)
        with self._lock:
            key = self._key(spec)  # None: no running capture of this spec
            cap = self._captures.get(key) if key is not None else None
            if cap is not None and cap.state == "device_lost":
                raise MicUnavailable(
                    f"input device {cap.name!r} was lost and is not back yet "
                    f"(audio server gone or device unplugged{_server_hint()})", {"device": cap.name})
            if cap is None or cap.state == "closed":
                with _PA.lock:  # resolve, probe, open: one consistent view of PortAudio
                    info, _, _ = _probe(_PA.module(), spec, self.config["samplerate"])
                    cap = self._captures.get(info["name"])
                    if cap is None or cap.state == "closed":
                        cap = _Capture(spec, info["name"], self.config)
                        cap.start()
                        self._captures[cap.name] = cap
            src = MicSource(self, cap, ctx, self.config["queue_frames"])
            cap.add(src)
        log.info("mic_source_opened", connection=ctx.connection_id, device=cap.name,
                 shared_by=len(cap.subscribers()))
        return src

    def _key(self, spec: str | int | None) -> str | None:
        """The running capture's name for a spec, without touching PortAudio when possible."""
        for name, cap in self._captures.items():
            if cap.spec == spec:
                return name
        return None

    def _release(self, cap: _Capture, src: MicSource) -> None:
        with self._lock:
            left = cap.remove(src)
            if left == 0 and self._captures.get(cap.name) is cap:
                del self._captures[cap.name]
            else:
                return
        # Closing may take up to close_timeout (or be abandoned): never on the caller's thread.
        th = threading.Thread(target=cap.shutdown, name=f"mic-shutdown-{cap.name}", daemon=True)
        th.start()
        with self._lock:
            self._shutdowns = [t for t in self._shutdowns if t.is_alive()] + [th]

    def describe(self) -> dict[str, Any]:
        with self._lock:
            caps = list(self._captures.values())
        return {"captures": [c.describe() for c in caps], "abandoned_closes": _PA.abandoned}

    def close(self) -> None:
        """Close every source and capture (each stream close bounded by close_timeout)."""
        self._closed = True
        with self._lock:
            caps = list(self._captures.values())
            self._captures.clear()
        for cap in caps:
            for src in cap.subscribers():
                src._end()
        threads = [threading.Thread(target=c.shutdown, daemon=True) for c in caps]
        for th in threads:
            th.start()
        with self._lock:
            threads += self._shutdowns
        for th in threads:
            th.join(self.config["close_timeout"] + 1.0)
