"""The ``[nats]`` table and how to open a NATS connection from it (daemon and client alike).

Off unless ``url`` is set. Errors that only the operator can fix (bad credentials, a TLS mismatch, a
server that is not there) surface once, at start, as :class:`NatsSetupError` with one clear line.
"""

from __future__ import annotations

import re
import socket
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import msgspec

from symblctl.nats_subjects import check_token

if TYPE_CHECKING:  # nats-py is the [nats] extra: imported only when a connection is opened
    from nats.aio.client import Client as NATS

DEFAULT_STREAM = "SYMBLD"


class NatsSetupError(Exception):
    """NATS is configured but cannot be used: one line that says why."""


class NatsOptions(msgspec.Struct, kw_only=True, frozen=True):
    """What the ``[nats]`` table and the settings made of it share: declared once, with the table's bounds."""

    credentials: str | None = None  # a .creds file (JWT + NKey seed)
    token: str | None = None
    user: str | None = None
    password: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    stream: Annotated[str, msgspec.Meta(min_length=1)] = DEFAULT_STREAM
    max_age_days: Annotated[float, msgspec.Meta(ge=0)] = 30.0  # stream retention; 0 = keep for ever (limits apply)
    max_bytes: Annotated[int, msgspec.Meta(ge=-1)] = -1
    replicas: Annotated[int, msgspec.Meta(ge=1, le=5)] = 1  # JetStream's own bounds
    duplicate_window: Annotated[float, msgspec.Meta(ge=0)] = 600.0  # seconds JetStream remembers a Nats-Msg-Id
    # Events held in memory while NATS is slow; past it, catch-up from the journal.
    buffer_events: Annotated[int, msgspec.Meta(ge=1)] = 10_000
    connect_timeout: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    ack_timeout: Annotated[float, msgspec.Meta(gt=0)] = 10.0


class NatsSettings(NatsOptions, kw_only=True, frozen=True):
    """A bridge's or a fleet client's NATS settings: the servers and this node's name resolved."""

    servers: tuple[str, ...]
    node: str

    def describe(self) -> dict[str, Any]:
        """What status shows: never a secret."""
        return {"servers": [_redact(s) for s in self.servers], "node": self.node, "stream": self.stream,
                "auth": "credentials" if self.credentials else "token" if self.token else
                "user" if self.user else "none", "tls": bool(self.tls_ca or self.tls_cert)}


def _redact(url: str) -> str:
    return re.sub(r"//[^@/]*@", "//***@", url)


def default_node() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname().split(".")[0]) or "symbld"


class NatsTable(NatsOptions, kw_only=True, frozen=True):
    """The daemon's ``[nats]`` table, declared: symbld's config check decodes it into this (a wrong type or a
    value out of range stops the daemon naming the key and its line), and ``from_config`` reads it."""

    url: str | list[str] | None = None  # a string (comma-separated servers) or a list; unset = NATS off
    node: str | None = None  # default: this host's name


def from_config(table: dict[str, Any] | NatsTable) -> NatsSettings | None:
    """The daemon's ``[nats]`` table, or None when NATS is off (no url)."""
    try:  # the daemon's table was decoded so by its config check already
        t = table if isinstance(table, NatsTable) else msgspec.convert(table, NatsTable, strict=True)
    except msgspec.ValidationError as e:
        raise NatsSetupError(f"[nats]: {e}") from None
    if not t.url:
        return None
    try:
        node = check_token(t.node or default_node(), "[nats] node")
    except ValueError as e:
        raise NatsSetupError(str(e)) from None
    servers = tuple(t.url) if isinstance(t.url, list) else tuple(s.strip() for s in t.url.split(","))
    # An empty string in the table means unset (``token = ""``): no field the two share may be empty otherwise.
    shared: dict[str, Any] = {}
    for field in NatsOptions.__struct_fields__:
        value = getattr(t, field)
        shared[field] = None if value == "" else value
    return NatsSettings(servers=servers, node=node, **shared)


def tls_context(s: NatsSettings) -> ssl.SSLContext | None:
    if not (s.tls_ca or s.tls_cert):
        return None
    try:
        ctx = ssl.create_default_context(cafile=s.tls_ca)
        if s.tls_cert:
            ctx.load_cert_chain(s.tls_cert, s.tls_key)
    except (OSError, ssl.SSLError) as e:
        raise NatsSetupError(f"[nats] TLS files cannot be loaded: {e}") from None
    return ctx


async def connect(s: NatsSettings, name: str, **callbacks: Any) -> NATS:
    """Connect once (raising NatsSetupError with the reason), then reconnect by itself for ever."""
    nats = require_nats()
    if s.credentials and not Path(s.credentials).is_file():
        raise NatsSetupError(f"[nats] credentials file {s.credentials} does not exist")
    failures: list[str] = []

    async def first_errors(e: Exception) -> None:
        failures.append(_explain(e))

    opts: dict[str, Any] = {
        "servers": list(s.servers), "name": name, "connect_timeout": s.connect_timeout,
        "allow_reconnect": False, "error_cb": first_errors,
    }
    if s.credentials:
        opts["user_credentials"] = s.credentials
    if s.token:
        opts["token"] = s.token
    if s.user:
        opts["user"], opts["password"] = s.user, s.password or ""
    tls = tls_context(s)
    if tls is not None:
        opts["tls"] = tls
    try:
        nc = await nats.connect(**opts)
    except Exception as e:  # noqa: BLE001 - nats-py raises its own errors, ssl and OS errors alike here
        why = failures[-1] if failures else _explain(e)
        raise NatsSetupError(f"cannot connect to NATS at {', '.join(_redact(u) for u in s.servers)}: {why}") from None
    if tls is not None and not (nc._server_info or {}).get("tls_required"):
        await nc.close()  # TLS was asked for: never fall back to plain text
        raise NatsSetupError(f"cannot connect to NATS at {', '.join(_redact(u) for u in s.servers)}: TLS mismatch: "
                             "[nats] TLS is configured but the server does not speak TLS")
    # Connected and authenticated: from now on outages are ridden out by reconnecting.
    nc.options["allow_reconnect"] = True
    nc.options["max_reconnect_attempts"] = -1
    nc.options["reconnect_time_wait"] = 0.5
    for key in ("error_cb", "disconnected_cb", "reconnected_cb", "closed_cb"):
        cb = callbacks.get(key)
        if cb is not None:
            setattr(nc, f"_{key}", cb)
    if "error_cb" not in callbacks:
        async def ignore(_e: Exception) -> None:
            return None

        nc._error_cb = ignore
    client: NATS = nc
    return client


def require_nats() -> Any:
    """The nats-py module, or NatsSetupError naming the extra that brings it."""
    try:
        import nats
        import nats.errors
    except ImportError as e:
        raise NatsSetupError(f"NATS is configured but nats-py is not installed ({e}): "
                             "pip install 'symbld[nats]' (or 'symblctl[nats]' for the client)") from None
    return nats


def _explain(e: BaseException) -> str:
    nats = require_nats()
    if isinstance(e, nats.errors.AuthorizationError) or "authorization" in str(e).lower():
        return "authorization violation (check [nats] credentials / token / user)"
    if isinstance(e, ssl.SSLError | nats.errors.SecureConnFailedError | nats.errors.SecureConnRequiredError
                  | nats.errors.SecureConnWantedError):
        return f"TLS mismatch: {type(e).__name__}: {e}".rstrip(": ")
    if isinstance(e, nats.errors.NoServersError):
        return "no server answered"
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
