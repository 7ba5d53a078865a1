"""Logging setup: journald fields under systemd, JSON lines or a console renderer elsewhere.

``configure_logging(level, json, to_journal)`` picks the output:

- under systemd (``$JOURNAL_STREAM`` names stderr's device:inode), each event is sent to journald with
  the native protocol (datagrams to ``/run/systemd/journal/socket``, standard library only) and
  context keys become fields: ``connection_id`` -> ``SYMBLD_CONNECTION`` so that
  ``journalctl SYMBLD_CONNECTION=<id>`` shows one connection;
- otherwise JSON lines on stderr when stderr is not a TTY, or structlog's console renderer on a TTY.

Transcript text never reaches the log unless ``log_transcripts=True``: the ``drop_transcripts``
processor removes the keys named in ``TRANSCRIPT_KEYS``. Records from the standard ``logging``
module (aiohttp, faster-whisper ...) are forwarded through the same pipeline.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import socket
import struct
import sys
import threading
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

JOURNAL_SOCKET = "/run/systemd/journal/socket"
SYSLOG_IDENTIFIER = "symbld"
TRANSCRIPT_KEYS = frozenset({"text", "transcript"})

# Context keys with a fixed journal field name; any other key becomes SYMBLD_<KEY>.
FIELD_NAMES = {
    "connection_id": "SYMBLD_CONNECTION",
    "conversation_id": "SYMBLD_CONVERSATION",
    "logger": "SYMBLD_LOGGER",
    "engine": "SYMBLD_ENGINE",
}

# syslog priorities (sd-journal's PRIORITY=)
_PRIORITY = {"debug": 7, "info": 6, "notice": 5, "warning": 4, "warn": 4, "error": 3, "exception": 3,
             "critical": 2, "fatal": 2}
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "warn": logging.WARNING,
           "error": logging.ERROR, "critical": logging.CRITICAL}
_NOT_FIELD_CHARS = re.compile(r"[^A-Z0-9_]")
# Keys that become fixed journal fields or are rendered into MESSAGE, never SYMBLD_* fields.
_RESERVED = {"event", "level", "timestamp", "exception", "stack"}


def drop_transcripts(log_transcripts: bool = False) -> structlog.types.Processor:
    """A processor that removes ``text``/``transcript`` keys unless ``log_transcripts`` is true."""

    def processor(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if not log_transcripts:
            for key in TRANSCRIPT_KEYS.intersection(event_dict):
                del event_dict[key]
        return event_dict

    return processor


EventDict = MutableMapping[str, Any]


def add_logger_name(logger: Any, _name: str, event_dict: EventDict) -> EventDict:
    """Add ``logger`` (the name given to ``structlog.get_logger(__name__)``) when known."""
    name = getattr(logger, "name", None)
    if name and "logger" not in event_dict:
        event_dict["logger"] = name
    return event_dict


def journal_field_name(key: str) -> str:
    """Map a context key to a valid journal field name (A-Z, 0-9, _; no leading _; <= 64 chars)."""
    if key in FIELD_NAMES:
        return FIELD_NAMES[key]
    name = _NOT_FIELD_CHARS.sub("_", key.upper())
    return ("SYMBLD_" + name)[:64]


def journal_fields(event_dict: Mapping[str, Any], identifier: str = SYSLOG_IDENTIFIER) -> dict[str, str]:
    """Turn a structlog event dict into journal fields (MESSAGE, PRIORITY, SYSLOG_IDENTIFIER, SYMBLD_*).

    MESSAGE holds the event name followed by ``key=value`` pairs so plain ``journalctl`` output stays
    readable; a traceback is appended on its own lines.
    """
    event = str(event_dict.get("event", ""))
    context = {k: v for k, v in event_dict.items() if k not in _RESERVED}
    message = " ".join([event, *(f"{k}={v!r}" if isinstance(v, str) and " " in v else f"{k}={v}"
                                 for k, v in context.items() if k != "logger")])
    if event_dict.get("exception"):
        message += "\n" + str(event_dict["exception"])
    if event_dict.get("stack"):
        message += "\n" + str(event_dict["stack"])
    fields = {
        "MESSAGE": message,
        "PRIORITY": str(_PRIORITY.get(str(event_dict.get("level", "info")).lower(), 6)),
        "SYSLOG_IDENTIFIER": identifier,
        "SYMBLD_EVENT": event,
    }
    for key, value in context.items():
        fields[journal_field_name(key)] = str(value)
    return fields


def encode_journal_fields(fields: Mapping[str, str | bytes]) -> bytes:
    """Native journal protocol: ``KEY=value\\n``; multi-line values as ``KEY\\n<le64 length><value>\\n``."""
    out = bytearray()
    for key, value in fields.items():
        data = value.encode("utf-8", "replace") if isinstance(value, str) else value
        if b"\n" in data:
            out += key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key.encode() + b"=" + data + b"\n"
    return bytes(out)


class JournalSender:
    """Sends field sets to journald's native socket; large entries go through a sealed memfd."""

    def __init__(self, socket_path: str = JOURNAL_SOCKET) -> None:
        self.socket_path = socket_path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._lock = threading.Lock()

    def send(self, fields: Mapping[str, str | bytes]) -> None:
        payload = encode_journal_fields(fields)
        with self._lock:
            try:
                self._sock.sendto(payload, self.socket_path)
            except OSError as exc:
                if exc.errno not in (errno.EMSGSIZE, errno.ENOBUFS):  # entry too big for one datagram
                    raise
                self._send_via_memfd(payload)

    def _send_via_memfd(self, payload: bytes) -> None:
        # journald accepts a sealed memfd passed with SCM_RIGHTS in an empty datagram,
        # which is what sd_journal_sendv() does for big entries.
        fd = os.memfd_create("symbld-journal", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.write(fd, payload)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                        fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
            self._sock.sendmsg([], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))], 0,
                               self.socket_path)
        finally:
            os.close(fd)

    def close(self) -> None:
        self._sock.close()


class _Logger:
    """The structlog logger at the end of the chain: writes a line to a stream or fields to journald."""

    def __init__(self, name: str | None, stream: TextIO | None, journal: JournalSender | None) -> None:
        self.name = name
        self._stream = stream
        self._journal = journal

    def msg(self, message: str | Mapping[str, str]) -> None:
        if self._journal is not None and isinstance(message, Mapping):
            try:
                self._journal.send(message)
                return
            except OSError:
                message = str(message.get("MESSAGE", ""))  # journald gone: fall back to stderr
        stream = self._stream or sys.stderr
        stream.write(f"{message}\n")
        stream.flush()

    debug = info = warning = warn = error = critical = exception = fatal = log = failure = err = msg


class _LoggerFactory:
    def __init__(self, stream: TextIO | None, journal: JournalSender | None) -> None:
        self.stream = stream
        self.journal = journal

    def __call__(self, *args: Any) -> _Logger:
        name = args[0] if args and isinstance(args[0], str) else None
        return _Logger(name, self.stream, self.journal)


def journal_renderer(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> Any:
    """Final processor for journald output: hands the field dict to ``_Logger.msg``."""
    return ((journal_fields(event_dict),), {})


class _ForwardToStructlog(logging.Handler):
    """Sends standard-library log records (from dependencies) through the structlog pipeline."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            logger = structlog.get_logger(record.name)
            kwargs: dict[str, Any] = {}
            if record.exc_info:
                kwargs["exc_info"] = record.exc_info
            logger.log(record.levelno, record.getMessage(), **kwargs)
        except Exception:  # noqa: BLE001 - logging.Handler: emit never raises
            self.handleError(record)


def journal_stream_matches(stream: TextIO | None = None, environ: Mapping[str, str] | None = None) -> bool:
    """True when ``$JOURNAL_STREAM`` (``dev:ino``) names ``stream`` (stderr): it is connected to journald."""
    env = os.environ if environ is None else environ
    value = env.get("JOURNAL_STREAM", "")
    if ":" not in value:
        return False
    try:
        dev, ino = (int(part) for part in value.split(":", 1))
        st = os.fstat((stream or sys.stderr).fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def use_colour(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """Colours for a terminal that wants them: a TTY, no ``$NO_COLOR`` (any value), not ``TERM=dumb``."""
    env = os.environ if environ is None else environ
    tty = hasattr(stream, "isatty") and stream.isatty()
    return tty and not env.get("NO_COLOR") and env.get("TERM") != "dumb"


def configure_logging(
    level: str = "info",
    json: bool | None = None,
    to_journal: bool | None = None,
    *,
    log_transcripts: bool = False,
    journal_socket: str | None = None,
    stream: TextIO | None = None,
) -> str:
    """Configure structlog (and forward stdlib logging) once per process; returns the mode chosen.

    ``level`` "auto": warning on a terminal (a daemon started with ``&`` must not flood the shell
    it shares), info elsewhere (journal, files, pipes). Colours only on a TTY and never with
    ``$NO_COLOR`` set (https://no-color.org) or ``TERM=dumb``.
    ``json``: None = JSON lines unless ``stream`` (stderr) is a TTY. ``to_journal``: None = when
    ``$JOURNAL_STREAM`` matches stderr. ``journal_socket`` overrides ``/run/systemd/journal/socket``
    (also settable with ``$SYMBLD_JOURNAL_SOCKET``, for tests). Returns "journal", "json" or "console".
    """
    out = stream or sys.stderr
    if to_journal is None:
        to_journal = journal_stream_matches(out)
    socket_path = journal_socket or os.environ.get("SYMBLD_JOURNAL_SOCKET") or JOURNAL_SOCKET
    journal = JournalSender(socket_path) if to_journal else None
    tty = hasattr(out, "isatty") and out.isatty()
    if json is None:
        json = not tty
    if level.lower() == "auto":
        level = "warning" if tty and journal is None else "info"

    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        add_logger_name,
        drop_transcripts(log_transcripts),
        structlog.processors.StackInfoRenderer(),
    ]
    if journal is not None:
        mode = "journal"  # journald stamps entries itself
        processors += [structlog.processors.format_exc_info, journal_renderer]
    elif json:
        mode = "json"
        processors += [structlog.processors.TimeStamper(fmt="iso", utc=True),
                       structlog.processors.dict_tracebacks, structlog.processors.JSONRenderer()]
    else:
        mode = "console"
        processors += [structlog.processors.TimeStamper(fmt="%H:%M:%S", utc=False),
                       structlog.dev.ConsoleRenderer(colors=use_colour(out))]

    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level.lower(), logging.INFO)),
        logger_factory=_LoggerFactory(stream, journal),
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _ForwardToStructlog):
            root.removeHandler(handler)
    root.addHandler(_ForwardToStructlog())
    root.setLevel(_LEVELS.get(level.lower(), logging.INFO))
    return mode
