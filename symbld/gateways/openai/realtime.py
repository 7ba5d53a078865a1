"""OpenAI's Realtime API, transcription sessions only: WebSocket ``/v1/realtime?intent=transcription``.

Client events: ``session.update`` (GA shape ``session.audio.input.{format, transcription,
turn_detection}``; the beta ``transcription_session.update`` with ``input_audio_format`` too),
``input_audio_buffer.append`` (base64: ``audio/pcm`` 24 kHz, ``audio/pcmu``, ``audio/pcma``),
``input_audio_buffer.commit`` and ``.clear``.

Two turn modes, both clients of the daemon's declared commands:

- ``server_vad`` (the default): the audio streams into one push connection as it arrives; each
  utterance the daemon's VAD closes is an item: ``input_audio_buffer.speech_started`` at its first
  interim, then at its final ``speech_stopped``, ``committed``, one ``...transcription.delta`` and
  ``...transcription.completed``.
- ``turn_detection: null`` (manual): the audio is buffered; each ``commit`` transcribes the buffer
  as one recording (``gateways.recording``): ``committed``, a delta per sentence, ``completed``.

Errors are the API's ``{"type": "error", "error": {type, code, message, param, event_id}}``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import contextlib
import json
import threading
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import structlog
from aiohttp import WSMsgType, web

from symblctl.client import Client, DaemonError
from symbld.audio.convert import StreamResampler
from symbld.gateways import finalize, recording
from symbld.gateways.event_pump import pump_events
from symbld.gateways.symbl import audio_in

log = structlog.get_logger(__name__)

IDLE_TIMEOUT = 1800.0  # seconds without a client event before the session ends
FORMATS = {"audio/pcm": ("LINEAR16", 24000), "pcm16": ("LINEAR16", 24000),
           "audio/pcmu": ("MULAW", 8000), "g711_ulaw": ("MULAW", 8000),
           "audio/pcma": ("ALAW", 8000), "g711_alaw": ("ALAW", 8000)}


def _alaw_table() -> np.ndarray:
    """G.711 A-law byte → int16 (ITU-T G.711), as ``audio_in`` has for mu-law."""
    out = np.zeros(256, dtype=np.int16)
    for i in range(256):
        a = i ^ 0x55
        exponent, mantissa = (a & 0x70) >> 4, a & 0x0F
        value = (mantissa << 4) + 8 if exponent == 0 else ((mantissa << 4) + 0x108) << (exponent - 1)
        out[i] = value if a & 0x80 else -value
    return out


ALAW_TO_PCM = _alaw_table()


class RealtimeError(Exception):
    def __init__(self, message: str, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message, self.code, self.param = message, code, param


class RealtimeTranscription:
    def __init__(self, client_factory: Callable[[], Any], config: dict[str, Any], engine: str) -> None:
        self.client_factory = client_factory
        self.config = config
        self.engine = engine

    async def serve(self, request: web.Request, protocol: str | None) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=(protocol,) if protocol else (), max_msg_size=16 << 20, timeout=2.0)
        await ws.prepare(request)
        session = _Session(self, ws)
        try:
            await session.run()
        except Exception:  # after the upgrade a bug can only be told on the socket; the server goes on
            log.exception("openai realtime session failed", connection_id=session.cid)
            await session.error(RealtimeError("The server had an error.", "server_error"), kind="server_error")
        finally:
            await session.close()
        return ws


class _Session:
    def __init__(self, owner: RealtimeTranscription, ws: web.WebSocketResponse) -> None:
        self.owner, self.ws = owner, ws
        self.loop = asyncio.get_running_loop()
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="openai-realtime")
        self.id = "sess_" + uuid.uuid4().hex[:24]
        self.format = "audio/pcm"
        self.audio = audio_in.ClientAudio("LINEAR16", 24000)
        self._alaw: StreamResampler | None = None
        self.server_vad = True
        self.model = "gpt-4o-transcribe"
        self.language: str | None = None
        self.appended = False
        self.buffer = bytearray()  # manual mode: 16 kHz audio since the last commit
        self.control: Any = None
        self.cid = ""
        self.pump_stop = threading.Event()
        self.items: dict[str, str] = {}  # daemon utterance id → item id
        self.previous_item: str | None = None
        self.tasks: set[asyncio.Future[Any]] = set()
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()  # the daemon's, handled one at a time

    # ------------------------------------------------------------ protocol

    async def run(self) -> None:
        await self.send({"type": "session.created", "session": self.describe()})
        while True:
            try:
                msg = await self.ws.receive(timeout=IDLE_TIMEOUT)
            except TimeoutError:
                await self.error(RealtimeError("Session idle for too long.", "session_expired"))
                return
            if msg.type == WSMsgType.BINARY:
                await self.error(RealtimeError("Binary frames are not accepted: send JSON events "
                                               "(input_audio_buffer.append carries base64 audio).", "invalid_event"))
                continue
            if msg.type != WSMsgType.TEXT:
                return
            try:
                event = json.loads(msg.data)
                if not isinstance(event, dict):
                    raise ValueError("not an object")
            except ValueError:
                await self.error(RealtimeError("The event is not a JSON object.", "invalid_json"))
                continue
            try:
                await self.handle(event)
            except RealtimeError as e:
                await self.error(e, event_id=event.get("event_id"))

    async def handle(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind in ("session.update", "transcription_session.update"):
            self.update(event.get("session"))
            await self.send({"type": kind.replace("update", "updated"), "session": self.describe()})
        elif kind == "input_audio_buffer.append":
            await self.append(event.get("audio"))
        elif kind == "input_audio_buffer.commit":
            await self.commit()
        elif kind == "input_audio_buffer.clear":
            self.buffer.clear()
            await self.send({"type": "input_audio_buffer.cleared"})
        else:
            raise RealtimeError(f"Event type {str(kind)[:60]!r} is not supported in a transcription session.",
                                "unknown_event", "type")

    def update(self, session: Any) -> None:
        if not isinstance(session, dict):
            raise RealtimeError("session must be an object.", "invalid_value", "session")
        audio_input = ((session.get("audio") or {}).get("input") or {}) if isinstance(session.get("audio"), dict) \
            else {}
        fmt = audio_input.get("format") if "format" in audio_input else session.get("input_audio_format")
        transcription = audio_input.get("transcription") or session.get("input_audio_transcription") or {}
        has_turn = "turn_detection" in audio_input or "turn_detection" in session
        turn = audio_input.get("turn_detection") if "turn_detection" in audio_input else session.get("turn_detection")
        if fmt is not None:
            name = fmt.get("type") if isinstance(fmt, dict) else fmt
            if name not in FORMATS:
                raise RealtimeError(f"Unsupported audio format {str(name)[:40]!r}: audio/pcm, audio/pcmu or "
                                    "audio/pcma.", "invalid_value", "session.audio.input.format")
            if isinstance(fmt, dict) and fmt.get("rate") not in (None, FORMATS[name][1]):
                raise RealtimeError(f"{name} is served at {FORMATS[name][1]} Hz.", "invalid_value",
                                    "session.audio.input.format.rate")
            if self.appended and name != self.format:
                raise RealtimeError("The audio format cannot change after audio was appended.", "invalid_value",
                                    "session.audio.input.format")
            self.format = name
            self.audio.set_format(*FORMATS[name])
        if has_turn:
            vad = turn is not None
            if vad and not (isinstance(turn, dict) and turn.get("type", "server_vad") == "server_vad"):
                raise RealtimeError("turn_detection is served as server_vad or null.", "invalid_value",
                                    "session.audio.input.turn_detection")
            if self.appended and vad != self.server_vad:
                raise RealtimeError("turn_detection cannot change after audio was appended.", "invalid_value",
                                    "session.audio.input.turn_detection")
            self.server_vad = vad
        if isinstance(transcription, dict):
            self.model = str(transcription.get("model") or self.model)[:64]
            if transcription.get("language"):
                self.language = str(transcription["language"])[:16]

    def describe(self) -> dict[str, Any]:
        rate = FORMATS[self.format][1]
        turn = ({"type": "server_vad", "threshold": None, "prefix_padding_ms": None, "silence_duration_ms": None}
                if self.server_vad else None)
        return {"type": "transcription", "id": self.id, "object": "realtime.transcription_session",
                "audio": {"input": {"format": {"type": self.format, **({"rate": rate} if self.format == "audio/pcm"
                                                                        else {})},
                                    "transcription": {"model": self.model, "language": self.language, "prompt": ""},
                                    "noise_reduction": None, "turn_detection": turn}},
                "include": None}

    async def append(self, audio: Any) -> None:
        if not isinstance(audio, str):
            raise RealtimeError("audio must be a base64 string.", "invalid_value", "audio")
        try:
            raw = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise RealtimeError("audio is not valid base64.", "invalid_value", "audio") from None
        self.appended = True
        pcm = self._decode(raw)
        if not self.server_vad:
            if len(self.buffer) + len(pcm) > int(self.owner.config["max_body_bytes"]):
                raise RealtimeError("The input audio buffer is full: commit or clear it.", "buffer_full", "audio")
            self.buffer += pcm
            return
        if not self.cid:
            await self._start()
        if pcm:
            await self._forward(pcm)

    def _decode(self, raw: bytes) -> bytes:
        """The appended bytes as 16 kHz LINEAR16 (``audio_in`` decodes PCM and mu-law; A-law is decoded here)."""
        if self.audio.encoding != "ALAW":
            return self.audio.decode(raw)
        if self._alaw is None:
            self._alaw = StreamResampler(8000)
        return self._alaw.process(ALAW_TO_PCM[np.frombuffer(raw, dtype=np.uint8)])

    async def commit(self) -> None:
        if self.server_vad:
            await self._commit_turn()
            return
        if len(self.buffer) < 3200:  # 100 ms, as OpenAI requires
            raise RealtimeError("Error committing input audio buffer: buffer too small. Expected at least 100ms "
                                f"of audio, but buffer only has {len(self.buffer) / 32:.2f}ms of audio.",
                                "input_audio_buffer_commit_empty")
        pcm, item = bytes(self.buffer), self._new_item()
        self.buffer.clear()
        await self.send({"type": "input_audio_buffer.committed", "item_id": item,
                         "previous_item_id": self.previous_item})
        self.previous_item = item
        task = asyncio.ensure_future(self._transcribe_commit(item, pcm))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _transcribe_commit(self, item: str, pcm: bytes) -> None:
        def on_segment(segment: recording.Segment) -> None:
            delta = {"type": "conversation.item.input_audio_transcription.delta", "item_id": item,
                     "content_index": 0, "delta": segment.text + " "}
            asyncio.run_coroutine_threadsafe(self.send(delta), self.loop)

        try:
            transcript = await asyncio.to_thread(
                recording.transcribe, self.owner.client_factory, pcm, engine=self.owner.engine,
                config={"languageCode": self._language_code()} if self.language else None, on_segment=on_segment,
                timeout=float(self.owner.config["timeout"]))
        except recording.TranscriptionFailed as e:
            await self.send({"type": "conversation.item.input_audio_transcription.failed", "item_id": item,
                             "content_index": 0, "error": {"type": "transcription_error", "code": e.code,
                                                           "message": e.message, "param": None}})
            return
        await self._completed(item, transcript.text, transcript.duration)

    # ------------------------------------------------------------ server VAD: one daemon connection

    def _language_code(self) -> str:
        assert self.language is not None
        return "en-US" if self.language.lower() == "en" else self.language

    async def _start(self) -> None:
        def start() -> dict[str, Any]:
            control: Client = self.owner.client_factory()
            self.control = control
            args: dict[str, Any] = {"source": {"type": "push", "sampleRate": 16000}, "engine": self.owner.engine}
            if self.language:
                args["config"] = {"languageCode": self._language_code()}
            return control.start(**args)

        try:
            conn = await self.loop.run_in_executor(self.executor, start)
        except DaemonError as e:
            raise RealtimeError(f"Cannot start transcription: {e.message}", e.code) from None
        self.cid = str(conn["connectionId"])
        threading.Thread(target=pump_events, args=(self.owner.client_factory, self.cid, self.loop, self.events,
                                                   self.pump_stop),
                         kwargs={"api": "openai", "types": ["transcript_response", "connection_failed"]},
                         daemon=True, name=f"openai-rt-{self.cid[:8]}").start()
        task = asyncio.ensure_future(self._handle_events())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _handle_events(self) -> None:
        """In order: an utterance's events all go out before the next utterance's."""
        while True:
            await self._on_event(await self.events.get())

    async def _commit_turn(self) -> None:
        """A commit under server VAD: the open utterance final now (the daemon's ``finalize``); its
        events follow as for a pause. A daemon without ``finalize`` commits at the next pause."""
        if not self.cid:
            raise RealtimeError("Error committing input audio buffer: the buffer is empty.",
                                "input_audio_buffer_commit_empty")
        try:
            closed = await self.loop.run_in_executor(self.executor, lambda: finalize.finalize(self.control, self.cid))
        except DaemonError as e:
            raise RealtimeError(f"Commit failed: {e.message}", e.code) from None
        if closed is None:
            raise RealtimeError("This daemon commits server_vad turns at the next pause only (no finalize "
                                "command); set turn_detection to null to commit by hand.", "commit_not_supported")
        if not closed:
            raise RealtimeError("Error committing input audio buffer: no speech since the last turn.",
                                "input_audio_buffer_commit_empty")

    async def _forward(self, pcm: bytes) -> None:
        wait = recording.BUSY_BACKOFF[0]
        while not self.ws.closed:
            try:
                await self.loop.run_in_executor(self.executor, lambda: self.control.send_audio(self.cid, pcm, 16000))
                return
            except DaemonError as e:
                if e.code != "busy":
                    raise RealtimeError(f"Audio not accepted: {e.message}", e.code, "audio") from None
                await asyncio.sleep(wait)  # the engine is behind: its push queue drains at decode speed
                wait = min(wait * 2, recording.BUSY_BACKOFF[1])

    async def _on_event(self, event: dict[str, Any]) -> None:
        data = event.get("data") or {}
        if event.get("type") == "connection_failed":
            err = data.get("error") or {}
            await self.error(RealtimeError(f"Transcription failed: {err.get('message', 'connection failed')}",
                                           str(err.get("code") or "server_error")), kind="server_error")
            return
        if event.get("type") != "transcript_response":
            return
        uid = str(data.get("id"))
        dur = data.get("duration") or {}
        start_ms = round(float(dur.get("timeOffset") or 0.0) * 1000)
        end_ms = start_ms + round(float(dur.get("duration") or 0.0) * 1000)
        text = str((data.get("punctuated") or {}).get("transcript") or "")
        item = self.items.get(uid)
        if item is None:
            if data.get("isFinal") and not text:
                return  # VAD heard no words: no turn
            item = self.items[uid] = self._new_item()
            await self.send({"type": "input_audio_buffer.speech_started", "audio_start_ms": start_ms,
                             "item_id": item})
        if not data.get("isFinal"):
            return
        self.items.pop(uid, None)
        await self.send({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": end_ms, "item_id": item})
        await self.send({"type": "input_audio_buffer.committed", "item_id": item,
                         "previous_item_id": self.previous_item})
        self.previous_item = item
        if text:
            await self.send({"type": "conversation.item.input_audio_transcription.delta", "item_id": item,
                             "content_index": 0, "delta": text})
        await self._completed(item, text, (end_ms - start_ms) / 1000)

    # ------------------------------------------------------------ sending and ending

    async def _completed(self, item: str, text: str, seconds: float) -> None:
        await self.send({"type": "conversation.item.input_audio_transcription.completed", "item_id": item,
                         "content_index": 0, "transcript": text, "logprobs": None,
                         "usage": {"type": "duration", "seconds": round(seconds, 3)}})

    def _new_item(self) -> str:
        return "item_" + uuid.uuid4().hex[:24]

    async def send(self, event: dict[str, Any]) -> None:
        if self.ws.closed:
            return
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await self.ws.send_str(json.dumps({"event_id": "event_" + uuid.uuid4().hex[:24], **event}))

    async def error(self, e: RealtimeError, event_id: Any = None, kind: str = "invalid_request_error") -> None:
        await self.send({"type": "error", "error": {"type": kind, "code": e.code, "message": e.message,
                                                    "param": e.param, "event_id": event_id}})

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.cid:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.loop.run_in_executor(self.executor, lambda: self.control.stop(self.cid)),
                                       30)
        self.pump_stop.set()
        if self.control is not None:
            with contextlib.suppress(RuntimeError):
                self.executor.submit(self.control.close)
        self.executor.shutdown(wait=False)
        if not self.ws.closed:
            await self.ws.close()
