"""The Symbl tables, declared: ``[symbl_server]`` (the Symbl-compatible server) and ``[engine.symbl]`` (the Symbl
cloud engine). The config check decodes each table into its Struct, so a wrong type or a value out of range stops the
daemon naming the key and its line; the server and the engine read their defaults from here."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

Positive = Annotated[float, msgspec.Meta(gt=0)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]


class SymblServerTable(msgspec.Struct, kw_only=True):
    token_ttl: Annotated[int, msgspec.Meta(ge=1)] = 86400  # seconds, Symbl's default
    first_frame_delay: NonNegative = 0.3  # §6.14: the Python SDK subscribes only after start_connection returns
    # seconds a dropped connection stays joinable (start_request may override)
    no_connection_timeout: NonNegative = 60.0
    idle_timeout: Positive = 1800.0  # seconds without any client frame before the server closes the socket
    max_chunk_bytes: Annotated[int, msgspec.Meta(ge=1)] = 8192  # Symbl's documented audio chunk limit
    stop_timeout: Positive = 60.0  # seconds to wait for the daemon to flush finals on stop
    engine: Annotated[str, msgspec.Meta(min_length=1)] = "local"  # the daemon engine that serves these connections
    summary_base: str = "http://127.0.0.1/meeting/#/"
    # Credentials the token endpoint accepts (else SYMBL_APP_ID/SYMBL_APP_SECRET or credentials_file)
    app_id: str | None = None
    app_secret: str | None = None
    credentials_file: str | None = None
    token_secret: str | None = None  # signs access tokens (default: a secret made at start)
    stop_on_close: bool = False


class SymblEngineTable(msgspec.Struct, kw_only=True):
    base_url: Annotated[str, msgspec.Meta(min_length=1)] = "https://api.symbl.ai"
    connect_timeout: Positive = 10.0  # seconds per connection attempt (and for conversation_created)
    reconnect_initial_delay: Positive = 0.5  # first backoff; doubles per attempt, with jitter
    reconnect_max_delay: Positive = 10.0  # backoff ceiling
    reconnect_max_seconds: NonNegative = 120.0  # give up (fatal) after this long unreachable
    buffer_seconds: NonNegative = 60.0  # audio kept while disconnected (60 s = 1.92 MB at 16 kHz s16le)
    keepalive_interval: NonNegative = 30.0  # idle seconds before a __PING__; 0 disables
    stop_timeout: Positive = 120.0  # bound on finish() waiting for conversation_completed
    token_renew_before: NonNegative = 300.0  # renew the token this long before it expires
    failover: Literal["", "local"] = ""  # "local": continue on the fallback engine when the endpoint stays unreachable
    failover_after: NonNegative = 30.0  # seconds unreachable before failing over (at once when open() cannot connect)
    app_id: str | None = None
    app_secret: str | None = None
    credentials_file: str | None = None
