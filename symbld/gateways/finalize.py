"""Deepgram's ``Finalize`` and OpenAI Realtime's ``commit`` under server VAD: the daemon's ``finalize``.

``finalize`` (make the open utterance final now, the connection goes on) is a declared command of
newer daemons; against one without it the request is ``unknown_command``, and the APIs fall back to
finalizing at the next pause, as documented. Blocking: call it on the connection's executor.
"""

from __future__ import annotations

from typing import Any

from symblctl.client import DaemonError


def finalize(client: Any, connection_id: str) -> bool | None:
    """True: an utterance was open and its final follows; False: nothing was open; None: this daemon
    has no ``finalize`` (or could not say in time). Other refusals raise DaemonError."""
    try:
        reply = client.request("finalize", connectionId=connection_id)
    except DaemonError as e:
        if e.code == "unknown_command":
            return None
        raise
    closed = reply.get("utteranceClosed")
    return bool(closed) if closed is not None else None
