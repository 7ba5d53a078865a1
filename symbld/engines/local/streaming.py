"""The streaming layer: VAD endpointing, interim and final decodes, event emission.

Audio arrives through :meth:`LocalStream.feed` on the caller's thread, which only runs the VAD
and buffers (cheap). Decodes run on the engine's shared :class:`DecodePool`:

- **finals** (beam search, word timings) go through a per-stream chain, one at a time, so a
  stream's events come out in utterance order; each is followed by its ``message_response``;
- **interims** (greedy re-decode of the open utterance) are submitted only when a pool worker
  is idle and the stream has nothing else in flight: when the machine is behind they are
  skipped, never queued.

Long speech without a pause is cut: a final decode of the first part commits only the words
that end well before the audio's end (by Whisper's word timings) and the rest stays open under
a new utterance id, so later finals never repeat or contradict committed text.

All times count fed samples (not the wall clock): offset 0 is the first sample fed.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import structlog

from symbld.core import shapes
from symbld.engines.base import Emit, StreamConfig
from symbld.engines.local.recognizer import SAMPLE_RATE, Recognition, Recognizer
from symbld.engines.local.vad import FRAME, SileroModel

log = structlog.get_logger(__name__)

_FINAL, _INTERIM = 0, 1  # pool priorities: finals first


@dataclass
class StreamSettings:
    """Endpointing and decoding knobs (engine config keys of the same names)."""

    vad_threshold: float = 0.5  # a frame at or above this starts/continues speech
    vad_neg_threshold: float = 0.35  # once speaking, frames above this still count as voice
    endpoint_silence_ms: int = 350  # silence that closes an utterance
    preroll_ms: int = 300  # audio kept before the first speech frame
    postroll_ms: int = 100  # audio kept after the last speech frame
    min_speech_ms: int = 250  # shorter blips are dropped without decoding
    interims: bool = True
    interim_interval_s: float = 0.8  # audio time between interim re-decodes
    min_interim_s: float = 0.6  # no interim before the utterance has this much audio
    max_utterance_s: float = 15.0  # longer speech is cut at a word boundary
    cut_guard_s: float = 1.5  # words ending this close to the cut point stay open

    @classmethod
    def from_config(cls, *configs: dict[str, Any]) -> StreamSettings:
        names = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        for cfg in configs:
            for k, v in (cfg or {}).items():
                if k in names:
                    values[k] = v
        s = cls(**values)
        s.interims = bool(s.interims)
        return s


class DecodePool:
    """A fixed set of decode threads shared by all streams, with a priority queue."""

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self._q: queue.PriorityQueue[tuple[int, int, Callable[[], None] | None]] = queue.PriorityQueue()
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._idle = self.workers
        self._queued = 0
        self._optional = 0  # optional jobs queued or running
        self._threads = [
            threading.Thread(target=self._run, name=f"symbld-decode-{i}", daemon=True) for i in range(self.workers)
        ]
        for t in self._threads:
            t.start()

    def submit(self, job: Callable[[], None], priority: int = _FINAL) -> None:
        with self._lock:
            self._queued += 1
        self._q.put((priority, next(self._seq), job))

    def try_submit_idle(self, job: Callable[[], None], priority: int = _INTERIM) -> bool:
        """Submit only if a worker would start it at once; False means "busy, skip it".

        Such optional jobs (interims) never take the last free worker of a multi-worker pool,
        so a final that comes due finds a worker without waiting behind an interim.
        """
        with self._lock:
            if self._idle - self._queued <= 0 or self._optional >= max(1, self.workers - 1):
                return False
            self._queued += 1
            self._optional += 1

        def run() -> None:
            try:
                job()
            finally:
                with self._lock:
                    self._optional -= 1

        self._q.put((priority, next(self._seq), run))
        return True

    def _run(self) -> None:
        while True:
            _, _, job = self._q.get()
            if job is None:
                return
            with self._lock:
                self._queued -= 1
                self._idle -= 1
            try:
                job()
            except Exception:
                log.exception("decode job failed")
            finally:
                with self._lock:
                    self._idle += 1

    def close(self, timeout: float = 5.0) -> None:
        for _ in self._threads:
            self._q.put((99, next(self._seq), None))
        for t in self._threads:
            t.join(timeout)


class _Utterance:
    """The open (or closing) stretch of speech. Guarded by the stream's lock."""

    def __init__(self, start_sample: int, frames: list[np.ndarray]) -> None:
        self.id = shapes.new_id()
        self.start_sample = start_sample  # absolute sample of chunks[0][0]
        self.chunks = frames
        self.length = sum(len(f) for f in frames)
        self.committed = 0  # samples (from start_sample) already emitted as finals by a cut
        self.speech_frames = 0
        self.silence_run = 0
        self.last_speech_end = self.length  # relative sample after the last speech frame
        self.last_interim_at = 0  # relative sample where the last interim was scheduled
        self.interim_emitted = False  # for the current id
        self.cut_pending = False
        self.next_cut_check = 0
        self.end: int | None = None  # relative end once closed
        self.finalised: set[str] = set()  # ids whose final is out (or decided): no more interims

    def append(self, frame: np.ndarray) -> None:
        self.chunks.append(frame)
        self.length += len(frame)

    def rebase(self) -> None:
        """Forget the committed audio so a long monologue does not pile up in memory."""
        n = self.committed
        if n <= 0:
            return
        self.chunks = [np.concatenate(self.chunks)[n:]]
        self.start_sample += n
        self.length -= n
        self.last_speech_end = max(0, self.last_speech_end - n)
        self.next_cut_check = max(0, self.next_cut_check - n)
        if self.end is not None:
            self.end = max(0, self.end - n)
        self.committed = 0

    def audio(self, start: int, end: int) -> np.ndarray:
        if len(self.chunks) > 1:
            self.chunks = [np.concatenate(self.chunks)]
        return self.chunks[0][start:end].copy()


class LocalStream:
    """One connection's audio → Symbl events. Created by :meth:`LocalEngine.open`."""

    def __init__(
        self,
        recognizer: Recognizer,
        vad: SileroModel,
        pool: DecodePool,
        settings: StreamSettings,
        config: StreamConfig,
        emit: Emit,
        on_close: Callable[[LocalStream], None] | None = None,
    ) -> None:
        self.recognizer = recognizer
        self.pool = pool
        self.settings = settings
        self.config = config
        self._emit_cb = emit
        self._on_close = on_close
        self._vad = vad.new_state()
        # Absolute times are started_at + offset; a config without one starts now.
        self.started_at = config.started_at or time.time()
        self.user = shapes.user_of(config.speaker, config.connection_id)
        self.hotwords = [w for w in config.custom_vocabulary if w and w.strip()] or None

        ms = SAMPLE_RATE // 1000
        self._hangover_frames = max(1, settings.endpoint_silence_ms * ms // FRAME)
        self._preroll: deque[np.ndarray] = deque(maxlen=max(1, settings.preroll_ms * ms // FRAME + 1))
        self._postroll = settings.postroll_ms * ms
        self._min_speech_frames = max(1, settings.min_speech_ms * ms // FRAME)

        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._emit_lock = threading.Lock()  # keeps check-then-emit atomic and events ordered
        self._buf = bytearray()
        self._samples = 0  # samples consumed by the VAD framing
        self._utt: _Utterance | None = None
        self._finals: deque[tuple[_Utterance, Callable[[], None]]] = deque()
        self._final_utts: list[_Utterance] = []  # utterance of every queued or running final
        self._final_running = False
        self._interim_running = False
        self._pending = 0  # final and interim jobs queued or running
        self._message_seq = 0
        self._finishing = False
        self._closed = False
        self._degraded = 0  # flow control level (degrade())

    # ---- audio side (caller's thread) -------------------------------------------------------

    def feed(self, pcm: bytes) -> None:
        """Accept 16 kHz mono s16le; runs the VAD, never waits for a decode."""
        with self._lock:
            if self._closed or self._finishing:
                return
            self._buf += pcm
            n = len(self._buf) // (2 * FRAME)
            if n == 0:
                return
            size = n * 2 * FRAME
            data = np.frombuffer(bytes(self._buf[:size]), dtype="<i2").astype(np.float32) / 32768.0
            del self._buf[:size]
            for i in range(n):
                self._on_frame(data[i * FRAME : (i + 1) * FRAME])
            self._maybe_interim()

    def _on_frame(self, frame: np.ndarray) -> None:
        s = self.settings
        p = self._vad(frame)
        self._samples += FRAME
        utt = self._utt
        if utt is None:
            self._preroll.append(frame)
            if p >= s.vad_threshold:
                frames = list(self._preroll)
                self._preroll.clear()
                utt = _Utterance(self._samples - FRAME * len(frames), frames)
                utt.speech_frames = 1
                self._utt = utt
            return
        utt.append(frame)
        if p >= s.vad_neg_threshold:
            utt.silence_run = 0
            utt.last_speech_end = utt.length
            if p >= s.vad_threshold:
                utt.speech_frames += 1
        else:
            utt.silence_run += 1
        if utt.silence_run >= self._hangover_frames:
            self._close_utterance(utt)
        elif (
            not utt.cut_pending
            and utt.length - utt.committed >= s.max_utterance_s * SAMPLE_RATE
            and utt.length >= utt.next_cut_check
        ):
            utt.cut_pending = True
            cut_end = utt.length
            self._enqueue_final(utt, lambda: self._run_cut(utt, cut_end))

    def _close_utterance(self, utt: _Utterance) -> None:
        self._utt = None
        utt.end = min(utt.length, utt.last_speech_end + self._postroll)
        self._preroll.clear()
        if utt.speech_frames < self._min_speech_frames and not utt.interim_emitted and utt.committed == 0:
            return  # a click or a breath: nothing to say
        self._enqueue_final(utt, lambda: self._run_final(utt))

    def _enqueue_final(self, utt: _Utterance, job: Callable[[], None]) -> None:
        if utt not in self._final_utts:
            utt.queued_at = time.monotonic()  # for backlog(): how long its final has been waiting
        self._pending += 1
        self._final_utts.append(utt)
        self._finals.append((utt, job))
        self._pump_finals()

    def _earlier_final_pending(self, utt: _Utterance) -> bool:
        """True while a final of another (earlier) utterance has not been emitted (lock held)."""
        return any(u is not utt for u in self._final_utts)

    def _pump_finals(self) -> None:
        """Submit the stream's next final if none is running (lock held)."""
        if self._final_running or not self._finals or self._closed:
            return
        utt, job = self._finals.popleft()
        self._final_running = True

        def run() -> None:
            try:
                job()
            finally:
                with self._lock:
                    self._final_utts.remove(utt)
                    self._final_running = False
                    self._pending -= 1
                    self._pump_finals()
                    self._idle.notify_all()

        self.pool.submit(run, _FINAL)

    def _maybe_interim(self) -> None:
        s = self.settings
        utt = self._utt
        if not s.interims or self._degraded or utt is None or utt.cut_pending or self._interim_running:
            return
        if self._earlier_final_pending(utt):  # behind: finals first, and in order
            return
        if utt.length - utt.committed < s.min_interim_s * SAMPLE_RATE:
            return
        if utt.last_interim_at and utt.length - utt.last_interim_at < s.interim_interval_s * SAMPLE_RATE:
            return
        if utt.speech_frames < self._min_speech_frames:
            return
        uid = utt.id

        def run() -> None:
            try:
                self._run_interim(utt, uid)
            finally:
                with self._lock:
                    self._interim_running = False
                    self._pending -= 1
                    self._idle.notify_all()

        if self.pool.try_submit_idle(run, _INTERIM):
            self._interim_running = True
            self._pending += 1
            utt.last_interim_at = utt.length

    # ---- decode side (pool threads) ---------------------------------------------------------

    def _run_interim(self, utt: _Utterance, uid: str) -> None:
        with self._lock:
            if self._closed or utt.id != uid or utt.end is not None or utt.cut_pending:
                return  # its final is already on the way: save the CPU
            start, end = utt.committed, utt.length
            audio = utt.audio(start, end)
            offset = (utt.start_sample + start) / SAMPLE_RATE
        rec = self.recognizer.transcribe(audio, final=False, hotwords=self.hotwords)
        if not rec.text:
            with self._lock:
                if utt.id == uid:
                    utt.last_interim_at = 0  # nothing heard yet: try again with the next audio
            return
        with self._emit_lock:
            with self._lock:
                # The utterance may have ended meanwhile: its interim still goes out (a useful
                # early result) unless the final already did. The final cannot overtake us now:
                # it needs the emit lock we hold. An earlier utterance's final still to come
                # would be overtaken, so then the interim is dropped.
                if self._closed or uid in utt.finalised or self._earlier_final_pending(utt):
                    return
                utt.interim_emitted = True
            self._emit_locked(
                "transcript_response",
                shapes.transcript_response(
                    utterance_id=uid,
                    text=rec.text,
                    is_final=False,
                    started_at=self.started_at,
                    offset=offset,
                    length=len(audio) / SAMPLE_RATE,
                    user=self.user,
                ),
            )

    def _run_final(self, utt: _Utterance) -> None:
        with self._lock:
            if self._closed:
                return
            start, end = utt.committed, utt.length if utt.end is None else utt.end
            audio = utt.audio(start, end)
            offset = (utt.start_sample + start) / SAMPLE_RATE
            uid = utt.id
        rec = self.recognizer.transcribe(audio, final=True, hotwords=self.hotwords) if len(audio) else Recognition("")
        with self._emit_lock:
            with self._lock:
                had_interim = utt.interim_emitted
                utt.finalised.add(uid)
            # An utterance with interims always gets its final, even an empty one.
            if rec.text or had_interim:
                self._emit_final(uid, rec, offset, len(audio) / SAMPLE_RATE)

    def _run_cut(self, utt: _Utterance, cut_end: int) -> None:
        """Final-decode the first part of a long utterance and commit its settled words."""
        with self._lock:
            if self._closed:
                return
            start = utt.committed
            audio = utt.audio(start, cut_end)
            offset = (utt.start_sample + start) / SAMPLE_RATE
            uid = utt.id
        rec = self.recognizer.transcribe(audio, final=True, hotwords=self.hotwords)
        seconds = len(audio) / SAMPLE_RATE
        limit = seconds - self.settings.cut_guard_s
        keep = []
        for w in rec.words:
            if w.end > limit:
                break
            keep.append(w)
        if keep:
            nxt = rec.words[len(keep)] if len(keep) < len(rec.words) else None
            cut_t = (keep[-1].end + nxt.start) / 2 if nxt and nxt.start > keep[-1].end else keep[-1].end
        elif not rec.words:
            cut_t = max(0.0, limit)  # no speech recognised: let the audio go without a result
        else:
            cut_t = 0.0  # one long word run past the guard: wait for more audio
        # The emit lock is taken first: no interim of the remainder (new id) may come out
        # before the committed part's final.
        with self._emit_lock:
            self._commit_cut(utt, uid, rec, start, cut_t, keep, offset)

    def _commit_cut(
        self, utt: _Utterance, uid: str, rec: Recognition, start: int, cut_t: float, keep: list, offset: float
    ) -> None:
        with self._lock:
            had_interim = utt.interim_emitted
            utt.cut_pending = False
            advance = int(cut_t * SAMPLE_RATE)
            if advance <= 0:
                utt.next_cut_check = utt.length + SAMPLE_RATE * 2
                return
            utt.finalised.add(uid)
            utt.committed = start + advance
            utt.rebase()
            utt.id = shapes.new_id()
            utt.interim_emitted = False
            utt.last_interim_at = 0
        if keep or had_interim:  # an utterance with interims always gets its final, even empty
            text = "".join(w.text for w in keep).strip()
            self._emit_final(uid, Recognition(text, keep, rec.avg_logprob, rec.no_speech_prob), offset, cut_t)

    def _emit_final(self, uid: str, rec: Recognition, offset: float, length: float) -> None:
        """Emit an utterance's final and its message_response. Caller holds the emit lock."""
        words = _monotonic(
            [shapes.TimedWord(w.text.strip(), offset + w.start, offset + w.end) for w in rec.words if w.text.strip()]
        )
        if self._closed:
            return
        self._emit_locked(
            "transcript_response",
            shapes.transcript_response(
                utterance_id=uid,
                text=rec.text,
                is_final=True,
                started_at=self.started_at,
                offset=offset,
                length=length,
                user=self.user,
            ),
        )
        if not rec.text:
            return
        messages = []
        sentences = shapes.split_sentences(words) if words else []
        for sentence in sentences:
            text = " ".join(w.word for w in sentence)
            messages.append(
                shapes.message(
                    text=text,
                    words=sentence,
                    started_at=self.started_at,
                    offset=sentence[0].start,
                    length=sentence[-1].end - sentence[0].start,
                    user=self.user,
                    timezone_offset_minutes=self.config.timezone_offset_minutes,
                )
            )
        if not sentences:
            messages.append(
                shapes.message(
                    text=rec.text,
                    words=[],
                    started_at=self.started_at,
                    offset=offset,
                    length=length,
                    user=self.user,
                    timezone_offset_minutes=self.config.timezone_offset_minutes,
                )
            )
        self._emit_locked("message_response", shapes.message_response(messages, self._message_seq))
        self._message_seq += 1

    def _emit_locked(self, event_type: str, data: dict[str, Any]) -> None:
        """Call ``emit`` holding only the emit lock (never the stream lock: feed must not wait)."""
        if self._closed:
            return
        try:
            self._emit_cb(event_type, data)
        except Exception:
            log.exception("emit failed", event_type=event_type, connection_id=self.config.connection_id)

    # ---- lifecycle --------------------------------------------------------------------------

    def finish(self, timeout: float = 120.0) -> None:
        """Close the open utterance, wait until every pending decode has emitted, return."""
        with self._lock:
            if self._closed:
                return
            self._finishing = True
            utt = self._utt
            if utt is not None:
                n = len(self._buf) // 2
                if n:  # the last partial frame belongs to the utterance too
                    tail = np.frombuffer(bytes(self._buf[: n * 2]), dtype="<i2").astype(np.float32) / 32768.0
                    utt.append(tail)
                    if utt.silence_run == 0:
                        utt.last_speech_end = utt.length
                self._buf.clear()
                self._close_utterance(utt)
            if not self._idle.wait_for(lambda: self._pending == 0 or self._closed, timeout):
                log.warning(
                    "finish timed out with decodes pending",
                    pending=self._pending,
                    connection_id=self.config.connection_id,
                )

    def backlog(self) -> dict[str, Any]:
        """How far behind decoding is: finals not yet emitted, and how long the oldest has waited
        since its utterance ended (about one decode when keeping up; growing when not)."""
        with self._lock:
            now = time.monotonic()
            oldest = min((getattr(u, "queued_at", now) for u in self._final_utts), default=now)
            # Audio waiting for a final decode (flow control bounds this; symbld.core.flow).
            queued = sum((u.length if u.end is None else u.end) - u.committed for u in set(self._final_utts))
            return {"pendingFinals": len(self._final_utts), "behindSeconds": round(now - oldest, 2),
                    "queuedSeconds": round(queued / SAMPLE_RATE, 2), "degraded": self._degraded}

    def degrade(self, level: int) -> None:
        """Flow control (symbld.core.flow): level 1+ skips interims so the decoder does only finals."""
        self._degraded = level

    def close(self) -> None:
        """Stop at once: queued finals are dropped, running decodes emit nothing. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._pending -= len(self._finals)
            for utt, _ in self._finals:
                self._final_utts.remove(utt)
            self._finals.clear()
            self._utt = None
            self._idle.notify_all()
        if self._on_close:
            self._on_close(self)


def _monotonic(words: list[shapes.TimedWord]) -> list[shapes.TimedWord]:
    """Whisper's word times can overlap by a few ms; make them non-decreasing."""
    out: list[shapes.TimedWord] = []
    prev = 0.0
    for w in words:
        start = max(w.start, prev)
        end = max(w.end, start)
        out.append(shapes.TimedWord(w.word, start, end))
        prev = end
    return out
