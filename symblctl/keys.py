"""CurveZMQ key files and the client's side of CURVE: what ``symblctl keygen`` writes and a tcp:// client loads.

The daemon's side (the allow-list, the ZAP handler) is in ``symbld.control.curve``, which uses these.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import zmq

Z85_KEY_LEN = 40


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


class KeyPair(NamedTuple):
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
    if len(key) != Z85_KEY_LEN:
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


def is_tcp(endpoint: str) -> bool:
    return endpoint.startswith("tcp://")


# -- the client's side ----------------------------------------------------------------------------
def client_key_paths() -> tuple[Path, Path]:
    """(client secret key, server public key): $SYMBLD_CLIENT_KEY / $SYMBLD_SERVER_KEY, else keys_dir()."""
    k = keys_dir()
    return (Path(os.environ.get("SYMBLD_CLIENT_KEY") or k / "client.secret"),
            Path(os.environ.get("SYMBLD_SERVER_KEY") or k / "server.public"))


def apply_client_curve(sock: zmq.Socket[bytes], endpoint: str, client_key: Path | None = None,
                       server_key: Path | None = None) -> None:
    """Make ``sock`` a CURVE client before it connects to a tcp:// ``endpoint`` (no-op for ipc://)."""
    if not is_tcp(endpoint):
        return
    default_client, default_server = client_key_paths()
    pair = load_keypair(client_key or default_client)
    sock.curve_secretkey = pair.secret
    sock.curve_publickey = pair.public
    sock.curve_serverkey = load_public_key(server_key or default_server)
