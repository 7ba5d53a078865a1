"""`symbld --serve-symbl`: the daemon serves Symbl's API, and its own `symbl` engine streams to it."""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path

import pytest
from conftest import DaemonProc, events_until_complete
from speechgen import SENTENCES, synth, wer
from test_symbl_server import APP_ID, APP_SECRET, connect, recv_json, start_request, subtype, token

from symblctl.client import DaemonError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.speech
def test_daemon_serves_symbl_and_its_cloud_engine_uses_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = _free_port()
    config = f"""
serve_symbl = "127.0.0.1:{port}"
[symbl_server]
app_id = "local-app"
app_secret = "local-secret-0123456789"
token_ttl = 600
[engine.symbl]
base_url = "http://127.0.0.1:{port}"
app_id = "local-app"
app_secret = "local-secret-0123456789"
"""
    d = DaemonProc(tmp_path / "d", config=config).start()
    try:
        with d.client() as c:
            info = c.describe()
            assert info["symblServer"]["url"] == f"http://127.0.0.1:{port}"
            assert "symbl" in info["engines"]
            # The documented table: its credentials and token lifetime are the server's.
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/oauth2/token:generate", method="POST",
                data=json.dumps({"type": "application", "appId": "local-app",
                                 "appSecret": "local-secret-0123456789"}).encode(),
                headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=30) as reply:
                assert 0 < json.load(reply)["expiresIn"] <= 600
            # A file session on the symbl engine: audio goes out over Symbl's WebSocket protocol to
            # the daemon's own compatible server, which runs it on the offline engine as a second connection.
            conn = c.start(source={"type": "file", "path": str(synth(SENTENCES[8])), "realtime": False},
                           engine="symbl", insightTypes=["action_item"])
            events = events_until_complete(c, conn["connectionId"], timeout=90)
            texts = [m["payload"]["content"] for e in events if e["type"] == "message_response"
                     for m in e["data"]["messages"]]
            assert wer(SENTENCES[8], texts) <= 0.25, texts
            assert events[-2]["type"] == "connection_stopped"
            served = [x for x in c.status()["connections"] if x["connectionId"] != conn["connectionId"]]
            assert served and served[0]["engine"] == "local"  # the server-side connection is visible here too
            # A pushed connection on the symbl engine keeps its client-chosen id on both sides.
            c.start(source={"type": "push"}, engine="symbl", connectionId="via-symbl-01")
            assert c.get("via-symbl-01")["state"] == "live"
            assert c.stop("via-symbl-01")["state"] == "stopped"
            with pytest.raises(DaemonError) as e:
                c.start(source={"type": "push"}, engine="nonesuch")
            assert e.value.code == "bad_request"
    finally:
        d.kill()


def _zeromq_io_threads(pid: int) -> int:
    """libzmq's I/O threads in a process: one per ZeroMQ context that has made a socket."""
    names = [(task / "comm").read_text().strip() for task in Path(f"/proc/{pid}/task").iterdir()]
    return sum(name.startswith("ZMQbg/IO") for name in names)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads through /proc (Linux)")
def test_symbl_sockets_share_one_zeromq_context(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Every speaker socket's daemon clients (its leg's control client, its event pump) use the gateways'
    one ZeroMQ context: more sockets, no more ZeroMQ threads (a context of their own cost two threads each)."""
    port = _free_port()
    config = f"""
serve_symbl = "127.0.0.1:{port}"
[symbl_server]
app_id = "{APP_ID}"
app_secret = "{APP_SECRET}"
first_frame_delay = 0
"""
    d = DaemonProc(tmp_path / "d", config=config).start()
    sockets = []
    try:
        assert d.proc is not None
        tok = token(port)
        for i in range(3):
            ws = connect(port, f"/v1/streaming/ctx-share-{i:04d}", tok)
            sockets.append(ws)
            ws.send(start_request())
            while subtype(frame := recv_json(ws)) != "recognition_started":
                assert frame.get("type") != "error", frame
        with d.client() as c:
            assert len(c.status()["connections"]) >= 3  # the three legs are live daemon connections
        # The daemon's own context and the gateways' one: nothing per socket.
        assert _zeromq_io_threads(d.proc.pid) <= 2
    finally:
        for ws in sockets:
            ws.close()
        d.kill()
