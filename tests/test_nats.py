"""Many daemons on one NATS JetStream: three symbld nodes on loopback, a real ``nats-server -js``, and
consumers and control from this process through NATS only (symblctl.fleet and ``symblctl --nats``)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from conftest import DaemonProc, messages, wait_until
from natsproc import TOKEN, NatsServer, nats_config
from speechgen import SENTENCES, pcm16, synth, wer

from symblctl.fleet import Fleet
from symblctl.nats_subjects import CLIENT_HEADER, control_subject

NODES = ("n1", "n2", "n3")


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path_factory.mktemp("nats")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def nodes(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, DaemonProc]]:
    root = tmp_path_factory.mktemp("fleet")
    procs = {n: DaemonProc(root / n, args=["--no-preload"], config=nats_config(nats_server.url, n)) for n in NODES}
    try:
        for p in procs.values():
            p.start()
        yield procs
    finally:
        for p in procs.values():
            p.stop()


@pytest.fixture
def fleet(nats_server: NatsServer, nodes: dict[str, DaemonProc]) -> Iterator[Fleet]:
    with Fleet(nats_server.url, token=TOKEN, timeout=30.0) as f:
        yield f


def completed_on_stream(fleet: Fleet, cid: str, timeout: float = 120.0) -> list[dict]:
    return wait_until(f"{cid} completed on the stream", lambda: (
        ev if (ev := fleet.history(cid)) and ev[-1]["type"] == "conversation_completed" else None), timeout)


def symblctl(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SYMBLD_NATS": url, "SYMBLD_NATS_TOKEN": TOKEN}
    return subprocess.run([sys.executable, "-m", "symblctl.cli", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def file_source(path: Path, realtime: bool = False) -> dict:
    return {"type": "file", "path": str(path), "realtime": realtime}


def raw_stream(url: str, subject: str) -> list[tuple[str, str, dict]]:
    """Every message on the stream under ``subject``: (subject, Nats-Msg-Id, envelope), in stream order."""
    async def read() -> list[tuple[str, str, dict]]:
        nc = await nats.connect(url, token=TOKEN)
        js = nc.jetstream()
        # A pull consumer: its pending count before the first fetch is everything the stream holds for us.
        sub = await js.pull_subscribe(subject, stream="SYMBLD")
        out = []
        pending = (await sub.consumer_info()).num_pending
        while len(out) < pending:
            for msg in await sub.fetch(pending - len(out), timeout=10):
                out.append((msg.subject, (msg.headers or {}).get("Nats-Msg-Id", ""), json.loads(msg.data)))
        await nc.close()
        return out

    return asyncio.run(read())


def test_every_node_answers_with_its_status(fleet: Fleet, nats_server: NatsServer) -> None:
    # Scatter-gather collects for a fixed window: a node slower than that (a loaded machine) is asked again.
    wait_until("every node answers ping", lambda: fleet.nodes() == list(NODES))
    def all_statuses() -> list[dict] | None:
        statuses = fleet.gather("status")
        return statuses if [s["node"] for s in statuses] == list(NODES) else None

    statuses = wait_until("every node answers status", all_statuses)
    assert all("connections" in s for s in statuses)
    cli = wait_until("the CLI lists three nodes", lambda: (
        r if (r := symblctl(nats_server.url, "status")).returncode == 0 and "3 nodes" in r.stdout else None))
    assert all(n in cli.stdout for n in NODES)


def test_start_on_a_node_follow_live_and_read_back(fleet: Fleet, nats_server: NatsServer) -> None:
    wav = synth(SENTENCES[0])
    conn = fleet.start("n2", source=file_source(wav))
    cid = conn["connectionId"]
    # Follow from another process through NATS only: the stream replays from the first event, then goes live.
    with fleet.events(connection_id=cid) as stream:
        live = list(stream)
    assert live[-1]["type"] == "conversation_completed"
    assert [e["seq"] for e in live] == list(range(1, len(live) + 1))
    assert {e["node"] for e in live} == {"n2"}
    assert wer(SENTENCES[0], " ".join(messages(live))) <= 0.25
    # Read back the finished conversation, by the library and the CLI.
    assert fleet.history(cid) == live
    cli = symblctl(nats_server.url, "transcript", cid)
    assert cli.returncode == 0, cli.stderr
    assert "quarterly report" in cli.stdout.lower()
    # Another process follows it with the CLI: replayed from the stream, ends at conversation_completed.
    cli = symblctl(nats_server.url, "--json", "subscribe", cid)
    assert cli.returncode == 0, cli.stderr
    assert [json.loads(line)["seq"] for line in cli.stdout.splitlines()] == [e["seq"] for e in live]
    # It appears in n2's status and nowhere else.
    owners = [s["node"] for s in fleet.gather("status") if any(c["connectionId"] == cid for c in s["connections"])]
    assert owners == ["n2"]


def test_stop_is_routed_to_the_owner(fleet: Fleet, nats_server: NatsServer) -> None:
    cli = symblctl(nats_server.url, "--json", "--node", "n3", "start", "--push")
    assert cli.returncode == 0, cli.stderr
    cid = json.loads(cli.stdout)["connectionId"]
    assert fleet.owner(cid) == "n3"
    cli = symblctl(nats_server.url, "--json", "stop", cid)
    assert cli.returncode == 0, cli.stderr
    final = json.loads(cli.stdout)
    assert final["node"] == "n3" and final["state"] == "stopped"
    types = [e["type"] for e in completed_on_stream(fleet, cid)]
    assert types[0] == "connection_started" and "connection_stopped" in types
    # Errors travel unchanged: the same code as over ZeroMQ.
    bad = symblctl(nats_server.url, "--node", "n1", "start", "--file", "/nonexistent.wav")
    assert bad.returncode == 1 and "[" in bad.stderr
    missing = symblctl(nats_server.url, "--node", "nowhere", "start", "--push")
    assert missing.returncode == 3 and "nowhere" in missing.stderr


def test_following_every_node(fleet: Fleet) -> None:
    with fleet.events(types=["connection_started"]) as stream:  # from now, every node
        started = {node: fleet.start(node, source={"type": "push", "sampleRate": 16000})["connectionId"]
                   for node in NODES}
        seen = {}

        def every_node_seen() -> bool:
            event = stream.get(timeout=1.0)
            if event is not None and event["type"] == "connection_started":
                seen[event["node"]] = event["connectionId"]
            return len(seen) == len(NODES)

        wait_until("connection_started from every node", every_node_seen, 60, every=0)
    assert seen == started
    for node, cid in started.items():
        assert fleet.stop(cid)["node"] == node


def test_send_audio_over_nats_and_nats_command(fleet: Fleet, nodes: dict[str, DaemonProc]) -> None:
    conn = fleet.start("n1", source={"type": "push", "sampleRate": 16000})
    cid = conn["connectionId"]
    pcm = pcm16(synth(SENTENCES[3]))
    for i in range(0, len(pcm), 32000):
        assert fleet.request("n1", "send_audio", payload=pcm[i:i + 32000], connectionId=cid)["accepted"] > 0
    fleet.request("n1", "send_audio", connectionId=cid, end=True)
    events = completed_on_stream(fleet, cid)
    assert wer(SENTENCES[3], " ".join(messages(events))) <= 0.25
    state = fleet.request("n1", "nats")
    assert state["node"] == "n1" and state["connected"] and state["bridge"]["publishFailures"] == 0
    assert state["bridge"]["finals"] >= 1
    assert TOKEN not in json.dumps(state) and TOKEN not in json.dumps(fleet.request("n1", "describe"))
    assert TOKEN not in nodes["n1"].log()


def test_a_request_resent_with_its_id_runs_once(fleet: Fleet, nats_server: NatsServer) -> None:
    """What symblctl.fleet does after a timeout: the same request, same id, again. Two copies at once
    (the retry of a request still running) and one later (after its reply was lost) all get the first
    reply, and the node started one connection, not three."""
    def live_ids() -> set[str]:
        return {c["connectionId"] for c in fleet.request("n2", "status")["connections"] if c["state"] == "live"}

    async def three_times() -> list[dict]:
        nc = await nats.connect(nats_server.url, token=TOKEN)
        try:
            body = json.dumps({"v": 1, "id": "resent-1", "cmd": "start", "args": {"source": {"type": "push"}}})
            headers = {CLIENT_HEADER: "resending-client"}
            ask = lambda: nc.request(control_subject("n2"), body.encode(), timeout=30, headers=headers)  # noqa: E731
            together = await asyncio.gather(ask(), ask())
            later = await ask()
            return [json.loads(m.data) for m in (*together, later)]
        finally:
            await nc.close()

    before = live_ids()
    replies = asyncio.run(three_times())
    assert all(r["ok"] for r in replies), replies
    started = {r["result"]["connectionId"] for r in replies}
    assert len(started) == 1 and all(r == replies[0] for r in replies)
    assert live_ids() - before == started
    fleet.stop(started.pop())


def test_a_durable_consumer_resumes_where_it_stopped(fleet: Fleet) -> None:
    def session() -> str:
        cid = fleet.start("n3", source={"type": "push", "sampleRate": 16000})["connectionId"]
        fleet.stop(cid, "n3")
        return cid

    # A new durable consumer starts at "now" here (by default its first use replays the whole stream).
    with fleet.events(node="n3", durable="resume-test", new_only=True) as stream:
        first = session()
        got = [wait_until("an event of the first session", lambda: stream.get(timeout=1.0), 60) for _ in range(3)]
    assert [e["connectionId"] for e in got] == [first] * 3
    # Away for a while (a minute in the issue; the same code path): sessions go on without us.
    missed = [session(), session()]
    with fleet.events(node="n3", durable="resume-test") as stream:
        expected = [e for cid in [first, *missed] for e in fleet.history(cid)][3:]
        resumed = [wait_until("resumed event", lambda: stream.get(timeout=1.0), 60) for _ in expected]
    assert [(e["connectionId"], e["seq"]) for e in resumed] == [(e["connectionId"], e["seq"]) for e in expected]


def test_nats_killed_mid_session_loses_no_final(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats").start()
    # A small memory buffer: the outage overflows it and the rest comes from the journal.
    node = DaemonProc(tmp_path / "k1", config=nats_config(server.url, "k1", buffer_events=3))
    try:
        node.start()
        pcm = b"".join(pcm16(synth(s)) + bytes(16000) for s in SENTENCES[:4])
        with node.client(timeout=30) as c:
            cid = c.start(source={"type": "push", "sampleRate": 16000})["connectionId"]
            half = len(pcm) // 4 // 2 * 2
            c.send_audio(cid, pcm[:half])
            wait_until("a final", lambda: messages(c.all_history(cid)), 120)
            server.kill()  # NATS gone mid-session
            for i in range(half, len(pcm), 32000):
                c.send_audio(cid, pcm[i:i + 32000])
            c.end_audio(cid)
            local = wait_until("completed locally", lambda: (
                ev if (ev := c.all_history(cid)) and ev[-1]["type"] == "conversation_completed" else None), 180)
            server.start()  # same port, same store: the bridge reconnects and catches up
            with Fleet(server.url, token=TOKEN, timeout=30.0) as fleet:
                streamed = completed_on_stream(fleet, cid, 120)
            state = c.request("nats")
        raw = raw_stream(server.url, f"symbld.events.k1.{cid}.*")
        assert [m[2]["seq"] for m in raw] == list(range(1, len(local) + 1)), "in order, none twice, none missing"
        assert len({m[1] for m in raw}) == len(raw) and raw[0][1] == f"{cid}:1"
        assert [{k: v for k, v in e.items() if k != "node"} for e in streamed] == local
        assert len(messages(streamed)) >= 3
        assert state["disconnects"] >= 1 and state["bridge"]["fromJournal"] > 0
    finally:
        node.stop()
        server.stop()


def test_events_of_a_node_killed_while_nats_was_down_reach_the_stream_at_its_restart(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats").start()
    node = DaemonProc(tmp_path / "k2", args=["--no-preload"], config=nats_config(server.url, "k2"))
    try:
        node.start()
        server.kill()
        with node.client(timeout=30) as c:
            cid = c.start(source={"type": "push", "sampleRate": 16000})["connectionId"]
            c.stop(cid)
            local = c.all_history(cid)
        journal = node.state_dir / "journal" / f"{cid}.jsonl"
        wait_until("the journal holds the whole connection", lambda: journal.read_text().count("\n") == len(local))
        node.proc.send_signal(signal.SIGKILL)  # nothing of it reached NATS; the journal has it all
        node.proc.wait(10)
        server.start()
        node.start()  # the bridge finds the journal past its cursors and publishes it
        with Fleet(server.url, token=TOKEN, timeout=30.0) as fleet:
            streamed = completed_on_stream(fleet, cid, 120)
        assert [{k: v for k, v in e.items() if k != "node"} for e in streamed] == local
    finally:
        node.stop()
        server.stop()


def test_a_killed_node_stays_readable_from_the_stream(fleet: Fleet, nats_server: NatsServer, tmp_path: Path) -> None:
    node = DaemonProc(tmp_path / "n4", config=nats_config(nats_server.url, "n4")).start()
    try:
        # start() returns once the local socket answers; the node joins NATS on its own thread a moment later.
        wait_until("n4 answers on NATS", lambda: "n4" in fleet.nodes(), 60)
        cid = fleet.start("n4", source={"type": "push", "sampleRate": 16000})["connectionId"]
        fleet.request("n4", "send_audio", payload=pcm16(synth(SENTENCES[5])), connectionId=cid)
        wait_until("a message on the stream", lambda: messages(fleet.history(cid)), 120)
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait(10)
        assert "n4" not in fleet.nodes()
        events = fleet.history(cid)
        assert wer(SENTENCES[5], " ".join(messages(events))) <= 0.25
        assert fleet.owner(cid) == "n4"  # known from the stream although the node is gone
        journal = [json.loads(line) for line in (node.state_dir / "journal" / f"{cid}.jsonl").read_text().splitlines()]
        durable = [e for e in journal if e["type"] != "transcript_response" or e["data"].get("isFinal")]
        # What the stream holds is the journal's prefix, event for event.
        assert [{k: v for k, v in e.items() if k != "node"} for e in events] == journal[:len(events)]
        assert {e["seq"] for e in durable if e["seq"] <= events[-1]["seq"]} <= {e["seq"] for e in events}
    finally:
        node.kill()


def test_bad_credentials_and_tls_mismatch_fail_at_start(nats_server: NatsServer, tmp_path: Path) -> None:
    def start_fails(name: str, config: str) -> str:
        d = DaemonProc(tmp_path / name, args=["--no-preload"], config=config)
        proc = subprocess.run(d.command(), capture_output=True, text=True, env=d.env, timeout=120)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("symbld:")]
        assert len(lines) == 1, proc.stderr
        return lines[0]

    line = start_fails("badtoken", nats_config(nats_server.url, "x1", token="wrong"))
    assert "authorization" in line.lower() and "wrong" not in line
    ca = tmp_path / "ca.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp_path / "k.pem"),
                    "-out", str(ca), "-days", "1", "-subj", "/CN=test"], check=True, capture_output=True)
    line = start_fails("tls", nats_config(nats_server.url, "x2", tls_ca=str(ca)))
    assert "tls" in line.lower()
    line = start_fails("noauth", f'[nats]\nurl = "{nats_server.url}"\nnode = "x3"\n')
    assert "credentials, token or user" in line


def test_the_client_with_a_bad_token_gets_one_clear_line(nats_server: NatsServer) -> None:
    env = {**os.environ, "SYMBLD_NATS": nats_server.url, "SYMBLD_NATS_TOKEN": "wrong"}
    proc = subprocess.run([sys.executable, "-m", "symblctl.cli", "status"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 3
    assert proc.stderr.count("\n") == 1 and "authorization violation" in proc.stderr, proc.stderr
