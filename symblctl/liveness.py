"""Is the daemon there, and is it answering? Used by ``Client`` so that a dead or wedged daemon
is reported within the client's timeout, with one message that says what to do.

- ``socket_file_problem``: for ``ipc://`` endpoints, no socket file, or a stale one (left by
  a daemon killed with SIGKILL: connecting to it is refused) is known at once, without waiting.
- ``answers_ping``: a ping on a separate socket, so a slow command (a stop flushing finals)
  can be told apart from a daemon that stopped answering.
"""

from __future__ import annotations

import errno
import json
import os
import socket
from typing import Any

import zmq

from symblctl.keys import SecurityError, apply_client_curve

START_HINT = "start it: `symbld &`, or `systemctl --user start symbld` for the service"
RESTART_HINT = "it may be stuck: restart it (`systemctl --user restart symbld`, or kill it and run `symbld &`)"


def ipc_path(endpoint: str) -> str | None:
    """The socket file of an ``ipc://`` endpoint (None for tcp:// and abstract sockets)."""
    if not endpoint.startswith("ipc://"):
        return None
    path = endpoint[len("ipc://"):]
    return None if path.startswith("@") else path


def socket_file_problem(endpoint: str) -> str | None:
    """Why nothing can be listening at an ipc endpoint, or None when something may be."""
    path = ipc_path(endpoint)
    if path is None:
        return None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(path)
        except FileNotFoundError:
            return f"no socket file {path}"
        except ConnectionRefusedError:
            return f"stale socket file {path}: the daemon that made it is gone"
        except PermissionError:
            return f"no permission to connect to {path} (another user's daemon?)"
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.ETIMEDOUT):  # backlog full: something is listening
                return None
            return f"cannot connect to {path}: {e.strerror}"
    return None


def answers_ping(ctx: zmq.Context[Any], endpoint: str, timeout: float) -> bool:
    """True when the daemon answers a ping within ``timeout`` seconds (on a socket of its own)."""
    s = ctx.socket(zmq.REQ)
    s.setsockopt(zmq.LINGER, 0)
    try:
        try:
            apply_client_curve(s, endpoint)
        except SecurityError:
            return False
        s.connect(endpoint)
        rid = os.urandom(8).hex()
        s.send(json.dumps({"v": 1, "id": rid, "cmd": "ping", "args": {}}).encode())
        return bool(s.poll(max(1, int(timeout * 1000)), zmq.POLLIN))
    finally:
        s.close(linger=0)
