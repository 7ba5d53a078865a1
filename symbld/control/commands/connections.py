"""Connections: start one, feed it pushed audio, finalize what it heard, read it, stop it."""

from __future__ import annotations

from typing import Any

from symblctl import protocol
from symbld.control.envelope import Request
from symbld.control.registry import handles
from symbld.control.service import Service
from symbld.insights.summary import summary_of_events


@handles(protocol.Start)
def start(svc: Service, args: protocol.Start, req: Request) -> dict[str, Any]:
    """→ {"v": 1, "id": "3", "cmd": "start", "args": {"source": {"type": "file", "path": "/tmp/a.wav"},
       "insightTypes": ["question", "action_item"], "config": {"meetingTitle": "Standup"}}}
    ← {"v": 1, "id": "3", "ok": true, "result": {"connectionId": "f3a9...", "conversationId": "5093011103940608",
       "state": "live", "engine": "local", "source": {...}, ...}}
    """
    return svc.start_session(args)


@handles(protocol.Stop)
def stop(svc: Service, args: protocol.Stop, req: Request) -> dict[str, Any]:
    """→ {"v": 1, "id": "4", "cmd": "stop", "args": {"connectionId": "f3a9..."}}
    ← {"v": 1, "id": "4", "ok": true, "result": {"connectionId": "f3a9...", "conversationId": "...",
       "state": "stopped", ...}}
    Stopping an unknown id gives unknown_connection; an already stopped one, invalid_state.
    """
    final = svc.stop(args.connection_id)
    # Symbl's stop answers with the conversation's summary; so does ours (the summary command gives it later too).
    return {**final, "summary": summary_of_events(svc.bus.all_events(args.connection_id))}


@handles(protocol.Get)
def get(svc: Service, args: protocol.Get, req: Request) -> dict[str, Any]:
    """→ {"v": 1, "id": "6", "cmd": "get", "args": {"connectionId": "f3a9..."}}
    ← {"v": 1, "id": "6", "ok": true, "result": {"connectionId": "f3a9...", "state": "live", ...}}
    """
    return svc.connection(args.connection_id)


@handles(protocol.SendAudio)
def send_audio(svc: Service, args: protocol.SendAudio, req: Request) -> protocol.Accepted:
    """Two frames: the JSON request, then the raw little-endian 16-bit mono PCM at the
    connection's sampleRate (a frame of up to 1 MiB).
    → [{"v": 1, "id": "9", "cmd": "send_audio", "args": {"connectionId": "f3a9..."}}, <pcm bytes>]
    ← {"v": 1, "id": "9", "ok": true, "result": {"accepted": 3200}}
    """
    return svc.push_audio(args.connection_id, req.payload, args.end, args.sample_rate)


@handles(protocol.Finalize)
def finalize(svc: Service, args: protocol.Finalize, req: Request) -> protocol.Finalized:
    """→ {"v": 1, "id": "7", "cmd": "finalize", "args": {"connectionId": "f3a9..."}}
    ← {"v": 1, "id": "7", "ok": true, "result": {"connectionId": "f3a9...", "utteranceClosed": true}}
    The final of what was heard follows on the events socket; an ended connection gives invalid_state.
    """
    return svc.finalize(args.connection_id)
