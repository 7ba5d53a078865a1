"""Daemon lifecycle with live connections: config reload, crash and restart, installing the unit."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DaemonProc, messages, wait_for_type, wait_until
from speechgen import SENTENCES, pcm16, synth, wer

from symblctl.client import DaemonError


def test_sighup_reloads_config_without_dropping_a_live_connection(tmp_path: Path) -> None:
    d = DaemonProc(tmp_path / "d", config="max_connections = 4\n").start()
    try:
        c = d.client()
        conn = c.start(source={"type": "push"})
        d.config_path.write_text("max_connections = 1\n")  # type: ignore[union-attr]
        d.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        wait_until("config_reloaded in the log", lambda: '"config_reloaded"' in d.log(), 10)
        assert c.get(conn["connectionId"])["state"] == "live"  # untouched by the reload
        with pytest.raises(DaemonError) as e:
            c.start(source={"type": "push"})  # the new limit applies
        assert e.value.code == "limit_exceeded"
        c.send_audio(conn["connectionId"], b"\x00\x00" * 1600)
        assert c.stop(conn["connectionId"])["state"] == "stopped"
        c.close()
    finally:
        d.kill()


@pytest.mark.speech
def test_sigkill_mid_connection_keeps_published_finals_and_reports_the_cut(tmp_path: Path) -> None:
    d = DaemonProc(tmp_path / "d").start()
    try:
        c = d.client()
        conn = c.start(source={"type": "push"})
        cid = conn["connectionId"]
        c.send_audio(cid, pcm16(synth(SENTENCES[1])) + bytes(32000))
        seen = wait_for_type(c, cid, "message_response", 60)
        published = [e for e in seen if e["type"] == "message_response"]
        assert published, "no final was published before the kill"
        c.close()
        d.kill()  # SIGKILL: no flush, no cleanup
        d.start()
        c = d.client()
        cut = c.status()["cut"]
        assert [x["connectionId"] for x in cut] == [cid]
        events = c.all_history(cid)
        seqs = [e["seq"] for e in events]
        assert seqs == list(range(1, len(seqs) + 1))
        # Every final published before the kill is still there, byte for byte.
        for e in published:
            assert e in events
        assert wer(SENTENCES[1], messages(events)) <= 0.2
        assert [e["type"] for e in events[-2:]] == ["connection_failed", "conversation_completed"]
        assert events[-2]["data"]["reason"] == "daemon_restarted"
        assert c.get(cid)["state"] == "failed"
        out = subprocess.run([sys.executable, "-m", "symblctl.cli", "--control", d.control, "--events", d.events,
                              "transcript", cid], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0 and "follow up" in out.stdout.lower()
        c.close()
    finally:
        d.kill()


def test_journal_tolerates_a_half_written_line(tmp_path: Path) -> None:
    d = DaemonProc(tmp_path / "d").start()
    try:
        c = d.client()
        conn = c.start(source={"type": "push"})
        c.stop(conn["connectionId"])
        c.close()
        d.stop()
        journal = d.state_dir / "journal" / f"{conn['connectionId']}.jsonl"
        good = journal.read_text().splitlines()
        with journal.open("a") as f:
            f.write('{"v": 1, "seq": 99, "type": "message_resp')  # torn write
        d.start()
        c = d.client()
        events = c.all_history(conn["connectionId"])
        assert [json.dumps(e, sort_keys=True) for e in events] == [
            json.dumps(json.loads(line), sort_keys=True) for line in good]
        c.close()
    finally:
        d.kill()


def test_install_service_writes_verifiable_units(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "symblctl.cli", "install-service", "--dest", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    unit = tmp_path / "symbld.service"
    text = unit.read_text()
    assert "ExecStart=/" in text and "Type=notify" in text
    exe = text.split("ExecStart=", 1)[1].split()[0]
    assert Path(exe).name == "symbld"


def test_ended_connections_leave_memory_but_stay_readable(tmp_path: Path) -> None:
    d = DaemonProc(tmp_path / "d").start()
    try:
        with d.client() as c:
            first = c.start(source={"type": "push"})["connectionId"]
            c.stop(first)
            for _ in range(105):  # more than the 100 ended connections kept in memory
                c.stop(c.start(source={"type": "push"})["connectionId"])
            assert all(x["connectionId"] != first for x in c.status()["connections"])
            events = c.all_history(first)  # now from the journal
            assert [e["type"] for e in events] == ["connection_started", "connection_stopped",
                                                   "conversation_completed"]
            assert c.get(first)["state"] == "stopped"
            with pytest.raises(DaemonError) as e:
                c.stop(first)
            assert e.value.code == "invalid_state"
    finally:
        d.kill()
