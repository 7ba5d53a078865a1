"""Speaker labels on one connection's results, as they are published.

The labeller keeps the last ``KEEP_SECONDS`` of the audio the engine was fed (a ring, positions
in engine time) and, for each final, hears the utterance in tiles of about ``TILE_SECONDS``, cuts
it where the voice changes (``changes``; one piece when it does not) and clusters each piece's print:

* the final ``transcript_response`` gets ``user`` (the speaker of most of the utterance);
* each message of the ``message_response`` that follows gets ``from``: each word takes the speaker
  of the piece it falls in, and a message whose words change speaker is split there (words keep
  their times). Without tiles (no utterance end from the engine): a print per sentence long enough
  to tell, else the utterance's speaker.

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

A final never waits long for its prints: the session waits at most ``WAIT_SECONDS`` (``await_prints``);
a final whose prints are not ready then goes out with the best label there is (the interim's provisional
one, else the current speaker: ``provisional``) and its messages unsplit. When its prints come (on the
embedding thread, then ``settle`` on the settling thread) they are clustered in utterance order, and each
message they attribute to another speaker gets a ``speaker_revision`` with ``reason: "late"`` (those
message ids only). The embedding work degrades instead of queueing without bound: an utterance whose final
went out ``TAIL_AFTER`` seconds before its prints could start is heard from its last ``TAIL_SECONDS`` only
(one print, no change finding); ``SKIP_AFTER`` seconds: not at all (its provisional labels stay). Counted
in ``work()`` (the connection object's ``diarizationWork``, /metrics).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from symbld.diarization import embedder
from symbld.diarization.clusters import OnlineClusters

RATE = 16000
KEEP_SECONDS = 120.0  # a final's audio is always younger than this (the engine cuts utterances at ~30 s)
KEEP_MESSAGES = 5000
MESSAGE_SECONDS = 1.5  # a sentence at least this long gets its own print (when no tiles were heard)
# An utterance is heard in tiles of about this long (round(length / TILE_SECONDS) equal tiles, so 1.33-2.67 s),
# each its own print, to find where the speaker changes inside it (quick turn-taking, overlap: no pause the
# recogniser ends an utterance at); each stretch between changes is then clustered on a print of its own.
# Without this, such an utterance gave one print of two voices, which founded or moved a centroid halfway
# between them, and every sentence of either person joined it.
TILE_SECONDS = 2.0
INTERIM_SECONDS = 2.0  # the latest audio of an open utterance an interim's print hears
INTERIM_EVERY = 1.5  # audio seconds between two interim prints of one utterance
PREFETCH_KEEP = 256  # prints taken ahead for finals not yet published (a few kB each; more: the engine is far behind.
# 16 was too few fed fast on a loaded machine: an evicted utterance was heard again without its speech start)
# Latency before completeness (issue 24: a final's label no later than the final plus 100 ms): a final waits at most
# this long for its prints, then goes out with a provisional label and is revised when they come.
WAIT_SECONDS = 0.1
# Audio fed faster than it plays (a file with --fast, a recording pushed at once) has nobody waiting on its finals in
# real time: they wait for their prints as before (whole labels, messages split where the voice changes, which a late
# print cannot do to a message already out), up to this long.
FAST_WAIT_SECONDS = 60.0
# Load shedding, decided when an utterance's prints start on the embedding thread, by how long ago its final went out
# without them (the thread is that far behind the finals): a print of only its last TAIL_SECONDS of speech (one print
# instead of a tile every 2 s plus one of all of it: about 4x less for a 6 s utterance), or none at all.
TAIL_AFTER = 1.0
TAIL_SECONDS = 3.0
SKIP_AFTER = 20.0  # bounds the queue: a job this late costs nothing, so the thread catches up
SETTLE_WAIT = 120.0  # at the end of a connection: how long its last prints are waited for
# Tests: every utterance's prints wait until its final has gone out (deterministically late; tests/test_diarization.py)
HOLD_PRINTS = os.environ.get("SYMBLD_DIARIZE_HOLD_PRINTS") == "1"
_NS = uuid.UUID("0d6f4c1e-8a53-4a7e-9c77-2a3f3f1b6d20")


def user(connection_id: str, number: int) -> dict[str, Any]:
    """The ``from``/``user`` object of speaker ``number``: the same id for the whole connection."""
    return {"id": str(uuid.uuid5(_NS, f"{connection_id}/speaker/{number}")), "name": f"Speaker {number}"}


class AudioRing:
    """The last ``seconds`` of 16-bit PCM, addressed by sample position from the stream start."""

    def __init__(self, seconds: float = KEEP_SECONDS) -> None:
        # Written through once here: calloc'd zeros are mapped lazily, so the ring's 3.8 MB would join the RSS
        # over its first two minutes of audio and read as a leak (tests/test_resources.py's soak saw it).
        self._buf = np.zeros(int(seconds * RATE), dtype=np.int16)
        self._buf.fill(0)
        self.end = 0  # samples written so far
        self._lock = threading.Lock()

    def write(self, pcm: bytes) -> None:
        data = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2")
        with self._lock:
            size = len(self._buf)
            if not size:  # released: the connection has ended
                return
            if len(data) >= size:  # more than the ring holds: only its end is kept, its start is counted
                self.end += len(data) - size
                data = data[-size:]
            at = self.end % size
            first = min(size - at, len(data))
            self._buf[at : at + first] = data[:first]
            self._buf[: len(data) - first] = data[first:]
            self.end += len(data)

    def release(self) -> None:
        """Give the buffer back (the connection ended): later reads find nothing and writes are ignored."""
        with self._lock:
            self._buf = np.zeros(0, dtype=np.int16)

    def read(self, start: float, end: float) -> np.ndarray:
        """Float audio between two times (seconds), clipped to what is still held."""
        with self._lock:
            size = len(self._buf)
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

        global EMBED_NICE
        EMBED_NICE = int(settings.get("printNice", EMBED_NICE))  # before the embedding thread starts (_pool)
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
        self._prefetched: OrderedDict[tuple[int, int], _Job] = OrderedDict()
        self._tiles: list[tuple[float, float, int]] = []  # the last final's tiles: (start, end, speaker number)
        self._interim: _Interim | None = None  # the open utterance's provisional print
        self._lock = threading.RLock()  # label() on an emit thread, settle() on the settling thread
        self._pending: deque[_Pending] = deque()  # finals published before their prints, in utterance order
        self._open: _Pending | None = None  # the last final's, while its messages are still to come
        self.on_ready: Callable[[], None] | None = None  # a late final's prints came: call settle() (the session)
        self.counts = {"provisionalFinals": 0, "lateRevisedMessages": 0, "tailPrints": 0, "skippedPrints": 0}
        self.audio_seconds = 0.0  # fed (for CPU per audio second)

    def feed(self, pcm: bytes) -> None:
        self.ring.write(pcm)
        self.audio_seconds += len(pcm) / 2 / RATE

    def prefetch(self, start: float, length: float, speech: float | None = None) -> None:
        """The engine closed an utterance (``start``, ``length`` seconds; its speech from ``speech`` on, after
        the pre-roll it keeps; called under its stream lock): take its prints now on the embedding thread,
        beside the final's decode, so the final need not wait for them."""
        job = _Job(start, length, speech)
        job.future = _submit(self._job_prints, job)
        job.future.add_done_callback(lambda _: self._notify(job))
        with self._prefetch_lock:
            self._prefetched[_key(start, length)] = job
            while len(self._prefetched) > PREFETCH_KEEP:
                self._prefetched.popitem(last=False)

    def _job_prints(self, job: _Job) -> list[Tile]:
        """One utterance's prints on the embedding thread, as much of them as the backlog allows."""
        behind = time.monotonic() - job.published_at if job.published_at is not None else 0.0
        if HOLD_PRINTS:  # late by design, not behind: the whole prints, once the final is out
            job.published.wait(60.0)
            behind = 0.0
        if behind >= SKIP_AFTER:
            with self._prefetch_lock:
                self.counts["skippedPrints"] += 1
            return []
        if behind >= TAIL_AFTER:
            with self._prefetch_lock:
                self.counts["tailPrints"] += 1
            end = job.start + job.length
            heard = max(job.start, job.speech or job.start, end - TAIL_SECONDS)
            return [Tile(heard, end - heard, self._print(heard, end - heard))]
        return self._tile_prints(job.start, job.length, job.speech)

    def _notify(self, job: _Job) -> None:
        """A job is done: when its final went out without it, the session is to publish its revisions."""
        if job.late and self.on_ready is not None:
            _settler().put(self.on_ready)

    def await_prints(self, data: dict[str, Any], live: bool) -> None:
        """Before a final is labelled (no lock held): give its prints up to ``WAIT_SECONDS`` to be ready
        (``FAST_WAIT_SECONDS`` when not ``live``: the audio is fed faster than it plays)."""
        timeout = WAIT_SECONDS if live or HOLD_PRINTS else FAST_WAIT_SECONDS
        d = data.get("duration") or {}
        with self._prefetch_lock:
            job = self._prefetched.get(_key(float(d.get("timeOffset") or 0.0), float(d.get("duration") or 0.0)))
        if job is not None and job.future is not None:
            wait([job.future], timeout)

    def _tile_prints(self, start: float, length: float, speech: float | None = None) -> list[Tile]:
        """The utterance cut where its voice changes (one piece when it does not), each piece's print.
        Tiles cover its speech (from ``speech``, when the engine said where it starts): a tile of pre-roll
        silence would look like another voice."""
        lead = min(max((speech or start) - start, 0.0), length)
        spans = tiles(start + lead, length - lead)
        if len(spans) < 2:
            return [Tile(start, length, self._print(start, length))]
        prints = [self._print(a, n) for a, n in spans]
        if any(p is None for p in prints):  # audio no longer held: no change can be told
            return [Tile(start, length, self._print(start, length))]
        pieces = changes([p for p in prints if p is not None], self.clusters.threshold)
        if len(pieces) == 1:  # one voice: one print of it all
            return [Tile(start, length, self._print(start, length))]
        bounds = [spans[i][0] for i, _ in pieces] + [start + length]
        bounds[0] = start
        heard = [Tile(a, b - a, self._print(a, b - a)) for a, b in itertools.pairwise(bounds)]
        return self._confirmed(heard)

    def _confirmed(self, pieces: list[Tile]) -> list[Tile]:
        """Each change confirmed by the prints of the whole pieces on its two sides (longer audio than the
        tiles' says more): two neighbours that resemble each other at least ``threshold`` are one piece."""
        while len(pieces) > 1:
            scores = [-2.0 if a.print is None or b.print is None else float(a.print @ b.print)
                      for a, b in itertools.pairwise(pieces)]
            i = int(np.argmax(scores))
            if scores[i] < self.clusters.threshold:
                break
            a, b = pieces[i], pieces[i + 1]
            length = b.start + b.length - a.start
            pieces[i : i + 2] = [Tile(a.start, length, self._print(a.start, length))]
        return pieces

    def _print(self, start: float, length: float) -> np.ndarray | None:
        t = time.thread_time()
        vec = embedder.embed(self.ring.read(start, start + length))
        with self._prefetch_lock:
            self.cpu_seconds += time.thread_time() - t
        return vec

    def label(self, event_type: str, data: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """``data`` with its speaker, and the revision events to publish after it."""
        with self._lock:
            if event_type == "transcript_response" and data.get("isFinal"):
                return self._label_final(data)
            if event_type == "message_response":
                if self._open is not None:  # its prints are late: one provisional label per message
                    return self._label_provisional(data), []
                return self._label_messages(data)
            if event_type == "transcript_response":
                return self._label_interim(data), []
            return data, []

    def _label_final(self, data: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        revisions = self._settle_ready()
        d = data.get("duration") or {}
        start, length = float(d.get("timeOffset") or 0.0), float(d.get("duration") or 0.0)
        with self._prefetch_lock:
            job = self._prefetched.pop(_key(start, length), None)
        self._open = None
        if job is not None and job.future is not None and (self._pending or not job.future.done()):
            number = self.provisional(start)
            self._tiles = []
            self._open = pending = _Pending(job, number)
            self._pending.append(pending)
            job.mark_published()
            self.counts["provisionalFinals"] += 1
            if job.future.done():  # done before it was marked late: its callback did not ask for settle()
                self._notify(job)
            return self._with_user(data, "user", number), revisions
        heard = job.future.result() if job is not None and job.future is not None else \
            self._tile_prints(start, length)
        number, merges = self._utterance_speakers(start, length, heard)
        self._utterance = number
        return self._with_user(data, "user", number), revisions + self._revisions(merges)

    def provisional(self, start: float) -> int | None:
        """The best label before an utterance's prints: whom its interims' print resembled, else the speaker
        of the last final, else the first speaker (nothing heard yet: whoever speaks first is Speaker 1)."""
        state = self._interim
        if state is not None and state.start == start and state.number is not None:
            return self._current(state.number)
        if self._utterance is not None:
            return self._current(self._utterance)
        return None if self.clusters.speakers else 1

    def _label_provisional(self, data: dict[str, Any]) -> dict[str, Any]:
        pending, self._open = self._open, None
        assert pending is not None
        out = []
        for m in data.get("messages") or []:
            out.append(self._note_message(m, pending.number))
            pending.messages.append(out[-1])
        return {**data, "messages": out}

    def settle(self) -> list[dict[str, Any]]:
        """Cluster the late finals whose prints have come (in utterance order) and return the revisions for
        the messages they attribute to another speaker."""
        with self._lock:
            return self._settle_ready()

    def wait_pending(self, timeout: float = SETTLE_WAIT) -> None:
        """At a connection's end (no lock held): wait for the late finals' prints still being taken."""
        with self._lock:
            futures = [p.job.future for p in self._pending if p.job.future is not None]
        wait(futures, timeout)

    def _settle_ready(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while self._pending and self._pending[0].job.future is not None and self._pending[0].job.future.done():
            out += self._resolve(self._pending.popleft())
        return out

    def _resolve(self, pending: _Pending) -> list[dict[str, Any]]:
        """A late final's prints are in: cluster them; its messages (already published) are labelled by these
        tiles as they would have been on time, and each that changed gets a revision: a new ``from``, or when
        its voice changes inside it, ``parts`` (the message split there, as a message in time would be)."""
        assert pending.job.future is not None
        heard = pending.job.future.result()
        tiles_before = self._tiles
        number, merges = self._utterance_speakers(pending.job.start, pending.job.length, heard)
        revisions = self._revisions(merges)
        if number is not None:
            self._utterance = number
        if pending is self._open:  # its messages are still to come: they are labelled by these tiles
            self._open = None
            return revisions
        moved: dict[tuple[int | None, int], list[str]] = {}
        try:
            for m in pending.messages:
                mid = str(m.get("id") or "")
                parts = self._by_tiles(m) if self._tiles and mid else None
                if not parts:
                    continue
                old = self._current(self._messages.get(mid))
                seconds = float((m.get("duration") or {}).get("duration") or 0.0)
                new = parts[0][1]
                if len(parts) == 1 and (new is None or new == old):
                    continue
                if old is not None:
                    self._talk[old] = self._talk.get(old, 0.0) - seconds
                self.counts["lateRevisedMessages"] += 1
                if new is not None and len(parts) == 1:
                    moved.setdefault((old, new), []).append(mid)
                    self._note_message(m, new)
                    continue
                out = [self._note_message(part, n) for part, n in parts]
                revisions.append({"connectionId": self.connection_id, "reason": "late", "messageIds": [mid],
                                  "from": {} if old is None else self.user_of(old), "to": out[0].get("from") or {},
                                  "parts": out})
        finally:
            self._tiles = tiles_before
        for (old, new), ids in moved.items():
            revisions.append({"connectionId": self.connection_id, "reason": "late", "messageIds": ids,
                              "from": {} if old is None else self.user_of(old), "to": self.user_of(new)})
        return revisions

    def let_go(self) -> None:
        """The connection ended and its last prints are settled: its audio and the prints taken ahead are not
        needed again. The daemon keeps ended connections (and their labellers, for ``diarizationWork``) for
        ``get``; each one's ring held 3.8 MB: 3,000 start/stop cycles grew the daemon by 2.4 GB."""
        self.ring.release()
        with self._prefetch_lock:
            self._prefetched.clear()

    def work(self) -> dict[str, Any]:
        """What the prints cost and how they kept up (the connection object's ``diarizationWork``)."""
        with self._prefetch_lock:
            cpu, counts = self.cpu_seconds, dict(self.counts)
        return {**counts, "printCpuSeconds": round(cpu, 3),
                "printCpuPerAudioSecond": round(cpu / self.audio_seconds, 4) if self.audio_seconds else 0.0,
                "waitingFinals": len(self._pending)}

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
        out: list[dict[str, Any]] = []
        merges: list[Any] = []
        for m in messages:
            parts = self._by_tiles(m)
            if parts is None:  # no tiles heard (an engine without utterance ends): a print per sentence
                d = m.get("duration") or {}
                number = self._utterance
                if (len(messages) > 1 and float(d.get("duration") or 0) >= MESSAGE_SECONDS) or number is None:
                    number, found = self._speaker_of(d)
                    merges += found
                parts = [(m, number)]
            out += [self._note_message(part, number) for part, number in parts]
        return {**data, "messages": out}, self._revisions(merges)

    def _note_message(self, m: dict[str, Any], number: int | None) -> dict[str, Any]:
        """One message as published under ``number`` (its talk time and id kept, for revisions)."""
        if number is None:
            return m
        self._talk[number] = self._talk.get(number, 0.0) + float((m.get("duration") or {}).get("duration") or 0.0)
        if m.get("id"):
            self._messages[m["id"]] = number
            while len(self._messages) > KEEP_MESSAGES:
                self._messages.popitem(last=False)
        return self._with_user(m, "from", number)

    def _by_tiles(self, m: dict[str, Any]) -> list[tuple[dict[str, Any], int | None]] | None:
        """A message labelled by the last final's tiles: each word takes the speaker of the tile its middle
        falls in, and the message is split where that speaker changes (words keep their times), when its
        text is its words (otherwise one label: the speaker of most of its time). None: no tiles."""
        if not self._tiles:
            return None
        d = m.get("duration") or {}
        start = float(d.get("timeOffset") or 0.0)
        length = float(d.get("duration") or 0.0)
        words = _words(m)
        if not words:
            return [(m, self._most(start, start + length))]
        first = words[0][1]
        timed = [(w, start + a - first, start + b - first) for w, a, b in words]
        runs = _runs([(w, a, b, self._current(self._tile_at((a + b) / 2))) for w, a, b in timed])
        text = (m.get("payload") or {}).get("content")
        if len(runs) == 1 or text != " ".join(w["word"] for w, *_ in timed):
            return [(m, self._most(start, start + length))] if len(runs) > 1 else [(m, runs[0][0])]
        return [(_part(m, run, i), number) for i, (number, run) in enumerate(runs)]

    def _tile_at(self, t: float) -> int:
        return min(self._tiles, key=lambda x: 0.0 if x[0] <= t <= x[1] else min(abs(t - x[0]), abs(t - x[1])))[2]

    def _most(self, start: float, end: float) -> int | None:
        """The speaker of most of ``start``..``end`` by the last final's tiles (the nearest if none overlaps)."""
        seconds: dict[int, float] = {}
        for a, b, n in self._tiles:
            seconds[n] = seconds.get(n, 0.0) + max(0.0, min(b, end) - max(a, start))
        number = max(seconds, key=lambda n: seconds[n]) if seconds and max(seconds.values()) > 0 else \
            self._tile_at((start + end) / 2)
        return self._current(number)

    def _utterance_speakers(self, start: float, length: float, heard: list[Tile]) -> tuple[int | None, list[Any]]:
        """Cluster each tile of a final's utterance; the utterance's speaker is the one of most of its tiles."""
        self._tiles = []
        found: list[Any] = []
        for tile in heard:
            if tile.print is None:
                continue
            number, changes = self._assign(tile.print, tile.length)
            found += changes
            if number is not None:
                self._tiles.append((tile.start, tile.start + tile.length, number))
        if not self._tiles:
            return self._current(self._utterance), found
        return self._most(start, start + length), found

    def _speaker_of(self, duration: dict[str, Any]) -> tuple[int | None, list[Any]]:
        start = float(duration.get("timeOffset") or 0.0)
        length = float(duration.get("duration") or 0.0)
        vec = self._print(start, length)
        if vec is None:
            return self._current(self._utterance), []
        return self._assign(vec, length)

    def _assign(self, vec: np.ndarray, length: float) -> tuple[int | None, list[Any]]:
        """Cluster one print; the speaker it joined and the changes (merges, namings) it caused."""
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


@dataclass(frozen=True)
class Tile:
    start: float
    length: float
    print: np.ndarray | None  # None: too short to tell


def changes(prints: list[np.ndarray], threshold: float) -> list[tuple[int, int]]:
    """Consecutive tiles' prints cut into runs of one voice: (first, end) index ranges. Binary
    segmentation: the boundary where the mean print before it and the mean print after it are least
    alike is a change when they resemble each other less than ``threshold`` (the bar a print must reach
    to join a speaker); each side is then cut the same way."""
    if len(prints) < 2:
        return [(0, len(prints))]
    best, score = 0, 1.0
    for k in range(1, len(prints)):
        left, right = np.sum(prints[:k], axis=0), np.sum(prints[k:], axis=0)
        cos = float(left @ right) / max(float(np.linalg.norm(left) * np.linalg.norm(right)), 1e-9)
        if cos < score:
            best, score = k, cos
    if score >= threshold:
        return [(0, len(prints))]
    return [*changes(prints[:best], threshold), *((i + best, j + best) for i, j in changes(prints[best:], threshold))]


def tiles(start: float, length: float) -> list[tuple[float, float]]:
    """``round(length / TILE_SECONDS)`` equal tiles (at least one) of ``start``..``start + length``."""
    n = max(1, round(length / TILE_SECONDS))
    return [(start + i * length / n, length / n) for i in range(n)]


def _words(m: dict[str, Any]) -> list[tuple[dict[str, Any], float, float]]:
    """A message's words with their start and end (seconds since the epoch, from their ISO times)."""
    import json
    from datetime import datetime

    try:
        words = json.loads((m.get("metadata") or {}).get("words") or "[]")
        return [(w, datetime.fromisoformat(w["startTime"].replace("Z", "+00:00")).timestamp(),
                 datetime.fromisoformat(w["endTime"].replace("Z", "+00:00")).timestamp()) for w in words]
    except (ValueError, KeyError, TypeError, AttributeError):
        return []


def _runs(labelled: list[tuple[dict[str, Any], float, float, int | None]]) -> list[tuple[int | None, list[Any]]]:
    """Consecutive words of one speaker; a lone word between others goes with the run before it (one
    word says too little to split a sentence for)."""
    runs: list[tuple[int | None, list[Any]]] = []
    for item in labelled:
        number = item[3]
        if runs and runs[-1][0] == number:
            runs[-1][1].append(item)
        else:
            runs.append((number, [item]))
    out: list[tuple[int | None, list[Any]]] = []
    for number, items in runs:
        if out and (len(items) == 1 or out[-1][0] == number):
            out[-1][1].extend(items)
        else:
            out.append((number, items))
    if len(out) > 1 and len(out[0][1]) == 1:  # a lone first word goes with the run after it
        lone = out.pop(0)
        out[0] = (out[0][0], lone[1] + out[0][1])
    return out


def _part(m: dict[str, Any], run: list[tuple[dict[str, Any], float, float, int | None]], i: int) -> dict[str, Any]:
    """The words of one run of a message as a message of their own (the first keeps the message's id)."""
    import json

    from symbld import shapes

    words = [w for w, *_ in run]
    text = " ".join(w["word"] for w in words)
    mid = m.get("id") if i == 0 else shapes.new_id()
    d = m.get("duration") or {}
    offset, end = run[0][1], run[-1][2]
    duration = {**d, "timeOffset": round(offset, 3), "duration": round(end - offset, 3)}
    if "startTime" in d:
        duration["startTime"], duration["endTime"] = words[0]["startTime"], words[-1]["endTime"]
    meta = {**(m.get("metadata") or {}), "words": json.dumps(words, separators=(",", ":")), "originalContent": text}
    if mid is not None:
        meta["originalMessageId"] = mid
    payload = {**(m.get("payload") or {}), "content": text}
    return {**m, "id": mid, "payload": payload, "metadata": meta, "duration": duration}


@dataclass
class _Job:
    """One closed utterance's prints, taken on the embedding thread."""
    start: float
    length: float
    speech: float | None
    future: Future[list[Tile]] | None = None
    published_at: float | None = None  # when its final went out without them (monotonic)
    late: bool = False
    published: threading.Event = field(default_factory=threading.Event)

    def mark_published(self) -> None:
        self.published_at = time.monotonic()
        self.late = True
        self.published.set()


@dataclass
class _Pending:
    """A final published before its prints (its utterance: ``job``): its provisional label and the messages that
    carried it."""
    job: _Job
    number: int | None
    messages: list[dict[str, Any]] = field(default_factory=list)  # as published


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


def _submit(fn: Any, *args: Any) -> Future[Any]:
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


def cancel_queued_prints() -> int:
    """At the daemon's exit: drop the voice prints still waiting for the embedding thread; how many were not done.

    concurrent.futures joins its threads at interpreter exit only after they have run every queued item, so a
    backlog of prints (a stop while connections were still being decoded, on a loaded machine) held the process
    tens of seconds after ``symbld_stopped``, past systemd's stop timeout (a CI run: more than 28 s). Their
    finals are out already, with provisional labels; a print running now finishes (well under a second).
    """
    global _executor
    with _pool_lock:
        pool, _executor, not_done = _executor, None, _busy
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)
    return not_done


_settle_queue: queue.SimpleQueue[Callable[[], None]] | None = None


def _settler() -> queue.SimpleQueue[Callable[[], None]]:
    """One thread per process that publishes late prints' revisions (``Labeller.on_ready``): never the
    embedding thread, which must not wait for a session's publishing."""
    global _settle_queue
    with _pool_lock:
        if _settle_queue is None:
            _settle_queue = queue.SimpleQueue()
            threading.Thread(target=_settle_forever, args=(_settle_queue,), name="diarize-settle", daemon=True).start()
        return _settle_queue


def _settle_forever(jobs: queue.SimpleQueue[Callable[[], None]]) -> None:
    while True:
        job = jobs.get()
        try:
            job()
        except Exception:  # noqa: BLE001 - a revision lost is a label left provisional, never a dead thread
            import structlog

            structlog.get_logger(__name__).exception("diarization_settle_failed")


def _pool() -> ThreadPoolExecutor:
    """One embedding thread per process, shared by every diarizing connection (about 0.05 core-seconds
    per second of speech each: one thread keeps up with many streams and leaves the cores to decoding).
    The settling thread starts with it, not at the first late print: the daemon's threads are then the same
    from the first diarized utterance on, whatever the load (a thread that appears later reads as a leak)."""
    global _executor
    with _pool_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="diarize-embed",
                                           initializer=_lower_priority)
        pool = _executor
    _settler()
    return pool


# The embedding thread's nice value ([diarization] print_nice, 10; the first diarizing connection of the process sets
# it). With the daemon short of CPU, prints that ran beside the decodes at the same priority slowed the finals by
# seconds (8 live streams at load 8: speech end -> final p50 4.2 s against 0.7 s without diarization) although a final
# waits at most 100 ms for them; at nice 10, 1.5 s against 0.8 s. Finals go out without their prints and are revised,
# so the prints get the CPU the decodes leave (cut to a tail, or skipped, when that is too little). The price: under
# load from other processes, the interims' prints (taken only while the thread is idle) rarely come.
EMBED_NICE = 10


def _lower_priority() -> None:
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or not allowed: the same work at normal priority
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), EMBED_NICE)  # Linux: a thread's own nice value



@dataclass(frozen=True)
class Renamed:
    number: int  # this speaker now is (or no longer is) an enrolled voice
