"""Deepgram's live ``/v1/listen`` WebSocket: one daemon connection per socket.

Audio frames (``encoding``/``sample_rate`` as the query says) go to the daemon with ``send_audio``;
the connection's events come back through its event stream and are re-framed:

- interim ``transcript_response`` → ``Results`` with ``is_final: false`` (with ``interim_results=true``),
  and the first of an utterance → ``SpeechStarted`` (with ``vad_events=true``);
- a final ``transcript_response`` and the ``message_response`` that follows it (its words with
  times) → ``Results`` with ``is_final`` and ``speech_final`` true, then ``UtteranceEnd`` (with
  ``utterance_end_ms``);
- ``CloseStream`` (or an empty binary frame) ends the audio; after the last finals the server sends
  ``Metadata`` and closes with 1000. ``KeepAlive`` keeps an idle socket open; ``Finalize`` is
  the daemon's ``finalize`` (the open utterance final now, ``from_finalize``; a daemon without that
  command finalizes at the next pause).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import threading
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import WSMsgType, web

from symblctl.client import DaemonError
from symbld.gateways import finalize, recording
from symbld.gateways.deepgram import shapes
from symbld.gateways.event_pump import pump_events
from symbld.gateways.symbl import audio_in

log = structlog.get_logger(__name__)
CLOSE_TIMEOUT = 2.0


class LiveListen:
    """The socket side of ``[deepgram_api]`` (``client_factory``, ``config`` and ``engine`` as the REST side's)."""

    def __init__(self, client_factory: Callable[[], Any], config: dict[str, Any], engine: str) -> None:
        self.client_factory = client_factory
        self.config = config
        self.engine = engine

    async def serve(self, request: web.Request, protocol: str | None) -> web.StreamResponse:
        opts = shapes.Options(request.query)
        audio = _live_format(request.query)
        ws = web.WebSocketResponse(protocols=(protocol,) if protocol else (), max_msg_size=1 << 20,
                                   timeout=CLOSE_TIMEOUT)
        await ws.prepare(request)
        session = _Session(self, ws, opts, audio)
        try:
            await session.run()
        except Exception:  # after the upgrade a bug can only be told on the socket; the server goes on
            log.exception("deepgram live socket failed", connection_id=session.cid)
            await session._error("Internal error", "the server failed on this stream")
        finally:
            await session.close()
        return ws


def _live_format(query: Any) -> audio_in.ClientAudio:
    encoding = str(query.get("encoding") or "linear16").upper()
    try:
        rate = int(query.get("sample_rate") or (8000 if encoding == "MULAW" else 16000))
    except ValueError:
        raise shapes.DeepgramError(400, "sample_rate must be an integer") from None
    problem = audio_in.check_speech({"encoding": encoding, "sampleRateHertz": rate})
    if problem:
        raise shapes.DeepgramError(400, problem.replace("LINEAR16", "linear16").replace("MULAW", "mulaw"))
    if str(query.get("channels") or "1") != "1":
        raise shapes.DeepgramError(400, "only channels=1 is supported")
    audio = audio_in.ClientAudio()
    audio.set_format(encoding, rate)
    return audio


class _Session:
    def __init__(self, api: LiveListen, ws: web.WebSocketResponse, opts: shapes.Options,
                 audio: audio_in.ClientAudio) -> None:
        self.api, self.ws, self.opts, self.audio = api, ws, opts, audio
        self.loop = asyncio.get_running_loop()
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="deepgram-live")
        self.control: Any = None
        self.cid = ""
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.completed = asyncio.Event()
        self.pump_stop = threading.Event()
        self.sender: asyncio.Task[None] | None = None
        self.forwarded = 0  # bytes of 16 kHz audio sent to the daemon
        self.pending: dict[str, Any] | None = None  # a final waiting for its message_response (words)
        self.started: set[str] = set()  # utterances SpeechStarted was sent for
        self.ended = False
        self.from_finalize = False  # the next final was forced by a Finalize

    async def _call(self, fn: Any) -> Any:
        return await self.loop.run_in_executor(self.executor, fn)

    async def run(self) -> None:
        try:
            self.control = await self._call(self.api.client_factory)
            conn = await self._call(lambda: self.control.start(source={"type": "push", "sampleRate": 16000},
                                                               engine=self.api.engine, **self.opts.start_args()))
        except DaemonError as e:
            await self._error("Cannot start the stream", e.message)
            await self.ws.close(code=1011, message=b"start failed")
            return
        self.cid = str(conn["connectionId"])
        threading.Thread(target=pump_events, args=(self.api.client_factory, self.cid, self.loop, self.events,
                                                   self.pump_stop), kwargs={"api": "deepgram"},
                         daemon=True, name=f"deepgram-pump-{self.cid[:8]}").start()
        self.sender = asyncio.ensure_future(self._send_events())
        if await self._receive():
            await self._finish()

    async def _receive(self) -> bool:
        """Client frames until CloseStream (True) or the socket goes away or idles out (False)."""
        idle = float(self.api.config["idle_timeout"])
        while True:
            try:
                msg = await self.ws.receive(timeout=idle)
            except TimeoutError:
                await self._error("Idle timeout", f"no audio or KeepAlive within {idle:.0f} s")
                return False
            if msg.type == WSMsgType.BINARY:
                if not msg.data:  # the legacy close: an empty frame
                    return True
                await self._forward(self.audio.decode(msg.data))
                continue
            if msg.type != WSMsgType.TEXT:
                return False
            try:
                obj = json.loads(msg.data)
                kind = obj.get("type") if isinstance(obj, dict) else None
            except ValueError:
                kind = None
            if kind == "CloseStream":
                return True
            if kind == "Finalize":
                await self._finalize()
            elif kind != "KeepAlive":
                await self._error("Invalid message", "text frames must be JSON: KeepAlive, Finalize or CloseStream")

    async def _forward(self, pcm: bytes) -> None:
        if not pcm or self.ended:
            return
        wait = recording.BUSY_BACKOFF[0]
        while not self.ws.closed:
            try:
                await self._call(lambda: self.control.send_audio(self.cid, pcm, 16000))
                self.forwarded += len(pcm)
                return
            except DaemonError as e:
                if e.code != "busy":
                    await self._error("Audio not accepted", e.message)
                    return
                await asyncio.sleep(wait)  # the engine is behind: its push queue drains at decode speed
                wait = min(wait * 2, recording.BUSY_BACKOFF[1])

    async def _finalize(self) -> None:
        """The open utterance final now (its Results say ``from_finalize``), where the daemon can."""
        # Marked before asking: the forced final is published (and may be sent on) before the reply comes.
        self.from_finalize = True
        try:
            closed = await self._call(lambda: finalize.finalize(self.control, self.cid))
        except DaemonError as e:
            closed = False
            await self._error("Finalize failed", e.message)
        if not closed:
            self.from_finalize = False  # nothing was open (or no finalize here): no final is forced

    async def _finish(self) -> None:
        """CloseStream: the rest of the audio, the last finals, Metadata, close 1000."""
        await self._forward(self.audio.flush())
        with contextlib.suppress(DaemonError):
            await self._call(lambda: self.control.end_audio(self.cid))
        self.ended = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.completed.wait(), float(self.api.config["stop_timeout"]))
        meta = shapes.metadata(self.cid, round(self.forwarded / 32000, 3), "", self.opts)
        await self._send({"type": "Metadata", **meta})
        await self.ws.close(code=1000)

    async def close(self) -> None:
        """Whatever way the socket ended: a connection still live is stopped, the threads let go."""
        if self.cid and not self.completed.is_set():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._call(lambda: self.control.stop(self.cid)),
                                       float(self.api.config["stop_timeout"]))
        self.pump_stop.set()
        if self.sender is not None:
            self.sender.cancel()
        if self.control is not None:
            with contextlib.suppress(RuntimeError):
                self.executor.submit(self.control.close)
        self.executor.shutdown(wait=False)
        if not self.ws.closed:
            await self.ws.close()

    # ------------------------------------------------------------ daemon events → Deepgram messages

    async def _send_events(self) -> None:
        while True:
            event = await self.events.get()
            etype, data = event.get("type"), event.get("data") or {}
            if etype == "transcript_response":
                await self._transcript(data)
            elif etype == "message_response":
                await self._final(self.pending, data.get("messages") or [])
                self.pending = None
            elif etype == "connection_failed":
                err = data.get("error") or {}
                await self._error("Stream failed", str(err.get("message") or "the connection failed"))
            elif etype == "conversation_completed":
                if self.pending is not None:
                    await self._final(self.pending, [])
                    self.pending = None
                self.completed.set()
                return

    async def _transcript(self, data: dict[str, Any]) -> None:
        dur = data.get("duration") or {}
        start, length = float(dur.get("timeOffset") or 0.0), float(dur.get("duration") or 0.0)
        if self.opts.vad_events and data.get("id") not in self.started:
            self.started.add(str(data.get("id")))
            await self._send({"type": "SpeechStarted", "channel": [0, 1], "timestamp": round(start, 3)})
        if not data.get("isFinal"):
            if self.opts.interim_results:
                await self._send(shapes.results(self.cid, self._text(data), [], start, length, is_final=False,
                                                 speech_final=False, opts=self.opts))
            return
        if self.pending is not None:  # a final whose words never came
            await self._final(self.pending, [])
        self.pending = data if (data.get("punctuated") or {}).get("transcript") else None

    def _text(self, data: dict[str, Any]) -> str:
        return shapes.text(str((data.get("punctuated") or {}).get("transcript") or ""), self.opts)

    async def _final(self, final: dict[str, Any] | None, messages: list[dict[str, Any]]) -> None:
        segments = [recording.segments_of(m) for m in messages]
        words = [shapes.word(w, self.opts) for s in segments for w in s.words]
        if final is not None:
            dur = final.get("duration") or {}
            start, length = float(dur.get("timeOffset") or 0.0), float(dur.get("duration") or 0.0)
            text = self._text(final)
        elif segments:
            start, length = segments[0].start, segments[-1].end - segments[0].start
            text = shapes.text(" ".join(s.text for s in segments), self.opts)
        else:
            return
        forced, self.from_finalize = self.from_finalize, False
        await self._send(shapes.results(self.cid, text, words, start, length, is_final=True, speech_final=not forced,
                                         opts=self.opts, from_finalize=forced))
        if self.opts.utterance_end_ms:
            last = words[-1]["end"] if words else round(start + length, 3)
            await self._send({"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": last})

    async def _send(self, message: dict[str, Any]) -> None:
        if self.ws.closed:
            return
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await self.ws.send_str(json.dumps(message))

    async def _error(self, description: str, message: str) -> None:
        await self._send({"type": "Error", "description": description, "message": message, "variant": "error"})
