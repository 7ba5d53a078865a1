"""Who may connect: CurveZMQ keys for tcp:// endpoints, peer credentials for ipc:// peers.

- ipc:// endpoints rely on the file system: the runtime directory is 0700 (see daemon.bind),
  so only its owner can reach the sockets. Each state-changing command is logged with the
  peer's pid/uid/gid, read with SO_PEERCRED from the unix socket the message came in on.
- tcp:// endpoints are served only with CURVE: the daemon has a key pair (``server``) and an
  allow-list of client public keys (``authorized_keys``: one z85 key a line, ``#`` comments);
  a ZAP handler (pyzmq's ThreadAuthenticator) refuses every other key during the handshake,
  so an unknown client never gets a single message through. The client's key is logged with
  each state-changing command (the message's ``User-Id``).

Keys are made by ``symblctl keygen``: ``NAME.secret`` (the z85 secret key, 0600) and
``NAME.public`` (the z85 public key), in ``$XDG_CONFIG_HOME/symbld/keys`` by default.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import structlog
import zmq
from zmq.auth.thread import ThreadAuthenticator

from symblctl.keys import (
    Z85_KEY_LEN,
    SecurityError,
    config_dir,
    is_tcp,
    keys_dir,
    load_keypair,
)

log = structlog.get_logger(__name__)

_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def load_authorized_keys(path: Path) -> set[bytes]:
    """The allow-list: one z85 public key a line, optionally followed by a name; lines starting with
    ``# `` are comments (a bare ``#`` cannot start a comment: it is a z85 digit)."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise SecurityError(f"authorized keys file {path} does not exist; put the clients' public keys "
                            "(from `symblctl keygen`) in it, one a line") from None
    keys: set[bytes] = set()
    for n, line in enumerate(lines, 1):
        words = line.split()
        if not words or words[0] == "#" or (line.startswith("#") and len(words[0]) != Z85_KEY_LEN):
            continue
        word = words[0]
        if len(word) != Z85_KEY_LEN:
            raise SecurityError(f"{path}:{n}: not a z85 CURVE public key (40 characters)")
        keys.add(word.encode())
    return keys


# -- the daemon's side --------------------------------------------------------------------------
def server_key_path(config: dict[str, Any]) -> Path:
    return Path(config.get("curve_server_key") or keys_dir() / "server.secret").expanduser()


def authorized_keys_path(config: dict[str, Any]) -> Path:
    return Path(config.get("curve_authorized_keys") or config_dir() / "authorized_keys").expanduser()


class _AllowList:
    """ZAP credentials provider: a fixed set of z85 public keys; refusals are logged (key only)."""

    def __init__(self, keys: set[bytes]) -> None:
        self.keys = keys

    def callback(self, domain: str, key: bytes) -> bool:
        allowed = key in self.keys
        if not allowed:
            log.warning("curve_client_refused", client_key=key.decode(errors="replace"))
        return allowed


class CurveServer:
    """CURVE for the daemon's tcp:// sockets: a ZAP authenticator thread and the server keys.

    Use :meth:`server_socket` around the creation of each socket that binds a tcp:// endpoint
    (the options must be set before bind). ``close`` stops the authenticator.
    """

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], config: dict[str, Any]) -> None:
        self.ctx = ctx
        self.keys = load_keypair(server_key_path(config))
        self.allowed = load_authorized_keys(authorized_keys_path(config))
        if not self.allowed:
            raise SecurityError(f"{authorized_keys_path(config)} lists no client keys: nobody could connect")
        self.auth = ThreadAuthenticator(ctx, log=_QuietLog())
        self.auth.start()
        self.auth.configure_curve_callback("*", credentials_provider=_AllowList(self.allowed))
        log.info("curve_enabled", server_key=self.keys.public.decode(), clients=len(self.allowed))

    @contextlib.contextmanager
    def server_socket(self, endpoint: str) -> Iterator[None]:
        """Sockets created in this block by the context are CURVE servers when ``endpoint`` is tcp://."""
        if not is_tcp(endpoint):
            yield
            return
        opts = {zmq.CURVE_SERVER: 1, zmq.CURVE_SECRETKEY: self.keys.secret, zmq.CURVE_PUBLICKEY: self.keys.public}
        for opt, value in opts.items():
            self.ctx.setsockopt(opt, value)
        try:
            yield
        finally:
            for opt in opts:
                self.ctx.sockopts.pop(opt, None)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.auth.stop()


def serve_curve(ctx: zmq.Context[zmq.Socket[bytes]], config: dict[str, Any]) -> CurveServer | None:
    """CURVE setup when an endpoint is tcp://, else None. Raises SecurityError when keys are missing:
    symbld never listens on tcp:// without authentication."""
    if not any(is_tcp(str(config[k])) for k in ("control", "events")):
        return None
    try:
        return CurveServer(ctx, config)
    except SecurityError as e:
        raise SecurityError(f"tcp:// endpoints need CURVE keys: {e}") from None


class _QuietLog:
    """pyzmq's authenticator logs every handshake at debug through stdlib logging; keep it quiet
    and route errors to structlog (the refusal itself is logged by _AllowList)."""

    def debug(self, *a: Any, **k: Any) -> None:
        pass

    info = debug

    def warning(self, msg: str, *a: Any, **k: Any) -> None:
        log.warning("zap", message=msg % a if a else msg)

    error = warning

    def exception(self, msg: str, *a: Any, **k: Any) -> None:
        log.exception("zap", message=msg % a if a else msg)


# -- who sent a message ---------------------------------------------------------------------------
def peer_of(frame: zmq.Frame | None) -> dict[str, Any]:
    """The sender of a received frame: its CURVE key (tcp) or pid/uid/gid (ipc, SO_PEERCRED).

    Best effort: the peer may already have gone, and then only what is known is returned.
    """
    if frame is None:
        return {}
    out: dict[str, Any] = {}
    with contextlib.suppress(zmq.ZMQError, UnicodeDecodeError):
        user = frame.get("User-Id")
        if user:
            out["curveKey"] = user
    try:
        fd = frame.get(zmq.SRCFD)
    except zmq.ZMQError:
        return out
    if fd is None or fd < 0:
        return out
    try:
        dup = os.dup(fd)  # our own fd: closing it leaves zmq's alone
    except OSError:
        return out
    try:
        s = socket.socket(fileno=dup)  # family detected from the fd
    except OSError:
        os.close(dup)
        return out
    try:
        if s.family == socket.AF_UNIX:
            pid, uid, gid = _PEERCRED.unpack(s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
            out.update(pid=pid, uid=uid, gid=gid)
        else:
            with contextlib.suppress(OSError):
                host, port = s.getpeername()[:2]
                out["address"] = f"{host}:{port}"
    except OSError:
        pass
    finally:
        s.close()
    return out


def curve_socket(server: CurveServer | None, endpoint: str) -> contextlib.AbstractContextManager[None]:
    """``with curve_socket(server, endpoint): sock = Thing(ctx, endpoint)``: CURVE when tcp://."""
    return server.server_socket(endpoint) if server is not None else contextlib.nullcontext()
