"""The other APIs served on the Symbl server's HTTP listener: the one hook ``SymblServer.app`` calls.

Each API is its own package with its own keys table (``[openai_api]``, ...); ``config["apis"]``
carries those tables (``symbld.app`` hands them over). Every API is a client of the daemon's
declared commands through ``client_factory``, like the Symbl server itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

API_TABLES = ("openai_api", "deepgram_api")  # config tables handed over as config["apis"][name]


def add_routes(app: web.Application, client_factory: Callable[[], Any], config: dict[str, Any],
               symbl_authorized: Callable[[web.Request], bool]) -> None:
    """``symbl_authorized``: the Symbl server's REST token check, which its Async API shares."""
    from symbld.gateways.deepgram.server import DeepgramApi
    from symbld.gateways.openai.server import OpenAIApi
    from symbld.gateways.symbl.async_api import AsyncApi

    apis = config.get("apis") or {}
    engine = str(config.get("engine") or "local")
    OpenAIApi(client_factory, apis.get("openai_api") or {}, engine).add_routes(app)
    DeepgramApi(client_factory, apis.get("deepgram_api") or {}, engine).add_routes(app)
    AsyncApi(client_factory, symbl_authorized, engine).add_routes(app)
