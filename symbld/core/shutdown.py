"""Shutdown inside the unit's limit, and the next start finishing what it could not decode.

``stop_budget``: seconds shutdown lets engines decode (``stop_timeout``), kept below the unit's
``TimeoutStopSec`` (both from ``symbld.config.UNIT_STOP_SECONDS``) so systemd never SIGKILLs us
mid-flush. ``spool_unfinished``: past it, sessions still decoding put the rest on disk
(``Session.abandon``, ``symbld.core.recovery``). ``resume_spooled``: at the next start each spooled
connection is decoded in a new session under its id, events marked ``recovered``, then completed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from symblctl import events
from symblctl.units import UNIT_STOP_SECONDS
from symbld.config import STOP_SPOOL_MARGIN
from symbld.core import recovery
from symbld.core.flow import FlowSettings
from symbld.core.sessions import Session
from symbld.core.spool import BYTES_PER_SECOND
from symbld.engines.base import StreamConfig

if TYPE_CHECKING:
    from symbld.core.ports import RecoveryHost

log = structlog.get_logger(__name__)

_CLOSE_S = 3.0  # what the rest of shutdown (sockets, SIP hang-ups, journal close) needs at most


def stop_budget(config: dict[str, Any]) -> float:
    budget = float(config["stop_timeout"])
    limit = UNIT_STOP_SECONDS - STOP_SPOOL_MARGIN - _CLOSE_S
    if os.environ.get("INVOCATION_ID") and budget > limit:  # under systemd: its SIGKILL would come first
        log.warning("stop_timeout_clamped", configured=budget, used=limit, timeout_stop_sec=UNIT_STOP_SECONDS)
        budget = limit
    return budget


def spool_unfinished(sessions: list[Session], poll: Callable[[], None]) -> None:
    """Sessions still decoding: keep the rest of their audio on disk, within the spool margin."""
    if not sessions:
        return
    log.warning("shutdown_spooling", connections=len(sessions))
    for s in sessions:
        s.abandon()
    deadline = time.monotonic() + STOP_SPOOL_MARGIN
    while any(not s.ended for s in sessions) and time.monotonic() < deadline:
        poll()
    for s in sessions:
        if not s.ended:
            log.error("session_not_spooled_in_time", connection_id=s.connection_id)


def _spool_dir(state_dir: Path) -> Path:
    return state_dir / "spool"


def pending_recoveries(state_dir: Path) -> dict[str, dict[str, Any]]:
    # A ".recovering" note is a recovery a crash interrupted: it is resumed again (duplicates, never loss).
    notes = recovery.pending(_spool_dir(state_dir))
    recovery.remove_orphans(_spool_dir(state_dir), notes)
    return {n["connectionId"]: n for n in notes if isinstance(n.get("connectionId"), str)}


def resume_spooled(daemon: RecoveryHost, notes: dict[str, dict[str, Any]]) -> None:
    """Decode what the last run spooled, each in a session under its old connection id."""
    for cid, note in notes.items():
        try:
            _resume(daemon, cid, note)
        except Exception as e:  # one bad note must not stop the others or the daemon; the journal says so
            log.exception("spool_resume_failed", connection_id=cid)
            conv = str(note.get("conversationId", ""))
            daemon.bus.continue_numbering(cid)
            seconds = max(0, int(note.get("fedBytes", 0)) - int(note.get("resumeBytes", 0))) / BYTES_PER_SECOND
            daemon.bus.publish(cid, conv, "connection_failed", {
                "connectionId": cid, "conversationId": conv, "state": "failed", "reason": "spool_unreadable",
                "flow": {"audioSecondsDropped": round(seconds, 3)},
                "error": {"code": "internal", "message": f"the spooled audio could not be decoded: {e}",
                          "details": {"spool": note.get("_path")}}})
            daemon.bus.publish(cid, conv, "conversation_completed",
                               events.ConversationCompleted(conversation_id=conv, connection_id=cid))
            daemon.bus.close_connection(cid)
            # Set aside, never retried; its audio goes at the next start (the loss is in the journal).
            for name in (Path(note["_path"]).name, f"{cid}.recovering.json"):
                p = _spool_dir(daemon.state_dir) / name
                if p.exists():
                    os.replace(p, p.with_suffix(".json.bad"))


def _resume(daemon: RecoveryHost, cid: str, note: dict[str, Any]) -> None:
    spool = _spool_dir(daemon.state_dir)
    # The new session tees into <cid>.pcm again: move the old audio and note out of its way first.
    old_audio = spool / note["audio"]
    moved = spool / f"{cid}.recovering.pcm"
    if old_audio.exists() and old_audio != moved:
        os.replace(old_audio, moved)
    if note["_path"] != str(spool / f"{cid}.recovering.json"):
        os.replace(note["_path"], spool / f"{cid}.recovering.json")
    note = {**note, "audio": moved.name, "_path": str(spool / f"{cid}.recovering.json")}
    resume_s = int(note["resumeBytes"]) / BYTES_PER_SECOND
    shift = float(note.get("shiftSeconds", 0.0)) + resume_s
    fields = {k: v for k, v in note["config"].items() if k in StreamConfig.__dataclass_fields__}
    config = StreamConfig(**{**fields, "started_at": float(note["startedAt"]) + resume_s,
                             "extra": {"recovery_shift": shift,
                                       "summary_url": daemon.service.summary_url(fields["conversation_id"])}})
    daemon.bus.continue_numbering(cid)
    engine_name = daemon.config["default_engine"]

    def ended(session: Session) -> None:
        recovery.discard(note)  # decoded (or spooled again under a new note): the old files are done
        daemon.service.session_ended(session)

    source = recovery.RecoveredSource(note)
    session = Session(config=config, source=source, engine=daemon.engines[engine_name],
                      engine_name=engine_name, bus=daemon.bus, analyzer_factory=daemon.service.analyzer_factory(
                          daemon.engines[engine_name]), stop_timeout=float(daemon.config["stop_timeout"]),
                      on_ended=ended, flow=FlowSettings.from_config(daemon.config, daemon.state_dir),
                      transform=lambda _t, d: recovery.shift_times(d, shift))
    daemon.sessions.add(session)
    session.start()
    log.warning("spool_resumed", connection_id=cid, seconds=round(source.seconds, 3))
