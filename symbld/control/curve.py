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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
import zmq
from zmq.auth.thread import ThreadAuthenticator

log = structlog.get_logger(__name__)

_Z85_KEY_LEN = 40
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class SecurityError(Exception):
    """A key is missing or malformed: one clear line for the user."""


# -- key files ------------------------------------------------------------------------------------
def config_dir() -> Path:
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return (Path(xdg) if xdg else Path.home() / ".config") / "symbld"


def keys_dir() -> Path:
    """Where ``symblctl keygen`` writes keys by default ($SYMBLD_KEYS_DIR overrides)."""
    env = os.environ.get("SYMBLD_KEYS_DIR")
    return Path(env) if env else config_dir() / "keys"


@dataclass(frozen=True)
class KeyPair:
    public: bytes  # z85, 40 bytes
    secret: bytes  # z85, 40 bytes


def _write_private(path: Path, text: str) -> None:
    """Create ``path`` 0600 from the start (never world-readable, not even for an instant)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to a file that already existed
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def generate_keys(directory: Path, name: str, force: bool = False) -> tuple[Path, Path, KeyPair]:
    """Write ``NAME.secret`` and ``NAME.public`` (both 0600, z85) in ``directory`` (made 0700)."""
    if not name or "/" in name or name.startswith("."):
        raise SecurityError(f"key name {name!r} must be a plain file name")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret_path, public_path = directory / f"{name}.secret", directory / f"{name}.public"
    if not force and (secret_path.exists() or public_path.exists()):
        raise SecurityError(f"{secret_path} already exists (use --force to replace it)")
    public, secret = zmq.curve_keypair()
    _write_private(secret_path, secret.decode() + "\n")
    _write_private(public_path, public.decode() + "\n")
    return secret_path, public_path, KeyPair(public, secret)


def _read_key(path: Path, what: str) -> bytes:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        raise SecurityError(f"{what} {path} does not exist; create it with `symblctl keygen`") from None
    except OSError as e:
        raise SecurityError(f"cannot read {what} {path}: {e.strerror}") from None
    key = text.encode()
    if len(key) != _Z85_KEY_LEN:
        raise SecurityError(f"{what} {path} is not a z85 CURVE key (40 characters)")
    return key


def load_keypair(secret_path: Path) -> KeyPair:
    """A key pair from its secret key file (the public key is derived, so it always matches)."""
    if secret_path.exists() and secret_path.stat().st_mode & 0o077:
        raise SecurityError(f"secret key {secret_path} is readable by others; chmod 600 it")
    secret = _read_key(secret_path, "secret key")
    try:
        public = zmq.curve_public(secret)
    except (ValueError, zmq.ZMQError):
        raise SecurityError(f"secret key {secret_path} is not a valid z85 CURVE key") from None
    return KeyPair(public, secret)


def load_public_key(path: Path) -> bytes:
    return _read_key(path, "public key")


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
        if not words or words[0] == "#" or (line.startswith("#") and len(words[0]) != _Z85_KEY_LEN):
            continue
        word = words[0]
        if len(word) != _Z85_KEY_LEN:
            raise SecurityError(f"{path}:{n}: not a z85 CURVE public key (40 characters)")
        keys.add(word.encode())
    return keys


# -- the daemon's side --------------------------------------------------------------------------
def is_tcp(endpoint: str) -> bool:
    return endpoint.startswith("tcp://")


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

    def __init__(self, ctx: zmq.Context, config: dict[str, Any]) -> None:
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


def serve_curve(ctx: zmq.Context, config: dict[str, Any]) -> CurveServer | None:
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


# -- the client's side ----------------------------------------------------------------------------
def client_key_paths() -> tuple[Path, Path]:
    """(client secret key, server public key): $SYMBLD_CLIENT_KEY / $SYMBLD_SERVER_KEY, else keys_dir()."""
    k = keys_dir()
    return (Path(os.environ.get("SYMBLD_CLIENT_KEY") or k / "client.secret"),
            Path(os.environ.get("SYMBLD_SERVER_KEY") or k / "server.public"))


def apply_client_curve(sock: zmq.Socket, endpoint: str, client_key: Path | None = None,
                       server_key: Path | None = None) -> None:
    """Make ``sock`` a CURVE client before it connects to a tcp:// ``endpoint`` (no-op for ipc://)."""
    if not is_tcp(endpoint):
        return
    default_client, default_server = client_key_paths()
    pair = load_keypair(client_key or default_client)
    sock.curve_secretkey = pair.secret
    sock.curve_publickey = pair.public
    sock.curve_serverkey = load_public_key(server_key or default_server)


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
