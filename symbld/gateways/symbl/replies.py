"""How the Symbl server answers: an HTTP error body in Symbl's shape, a frame to a socket that may have gone."""

from __future__ import annotations

import contextlib
from typing import Any

from aiohttp import web

UNAUTHORIZED = "Token validation failed for provided token."


def json_error(status: int, message: str, details: str) -> web.Response:
    return web.json_response({"message": message, "details": details}, status=status)


async def send(ws: web.WebSocketResponse, frame: dict[str, Any]) -> None:
    """A frame to ``ws`` unless it has closed (a client gone mid-send is not an error of ours)."""
    if ws.closed:
        return
    with contextlib.suppress(ConnectionResetError, RuntimeError):
        await ws.send_json(frame)
