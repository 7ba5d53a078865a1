"""Known voices: enrol, list and forget the voice prints diarization names speakers by (docs/diarization.md)."""

from __future__ import annotations

from typing import Any

from symblctl import protocol
from symbld import diarization
from symbld.control.envelope import Request
from symbld.control.registry import handles
from symbld.control.service import Service
from symbld.core.errors import ControlError
from symbld.diarization import voices


def _need_extra() -> None:
    if not diarization.available():
        raise ControlError("bad_request", f"known voices need the [{diarization.EXTRA}] extra: pip install "
                           f"'symbld[{diarization.EXTRA}]' (missing: {', '.join(diarization.missing())})",
                           {"extra": diarization.EXTRA})


@handles(protocol.VoicesAdd)
def voices_add(svc: Service, args: protocol.VoicesAdd, req: Request) -> dict[str, Any]:
    """→ {"v": 1, "id": "1", "cmd": "voices_add", "args": {"name": "Ada", "path": "/home/ada/hello.wav"}}
    ← {"v": 1, "id": "1", "ok": true, "result": {"name": "Ada", "userId": "Ada", "speechSeconds": 6.4,
       "addedAt": "2026-12-07T13:40:00Z"}}
    A file with under 1 s of speech, a name already enrolled, an empty or over-long name: bad_request.
    """
    _need_extra()
    return voices.add(svc.state_dir, args.voice_name, args.user_id, args.path)


@handles(protocol.VoicesList)
def voices_list(svc: Service, args: protocol.VoicesList, req: Request) -> dict[str, Any]:
    """→ {"v": 1, "id": "2", "cmd": "voices_list"}
    ← {"v": 1, "id": "2", "ok": true, "result": {"voices": [{"name": "Ada", "userId": "Ada", ...}]}}
    """
    return {"voices": [voices.summary(n, e) for n, e in sorted(voices.load(svc.state_dir).items())]}


@handles(protocol.VoicesRemove)
def voices_remove(svc: Service, args: protocol.VoicesRemove, req: Request) -> dict[str, Any]:
    """→ {"v": 1, "id": "3", "cmd": "voices_remove", "args": {"name": "Ada"}}
    ← {"v": 1, "id": "3", "ok": true, "result": {"name": "Ada", ...}}   (an unknown name: bad_request)
    """
    return voices.remove(svc.state_dir, args.voice_name)
