"""Known voices: enrol, list and forget the voice prints diarization names speakers by (docs/diarization.md)."""

from __future__ import annotations

from typing import Any

from symblctl import protocol
from symbld import diarization
from symbld.control.envelope import Request
from symbld.control.registry import handles
from symbld.control.service import Service
from symbld.diarization import speaker_prints, voices
from symbld.errors import ControlError


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
    → {"v": 1, "id": "2", "cmd": "voices_add", "args": {"name": "Ada", "conversationId": "6186995463583031",
       "speaker": "Speaker 2"}}   (the print kept when that diarized conversation ended; no audio is kept)
    A file with under 1 s of speech, a name already enrolled, an empty or over-long name, path together with
    conversationId, an unknown conversation or speaker, a conversation with no kept prints: bad_request.
    """
    _need_extra()
    if args.path is not None and (args.conversation_id is not None or args.speaker is not None):
        raise ControlError("bad_request", "give either path or conversationId and speaker, not both",
                           {"argument": "path"})
    if args.path is not None:
        return voices.add(svc.state_dir, args.voice_name, args.user_id, args.path)
    if args.conversation_id is None or args.speaker is None:
        missing = "speaker" if args.conversation_id is not None else "conversationId" if args.speaker else "path"
        raise ControlError("bad_request", f"{missing} is missing: give path (a recording), or conversationId "
                           "and speaker (a speaker of a past conversation)", {"argument": missing})
    voices.check_name(args.voice_name)  # a bad name is refused before anything is looked up
    cid = svc.resolve_connection_id(args.conversation_id)
    if not svc.known(cid):
        raise ControlError("bad_request", f"no conversation {args.conversation_id!r}", {"argument": "conversationId"})
    first = svc.history(cid, 0, 1)
    conversation = str(first[0].get("conversationId") or args.conversation_id) if first else args.conversation_id
    legs = [cid, *(c for c in svc.conversation_connections(conversation) if c != cid)]
    kept = speaker_prints.find(svc.state_dir, args.conversation_id, legs, args.speaker)
    return voices.add_kept(svc.state_dir, args.voice_name, args.user_id, kept)


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
