"""Who may connect: owner-only ipc, CURVE-only tcp, keygen file modes, peer credentials, no secrets leaked."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
from conftest import DaemonProc, wait_until

from symblctl.client import Client, DaemonUnavailable
from symblctl.keys import generate_keys
from symbld.control.curve import load_authorized_keys

ROOT = Path(__file__).resolve().parents[1]
SECRETS = {"smtp": "smtp-pw-Zq81vX", "symbl": "symbl-secret-Kp22wQ", "sip": "sip-pw-Hn53tR"}
SECRET_CONFIG = f"""
log_level = "debug"
[smtp]
host = "127.0.0.1"
username = "bob"
password = "{SECRETS['smtp']}"
[engine.symbl]
app_id = "my-app-id"
app_secret = "{SECRETS['symbl']}"
[telephony]
username = "alice"
password = "{SECRETS['sip']}"
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _log_lines(d: DaemonProc) -> list[dict]:
    out = []
    for line in d.log_path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return out


def _no_reply(endpoint: str, sock_type: int = zmq.REQ, keys: tuple[bytes, bytes, bytes] | None = None,
              wait: float = 1.5) -> bool:
    """True when a raw client (optionally CURVE with (public, secret, server public)) gets no reply to ping."""
    ctx = zmq.Context()
    try:
        s = ctx.socket(sock_type)
        s.setsockopt(zmq.LINGER, 0)
        if keys is not None:
            s.curve_publickey, s.curve_secretkey, s.curve_serverkey = keys
        s.connect(endpoint)
        s.send(b'{"v": 1, "id": "x", "cmd": "ping"}')
        got = s.poll(int(wait * 1000))
        s.close(linger=0)
        return not got
    finally:
        ctx.term()


# -- ipc: the file system is the gate ------------------------------------------------------------
@pytest.fixture(scope="module")
def ipc_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProc]:
    d = DaemonProc(tmp_path_factory.mktemp("sec"), args=["--no-preload"], config=SECRET_CONFIG,
                   env={"SYMBL_APP_ID": "my-app-id", "SYMBL_APP_SECRET": SECRETS["symbl"]}).start()
    yield d
    d.kill()


def test_ipc_directory_and_sockets_are_owner_only(ipc_daemon: DaemonProc) -> None:
    d = ipc_daemon
    assert stat.S_IMODE(d.run_dir.stat().st_mode) == 0o700
    for name in ("control", "events"):
        mode = (d.run_dir / name).stat().st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) & 0o077 == 0, f"{name} socket is mode {oct(stat.S_IMODE(mode))}"
    with d.client() as c:
        cid = c.start(source={"type": "push"})["connectionId"]
        c.send_audio(cid, bytes(3200))
        c.stop(cid)
    assert [p for p in d.state_dir.rglob("*.jsonl") if p.is_file()], "no journal written"
    assert stat.S_IMODE(d.state_dir.stat().st_mode) == 0o700
    # Journals (transcripts) and every other state file: no other user can reach them, either
    # because the file is owner-only or because a directory on the way is.
    for f in (p for p in d.state_dir.rglob("*") if p.is_file()):
        guarded = [f, *(a for a in f.parents if a == d.state_dir or d.state_dir in a.parents)]
        assert any(stat.S_IMODE(g.stat().st_mode) & 0o077 == 0 for g in guarded), f"{f} is reachable by others"


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another user")
def test_another_user_cannot_reach_the_ipc_sockets(ipc_daemon: DaemonProc) -> None:
    """A process of another uid (nobody) is refused by the kernel before ZeroMQ sees anything."""
    path = str(ipc_daemon.run_dir / "control")
    pid = os.fork()
    if pid == 0:  # the child: become nobody, try to connect, report by exit code only
        code = 3
        try:
            os.setgid(65534)
            os.setuid(65534)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(path)
            code = 1  # connected: the directory let us in
        except PermissionError:
            code = 0
        except BaseException:  # noqa: BLE001 - the forked probe must reach os._exit whatever happens
            code = 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "another user could connect (or the probe failed)"
    with ipc_daemon.client() as c:
        assert c.ping()["pong"]  # the owner still can


def test_state_changing_commands_are_logged_with_peer_credentials(ipc_daemon: DaemonProc) -> None:
    with ipc_daemon.client() as c:
        cid = c.start(source={"type": "push"})["connectionId"]
        c.stop(cid)
    cmds = wait_until("a command log line for stop", lambda: [
        e for e in _log_lines(ipc_daemon) if e.get("event") == "command" and e.get("cmd") == "stop"], 10)
    peer = cmds[-1]["peer"]
    assert peer["pid"] == os.getpid() and peer["uid"] == os.getuid() and peer["gid"] == os.getgid()


def test_secrets_never_in_logs_or_describe(ipc_daemon: DaemonProc) -> None:
    with ipc_daemon.client() as c:
        seen = json.dumps([c.describe(), c.status()])
        cid = c.start(source={"type": "push"})["connectionId"]
        c.stop(cid)
    text = ipc_daemon.log_path.read_text(errors="replace")
    assert '"level": "debug"' in text or '"level":"debug"' in text or "debug" in text  # the log is verbose
    for name, secret in SECRETS.items():
        assert secret not in seen, f"{name} secret in describe/status"
        assert secret not in text, f"{name} secret in the log"


# -- keygen ----------------------------------------------------------------------------------------
def _keygen(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "symblctl.cli", *args], capture_output=True, text=True,
                          timeout=30, cwd=ROOT, env={**os.environ, **(env or {})})


def test_keygen_writes_owner_only_z85_files(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    r = _keygen("--json", "keygen", "--name", "server", "--dir", str(keys))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    for f in ("server.secret", "server.public"):
        assert stat.S_IMODE((keys / f).stat().st_mode) == 0o600
    secret = (keys / "server.secret").read_text().strip()
    assert len(secret) == 40 and zmq.curve_public(secret.encode()).decode() == out["publicKey"]
    assert (keys / "server.public").read_text().strip() == out["publicKey"]
    assert secret not in r.stdout  # the secret is never printed
    again = _keygen("keygen", "--name", "server", "--dir", str(keys))
    assert again.returncode == 1 and "already exists" in again.stderr
    (keys / "server.secret").chmod(0o644)
    forced = _keygen("keygen", "--name", "server", "--dir", str(keys), "--force")
    assert forced.returncode == 0
    assert stat.S_IMODE((keys / "server.secret").stat().st_mode) == 0o600
    # the default location follows $SYMBLD_KEYS_DIR
    r = _keygen("keygen", env={"SYMBLD_KEYS_DIR": str(tmp_path / "k2")})
    assert r.returncode == 0 and (tmp_path / "k2" / "client.secret").exists()


# -- tcp: CURVE or nothing -------------------------------------------------------------------------
@pytest.fixture
def curve_keys(tmp_path: Path) -> dict[str, Path]:
    keys = tmp_path / "keys"
    srv_secret, srv_public, _ = generate_keys(keys, "server")
    cli_secret, _, cli = generate_keys(keys, "client")
    generate_keys(keys, "stranger")
    allow = tmp_path / "authorized_keys"
    allow.write_text(f"# symbld clients\n{cli.public.decode()} laptop\n")
    allow.chmod(0o600)
    assert load_authorized_keys(allow) == {cli.public}
    return {"server_secret": srv_secret, "server_public": srv_public, "client_secret": cli_secret,
            "stranger_secret": keys / "stranger.secret", "authorized": allow}


def test_tcp_without_keys_is_refused_at_startup(tmp_path: Path) -> None:
    d = DaemonProc(tmp_path / "d", args=["--no-preload", "--control", f"tcp://127.0.0.1:{_free_port()}",
                                         "--events", f"tcp://127.0.0.1:{_free_port()}"],
                   env={"SYMBLD_KEYS_DIR": str(tmp_path / "nokeys"), "XDG_CONFIG_HOME": str(tmp_path / "cfg")})
    r = subprocess.run(d.command(), capture_output=True, text=True, timeout=60, env=d.env)
    assert r.returncode == 1
    assert "CURVE" in r.stderr and "keygen" in r.stderr, r.stderr


def test_tcp_client_without_the_right_key_is_refused(tmp_path: Path, curve_keys: dict[str, Path],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    control, events = f"tcp://127.0.0.1:{_free_port()}", f"tcp://127.0.0.1:{_free_port()}"
    config = (f'curve_server_key = "{curve_keys["server_secret"]}"\n'
              f'curve_authorized_keys = "{curve_keys["authorized"]}"\n')
    monkeypatch.setenv("SYMBLD_CLIENT_KEY", str(curve_keys["client_secret"]))
    monkeypatch.setenv("SYMBLD_SERVER_KEY", str(curve_keys["server_public"]))
    d = DaemonProc(tmp_path / "d", args=["--no-preload", "--control", control, "--events", events], config=config)
    d.control, d.events = control, events
    try:
        d.start(wait=60)
        # The allowed key works, for requests and for events.
        with d.client() as c:
            cid = c.start(source={"type": "push"})["connectionId"]
            with c.events(cid) as stream:
                c.send_audio(cid, bytes(3200))
                c.stop(cid)
                types = []
                while (e := stream.get(timeout=5)) is not None:
                    types.append(e["type"])
            assert types[0] == "connection_started" and types[-1] == "conversation_completed"
        cmd = [e for e in _log_lines(d) if e.get("event") == "command" and e.get("cmd") == "start"]
        assert cmd and len(cmd[-1]["peer"]["curveKey"]) == 40
        # No CURVE at all, a stranger's key, and the right key with the wrong server key: no reply.
        srv_pub = curve_keys["server_public"].read_text().strip().encode()
        stranger = curve_keys["stranger_secret"].read_text().strip().encode()
        own = curve_keys["client_secret"].read_text().strip().encode()
        assert _no_reply(control)
        assert _no_reply(control, zmq.DEALER)
        assert _no_reply(control, keys=(zmq.curve_public(stranger), stranger, srv_pub))
        assert _no_reply(control, keys=(zmq.curve_public(own), own, zmq.curve_keypair()[0]))
        assert any(e.get("event") == "curve_client_refused" for e in _log_lines(d))
        # A SUB without the key hears nothing, even with a connection publishing.
        ctx = zmq.Context()
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(events)
        with d.client() as c:
            cid = c.start(source={"type": "push"})["connectionId"]
            c.send_audio(cid, bytes(3200))
            c.stop(cid)
        assert not sub.poll(1000)
        sub.close(linger=0)
        ctx.term()
        # The symblctl Client with no key files says so instead of hanging.
        monkeypatch.setenv("SYMBLD_CLIENT_KEY", str(tmp_path / "missing.secret"))
        with pytest.raises(DaemonUnavailable, match="keygen"), Client(control, events, timeout=1, retries=0) as c:
            c.ping()
        assert d.stop() == 0
    finally:
        d.kill()
