"""The ``summary_page`` control command: the signed URL of a conversation's summary page."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from symbld.control.envelope import Request
from symbld.control.registry import CONNECTION_ID, command
from symbld.core.errors import ControlError
from symbld.web import links

if TYPE_CHECKING:
    from symbld.app import Daemon


def conversation_of(d: Daemon, connection_id: str) -> str:
    """The conversationId of a live, ended or journaled connection; unknown_connection otherwise."""
    session = d.sessions.find(connection_id)
    if session is not None:
        return session.conversation_id
    for event in d.bus.history(connection_id, 0, 1):
        if event.get("conversationId"):
            return str(event["conversationId"])
    raise ControlError("unknown_connection", f"no connection {connection_id!r}", {"connectionId": connection_id})


@command("summary_page", connectionId=CONNECTION_ID)
def summary_page(d: Daemon, args: dict[str, Any], req: Request) -> dict[str, Any]:
    """The summary page of a conversation (transcript, insights, summary; live while it runs).

    → {"v": 1, "id": "3", "cmd": "summary_page", "args": {"connectionId": "6186995463583031"}}
    ← {"v": 1, "id": "3", "ok": true, "result": {"connectionId": "30411c0b...", "conversationId":
       "6186995463583031", "url": "http://127.0.0.1:5081/meeting/6186995463583031?s=9c1e..."}}
    """
    cid = args["connectionId"]
    conversation = conversation_of(d, cid)
    url = links.summary_url(conversation)
    if url is None:
        raise ControlError("invalid_state", "this daemon serves no summary page ([page] port = 0)",
                           {"reason": "page_off"})
    return {"connectionId": cid, "conversationId": conversation, "url": url}
