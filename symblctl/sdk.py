"""The Symbl Python SDK's surface, served by the local symbld daemon.

Code written for ``import symbl`` runs with ``import symblctl as symbl``::

    connection = symbl.Streaming.start_connection(insight_types=["question", "action_item"])
    connection.subscribe({"message_response": lambda r: print(r["messages"][0]["payload"]["content"])})
    connection.send_audio(pcm_16k_s16le)
    connection.stop()                      # flushes finals; returns the connection, with conversationId

    call = symbl.Telephony.start_sip(uri="sip:8002@127.0.0.1:5070", actions=[...])
    symbl.stop(call.connectionId)

What differs from the SDK (on purpose, its flaws fixed; docs/client.md has the details):
``subscribe`` never blocks and never loses events (history merged by seq); callbacks always get a
dict (Symbl's frame, i.e. our event's ``data``); every call has a timeout and raises
``DaemonUnavailable`` instead of hanging; ``stop`` really stops (flushes, hangs up) and returns a
``Connection``; actions are validated at start; ``credentials`` are accepted and ignored (the
daemon holds any cloud credentials).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

from symblctl.client import Client, DaemonError, DaemonUnavailable, EventStream

log = structlog.get_logger(__name__)

Callback = Callable[[Any], Any]

SYMBL_EVENTS = ("message_response", "insight_response", "tracker_response", "transcript_response", "topic_response")
ENDED_STATES = ("stopped", "failed")
_AUDIO_CHUNK = 512 * 1024  # under the daemon's 1 MiB frame limit
_LIVENESS_TIMEOUT = 2.0  # a ping before slow commands: a dead daemon fails in seconds, not minutes
_POLL_S = 0.2
_IDLE_CHECK_S = 3.0  # no event for this long: check the daemon is there and nothing was missed


def _check_list(name: str, value: Any) -> list[Any] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise TypeError(f"{name} must be a list, not {type(value).__name__}")
    return value


def _check_dict(name: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"{name} must be a dict, not {type(value).__name__}")
    return value


def _actions(actions: Any) -> list[dict[str, Any]] | None:
    """The daemon validates them (bad_request at start); the SDK's default ``{}`` (an object, a bug) means none."""
    if actions is None or actions == {}:
        return None
    checked: list[dict[str, Any]] = actions
    return checked


def _timezone_offset(tz: str | None) -> int | None:
    """Symbl's telephony ``timezone`` (an IANA name) as ``timezoneOffset`` minutes."""
    if tz is None:
        return None
    if not isinstance(tz, str):
        raise TypeError("timezone must be a str such as 'Europe/Paris'")
    from datetime import datetime
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        offset = datetime.now(ZoneInfo(tz)).utcoffset()
    except (ZoneInfoNotFoundError, ValueError):
        raise DaemonError("bad_request", f"unknown timezone {tz!r}", {"argument": "timezone"}) from None
    return int(offset.total_seconds() // 60) if offset is not None else 0


class _Endpoints:
    """Where the daemon is and how long to wait; read from the environment at each use by default."""

    def __init__(self, control: str | None = None, events: str | None = None, timeout: float = 10.0,
                 retries: int = 1) -> None:
        self.control = control
        self.events = events
        self.timeout = timeout
        self.retries = retries

    def client(self) -> Client:
        return Client(self.control, self.events, timeout=self.timeout, retries=self.retries)

    def ping(self) -> None:
        """Fail fast (DaemonUnavailable) when nothing answers, before a command that may take minutes."""
        with Client(self.control, self.events, timeout=_LIVENESS_TIMEOUT, retries=0) as c:
            c.ping()


class Connection:
    """One symbld connection (Symbl's ``Connection`` / ``StreamingConnection``).

    Attributes: ``connectionId``, ``conversationId``, ``state`` and ``info`` (the daemon's
    connection object, refreshed by ``stop``/``refresh`` and by lifecycle events).
    Methods may be called from any thread.
    """

    def __init__(self, info: dict[str, Any], endpoints: _Endpoints) -> None:
        self.info = dict(info)
        self._endpoints = endpoints
        self._client = endpoints.client()
        self._control_endpoint, self._events_endpoint = self._client.control, self._client.events_endpoint
        self._lock = threading.Lock()  # the REQ socket is shared by the caller's threads: one at a time
        self._callbacks: dict[str, Callback] = {}
        self._cb_lock = threading.Lock()
        self._dispatcher: threading.Thread | None = None
        self._closing = threading.Event()
        self._completed = threading.Event()
        self.delivered = 0
        self.callback_errors = 0
        self.refills = 0
        self.dispatch_error: Exception | None = None
        self._last_seq = 0

    # -- ids and printing ---------------------------------------------------------------------
    @property
    def connectionId(self) -> str:  # Symbl's spelling
        return str(self.info["connectionId"])

    @property
    def conversationId(self) -> str | None:  # Symbl's spelling
        return self.info.get("conversationId")

    @property
    def state(self) -> str:
        return str(self.info.get("state", "unknown"))

    def __repr__(self) -> str:
        src = self.info.get("source") or {}
        kind = src.get("kind") or src.get("type") or "?"
        where = src.get("uri") or src.get("phoneNumber") or (f"{src['sampleRate']} Hz" if src.get("sampleRate") else "")
        return (f"<symblctl.Connection connectionId={self.connectionId} conversationId={self.conversationId} "
                f"state={self.state} source={kind}{' ' + where if where else ''} engine={self.info.get('engine')}>")

    def __str__(self) -> str:
        lines = [repr(self)]
        counts = self.info.get("events") or {}
        if counts:
            lines.append("  events: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
        if self.info.get("error"):
            lines.append(f"  error: {self.info['error'].get('message')}")
        if self._callbacks:
            lines.append("  subscribed: " + ", ".join(sorted(self._callbacks)))
        return "\n".join(lines)

    # -- requests -------------------------------------------------------------------------------
    def _request(self, cmd: str, payload: bytes | None = None, **args: Any) -> dict[str, Any]:
        with self._lock:
            if cmd in ("stop", "attach_mic"):
                self._endpoints.ping()
            try:
                return self._client.request(cmd, payload=payload, **args)
            except KeyboardInterrupt:
                self._client.close()  # a REQ socket interrupted between send and reply cannot send again
                raise

    def refresh(self) -> Connection:
        """Fetch the daemon's current view of this connection."""
        self.info = self._request("get", connectionId=self.connectionId)
        return self

    def send_audio(self, data: bytes) -> None:
        """Push LINEAR16 mono audio at the connection's sample rate (any length; split as needed).

        A full queue in the daemon (``busy``) is retried for up to the client timeout.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError("send_audio takes bytes of 16-bit little-endian mono PCM")
        view = memoryview(data).cast("B")
        for i in range(0, len(view), _AUDIO_CHUNK):
            chunk = bytes(view[i:i + _AUDIO_CHUNK])
            deadline = time.monotonic() + self._endpoints.timeout
            while True:
                try:
                    self._request("send_audio", payload=chunk, connectionId=self.connectionId)
                    break
                except DaemonError as e:
                    if e.code != "busy" or time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)

    def send_audio_from_mic(self, device: str | int | None = None, block: bool = True) -> None:
        """Ask the daemon to feed this connection from its microphone (``device``: name or index).

        Like the SDK it blocks (until the connection ends; Ctrl-C stops it) unless ``block=False``.
        Needs the daemon's ``attach_mic`` command; without it this raises DaemonError.
        """
        try:
            self._request("attach_mic", connectionId=self.connectionId, device=device)
        except DaemonError as e:
            if e.code != "unknown_command":
                raise
            raise DaemonError(
                "unknown_command",
                "this symbld cannot feed a pushed connection from its microphone (no attach_mic command); "
                "start a microphone connection instead: Streaming.start_connection(source={'type': 'mic'}) "
                "or `symblctl start --mic`", {"command": "attach_mic", "connectionId": self.connectionId}) from None
        if not block:
            return
        try:
            while not self.wait(0.5):
                pass
        except KeyboardInterrupt:
            self.stop()

    def finalize(self) -> dict[str, Any]:
        """Make what was heard so far final now, without ending the connection (the Symbl SDK has no such
        call; Deepgram's Finalize): the final and its ``message_response`` reach the callbacks at once
        instead of after the endpoint's silence. Returns the daemon's reply (``utteranceClosed``)."""
        return self._request("finalize", connectionId=self.connectionId)

    def stop(self) -> Connection:
        """Stop: the daemon flushes every final result (and hangs up a call). Returns this
        connection, updated (``conversationId``, ``state``). Stopping twice is harmless."""
        try:
            self.info = self._request("stop", connectionId=self.connectionId)
        except DaemonError as e:
            if e.code != "invalid_state":
                raise
            self.refresh()
        return self

    # -- events -------------------------------------------------------------------------------
    def subscribe(self, event_callbacks: dict[str, Callback]) -> None:
        """Register callbacks ``{event_type: fn}``; returns at once.

        ``fn`` runs on this connection's dispatch thread and receives the event's ``data``: for
        Symbl's ``*_response`` events the frame Symbl delivers (with its ``type``), for
        lifecycle events (``connection_started``, ``connection_stopped``, ``conversation_completed``,
        ``call_*``, ``action_*``) our payload. The key ``"*"`` receives every whole event envelope
        (``seq``, ``type``, ``time``, ``data``...). Calling again adds or replaces callbacks.
        Events published before the first ``subscribe`` are delivered too (from history), in seq
        order, each once.
        """
        if not isinstance(event_callbacks, dict):
            raise TypeError("subscribe takes a dict {event_name: callback}")
        for name, fn in event_callbacks.items():
            if not isinstance(name, str) or not callable(fn):
                raise TypeError(f"subscribe: {name!r} must map an event name to a callable")
        with self._cb_lock:
            self._callbacks.update(event_callbacks)
            if self._dispatcher is None:
                # Not a daemon thread: like the SDK's subscribe, a subscribed connection keeps the
                # program alive until it completes (or close()), so the seed's samples print their events.
                self._dispatcher = threading.Thread(target=self._dispatch_loop, daemon=False,
                                                    name=f"symblctl-{self.connectionId[:8]}")
                self._dispatcher.start()

    def unsubscribe(self, *event_names: str) -> None:
        with self._cb_lock:
            for name in event_names:
                self._callbacks.pop(name, None)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the connection has completed (all its events dispatched, if subscribed)."""
        if self._dispatcher is not None:
            return self._completed.wait(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.refresh().state not in ENDED_STATES:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_S)
        return True

    def _dispatch_loop(self) -> None:
        try:
            stream = EventStream(self._control_endpoint, self._events_endpoint, self.connectionId)
        except DaemonError as e:
            self._dispatch_failed(e)
            self._completed.set()
            return
        try:
            idle_since = time.monotonic()
            while not self._closing.is_set() and not self._completed.is_set():
                event = stream.get(timeout=_POLL_S)
                self.refills = stream.refills
                if event is not None:
                    self._dispatch(event)
                    idle_since = time.monotonic()
                elif stream.completed:
                    break
                elif time.monotonic() - idle_since > _IDLE_CHECK_S:
                    self._check_daemon()  # quiet for a while: is the daemon there, did we miss the end?
                    idle_since = time.monotonic()
        except DaemonError as e:
            self._dispatch_failed(e)
        except Exception as e:  # a broken socket or a bug: report it, never raise into nowhere
            self.dispatch_error = e
            log.exception("dispatch_failed", connection_id=self.connectionId)
        finally:
            stream.close()
            self._completed.set()

    def _check_daemon(self) -> None:
        """Catch up from history when live events stopped coming (e.g. the daemon restarted and
        published this connection's end before our socket reconnected); raises DaemonUnavailable."""
        with Client(self._control_endpoint, self._events_endpoint, timeout=_LIVENESS_TIMEOUT, retries=0) as probe:
            if int(probe.get(self.connectionId).get("lastSeq") or 0) > self._last_seq:
                for event in probe.all_history(self.connectionId, self._last_seq):
                    self._dispatch(event)

    def _dispatch_failed(self, error: DaemonError) -> None:
        """The daemon is gone: tell an ``error`` callback (Symbl's key) and end the dispatch thread."""
        self.dispatch_error = error
        log.error("dispatch_stopped", connection_id=self.connectionId, error=str(error))
        with self._cb_lock:
            fn = self._callbacks.get("error")
        if fn is not None:
            with contextlib.suppress(Exception):
                fn({"type": "error", "error": {"code": error.code, "message": error.message}})

    def _dispatch(self, event: dict[str, Any]) -> None:
        seq = int(event.get("seq") or 0)
        if seq <= self._last_seq:
            return  # already delivered (a catch-up from history overlapping the live stream)
        self._last_seq = seq
        etype = event.get("type", "")
        data = event.get("data") or {}
        if etype in ("connection_started", "connection_stopped", "connection_failed") and data.get("connectionId"):
            self.info = {**self.info, **data}
        self.delivered += 1
        with self._cb_lock:
            calls = [(self._callbacks.get(etype), data), (self._callbacks.get("*"), event)]
            message_cb = self._callbacks.get("message")
        if message_cb is not None and etype in ("transcript_response", "conversation_completed"):
            calls.append((message_cb, _as_symbl_message(etype, data)))
        for fn, arg in calls:
            if fn is None:
                continue
            try:
                fn(arg)
            except Exception:
                self.callback_errors += 1
                log.exception("callback_failed", connection_id=self.connectionId, event_type=etype)
        if etype == "conversation_completed":
            self._completed.set()

    # -- teardown -----------------------------------------------------------------------------
    def close(self, timeout: float = 5.0) -> None:
        """Stop dispatching and release sockets (does not stop the connection)."""
        self._closing.set()
        if self._dispatcher is not None and self._dispatcher is not threading.current_thread():
            self._dispatcher.join(timeout)
        with self._lock:
            self._client.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.state not in ENDED_STATES:
                with contextlib.suppress(DaemonError):
                    self.stop()
        finally:
            self.close()


def _as_symbl_message(etype: str, data: dict[str, Any]) -> dict[str, Any]:
    """The streaming SDK's ``message`` callback shape (``response["message"]["punctuated"]``)."""
    if etype == "conversation_completed":
        return {"type": "message", "message": {"type": "conversation_completed", **data}}
    content = (data.get("payload") or {}).get("content", "")
    return {"type": "message", "message": {
        "type": "recognition_result", "isFinal": bool(data.get("isFinal")),
        "payload": {"raw": {"alternatives": [{"transcript": content, "confidence": data.get("confidence", 1.0)}]}},
        "punctuated": data.get("punctuated", {"transcript": content}),
        "user": data.get("user"), "duration": data.get("duration")}}


class StreamingApi:
    """``symblctl.Streaming``: connections fed by pushed audio (or a daemon-side source)."""

    def __init__(self, control: str | None = None, events: str | None = None, timeout: float = 10.0,
                 retries: int = 1) -> None:
        self.endpoints = _Endpoints(control, events, timeout, retries)

    def start_connection(self, insight_types: list[str] | None = None, config: dict[str, Any] | None = None,
                         speaker: dict[str, Any] | None = None, trackers: list[dict[str, Any]] | None = None,
                         engine: str | None = None, custom_vocabulary: list[str] | None = None,
                         actions: list[dict[str, Any]] | None = None, credentials: Any = None,
                         source: dict[str, Any] | None = None, connection_id: str | None = None) -> Connection:
        """Start a connection; returns at once (live). Audio: ``send_audio`` (LINEAR16 at
        ``config.speechRecognition.sampleRateHertz``, default 16000), or ``source`` for a
        daemon-side source such as ``{"type": "mic", "device": None}``."""
        cfg = dict(_check_dict("config", config))
        sr = _check_dict("config.speechRecognition", cfg.pop("speechRecognition", None))
        rate = sr.get("sampleRateHertz", 16000)
        encoding = sr.get("encoding", "LINEAR16")
        spec = source or {"type": "push", "sampleRate": rate, "encoding": encoding}
        return _start(self.endpoints, source=spec, insightTypes=_check_list("insight_types", insight_types),
                      config=cfg, speaker=speaker, trackers=_check_list("trackers", trackers), engine=engine,
                      customVocabulary=_check_list("custom_vocabulary", custom_vocabulary),
                      actions=_actions(actions), connectionId=connection_id)

    def stop(self, connection_id: str) -> Connection:
        return _stop(self.endpoints, connection_id)


class TelephonyApi:
    """``symblctl.Telephony``: the daemon places a SIP call (or a PSTN call through a gateway)."""

    def __init__(self, control: str | None = None, events: str | None = None, timeout: float = 10.0,
                 retries: int = 1) -> None:
        self.endpoints = _Endpoints(control, events, timeout, retries)

    def start_sip(self, uri: str, audio_config: dict[str, Any] | None = None, credentials: Any = None,
                  actions: list[dict[str, Any]] | None = None, data: dict[str, Any] | None = None,
                  languages: list[str] | None = None, timezone: str | None = None, dtmf: str | None = None,
                  insight_types: list[str] | None = None, trackers: list[dict[str, Any]] | None = None,
                  engine: str | None = None) -> Connection:
        """Dial ``uri`` (``sip:user@host[:port]``); returns at once with the connection (call ringing)."""
        if not isinstance(uri, str) or not uri:
            raise TypeError("start_sip needs uri='sip:user@host'")
        _check_dict("audio_config", audio_config)  # G.711 is negotiated; kept for the SDK's signature
        spec: dict[str, Any] = {"type": "sip", "uri": uri, **({"dtmf": dtmf} if dtmf else {})}
        return self._start(spec, actions, data, languages, timezone, insight_types, trackers, engine)

    def start_pstn(self, phone_number: str, dtmf: str | None = None, credentials: Any = None,
                   actions: list[dict[str, Any]] | None = None, data: dict[str, Any] | None = None,
                   languages: list[str] | None = None, timezone: str | None = None,
                   insight_types: list[str] | None = None, trackers: list[dict[str, Any]] | None = None,
                   engine: str | None = None) -> Connection:
        """Call ``phone_number`` through the daemon's configured SIP gateway."""
        if not isinstance(phone_number, str) or not phone_number:
            raise TypeError("start_pstn needs phone_number='+15551234567'")
        spec = {"type": "pstn", "phoneNumber": phone_number, "dtmf": dtmf}
        return self._start(spec, actions, data, languages, timezone, insight_types, trackers, engine)

    def _start(self, spec: dict[str, Any], actions: Any, data: dict[str, Any] | None, languages: Any,
               timezone: str | None, insight_types: Any, trackers: Any, engine: str | None) -> Connection:
        d = _check_dict("data", data)
        cfg: dict[str, Any] = {}
        session: dict[str, Any] = d["session"] if isinstance(d.get("session"), dict) else {}
        if session.get("name"):
            cfg["meetingTitle"] = str(session["name"])  # Symbl: data.session.name titles the meeting
        langs = _check_list("languages", languages)
        if langs:
            cfg["languageCode"] = langs[0]
        tz = _timezone_offset(timezone)
        if tz is not None:
            cfg["timezoneOffset"] = tz
        return _start(self.endpoints, telephony=spec, config=cfg, actions=_actions(actions), engine=engine,
                      insightTypes=_check_list("insight_types", insight_types),
                      trackers=_check_list("trackers", trackers))

    def stop(self, connection_id: str) -> Connection:
        """Hang up and stop (Symbl's ``Telephony.stop``); returns the final Connection."""
        return _stop(self.endpoints, connection_id)


def _start(endpoints: _Endpoints, **args: Any) -> Connection:
    endpoints.ping()
    with endpoints.client() as c:
        info = c.start(**{k: v for k, v in args.items() if v is not None})  # resolves a relative file path
    return Connection(info, endpoints)


def _stop(endpoints: _Endpoints, connection_id: str) -> Connection:
    if not isinstance(connection_id, str) or not connection_id:
        raise TypeError("stop needs a connection id (str)")
    endpoints.ping()
    with endpoints.client() as c:
        try:
            info = c.request("stop", connectionId=connection_id)
        except DaemonError as e:
            if e.code != "invalid_state":
                raise
            info = c.get(connection_id)  # it already ended (the far end hung up): its final object
    return Connection(info, endpoints)


Streaming = StreamingApi()
Telephony = TelephonyApi()


def stop(connection_id: str) -> Connection:
    """Stop any connection by id (the seed's ``stop(connectionId)``); returns the final Connection.

    A connection that already ended is not an error: its final object is returned."""
    return Streaming.stop(connection_id)


__all__ = ["Connection", "DaemonError", "DaemonUnavailable", "Streaming", "StreamingApi", "Telephony",
           "TelephonyApi", "stop"]
