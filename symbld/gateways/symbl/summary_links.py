"""What the Symbl-compatible server (a client of the daemon) needs of the summary page: the
``summaryUrl`` of ``conversation_completed`` and the telephony stop reply's ``summaryInfo``.

Both come from the daemon over the control socket (``summary_page``, ``summary``), so they are right
whether the server runs inside the daemon or standalone next to it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from symblctl.client import DaemonError

_TIMEOUT_S = 5.0  # a daemon that does not answer in time leaves the fallback, never a hung stop


def _ask(client_factory: Callable[[], Any], daemon_id: str, with_summary: bool) -> tuple[str | None, list[Any]]:
    client = client_factory()
    url, summary = None, []
    try:
        with contextlib.suppress(DaemonError):  # page off, daemon gone: the caller's fallback
            url = client.request("summary_page", timeout=_TIMEOUT_S, connectionId=daemon_id)["url"]
        if with_summary:
            with contextlib.suppress(DaemonError):
                summary = client.request("summary", timeout=_TIMEOUT_S, connectionId=daemon_id)["summary"]
    finally:
        client.close()
    return url, summary


async def summary_url(client_factory: Callable[[], Any], daemon_id: str, fallback: str) -> str:
    """The conversation's summary page, or ``fallback`` when the daemon serves none."""
    url, _ = await asyncio.to_thread(_ask, client_factory, daemon_id, False)
    return url or fallback


async def summary_info(client_factory: Callable[[], Any], daemon_id: str) -> list[dict[str, Any]]:
    """Symbl's ``summaryInfo``: ``[{"url": <summary page>, "summary": [<Symbl summary entries>]}]``
    (empty when the daemon has neither a page nor a summary for the call)."""
    url, summary = await asyncio.to_thread(_ask, client_factory, daemon_id, True)
    if url is None and not summary:
        return []
    return [{k: v for k, v in (("url", url), ("summary", summary)) if v is not None}]
