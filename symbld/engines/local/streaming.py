"""The streaming layer: VAD endpointing, interim and final decodes, event emission.

Audio arrives through :meth:`LocalStream.feed` on the caller's thread, which only runs the VAD
and buffers (cheap). Decodes run on the engine's shared :class:`DecodePool`:

- **finals** (beam search, word timings) go through a per-stream chain, one at a time, so a
  stream's events come out in utterance order; each is followed by its ``message_response``;
- **interims** (greedy re-decode of the open utterance) are submitted only when a pool worker
  is idle and the stream has nothing else in flight: when the machine is behind they are
  skipped, never queued.

- a **speculative final** starts as soon as the silence begins (``postroll_ms`` of it) and is
  published when the endpoint is confirmed, or discarded if speech resumes first: the endpoint
  wait and the final decode overlap instead of adding up.

Long speech without a pause is cut at the frame of lowest voice probability in its last seconds
(a breath between words), so no word is split; the rest opens a new utterance.
Each final decode is given the connection's previous final as its prompt (context across a
pause that split a sentence).

All times count fed samples (not the wall clock): offset 0 is the first sample fed.
"""

from __future__ import annotations

import itertools
import math
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec
import numpy as np
import structlog

from symbld import languages, shapes
from symbld.engines.base import Emit, EngineError, StreamConfig
from symbld.engines.local import trace
from symbld.engines.local.recognizer import (
    HALLUCINATIONS,
    SAMPLE_RATE,
    DecodeCancelled,
    Recognition,
    Recognizer,
    Word,
    _norm,
)
from symbld.engines.local.turn import WINDOW, TurnJudge
from symbld.engines.local.vad import FRAME, SileroModel

log = structlog.get_logger(__name__)

_SPECULATIVE, _FINAL, _INTERIM = -1, 0, 1  # pool priorities: speculative finals start at once
# Interims yield to finals by the pool's recent load (workers busy, averaged over _LOAD_TAU_S): a new
# interim starts only while finals + interims kept less than (workers - _INTERIM_HEADROOM) busy, so
# finals always find room and interims get what finals leave (bench/bench_stream_cpu.py: an interim
# costs 0.2 CPU-s, 80 % of a final, and a speaking stream asks for one every 0.8 s).
_LOAD_TAU_S = 3.0
_INTERIM_HEADROOM = 0.5
_LAG_WINDOW_S = 0.1  # interims asked for within this long compete: the stream most behind goes first
_PACK_GAP = SAMPLE_RATE // 2  # silence between packed utterances
# Decode scheduling of finals against interims (issue 27; bench/bench_latency.py --schedule compares them in one
# run). "retry": a speculative final refused for want of a free worker is asked again at every silence frame until
# the endpoint, instead of once; "hold": no interim starts while a stream's final is due (its speech paused) and has
# no worker yet; "spare": an interim never takes the last free worker. SYMBLD_SCHEDULE lists the ones on (default
# "retry,hold,spare"; "baseline" for none): for A/B runs only.
# "cancel": a decode stops before its next native pass (encoder, beam search, word alignment) once its result is not
# wanted: a speculative final whose speech resumed, an interim whose final is out, or whose utterance closed while
# a final waits for a worker (bench/bench_stream_cpu.py counts them).
SCHEDULE = frozenset(os.environ.get("SYMBLD_SCHEDULE", "retry,hold,spare,cancel").split(",")) - {"baseline", ""}
# languageCode auto: how much surer (mean log probability per token) a decode in another language
# must be than one in the conversation's language for an unclear utterance to switch.
_SWITCH_LOGPROB_MARGIN = 0.2


Seconds = Annotated[float, msgspec.Meta(gt=0)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]
Millis = Annotated[int, msgspec.Meta(ge=0)]
Probability = Annotated[float, msgspec.Meta(ge=0, le=1)]


class StreamSettings(msgspec.Struct, kw_only=True):
    """Endpointing and decoding knobs: the [engine.local] keys of the same names, declared (the config check
    decodes the table into this, so a wrong type or a value out of range stops the daemon naming the key)."""

    vad_threshold: Probability = 0.5  # a frame at or above this starts/continues speech
    vad_neg_threshold: Probability = 0.35  # once speaking, frames above this still count as voice
    endpoint_silence_ms: Annotated[int, msgspec.Meta(ge=1)] = 350  # silence that closes an utterance
    # Audio kept before the first speech frame. Silero fires 0.2-0.3 s into speech, and with a
    # 16 s encoder window Whisper misheard words after less than 0.5 s of lead-in ("And" lost,
    # "clubs" as "close"): 1 s leaves about 0.75 s before the true onset.
    preroll_ms: Millis = 1000
    postroll_ms: Millis = 100  # audio kept after the last speech frame
    min_speech_ms: Millis = 250  # shorter blips are decoded, and kept only if the decode is confident
    min_short_probability: Probability = 0.6  # mean word probability a short blip's decode needs
    interims: bool = True
    interim_interval_s: Seconds = 0.8  # audio time between interim re-decodes
    min_interim_s: NonNegative = 0.6  # no interim before the utterance has this much audio
    max_utterance_s: Seconds = 20.0  # longer speech is cut at a low point of voice probability
    cut_search_s: Seconds = 5.0  # ... searched for in the last seconds before max_utterance_s
    speculative: bool = True  # start the final decode when the silence begins
    prompt_max_gap_s: NonNegative = 0.8  # previous final as prompt only across a pause this short
    pack_finals: bool = True  # finals queued behind each other share one decode window
    # ... of at most this much audio: one 16 s encoder window (7 ms of encoder per second of audio,
    # against 16 ms/s for a 30 s window; a 28 s pack ran slower than the plain model).
    pack_window_s: Seconds = 15.0
    # End of turn: "fixed" closes after endpoint_silence_ms; "semantic" asks the turn model (extra
    # symbld[turn]) at a short pause and closes at once when it judges the turn complete, else after
    # turn_max_silence_ms; "auto" is semantic when the extra is installed, else fixed. The default stays
    # fixed until the whole suite has run with semantic (the live tests' pauses were sized for 350 ms).
    end_of_turn: Literal["auto", "fixed", "semantic"] = "fixed"
    turn_pause_ms: Annotated[int, msgspec.Meta(ge=1)] = 160  # the pause at which the turn model judges
    turn_threshold: Probability = 0.5  # P(complete) at or above this ends the turn
    turn_max_silence_ms: Annotated[int, msgspec.Meta(ge=1)] = 1000  # a turn judged incomplete closes after this
    turn_resume_window_s: NonNegative = 1.0  # speech this soon after an end_of_turn publishes turn_resumed
    # languageCode "auto": an utterance leaves the conversation's language only when Whisper gives
    # another language at least this probability (a short or unclear utterance keeps to it).
    language_switch_probability: Probability = 0.7

    @classmethod
    def from_config(cls, table: dict[str, Any], **overrides: Any) -> StreamSettings:
        """The stream keys of an [engine.local] table (the engine's own keys beside them are the engine's), with a
        connection's overrides (``end_of_turn``): decoded as the config check decoded the table."""
        try:
            return msgspec.convert({**table, **overrides}, cls, strict=True)
        except msgspec.ValidationError as e:
            raise EngineError(f"[engine.local] {e}", {"field": str(e).rpartition("$.")[2].rstrip("`")},
                              code="bad_request") from None


class DecodePool:
    """A fixed set of decode threads shared by all streams, with a priority queue."""

    def __init__(self, workers: int, load_tau_s: float = _LOAD_TAU_S, lag_window_s: float = _LAG_WINDOW_S,
                 clock: Callable[[], float] = time.monotonic, hold: bool | None = None,
                 spare: bool | None = None) -> None:
        self.workers = max(1, workers)
        self.load_tau_s, self.lag_window_s, self._clock = load_tau_s, lag_window_s, clock
        self._q: queue.PriorityQueue[tuple[int, int, Callable[[], None] | None]] = queue.PriorityQueue()
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._idle = self.workers
        self._queued = 0
        self._queued_finals = 0  # final and speculative jobs queued, not yet started
        self._optional = 0  # optional jobs queued or running
        self._busy = {"final": 0, "optional": 0}  # workers running each kind of job
        self._load = {"final": 0.0, "optional": 0.0}  # ... averaged over the last _LOAD_TAU_S
        self._load_at = clock()
        self._offers: dict[object, tuple[float, float]] = {}  # interim asks: stream -> (lag s, when)
        self.hold = "hold" in SCHEDULE if hold is None else hold  # no interim while a final is due
        self.spare = "spare" in SCHEDULE if spare is None else spare  # an interim never takes the last free worker
        self._due: set[object] = set()  # streams whose final is due (speech paused) and has no worker yet
        self._threads = [
            threading.Thread(target=self._run, name=f"symbld-decode-{i}", daemon=True) for i in range(self.workers)
        ]
        self._emits: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._threads.append(threading.Thread(target=self._run_emits, name="symbld-emit", daemon=True))
        for t in self._threads:
            t.start()

    def submit(self, job: Callable[[], None], priority: int = _FINAL) -> None:
        with self._lock:
            self._queued += 1
            self._queued_finals += priority < _INTERIM
        self._q.put((priority, next(self._seq), job))

    def finals_waiting(self) -> int:
        """Finals queued for a worker and not started: a running interim that is no longer worth much
        (its utterance closed) gives its worker up to them."""
        return self._queued_finals  # one int read: no lock needed for a hint

    def submit_emit(self, job: Callable[[], None]) -> None:
        """A job that decodes nothing (a speculative final's publish): its own thread, so it never
        waits behind a running decode of another stream."""
        self._emits.put(job)

    def _run_emits(self) -> None:
        while (job := self._emits.get()) is not None:
            try:
                job()
            except Exception:
                log.exception("emit job failed")

    def _account(self) -> None:
        """Bring the load averages up to now (lock held; before any change of ``_busy``)."""
        now = self._clock()
        a = 1.0 - math.exp(-(now - self._load_at) / self.load_tau_s)
        self._load_at = now
        for kind, busy in self._busy.items():
            self._load[kind] += a * (busy - self._load[kind])

    def load(self) -> dict[str, float]:
        """Workers busy with finals and with optional jobs, on average over the last seconds."""
        with self._lock:
            self._account()
            return dict(self._load)

    def running(self) -> dict[str, int]:
        """Workers busy with finals and with optional jobs now."""
        with self._lock:
            return dict(self._busy)

    def final_due(self, key: object, due: bool) -> None:
        """A stream's speech paused (``due``: its final may be wanted within a fraction of a second), or its
        final got a worker, or the speech resumed (not due). While any final is due, no interim starts: an
        interim holds its worker 0.2-0.5 s and cannot be stopped, so it would keep that final waiting."""
        with self._lock:
            if due:
                self._due.add(key)
            else:
                self._due.discard(key)

    def _most_behind(self, key: object, lag: float) -> bool:
        """Whether ``key``'s interim is the most behind of those asked for just now (lock held)."""
        now = self._clock()
        self._offers[key] = (lag, now)
        for k in [k for k, (_, at) in self._offers.items() if now - at > self.lag_window_s]:
            del self._offers[k]
        return lag >= max(v for v, _ in self._offers.values())

    def try_submit_idle(self, job: Callable[[], None], priority: int = _INTERIM, *, key: object = None,
                        lag: float = 0.0) -> bool:
        """Submit only if a worker would start it at once; False means "busy, skip it".

        Such optional jobs (interims) never take the last free worker of a multi-worker pool,
        so a final that comes due finds a worker without waiting behind an interim; they start only
        while the recent load leaves room (finals first), and among streams asking at once (``key``,
        with ``lag``: seconds of audio since its last interim) the one most behind goes first.
        """
        with self._lock:
            # Every ask is recorded, also a refused one: when a worker frees, the stream most behind takes it.
            if key is not None and not self._most_behind(key, lag):
                return False
            if self._idle - self._queued <= 0 or self._optional >= max(1, self.workers - 1):
                return False
            if self.hold and self._due:
                return False
            if self.spare and self.workers > 1 and self._idle - self._queued < 2:
                return False  # the last free worker stays free for the next final
            self._account()
            if self._load["final"] + self._load["optional"] >= self.workers - _INTERIM_HEADROOM:
                return False
            self._offers.pop(key, None)
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

    def try_submit_now(self, job: Callable[[], None]) -> bool:
        """Submit ahead of everything, only if an idle worker will start it at once.

        Jobs may wait for such a job (a final for its speculative decode) without deadlock:
        it is never left queued behind them.
        """
        with self._lock:
            if self._idle - self._queued <= 0:
                return False
            self._queued += 1
            self._queued_finals += 1
        self._q.put((_SPECULATIVE, next(self._seq), job))
        return True

    def _run(self) -> None:
        while True:
            priority, _, job = self._q.get()
            if job is None:
                return
            kind = "optional" if priority >= _INTERIM else "final"
            with self._lock:
                self._queued -= 1
                self._queued_finals -= kind == "final"
                self._idle -= 1
                self._account()
                self._busy[kind] += 1
            try:
                job()
            except Exception:
                log.exception("decode job failed")
            finally:
                with self._lock:
                    self._idle += 1
                    self._account()
                    self._busy[kind] -= 1

    def close(self, timeout: float = 5.0) -> None:
        self._emits.put(None)
        for _ in range(self.workers):
            self._q.put((99, next(self._seq), None))
        for t in self._threads:
            t.join(timeout)


class _Speculation:
    """A final decode started when the silence began; used if the endpoint confirms its end."""

    def __init__(self, end: int) -> None:
        self.end = end  # relative sample the decode stops at
        self.rec: Recognition | None = None
        self.done = False


class _Utterance:
    """The open (or closing) stretch of speech. Guarded by the stream's lock."""

    def __init__(self, start_sample: int, frames: list[np.ndarray], probs: list[float]) -> None:
        self.id = shapes.new_id()
        self.start_sample = start_sample  # absolute sample of chunks[0][0]
        self.chunks = frames
        self.probs = probs  # voice probability of each frame in chunks
        self.length = sum(len(f) for f in frames)
        self.spec: _Speculation | None = None
        self.short = False  # fewer speech frames than min_speech_ms: judged by its decode
        self.prompted = False  # continues the previous utterance: its final is the prompt
        self.speech_frames = 0
        self.silence_run = 0
        self.last_speech_end = self.length  # relative sample after the last speech frame
        self.last_interim_at = 0  # relative sample where the last interim was scheduled
        self.interim_emitted = False  # for the current id
        self.end: int | None = None  # relative end once closed
        self.finalised: set[str] = set()  # ids whose final is out (or decided): no more interims
        self.pause = 0  # counts pauses: a turn judgment applies only to the pause it was asked at
        self.turn_probability: float | None = None  # the turn model's last judgment
        self.turn_wait = False  # the model judged this pause incomplete: it may last up to the max silence
        self.queued_at = 0.0  # monotonic time its pending finals were first queued (_enqueue_final, backlog())
        self.trace = trace.new()  # SYMBLD_TRACE_FINALS: where its final's time goes

    def append(self, frame: np.ndarray, prob: float) -> None:
        self.chunks.append(frame)
        self.probs.append(prob)
        self.length += len(frame)

    def split(self, frame_index: int, threshold: float) -> _Utterance:
        """Close this utterance before frame ``frame_index``; return the rest as a new one."""
        cut = frame_index * FRAME  # every chunk is one frame, but audio() may have joined them
        audio = np.concatenate(self.chunks)
        rest = _Utterance(self.start_sample + cut, [audio[cut:]], self.probs[frame_index:])
        self.chunks, self.probs = [audio[:cut]], self.probs[:frame_index]
        self.length = cut
        self.end = cut
        self.spec = None
        rest.silence_run = self.silence_run
        rest.speech_frames = sum(1 for p in rest.probs if p >= threshold)
        rest.last_speech_end = max(0, self.last_speech_end - cut)
        rest.prompted = True  # cut out of continuous speech
        return rest

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
        turn: TurnJudge | None = None,
    ) -> None:
        self.recognizer = recognizer
        self.turn = turn  # semantic end of turn (None: the fixed endpoint)
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
        self.language = languages.parse(config.language_code)
        self.task = "translate" if config.translate else "transcribe"
        # auto: the conversation's language so far (the last final's); None until the first final.
        self._conversation_language: str | None = None
        if self.language.auto:
            # A packed window would give several utterances one detected language.
            settings.pack_finals = False

        ms = SAMPLE_RATE // 1000
        self._hangover_frames = max(1, settings.endpoint_silence_ms * ms // FRAME)
        self._turn_frames = max(1, settings.turn_pause_ms * ms // FRAME)
        self._max_silence_frames = max(self._turn_frames + 1, settings.turn_max_silence_ms * ms // FRAME)
        self._turn_ended_at: int | None = None  # absolute sample where the last end_of_turn's speech ended
        self._preroll: deque[tuple[np.ndarray, float]] = deque(maxlen=max(1, settings.preroll_ms * ms // FRAME + 1))
        self._postroll = settings.postroll_ms * ms
        # The speculative final starts once the post-roll is in: its audio is the final's audio.
        self._spec_frames = max(1, -(-self._postroll // FRAME))
        self._last_final = ""  # text of the previous final: the next decode's prompt
        self._last_speech_end: int | None = None  # absolute sample where the previous utterance's speech ended
        self._min_speech_frames = max(1, settings.min_speech_ms * ms // FRAME)

        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._emit_lock = threading.Lock()  # keeps check-then-emit atomic and events ordered
        self._buf = bytearray()
        self._samples = 0  # samples consumed by the VAD framing
        self._utt: _Utterance | None = None
        self._finals: deque[tuple[_Utterance, Callable[[], None]]] = deque()
        self._final_utts: list[_Utterance] = []  # utterance of every queued or running final
        self._finals_running = 0  # final jobs submitted and not finished
        self._interim_running = False
        self._pending = 0  # final and interim jobs queued or running
        self._message_seq = 0
        self._finishing = False
        self._closed = False
        self._degraded = 0  # flow control level (degrade())
        self._opened = time.monotonic()

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
            self._preroll.append((frame, p))
            if p >= s.vad_threshold:
                frames = [f for f, _ in self._preroll]
                probs = [q for _, q in self._preroll]
                self._preroll.clear()
                utt = _Utterance(self._samples - FRAME * len(frames), frames, probs)
                utt.speech_frames = 1
                # A pause this short split one sentence: the previous final gives the context.
                gap = self._samples - FRAME - (self._last_speech_end or -(10**9))
                utt.prompted = gap <= s.prompt_max_gap_s * SAMPLE_RATE
                self._utt = utt
                self._turn_resumed(utt)
            return
        utt.append(frame, p)
        if p >= s.vad_neg_threshold:
            if utt.silence_run:
                utt.pause += 1  # speech resumed: a judgment of the pause that ended no longer applies
                utt.turn_wait, utt.turn_probability = False, None
                self.pool.final_due(self, False)
            utt.silence_run = 0
            utt.last_speech_end = utt.length
            if utt.spec is not None and utt.trace is not None:
                utt.trace.count("spec_discarded")
            self._reuse_speculation(utt)
            utt.spec = None  # speech resumed: a speculative final is discarded (stopped, or its words an interim)
            if utt.trace is not None:
                utt.trace.marks["speech"] = time.monotonic()  # the last speech frame so far
                for step in ("spec_ask", "spec_start", "spec_end"):
                    utt.trace.marks.pop(step, None)
                utt.trace.notes.pop("spec_refused", None)
            if p >= s.vad_threshold:
                utt.speech_frames += 1
        else:
            utt.silence_run += 1
            if utt.silence_run == 1 and utt.spec is None and not self._ahead_of_real_time():
                self.pool.final_due(self, True)  # a file fed fast is waited on by nobody: it holds no interim back
        if utt.silence_run >= self._endpoint_frames(utt):
            self._close_utterance(utt, "silence")
            return
        if utt.silence_run == self._turn_frames and self.turn is not None:
            self._judge_turn(utt)
        if utt.silence_run == self._spec_frames or (
                utt.silence_run > self._spec_frames and utt.spec is None and "retry" in SCHEDULE):
            self._speculate(utt)  # refused for want of a worker: asked again at each frame until the endpoint
        elif utt.length >= s.max_utterance_s * SAMPLE_RATE:
            self._cut(utt)

    def _endpoint_frames(self, utt: _Utterance) -> int:
        """Silence frames that close ``utt``: the fixed endpoint, unless the turn model judged this pause
        incomplete: then the maximum silence. An answer still to come at the fixed endpoint does not hold
        the turn open (measured on a loaded machine, 4 streams: waiting for it made turns close 0.33 s
        after the speech's end, later than the fixed endpoint's 0.17 s, and finals 0.28 s later)."""
        return self._max_silence_frames if utt.turn_wait else self._hangover_frames

    def _judge_turn(self, utt: _Utterance) -> None:
        """Ask the turn model whether this pause ends the turn (lock held); the answer comes on its thread.

        Not asked (the fixed endpoint applies) for a stream fed ahead of real time (the answer would come
        after the audio moved on), a stream behind (flow control degraded it, or an earlier final is still
        to come: its finals are late anyway, and a judgment costs a tenth of a second of CPU), or when
        the model is already busy with other streams' pauses (its answer would come too late to help)."""
        assert self.turn is not None
        if self._closed or self._degraded or self._earlier_final_pending(utt) or self.turn.busy():
            return
        if self._ahead_of_real_time():
            return
        pause = utt.pause
        audio = utt.audio(max(0, utt.length - WINDOW), utt.length)

        def done(probability: float | None) -> None:
            with self._lock:
                if self._closed or self._utt is not utt or utt.pause != pause:
                    return  # closed meanwhile, or speech resumed
                utt.turn_probability = probability
                if probability is None or probability < self.settings.turn_threshold:
                    # incomplete: wait up to the maximum silence; the model failed: the fixed endpoint
                    utt.turn_wait = probability is not None
                    return
                self._close_utterance(utt, "model")

        self.turn.submit(audio, done)

    def _turn_resumed(self, utt: _Utterance) -> None:
        """Speech soon after an end_of_turn: that turn was not over after all (lock held)."""
        if self.turn is None or self._turn_ended_at is None:
            return
        gap = self._samples - FRAME - self._turn_ended_at  # from the turn's last speech to this speech frame
        ended, self._turn_ended_at = self._turn_ended_at, None
        if gap <= self.settings.turn_resume_window_s * SAMPLE_RATE:
            self._publish_turn_event("turn_resumed", {
                "utteranceId": utt.id, "gapMs": round(1000 * max(0, gap) / SAMPLE_RATE),
                "timeOffset": round(ended / SAMPLE_RATE, 3)})

    def _publish_turn_event(self, event_type: str, data: dict[str, Any]) -> None:
        """Turn events go out from the emit thread (never under the stream lock, never behind a decode)."""
        def run() -> None:
            with self._emit_lock:
                self._emit_locked(event_type, data)

        self.pool.submit_emit(run)

    def _final_end(self, utt: _Utterance) -> int:
        return min(utt.length, utt.last_speech_end + self._postroll)

    def _close_utterance(self, utt: _Utterance, reason: str = "") -> None:
        """Close the open utterance and queue its final (lock held). ``reason`` (silence, model,
        finalize) is the end of turn's, published as ``end_of_turn`` with semantic end of turn."""
        self._utt = None
        utt.end = self._final_end(utt)
        if utt.trace is not None:
            utt.trace.mark("close", reason=reason)
        self._last_speech_end = utt.start_sample + utt.last_speech_end
        if self.turn is not None and reason:
            self._turn_ended_at = self._last_speech_end
            silence = utt.length - utt.last_speech_end
            self._publish_turn_event("end_of_turn", {
                "utteranceId": utt.id, "reason": reason, "probability": None if utt.turn_probability is None
                else round(utt.turn_probability, 3), "silenceMs": round(1000 * silence / SAMPLE_RATE),
                "timeOffset": round(self._last_speech_end / SAMPLE_RATE, 3)})
        self._preroll.clear()
        utt.short = utt.speech_frames < self._min_speech_frames and not utt.interim_emitted
        self._enqueue_final(utt, lambda: self._run_final(utt))

    def _cut(self, utt: _Utterance) -> None:
        """Cut long speech at its lowest voice probability in the last ``cut_search_s`` (lock held)."""
        lo = max(1, len(utt.probs) - int(self.settings.cut_search_s * SAMPLE_RATE) // FRAME)
        hi = len(utt.probs) - max(1, SAMPLE_RATE // (4 * FRAME))  # not in the last 0.25 s
        if hi <= lo:
            return
        i = lo + int(np.argmin(utt.probs[lo:hi]))
        rest = utt.split(i, self.settings.vad_threshold)
        self._utt = rest
        self._enqueue_final(utt, lambda: self._run_final(utt))

    def _ahead_of_real_time(self) -> bool:
        """Fed faster than it plays (a file with ``--fast``, a flood): nobody waits on interims or
        early finals, and the finals are best left to queue up and be packed into full windows."""
        return self._samples / SAMPLE_RATE - (time.monotonic() - self._opened) > 1.0

    def _speculate(self, utt: _Utterance) -> None:
        """Start the final decode now that the silence began, if a worker is free (lock held)."""
        if utt.trace is not None and "spec_ask" not in utt.trace.marks:
            utt.trace.mark("spec_ask", pool_at_ask=self.pool.running())
        if not self.settings.speculative or self._earlier_final_pending(utt) or self._closed:
            return  # behind: the prompt (previous final) is not known yet, and finals go first
        if self._ahead_of_real_time():
            return
        spec = _Speculation(self._final_end(utt))
        audio = utt.audio(0, spec.end)

        def unwanted() -> bool:
            # Speech resumed (the speculation was discarded), the utterance closed on other audio, or the stream
            # closed: its words would be thrown away (unlocked reads of one attribute each: a hint).
            return self._closed or utt.spec is not spec or (utt.end is not None and utt.end != spec.end)

        def run() -> None:
            if utt.trace is not None:
                utt.trace.marks["spec_start"] = time.monotonic()
            try:
                rec = self._decode_final(audio, utt, cancelled=unwanted if "cancel" in SCHEDULE else None)
            except DecodeCancelled:
                rec = None
                if utt.trace is not None:
                    utt.trace.count("spec_cancelled")
            except Exception:
                log.exception("speculative decode failed", connection_id=self.config.connection_id)
                rec = None
            if utt.trace is not None:
                utt.trace.marks["spec_end"] = time.monotonic()
            with self._lock:
                spec.rec, spec.done = rec, True
                self._pending -= 1
                self._pump_finals()
                self._idle.notify_all()

        before, utt.spec = utt.spec, spec  # set before it can start: unwanted() asks whether it is still ours
        if self.pool.try_submit_now(run):
            self._pending += 1
            self.pool.final_due(self, False)
        else:
            utt.spec = before
            if utt.trace is not None and "spec_refused" not in utt.trace.notes:
                utt.trace.count("spec_refused")

    def _prompt(self, utt: _Utterance) -> str | None:
        return self._last_final if utt.prompted and self._last_final else None

    def _decode_final(self, audio: np.ndarray, utt: _Utterance, cancelled: Callable[[], bool] | None = None
                      ) -> Recognition:
        if not len(audio):
            return Recognition("")
        return self._transcribe(audio, final=True, prompt=self._prompt(utt), cancelled=cancelled,
                                behind=self._behind(utt))

    def _behind(self, utt: _Utterance, packed: bool = False) -> bool:
        """Whether other finals wait as this one starts (for a worker, or this stream's own still queued; a pack
        exists only because they did): then it takes the recogniser's cheaper search (``behind_beam_size``, greedy
        by default: 16-20 % less CPU per final, 37 % per packed utterance), so the queue drains sooner. Not for a
        stream fed ahead of real time (a file with ``--fast``): its finals queue by design, nobody waits on each
        one, and its words stay those of the full beam (unlocked reads: a hint)."""
        waiting = packed or bool(self._finals) or self.pool.finals_waiting() > 0
        behind = waiting and not self._ahead_of_real_time()
        if behind and utt.trace is not None:
            utt.trace.notes["behind"] = True
        return behind

    def _transcribe(self, audio: np.ndarray, *, final: bool, prompt: str | None,
                    cancelled: Callable[[], bool] | None = None, behind: bool = False) -> Recognition:
        language = self._language_of(audio, final=final)
        return self.recognizer.transcribe(audio, final=final, hotwords=self.hotwords, prompt=prompt,
                                          language=language, task=self.task, cancelled=cancelled, behind=behind)

    def _language_of(self, audio: np.ndarray, *, final: bool) -> str:
        """The Whisper language to decode ``audio`` as: the one asked for, or in ``auto`` the one
        detected, kept to the conversation's unless another is clearly spoken."""
        if not self.language.auto:
            return self.language.whisper
        current = self._conversation_language
        if current is not None and not final:
            return current  # interims follow the conversation; the final decides
        served = set(self.recognizer.languages)
        ranked = [(code, p) for code, p in self.recognizer.detect_language(audio) if code in served]
        if not ranked:
            return current or "en"
        best, p = ranked[0]
        if p >= self.settings.language_switch_probability or best == current or not final:
            return best
        return self._likeliest(audio, [code for code, _ in ranked[:3]], current)

    def _likeliest(self, audio: np.ndarray, candidates: list[str], current: str | None) -> str:
        """An unclear detection (a short utterance, telephone audio: Whisper's language token gave
        Arabic 0.46 to a Spanish sentence) is settled by decoding it in the likeliest few languages
        and the conversation's, and keeping the decode the model is surest of (its mean log
        probability); the conversation's language unless another is clearly surer."""
        if current is not None and current not in candidates:
            candidates.append(current)
        scores = {code: self.recognizer.transcribe(audio, final=False, language=code).avg_logprob
                  for code in candidates}
        winner = max(scores, key=lambda code: scores[code])
        if current is not None and scores[winner] - scores[current] < _SWITCH_LOGPROB_MARGIN:
            return current
        return winner

    def _enqueue_final(self, utt: _Utterance, job: Callable[[], None]) -> None:
        if utt not in self._final_utts:
            utt.queued_at = time.monotonic()  # for backlog(): how long its final has been waiting
            on_utterance = self.config.extra.get("on_utterance")  # diarization starts its print beside the decode
            if on_utterance is not None:
                end = utt.length if utt.end is None else utt.end
                # and where its speech starts: the kept pre-roll before it is no one's voice
                first = next((i for i, p in enumerate(utt.probs) if p >= self.settings.vad_threshold), 0)
                on_utterance(utt.start_sample / SAMPLE_RATE, end / SAMPLE_RATE,
                             (utt.start_sample + first * FRAME) / SAMPLE_RATE)
        self._pending += 1
        self._final_utts.append(utt)
        self._finals.append((utt, job))
        self._pump_finals()

    def _earlier_final_pending(self, utt: _Utterance) -> bool:
        """True while a final of another (earlier) utterance has not been emitted (lock held)."""
        return any(u is not utt for u in self._final_utts)

    def _pump_finals(self) -> None:
        """Submit the stream's next final(s) (lock held).

        One at a time, except for a stream fed ahead of real time (a file with ``--fast``): there
        as many as the pool has workers decode side by side, each utterance alone (a packed window
        lets the model hear the neighbouring utterances, which cost words), and each waits for the
        ones before it to be emitted, so events still come out in order. An utterance whose prompt
        is the previous final waits until that final is out.
        """
        while self._finals and not self._closed:
            head = self._finals[0][0]
            if head.spec is not None and head.spec.end == head.end and not head.spec.done:
                return  # its speculative decode is running; it calls us when done
            if self._finals_running:
                parallel = self._ahead_of_real_time() and not head.prompted
                if not parallel or self._finals_running >= self.pool.workers:
                    return
            self._submit_next_final()

    def _submit_next_final(self) -> None:
        head = self._finals[0][0]
        utt, job = self._finals.popleft()
        batch = [utt] if self._ahead_of_real_time() else self._take_pack(utt)
        if len(batch) > 1:
            job = lambda: self._run_packed(batch)  # noqa: E731
        self._finals_running += 1
        self.pool.final_due(self, False)
        for u in batch:
            if u.trace is not None:
                u.trace.mark("final_submit", packed=len(batch))

        def run() -> None:
            for u in batch:
                if u.trace is not None:
                    u.trace.mark("final_start")
            try:
                job()
            finally:
                with self._lock:
                    for u in batch:
                        self._final_utts.remove(u)
                    self._finals_running -= 1
                    self._pending -= len(batch)
                    self._pump_finals()
                    self._idle.notify_all()

        if head.spec is not None and head.spec.end == head.end and head.spec.rec is not None:
            self.pool.submit_emit(run)  # decoded already: publish now, not after another decode
        else:
            self.pool.submit(run, _FINAL)

    def _uses_spec(self, utt: _Utterance) -> bool:
        return utt.spec is not None and utt.spec.end == utt.end

    def _take_pack(self, head: _Utterance) -> list[_Utterance]:
        """When finals queue up (a file fed fast, or a stream behind), take the ones that fit one
        encoder window with ``head``, so they pay one window instead of one each (lock held)."""
        batch = [head]
        if not self.settings.pack_finals or self._uses_spec(head) or head.end is None:
            return batch
        total = head.end
        limit = int(self.settings.pack_window_s * SAMPLE_RATE)
        while self._finals and len(batch) < 16:
            nxt = self._finals[0][0]
            if self._uses_spec(nxt) or nxt.end is None or total + _PACK_GAP + nxt.end > limit:
                break
            self._finals.popleft()
            batch.append(nxt)
            total += _PACK_GAP + nxt.end
        return batch

    def _run_packed(self, batch: list[_Utterance]) -> None:
        """One decode for several closed utterances, separated by silence; words go back by time."""
        with self._lock:
            if self._closed:
                return
            pieces, spans, pos = [], [], 0
            for u in batch:
                end = u.end if u.end is not None else u.length
                pieces += [u.audio(0, end), np.zeros(_PACK_GAP, np.float32)]
                spans.append((pos, pos + end))
                pos += end + _PACK_GAP
            prompt = self._prompt(batch[0])
        rec = self._transcribe(np.concatenate(pieces), final=True, prompt=prompt,
                               behind=self._behind(batch[0], packed=True))
        per: list[list[Word]] = [[] for _ in batch]
        for w in rec.words:
            # By its start: Whisper stretches the last word before a silence into it (by its middle
            # "clubs" went to the next utterance), while a start stays in its own utterance's audio.
            at = w.start * SAMPLE_RATE
            k = max([0] + [j for j, (a, _) in enumerate(spans) if a <= at])
            base = spans[k][0] / SAMPLE_RATE
            per[k].append(Word(w.text, max(0.0, w.start - base), max(0.0, w.end - base), w.probability))
        for u, (a, b), words in zip(batch, spans, per, strict=True):
            part = Recognition("".join(w.text for w in words).strip(), words, rec.avg_logprob, rec.no_speech_prob)
            if u.short and not _confident(part, self.settings.min_short_probability):
                part = Recognition("")
            with self._emit_lock:
                with self._lock:
                    had_interim = u.interim_emitted
                    u.finalised.add(u.id)
                if part.text or had_interim:
                    self._emit_final(u.id, part, u.start_sample / SAMPLE_RATE, (b - a) / SAMPLE_RATE)
            self._write_trace(u)

    def _maybe_interim(self) -> None:
        s = self.settings
        utt = self._utt
        if not s.interims or self._degraded or utt is None or self._interim_running:
            return
        if self._ahead_of_real_time():
            return
        if self._earlier_final_pending(utt):  # behind: finals first, and in order
            return
        if utt.length < s.min_interim_s * SAMPLE_RATE:
            return
        if utt.last_interim_at and utt.length - utt.last_interim_at < s.interim_interval_s * SAMPLE_RATE:
            return
        if utt.speech_frames < self._min_speech_frames:
            return
        if utt.silence_run:
            # The speech paused: its final decode starts at postroll_ms of silence and supersedes an interim
            # at once (which would also hold the worker the speculative final needs); if the pause ends, the
            # next speech frame asks again.
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

        lag = (utt.length - utt.last_interim_at) / SAMPLE_RATE  # audio its live text has not covered
        if self.pool.try_submit_idle(run, _INTERIM, key=self, lag=lag):
            self._interim_running = True
            self._pending += 1
            utt.last_interim_at = utt.length

    # ---- decode side (pool threads) ---------------------------------------------------------

    def _run_interim(self, utt: _Utterance, uid: str) -> None:
        with self._lock:
            if self._closed or utt.id != uid or utt.end is not None:
                return  # its final is already on the way: save the CPU
            audio = utt.audio(0, utt.length)
            offset = utt.start_sample / SAMPLE_RATE

        def unwanted() -> bool:
            # Its words would be dropped (the stream closed, the utterance was cut, its final is out), or its
            # utterance closed while a final waits for a worker: the final supersedes this interim within a
            # decode, so the worker goes to that final now (unlocked reads: a hint).
            return self._closed or utt.id != uid or uid in utt.finalised or (
                utt.end is not None and self.pool.finals_waiting() > 0)

        try:
            rec = self._transcribe(audio, final=False, prompt=self._prompt(utt),
                                   cancelled=unwanted if "cancel" in SCHEDULE else None)
        except DecodeCancelled:
            return
        if not rec.text:
            with self._lock:
                if utt.id == uid:
                    utt.last_interim_at = 0  # nothing heard yet: try again with the next audio
            return
        self._publish_interim(utt, uid, rec.text, offset, len(audio) / SAMPLE_RATE)

    def _publish_interim(self, utt: _Utterance, uid: str, text: str, offset: float, length: float) -> None:
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
                    text=text,
                    is_final=False,
                    started_at=self.started_at,
                    offset=offset,
                    length=length,
                    user=self.user,
                ),
            )

    def _reuse_speculation(self, utt: _Utterance) -> None:
        """Speech resumed after the speculative final was decoded (a pause the turn model judged unfinished
        lasts up to ``turn_max_silence_ms``; a long ``endpoint_silence_ms``): its words are the utterance so far,
        so they go out as the interim for that audio instead of being thrown away, and the next interim is
        due ``interim_interval_s`` after them (lock held)."""
        spec = utt.spec
        if spec is None or not spec.done or spec.rec is None or not spec.rec.text or not self.settings.interims:
            return
        if self._degraded or self._closed or utt.speech_frames < self._min_speech_frames:
            return  # as for interims: a blip's words wait for its final's judgement (_confident)
        uid, text = utt.id, spec.rec.text
        offset, length = utt.start_sample / SAMPLE_RATE, spec.end / SAMPLE_RATE
        utt.last_interim_at = max(utt.last_interim_at, spec.end)
        if utt.trace is not None:
            utt.trace.count("spec_as_interim")
        self.pool.submit_emit(lambda: self._publish_interim(utt, uid, text, offset, length))

    def _run_final(self, utt: _Utterance) -> None:
        with self._lock:
            if self._closed:
                return
            end = utt.length if utt.end is None else utt.end
            spec = utt.spec if utt.spec is not None and utt.spec.end == end and utt.spec.done else None
            audio = utt.audio(0, end)
            offset = utt.start_sample / SAMPLE_RATE
            uid = utt.id
        rec = spec.rec if spec is not None and spec.rec is not None else self._decode_final(audio, utt)
        if utt.trace is not None:
            utt.trace.mark("decoded", used_spec=spec is not None and spec.rec is not None)
        if utt.short and not _confident(rec, self.settings.min_short_probability):
            rec = Recognition("")  # a click or a breath; a short phrase decoded with confidence stays
        with self._lock:
            # Decoded beside an earlier final (a file fed fast): its turn comes once those are out.
            # That earlier job was taken by a worker before this one (same priority, queued first).
            self._idle.wait_for(lambda: self._closed or not self._final_utts or self._final_utts[0] is utt)
        with self._emit_lock:
            with self._lock:
                had_interim = utt.interim_emitted
                utt.finalised.add(uid)
            # An utterance with interims always gets its final, even an empty one.
            if rec.text or had_interim:
                self._emit_final(uid, rec, offset, len(audio) / SAMPLE_RATE)
        self._write_trace(utt)

    def _write_trace(self, utt: _Utterance) -> None:
        if utt.trace is not None:
            utt.trace.mark("emitted")
            trace.write(utt.trace, cid=self.config.connection_id, uid=utt.id,
                        speech_end=(utt.start_sample + utt.last_speech_end) / SAMPLE_RATE)

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
        self._last_final = rec.text
        self._conversation_language = rec.language
        spoken = languages.tag_of(rec.language, self.language)
        translated_to = "en-US" if self.task == "translate" else None
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
                    language=spoken,
                    translated_to=translated_to,
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
                    language=spoken,
                    translated_to=translated_to,
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
                    utt.append(tail, 0.0)
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

    def finalize(self) -> bool:
        """Make what was heard so far final now (the ``finalize`` command), the connection going on.

        The open utterance closes as if its endpoint had come (its speculative decode is used when
        it covers the same audio); audio fed afterwards opens a new utterance, prompted with this
        final. Audio still in the VAD's framing buffer (under one 32 ms frame) goes to the next
        utterance. False when nothing was open (silence since the last final): no event follows.
        """
        with self._lock:
            if self._closed or self._finishing or self._utt is None:
                return False
            self._close_utterance(self._utt, "finalize")
            return True

    def backlog(self) -> dict[str, Any]:
        """How far behind decoding is: finals not yet emitted, and how long the oldest has waited
        since its utterance ended (about one decode when keeping up; growing when not)."""
        with self._lock:
            now = time.monotonic()
            oldest = min((getattr(u, "queued_at", now) for u in self._final_utts), default=now)
            # Audio waiting for a final decode (flow control bounds this; symbld.core.flow).
            queued = sum(u.length if u.end is None else u.end for u in set(self._final_utts))
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
        self.pool.final_due(self, False)
        if self._on_close:
            self._on_close(self)


def _confident(rec: Recognition, min_probability: float) -> bool:
    """Whether a short blip's decode is speech: not a stock phrase, and words the model is sure of on
    average, or three words or more (a click or a breath gives Whisper's stock phrases, never a
    phrase like "Four queen of ...", which on a phone line came out at a mean probability of 0.5)."""
    if not rec.text or _norm(rec.text) in HALLUCINATIONS:
        return False
    if not rec.words:
        return rec.avg_logprob > -0.5
    return len(rec.words) >= 3 or float(np.mean([w.probability for w in rec.words])) >= min_probability


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
