"""The microphone: list devices, pause, resume, mute, attach it to a pushed-audio connection."""

from __future__ import annotations

from typing import Any

from symblctl import protocol
from symbld.control.envelope import Request
from symbld.control.registry import handles
from symbld.control.service import Service
from symbld.errors import ControlError


def _mic_of(svc: Service, connection_id: str) -> Any:
    session = svc.sessions.get(connection_id)
    mic = svc.mic_feed_of(session)
    if mic is None:
        raise ControlError("bad_request", f"connection {connection_id} does not read from the microphone "
                           f"(its source is {session.source.kind})", {"source": session.source.kind})
    if session.ended:
        raise ControlError("invalid_state", f"connection {connection_id} is {session.state}")
    return mic


@handles(protocol.Devices)
def devices(svc: Service, args: protocol.Devices, req: Request) -> dict[str, Any]:
    """→ {"v": 1, "id": "11", "cmd": "devices"}
    ← {"v": 1, "id": "11", "ok": true, "result": {"devices": [{"index": 0, "name": "pulse", "default": true,
       "channels": 32, "samplerate": 44100.0}]}}
    """
    return svc.input_devices()


@handles(protocol.Pause)
def pause(svc: Service, args: protocol.Pause, req: Request) -> dict[str, Any]:
    """→ {"v": 1, "id": "12", "cmd": "pause", "args": {"connectionId": "f3a9..."}}
    ← {"v": 1, "id": "12", "ok": true, "result": {"state": "paused"}}
    """
    mic = _mic_of(svc, args.connection_id)
    mic.pause()
    return {"state": mic.state}


@handles(protocol.Resume)
def resume(svc: Service, args: protocol.Resume, req: Request) -> dict[str, Any]:
    """→ {"v": 1, "id": "13", "cmd": "resume", "args": {"connectionId": "f3a9..."}}
    ← {"v": 1, "id": "13", "ok": true, "result": {"state": "capturing"}}
    """
    mic = _mic_of(svc, args.connection_id)
    mic.resume()
    mic.mute(False)
    return {"state": mic.state}


@handles(protocol.Mute)
def mute(svc: Service, args: protocol.Mute, req: Request) -> dict[str, Any]:
    """→ {"v": 1, "id": "14", "cmd": "mute", "args": {"connectionId": "f3a9...", "on": true}}
    ← {"v": 1, "id": "14", "ok": true, "result": {"state": "muted"}}
    """
    mic = _mic_of(svc, args.connection_id)
    mic.mute(args.on)
    return {"state": mic.state}


@handles(protocol.AttachMic)
def attach_mic(svc: Service, args: protocol.AttachMic, req: Request) -> dict[str, Any]:
    """→ {"v": 1, "id": "15", "cmd": "attach_mic", "args": {"connectionId": "f3a9..."}}
    ← {"v": 1, "id": "15", "ok": true, "result": {"connectionId": "f3a9...", "source": {"kind": "push", ...},
       "mic": {"kind": "mic", "device": "...", "state": "capturing"}}}
    """
    return svc.attach_mic(args.connection_id, args.device)
