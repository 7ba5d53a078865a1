"""The journal against bad files, bad ids, a squatted runtime directory and a full disk (issue 13).

All against the real daemon: hostile files are planted in its state directory before it starts,
the full disk is a real 2 MB tmpfs under the state directory (root only), filled mid-session.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import DaemonProc, events_until_complete, messages, wait_for_events, wait_until
from speechgen import SENTENCES, pcm16, silence, synth

from symblctl.client import DaemonError


def _event(cid: str, seq: object, etype: str = "connection_started", data: object = None) -> bytes:
    return json.dumps({"v": 1, "seq": seq, "connectionId": cid, "conversationId": "c1", "type": etype,
                       "time": "2026-01-01T00:00:00.000Z", "data": {} if data is None else data}).encode()


HOSTILE = {
    "seqstring": _event("seqstring", "1"),
    "seqnull": _event("seqnull", None),
    "seqhuge": _event("seqhuge", 1).replace(b'"seq": 1,', b'"seq": 1e400,'),
    "seqlist": _event("seqlist", [1]),
    "datalist": _event("datalist", 1) + b"\n" + _event("datalist", 2, "transcript_response", [1, 2]),
    "binaryjunk": bytes(range(256)) * 8,
}


def test_hostile_journal_files_are_moved_aside_and_startup_goes_on(tmp_path: Path) -> None:
    d = DaemonProc(tmp_path / "d")
    jdir = d.state_dir / "journal"
    jdir.mkdir(parents=True)
    for name, body in HOSTILE.items():
        (jdir / f"{name}.jsonl").write_bytes(body + b"\n")
    (jdir / "adirectory.jsonl").mkdir()
    # A live connection cut by a crash mid-write: its last line is torn.
    (jdir / "tornconn.jsonl").write_bytes(_event("tornconn", 1) + b"\n" + _event("tornconn", 2, "x")[:40])
    # A good journal with one corrupt line in the middle: kept, the bad line skipped.
    (jdir / "midbad.jsonl").write_bytes(_event("midbad", 1) + b"\n" + _event("midbad", "2", "x") + b"\n"
                                        + _event("midbad", 3, "connection_stopped") + b"\n")
    d.start()
    try:
        with d.client() as c:
            aside = sorted(p.name.split(".jsonl")[0] for p in (jdir / "quarantine").iterdir())
            assert aside == sorted([*HOSTILE, "adirectory"])
            for name in [*HOSTILE, "adirectory"]:
                assert f"{name}.jsonl" in d.log() and "journal_file_moved_aside" in d.log()
                with pytest.raises(DaemonError) as e:
                    c.get(name)
                assert e.value.code == "unknown_connection"
            # The torn tail was cut before the crash marker went in: connection_failed is readable.
            torn = c.all_history("tornconn")
            assert [e["type"] for e in torn] == ["connection_started", "connection_failed", "conversation_completed"]
            assert [e["seq"] for e in torn] == [1, 2, 3]
            assert c.get("tornconn")["state"] == "failed"
            raw = (jdir / "tornconn.jsonl").read_bytes().split(b"\n")
            assert all(json.loads(line) for line in raw if line), "a torn line merged with the marker"
            assert [e["seq"] for e in c.all_history("midbad")] == [1, 3]
            assert c.get("midbad")["state"] != "live"
    finally:
        assert d.stop() == 0


def test_client_chosen_id_whose_journal_exists_is_refused(tmp_path: Path) -> None:
    d = DaemonProc(tmp_path / "d").start()
    try:
        with d.client() as c:
            cid = c.start(source={"type": "push"}, connectionId="reused-id-1")["connectionId"]
            c.stop(cid)
        assert d.stop() == 0
        d.start()
        with d.client() as c:
            with pytest.raises(DaemonError) as e:
                c.start(source={"type": "push"}, connectionId="reused-id-1")
            assert e.value.code == "bad_request" and e.value.details["reason"] == "journal_exists"
            with pytest.raises(DaemonError) as e:
                c.start(source={"type": "push"}, connectionId="newline-id\n")
            assert e.value.code == "bad_request"
            assert c.all_history("reused-id-1")[0]["type"] == "connection_started"
    finally:
        d.stop()


def _start_fails(d: DaemonProc) -> str:
    out = subprocess.run(d.command(), capture_output=True, text=True, timeout=60, env=d.env)
    assert out.returncode != 0
    return out.stderr


def test_squatted_runtime_dir_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to create a directory owned by another user")
    d = DaemonProc(tmp_path / "d")
    d.run_dir.mkdir(parents=True)
    os.chown(d.run_dir, 65534, 65534)
    os.chmod(d.run_dir, 0o777)
    err = _start_fails(d)
    assert "owned by uid 65534" in err and str(d.run_dir) in err
    assert not (d.run_dir / "control").exists()
    os.chown(d.run_dir, 0, 0)  # ours, but anyone may write: still refused
    err = _start_fails(d)
    assert "0777" in err
    os.chmod(d.run_dir, 0o750)  # the system unit's RuntimeDirectory: fine
    d.start()
    assert d.stop() == 0


@pytest.fixture
def tiny_state(tmp_path: Path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    state = tmp_path / "d" / "state"
    state.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(state)], check=True)
    yield state
    subprocess.run(["umount", "-l", str(state)], check=False)


def _fill(path: Path) -> None:
    with open(path, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


def _status_journal(c) -> dict:
    return c.status()["journal"]


def test_full_disk_loses_no_final(tiny_state: Path) -> None:
    d = DaemonProc(tiny_state.parent).start()
    say = SENTENCES[:6]
    try:
        with d.client(timeout=30) as c:
            cid = c.start(source={"type": "push"})["connectionId"]
            c.send_audio(cid, pcm16(synth(say[0])) + silence(1.0))
            wait_for_events(c, cid, lambda ev: len(messages(ev)) >= 1, 90, "first final")
            _fill(tiny_state / "filler")
            for s in say[1:4]:
                c.send_audio(cid, pcm16(synth(s)) + silence(1.0))
            def degraded() -> dict | None:
                state = _status_journal(c)
                return state if state["degraded"] else None

            state = wait_until("the journal degraded", degraded, 90)
            assert state["pendingEvents"] > 0, state
            seen = wait_for_events(c, cid, lambda ev: len(messages(ev)) >= 4, 120, "finals while the disk is full")
            (tiny_state / "filler").unlink()
            wait_until("the journal recovered", lambda: not _status_journal(c)["degraded"], 30)
            c.send_audio(cid, pcm16(synth(say[4])) + silence(1.0))
            c.end_audio(cid)
            seen = events_until_complete(c, cid, timeout=120)
        assert d.stop() == 0
        d.start()
        with d.client() as c:
            after = c.all_history(cid)
        assert [e["seq"] for e in after] == list(range(1, len(after) + 1)), "the journal has a gap"
        durable = [e for e in seen if not (e["type"] == "transcript_response" and not e["data"].get("isFinal"))]
        assert {e["seq"] for e in durable} <= {e["seq"] for e in after}
        assert messages(after) == messages(seen) and len(messages(after)) >= 5
        raw = (tiny_state / "journal" / f"{cid}.jsonl").read_bytes()
        assert all(json.loads(line) for line in raw.split(b"\n") if line)
    finally:
        d.stop()
