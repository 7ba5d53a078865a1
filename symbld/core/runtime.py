"""The runtime directory (control and event sockets) must be ours alone.

With ``XDG_RUNTIME_DIR`` unset the fallback is ``/tmp/symbld-<uid>``: a name anyone can create
first. A directory another user owns, or one others may write to, lets that user swap the
control socket for a fake daemon, so start-up refuses it and says why. The system service's
``RuntimeDirectory=`` (mode 0750, group symbld) stays fine: group members may enter and connect,
never write the directory.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class RuntimeDirError(Exception):
    pass


def check_runtime_dir(path: Path) -> None:
    """Raise RuntimeDirError unless ``path`` is a directory owned by us with no group write or other access."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise RuntimeDirError(f"runtime directory {path}: {e.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise RuntimeDirError(f"runtime directory {path} is not a directory")
    if st.st_uid != os.geteuid():
        raise RuntimeDirError(f"runtime directory {path} is owned by uid {st.st_uid}, not by this user "
                              f"(uid {os.geteuid()}); another user may have created it to intercept the control "
                              "socket. Remove it, or set XDG_RUNTIME_DIR / --runtime-dir")
    bad = stat.S_IMODE(st.st_mode) & (stat.S_IWGRP | stat.S_IRWXO)
    if bad:
        raise RuntimeDirError(f"runtime directory {path} has mode {stat.S_IMODE(st.st_mode):04o}: group write or "
                              "access by others would let other users replace the sockets; chmod 700 it")
