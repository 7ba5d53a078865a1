"""Speaker labels on one connection's results, as they are published.

The labeller keeps the last ``KEEP_SECONDS`` of the audio the engine was fed (a ring, positions
in engine time) and, for each final, takes a voice print of the final's audio and clusters it:

* the final ``transcript_response`` gets ``user`` (the whole utterance's speaker);
* each message of the ``message_response`` that follows gets ``from``: its own print when the
  sentence is long enough to tell (so a final in which the speaker changes between sentences
  is split where it changes), else the utterance's speaker.

Interim ``transcript_response`` events get a provisional ``user``: the speaker whom a print of the
utterance's latest ``INTERIM_SECONDS`` resembles, never changing the clusters (only finals do); none
until such a print is ready, and none when it resembles no one yet (a new voice is numbered by its
final). Those prints are optional work: taken only while the embedding thread is idle, so they never
delay a final's print.

When clustering finds that two labels are one person it returns a ``speaker_revision`` event
(the message ids that carried the label that goes, and the old and new ``from``), published
right after the result that caused it and journaled like every event; core/speakers.py applies
it wherever a conversation is read later. Memory: the audio ring, one vector per speaker, and
the ids of the last ``KEEP_MESSAGES`` messages.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from symbld.diarization import embedder
from symbld.diarization.clusters import OnlineClusters

RATE = 16000
KEEP_SECONDS = 120.0  # a final's audio is always younger than this (the engine cuts utterances at ~30 s)
KEEP_MESSAGES = 5000
MESSAGE_SECONDS = 1.5  # a sentence at least this long gets its own print
INTERIM_SECONDS = 2.0  # the latest audio of an open utterance an interim's print hears
INTERIM_EVERY = 1.5  # audio seconds between two interim prints of one utterance
PREFETCH_KEEP = 16  # prints taken ahead for finals not yet published (more: the engine is far behind)
REVISION = "speaker_revision"
_NS = uuid.UUID("0d6f4c1e-8a53-4a7e-9c77-2a3f3f1b6d20")


def user(connection_id: str, number: int) -> dict[str, Any]:
    """The ``from``/``user`` object of speaker ``number``: the same id for the whole connection."""
    return {"id": str(uuid.uuid5(_NS, f"{connection_id}/speaker/{number}")), "name": f"Speaker {number}"}


class AudioRing:
    """The last ``seconds`` of 16-bit PCM, addressed by sample position from the stream start."""

    def __init__(self, seconds: float = KEEP_SECONDS) -> None:
        self._buf = np.zeros(int(seconds * RATE), dtype=np.int16)
        self.end = 0  # samples written so far
        self._lock = threading.Lock()

    def write(self, pcm: bytes) -> None:
        data = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2")
        size = len(self._buf)
        with self._lock:
            if len(data) >= size:
                data = data[-size:]
                self.end += len(data) - size
            at = self.end % size
            first = min(size - at, len(data))
            self._buf[at : at + first] = data[:first]
            self._buf[: len(data) - first] = data[first:]
            self.end += len(data)

    def read(self, start: float, end: float) -> np.ndarray:
        """Float audio between two times (seconds), clipped to what is still held."""
        size = len(self._buf)
        with self._lock:
            a = max(int(start * RATE), self.end - size, 0)
            b = min(int(end * RATE), self.end)
            if b <= a:
                return np.zeros(0, dtype=np.float32)
            idx = np.arange(a, b) % size
            return self._buf[idx].astype(np.float32) / 32768.0


class Labeller:
    def __init__(self, connection_id: str, settings: dict[str, Any],
                 voices: dict[str, dict[str, Any]] | None = None) -> None:
        from symbld.diarization.voices import Matcher

        self.connection_id = connection_id
        self.matcher = Matcher(voices or {})  # known voices: a speaker who clearly is one gets its name
        self._named: dict[int, dict[str, Any]] = {}  # speaker number → the enrolled voice's user
        self._published: dict[int, dict[str, Any]] = {}  # speaker number → the user its results carried
        self.ring = AudioRing()
        self.clusters = OnlineClusters(threshold=float(settings.get("threshold", 0.5)),
                                       merge_threshold=float(settings.get("mergeThreshold", 0.6)),
                                       max_speakers=int(settings.get("maxSpeakers", 8)),
                                       min_speakers=int(settings.get("minSpeakers", 1)))
        self._alias: dict[int, int] = {}  # merged number → the number it became
        self._messages: OrderedDict[str, int] = OrderedDict()  # message id → speaker number (bounded)
        self._utterance: int | None = None  # the speaker of the last final transcript
        self._talk: dict[int, float] = {}  # speaker number → seconds of its messages (prints overlap: not those)
        self._prefetch_lock = threading.Lock()
        self.cpu_seconds = 0.0  # spent taking prints, on whichever thread
        self._prefetched: OrderedDict[tuple[int, int], Future[np.ndarray | None]] = OrderedDict()
        self._interim: _Interim | None = None  # the open utterance's provisional print

    def feed(self, pcm: bytes) -> None:
        self.ring.write(pcm)

    def prefetch(self, start: float, length: float) -> None:
        """The engine closed an utterance (``start``, ``length`` seconds; called under its stream lock):
        take its print now on the embedding thread, beside the final's decode, so the final need not
        wait for it."""
        key = _key(start, length)
        future = _submit(self._print, start, length)
        with self._prefetch_lock:
            self._prefetched[key] = future
            while len(self._prefetched) > PREFETCH_KEEP:
                self._prefetched.popitem(last=False)

    def _print(self, start: float, length: float) -> np.ndarray | None:
        t = time.thread_time()
        vec = embedder.embed(self.ring.read(start, start + length))
        with self._prefetch_lock:
            self.cpu_seconds += time.thread_time() - t
        return vec

    def label(self, event_type: str, data: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """``data`` with its speaker, and the revision events to publish after it."""
        if event_type == "transcript_response" and data.get("isFinal"):
            number, merges = self._speaker_of(data.get("duration") or {})
            self._utterance = number
            data = self._with_user(data, "user", number)
            return data, self._revisions(merges)
        if event_type == "message_response":
            return self._label_messages(data)
        if event_type == "transcript_response":
            return self._label_interim(data), []
        return data, []

    def _label_interim(self, data: dict[str, Any]) -> dict[str, Any]:
        d = data.get("duration") or {}
        start = float(d.get("timeOffset") or 0.0)
        end = start + float(d.get("duration") or 0.0)
        state = self._interim
        if state is None or state.start != start:  # a new utterance
            state = self._interim = _Interim(start)
        if state.future is not None and state.future.done():
            vec, state.future = state.future.result(), None
            if vec is not None:
                state.number = self.clusters.resembles(vec)
        if state.future is None and end - state.printed >= INTERIM_EVERY and end - start >= embedder.MIN_SECONDS:
            heard = max(start, end - INTERIM_SECONDS)
            state.future = _submit_if_idle(self._print, heard, end - heard)
            if state.future is not None:
                state.printed = end
        number = self._current(state.number)
        return data if number is None else {**data, "user": self.user_of(number)}

    def _label_messages(self, data: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        messages = data.get("messages") or []
        out, merges = [], []
        for m in messages:
            d = m.get("duration") or {}
            number = self._utterance
            if (len(messages) > 1 and float(d.get("duration") or 0) >= MESSAGE_SECONDS) or number is None:
                number, found = self._speaker_of(d)
                merges += found
            if number is None:
                out.append(m)
                continue
            self._talk[number] = self._talk.get(number, 0.0) + float(d.get("duration") or 0.0)
            if m.get("id"):
                self._messages[m["id"]] = number
                while len(self._messages) > KEEP_MESSAGES:
                    self._messages.popitem(last=False)
            out.append(self._with_user(m, "from", number))
        return {**data, "messages": out}, self._revisions(merges)

    def _speaker_of(self, duration: dict[str, Any]) -> tuple[int | None, list[Any]]:
        start = float(duration.get("timeOffset") or 0.0)
        length = float(duration.get("duration") or 0.0)
        with self._prefetch_lock:
            future = self._prefetched.pop(_key(start, length), None)
        vec = future.result() if future is not None else self._print(start, length)
        if vec is None:
            return self._current(self._utterance), []
        assigned, merges = self.clusters.assign(vec, length)
        for mg in merges:
            self._alias[mg.gone] = mg.kept
        number = self._current(assigned)
        found: list[Any] = list(merges)
        for speaker in self.clusters.speakers:
            if speaker.number == number or any(mg.kept == speaker.number for mg in merges):
                named = self.matcher.match(speaker.centroid())
                if named != self._named.get(speaker.number):
                    self._rename(speaker.number, named)
                    found.append(Renamed(speaker.number))
        return number, found

    def _rename(self, number: int, named: dict[str, Any] | None) -> None:
        if named is None:
            self._named.pop(number, None)
        else:
            self._named[number] = named

    def speaker_prints(self) -> list[dict[str, Any]]:
        """Each speaker's centroid and how it was published (its "Speaker N" label and id, any label
        merged into it, the enrolled voice it was named after): what ``voices_add`` can enrol from
        once the connection has ended (diarization/speaker_prints.py)."""
        out = []
        for s in self.clusters.speakers:
            if s.count == 0:
                continue
            shown, label = self.user_of(s.number), user(self.connection_id, s.number)
            gone = [n for n in self._alias if self._current(n) == s.number]
            merged = [user(self.connection_id, n) for n in gone]
            labels = [label["id"], label["name"], *(x for m in merged for x in (m["id"], m["name"]))]
            seconds = sum(self._talk.get(n, 0.0) for n in (s.number, *gone))
            out.append({"id": shown["id"], "name": shown["name"], "labels": labels,
                        "print": [round(float(x), 6) for x in s.centroid()], "speechSeconds": round(seconds, 2)})
        return out

    def user_of(self, number: int) -> dict[str, Any]:
        return dict(self._named.get(number) or user(self.connection_id, number))

    def _current(self, number: int | None) -> int | None:
        while number is not None and number in self._alias:
            number = self._alias[number]
        return number

    def _with_user(self, obj: dict[str, Any], key: str, number: int | None) -> dict[str, Any]:
        if number is None:
            return obj
        who = self.user_of(number)
        self._published[number] = who
        return {**obj, key: who}

    def _revisions(self, changes: list[Any]) -> list[dict[str, Any]]:
        """A ``speaker_revision`` for each change to a label already published: a merge (the
        messages of the label that goes) or a speaker named after a known voice (its messages)."""
        out = []
        for change in changes:
            renamed = isinstance(change, Renamed)
            old_number, new_number = (change.number, change.number) if renamed else (change.gone, change.kept)
            old = self._published.get(old_number)
            new = self.user_of(new_number)
            if old is None or old == new:
                continue  # never published under the old label: nothing to revise
            ids = [mid for mid, n in self._messages.items() if n == old_number]
            for mid in ids:
                self._messages[mid] = new_number
            self._published.pop(old_number, None)
            self._published[new_number] = new
            out.append({"connectionId": self.connection_id, "reason": "identified" if renamed else "merged",
                        "messageIds": ids, "from": old, "to": new})
        return out


@dataclass
class _Interim:
    start: float  # the open utterance's offset (its interims share it)
    printed: float = float("-inf")  # the audio end of its last print
    future: Future[np.ndarray | None] | None = None
    number: int | None = None  # whom the last print resembled


def _key(start: float, length: float) -> tuple[int, int]:
    return round(start * 1000), round(length * 1000)


_pool_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_busy = 0  # prints submitted and not finished


def _submit(fn: Any, *args: Any) -> Future[np.ndarray | None]:
    global _busy
    pool = _pool()
    with _pool_lock:
        _busy += 1
    future = pool.submit(fn, *args)
    future.add_done_callback(_done)
    return future


def _submit_if_idle(fn: Any, *args: Any) -> Future[np.ndarray | None] | None:
    """Optional work (an interim's print): only when no print is waiting or running."""
    with _pool_lock:
        if _busy:
            return None
    return _submit(fn, *args)


def _done(_: Future[np.ndarray | None]) -> None:
    global _busy
    with _pool_lock:
        _busy -= 1


def _pool() -> ThreadPoolExecutor:
    """One embedding thread per process, shared by every diarizing connection (about 0.05 core-seconds
    per second of speech each: one thread keeps up with many streams and leaves the cores to decoding)."""
    global _executor
    with _pool_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="diarize-embed")
        return _executor


@dataclass(frozen=True)
class Renamed:
    number: int  # this speaker now is (or no longer is) an enrolled voice
