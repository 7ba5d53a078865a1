"""A Symbl-compatible real-time server backed by symbld (``symbld --serve-symbl``).

The server is a *client of the daemon*: every streaming socket or telephony call becomes a daemon
connection (``start`` with a push or sip source), audio is forwarded with ``send_audio``, and the
connection's events are read from the daemon's event stream and re-framed for Symbl clients by
``wire``. So connections served here show up on symbld's control/PUB sockets like any other.

Endpoints (spec ``symbl-protocol.md`` §6 numbers in brackets):

- ``POST /oauth2/token:generate`` [1-3]
- WebSocket ``/v1/streaming/{id}``, ``/v1/realtime/insights/{id}`` [4-26]
- WebSocket ``/v1/subscribe/{id}``, ``/session/subscribe/{id}`` [27-28]
- ``POST /v1/endpoint:connect`` [29-31], ``POST /v1/event/{id}`` [32]

Here: the app built from its parts (``streaming.py`` the sockets, ``telephony.py`` the calls and
speaker events, ``live.py`` the daemon connections behind them, ``conversations.py`` the
Conversation API), the tokens, and running it on its own thread. Choices where Symbl never said: a bad
token is refused at the upgrade with HTTP 401; an unknown connection id on subscribe is refused with
HTTP 404.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import structlog
from aiohttp import web

from symblctl.client import Client
from symbld.gateways import apis
from symbld.gateways.symbl.auth import (
    Credentials,
    CredentialsError,
    TokenIssuer,
    generate_app_credentials,
    load_credentials,
)
from symbld.gateways.symbl.conversations import ConversationApi
from symbld.gateways.symbl.live import LiveConversations
from symbld.gateways.symbl.replies import json_error
from symbld.gateways.symbl.state import Conversation
from symbld.gateways.symbl.streaming import StreamingSockets
from symbld.gateways.symbl.tables import SymblServerTable
from symbld.gateways.symbl.telephony import TelephonyEndpoints

log = structlog.get_logger(__name__)

DEFAULTS: dict[str, Any] = msgspec.structs.asdict(SymblServerTable())  # declared in tables.py


class SymblServer:
    """The aiohttp application and its state; runs on one event loop.

    The parts: ``LiveConversations`` (the daemon connections behind each Symbl connection id),
    ``StreamingSockets`` (speaker and subscribe WebSockets), ``TelephonyEndpoints`` (calls, speaker
    events over HTTP), ``ConversationApi`` (the journal's conversations); this class holds the
    tokens and builds the app.
    """

    def __init__(self, client_factory: Callable[[], Client], config: dict[str, Any]) -> None:
        self.config = {**DEFAULTS, **config}
        self.credentials = _server_credentials(config)
        secret = config.get("token_secret")
        self.issuer = TokenIssuer(
            self.credentials,
            ttl=float(self.config["token_ttl"]),
            secret=secret.encode() if isinstance(secret, str) else secret,
        )
        self.client_factory = client_factory
        self.live = LiveConversations(client_factory, self.config)

    @property
    def conversations(self) -> dict[str, Conversation]:
        """The live conversations by Symbl connection id."""
        return self.live.by_id

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self.live.loop

    @loop.setter
    def loop(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self.live.loop = loop

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 20)
        app.router.add_post("/oauth2/token:generate", self.token)
        StreamingSockets(self.live, self.config, self._token_of).add_routes(app)
        TelephonyEndpoints(self.live, self.config, self._rest_authorized).add_routes(app)
        ConversationApi(self.client_factory, self._rest_authorized).add_routes(app)
        apis.add_routes(app, self.client_factory, self.config, self._rest_authorized)  # OpenAI, ... (gateways/apis.py)
        app.on_shutdown.append(self._shutdown)
        return app

    async def _shutdown(self, app: web.Application) -> None:
        await self.live.shutdown()

    # ------------------------------------------------------------ auth

    async def token(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return json_error(400, "Invalid request body", "body must be JSON")
        if not isinstance(body, dict) or body.get("type") != "application":
            return json_error(400, "Invalid grant type", "type must be 'application'")
        if not self.issuer.check(body.get("appId"), body.get("appSecret")):
            log.info("symbl token refused", app_id=str(body.get("appId"))[:64])
            return json_error(401, "Combination of appId and appSecret is not valid.", "Unauthorized")
        token, expires_in = self.issuer.issue()
        return web.json_response({"accessToken": token, "expiresIn": expires_in})

    def _rest_authorized(self, request: web.Request) -> bool:
        token = request.headers.get("x-api-key")
        auth = request.headers.get("Authorization", "")
        if not token and auth.lower().startswith("bearer "):
            token = auth[7:].strip()
        return self.issuer.validate(token)

    def _token_of(self, request: web.Request) -> tuple[str | None, str | None]:
        """(valid token or None, subprotocol to echo or None).

        A client that offers subprotocols (the JS SDK offers the token as one *and* sends it as
        ``X-API-KEY``) fails the handshake unless one is echoed: the one that carried a valid
        token, else the first offered.
        """
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        for proto in offered:
            if self.issuer.validate(proto):
                return proto, proto
        candidates: list[str] = []
        if request.headers.get("x-api-key"):
            candidates.append(request.headers["x-api-key"])
        auth = request.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            candidates.append(auth[7:].strip())
        if request.query.get("access_token"):
            candidates.append(request.query["access_token"])
        for token in candidates:
            if self.issuer.validate(token):
                return token, (offered[0] if offered else None)
        return None, None


def _server_credentials(config: dict[str, Any]) -> Credentials:
    """Configured app credentials (config, env, credentials file); else fresh random ones.

    Random ones are written to ``credentials_out`` (JSON, mode 0600) when that path is set, so
    local apps can read them; the secret is never logged.
    """
    given = config.get("credentials")
    if isinstance(given, Credentials):
        return given
    try:
        # Not the environment: SYMBL_APP_ID/SECRET belong to the client engine's remote account.
        return load_credentials(config, env={})
    except CredentialsError:
        creds = generate_app_credentials()
    out = config.get("credentials_out")
    if out:
        path = Path(out)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"appId": creds.app_id, "appSecret": creds.app_secret}, f)
        os.chmod(path, 0o600)
        log.info("symbl app credentials generated", app_id=creds.app_id, file=str(path))
    else:
        log.info("symbl app credentials generated (not saved)", app_id=creds.app_id)
    return creds


# ---------------------------------------------------------------- running it


class ServerHandle:
    """A running server on its own thread and event loop."""

    def __init__(self, server: SymblServer, port: int, loop: asyncio.AbstractEventLoop,
                 thread: threading.Thread, runner: web.AppRunner) -> None:
        self.server = server
        self.port = port
        self._loop = loop
        self._thread = thread
        self._runner = runner

    @property
    def app_id(self) -> str:
        return self.server.credentials.app_id

    @property
    def app_secret(self) -> str:
        return self.server.credentials.app_secret

    def close(self, timeout: float = 15.0) -> None:
        if not self._thread.is_alive():
            return
        fut = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
        with contextlib.suppress(Exception):
            fut.result(timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)


def serve_symbl(addr: str, port: int, client_factory: Callable[[], Client], config: dict[str, Any]) -> ServerHandle:
    """Start the server on ``addr:port`` (0 = any free port) on its own thread; returns once listening.

    ``config`` keys: ``app_id``/``app_secret`` (random Symbl-format ones when absent: read them from
    the handle), ``token_secret``, and the ``DEFAULTS`` above.
    """
    server = SymblServer(client_factory, config)
    loop = asyncio.new_event_loop()
    server.loop = loop
    runner = web.AppRunner(server.app(), handle_signals=False, shutdown_timeout=5)
    ready: concurrent.futures.Future[int] = concurrent.futures.Future()

    async def start() -> None:
        await runner.setup()
        site = web.TCPSite(runner, addr, port)
        await site.start()
        bound = runner.addresses  # (host, port, ...) of each listening socket
        ready.set_result(int(bound[0][1]) if bound else port)

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except Exception as exc:  # noqa: BLE001 - handed to the starting thread, which raises it
            ready.set_exception(exc)
            return
        loop.run_forever()
        loop.close()

    thread = threading.Thread(target=run, name="symbl-server", daemon=True)
    thread.start()
    bound = ready.result(timeout=15)
    log.info("symbl-compatible server listening", addr=addr, port=bound)
    return ServerHandle(server, bound, loop, thread, runner)


def main(argv: list[str] | None = None) -> None:
    """Standalone: ``python -m symbld.gateways.symbl.server --listen 127.0.0.1:8765 [--control ... --events ...]``.

    App credentials from ``SYMBL_APP_ID``/``SYMBL_APP_SECRET`` (or random ones, printed to stdout).
    """
    import signal

    from symbld.gateways.clients import DaemonClients

    parser = argparse.ArgumentParser(prog="python -m symbld.gateways.symbl.server")
    parser.add_argument("--listen", default="127.0.0.1:8765")
    parser.add_argument("--control")
    parser.add_argument("--events")
    parser.add_argument("--first-frame-delay", type=float, default=DEFAULTS["first_frame_delay"])
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    config: dict[str, Any] = {"first_frame_delay": args.first_frame_delay, "stop_on_close": True}
    if os.environ.get("SYMBL_APP_ID") and os.environ.get("SYMBL_APP_SECRET"):
        config["app_id"], config["app_secret"] = os.environ["SYMBL_APP_ID"], os.environ["SYMBL_APP_SECRET"]
    if os.environ.get("SYMBLD_TOKEN_SECRET"):
        config["token_secret"] = os.environ["SYMBLD_TOKEN_SECRET"]
    handle = serve_symbl(host or "127.0.0.1", int(port), DaemonClients(args.control, args.events), config)
    print(f"listening {handle.port}", flush=True)
    if not os.environ.get("SYMBL_APP_SECRET"):
        print(f"appId {handle.app_id}\nappSecret {handle.app_secret}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    handle.close()


if __name__ == "__main__":
    main()
