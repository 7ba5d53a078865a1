"""symblctl as a user and a script run it, against the real daemon: exit codes and the text shown."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from cli_helpers import cli_env, symblctl
from conftest import DaemonProc, events_until_complete, wait_until
from speechgen import SENTENCES, synth, wer

from symbld import __version__


@pytest.fixture(scope="module")
def speech_flac(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A FLAC of two sentences in a directory of its own (the tests run from there with a relative path)."""
    d = tmp_path_factory.mktemp("audio")
    a, sr = sf.read(str(synth(SENTENCES[0])))
    b, _ = sf.read(str(synth(SENTENCES[1])))
    sf.write(str(d / "meeting.flac"), np.concatenate([a, np.zeros(sr // 2), b]), sr)
    return d / "meeting.flac"


def test_version_and_help_have_what_a_user_needs() -> None:
    r = symblctl(None, "--version")
    assert (r.returncode, r.stdout.strip()) == (0, f"symblctl {__version__}")
    r = symblctl(None, "start", "--help")
    assert r.returncode == 0
    assert "start a connection." in r.stdout and "examples:" in r.stdout and "symblctl start meeting.flac" in r.stdout
    assert "exit status:" in r.stdout and "4    the connection failed" in r.stdout
    assert "130  interrupted" in symblctl(None, "--help").stdout


@pytest.mark.parametrize("args,needle", [
    (("start",), "start needs one source"),
    (("start", "a.wav", "--file", "b.wav"), "give the audio file once"),
    (("frobnicate",), "invalid choice: 'frobnicate'"),
    (("ls", "--since", "soonish"), "'soonish' is not a time"),
])
def test_bad_usage_exits_2(args: tuple[str, ...], needle: str) -> None:
    r = symblctl(None, *args)
    assert r.returncode == 2 and needle in r.stderr, r.stderr


def test_global_options_before_or_after_the_subcommand(daemon: DaemonProc) -> None:
    after = symblctl(daemon, "status", "--json", "--timeout", "10")
    before = subprocess.run([sys.executable, "-m", "symblctl", "--json", "--control", daemon.control,
                             "--events", daemon.events, "status"], capture_output=True, text=True,
                            timeout=60, env=cli_env())
    assert after.returncode == 0 and before.returncode == 0, (after.stderr, before.stderr)
    assert json.loads(after.stdout)["uptime"] > 0 and "connections" in json.loads(before.stdout)


def test_describe_json_after_the_subcommand_as_demo_sh_calls_it(daemon: DaemonProc) -> None:
    r = symblctl(daemon, "describe", "--json")
    assert r.returncode == 0, r.stderr
    assert "mic" in json.loads(r.stdout)["audioSources"]


def test_relative_file_is_found_and_follow_exits_0_with_both_ids(daemon: DaemonProc, speech_flac: Path) -> None:
    r = symblctl(daemon, "start", speech_flac.name, "--fast", "--follow", "--speaker", "Ann",
                 cwd=speech_flac.parent)
    assert r.returncode == 0, r.stderr
    said = [line.removeprefix("Ann: ") for line in r.stdout.splitlines() if line.startswith("Ann: ")]
    assert wer(SENTENCES[:2], said) <= 0.2, r.stdout
    last = r.stdout.splitlines()[-1]
    m = re.fullmatch(r"completed; conversationId (\d+) connectionId ([0-9a-f]{32})", last)
    assert m, last


def test_transcript_formats_by_either_id(daemon: DaemonProc, speech_flac: Path, tmp_path: Path) -> None:
    r = symblctl(daemon, "start", str(speech_flac), "--fast", "--json", "--speaker", "Ann", "--title", "Weekly")
    conn = json.loads(r.stdout)
    with daemon.client() as c:
        events_until_complete(c, conn["connectionId"])
    conv, cid = conn["conversationId"], conn["connectionId"]

    srt = symblctl(daemon, "transcript", conv, "--format", "srt", "-o", str(tmp_path / "m.srt"))
    assert srt.returncode == 0 and srt.stderr.strip() == f"wrote {tmp_path / 'm.srt'} (srt)"
    blocks = (tmp_path / "m.srt").read_text().strip().split("\n\n")
    assert [b.split("\n")[0] for b in blocks] == [str(i) for i in range(1, len(blocks) + 1)]
    times = [re.fullmatch(r"(\d\d):(\d\d):(\d\d),(\d{3}) --> (\d\d):(\d\d):(\d\d),(\d{3})", b.split("\n")[1])
             for b in blocks]
    assert all(times), blocks
    starts = [int(t[1]) * 3600 + int(t[2]) * 60 + int(t[3]) + int(t[4]) / 1000 for t in times]
    assert starts[0] < 2.0 and starts == sorted(starts)  # offsets from the start, not wall-clock times
    texts = [b.split("\n", 2)[2] for b in blocks]
    assert all(t.startswith("Ann: ") for t in texts)
    assert wer(SENTENCES[:2], [t.removeprefix("Ann: ") for t in texts]) <= 0.2

    vtt = symblctl(daemon, "transcript", cid, "--format", "vtt")
    assert vtt.returncode == 0 and vtt.stdout.startswith("WEBVTT\n\n00:00:0")
    assert "<v Ann>" in vtt.stdout and " --> " in vtt.stdout

    txt = symblctl(daemon, "transcript", conv)
    assert txt.returncode == 0 and re.match(r"^\[00:0\d\] Ann: ", txt.stdout), txt.stdout

    md = symblctl(daemon, "transcript", conv, "-f", "md")
    assert md.stdout.startswith("# Weekly\n") and "**Ann** `00:0" in md.stdout

    js = json.loads(symblctl(daemon, "transcript", conv, "--json").stdout)
    assert js["conversationId"] == conv and js["connectionId"] == cid and js["title"] == "Weekly"
    assert [m["speaker"] for m in js["messages"]] == ["Ann"] * len(js["messages"])
    assert js["messages"][0]["start"] < 2.0 and js["messages"][0]["end"] > js["messages"][0]["start"]


def test_either_id_names_the_connection_everywhere(daemon: DaemonProc) -> None:
    started = json.loads(symblctl(daemon, "start", "--push", "--json").stdout)
    conv = started["conversationId"]
    got = symblctl(daemon, "get", conv, "--json")
    assert got.returncode == 0 and json.loads(got.stdout)["connectionId"] == started["connectionId"]
    first = symblctl(daemon, "stop", conv, "--json")
    assert first.returncode == 0 and json.loads(first.stdout)["state"] == "stopped"
    again = symblctl(daemon, "stop", conv, "--json")  # stopping twice: the final object again, as in Python
    assert again.returncode == 0 and json.loads(again.stdout)["state"] == "stopped"
    human = symblctl(daemon, "stop", started["connectionId"])
    assert human.returncode == 0 and "already stopped" in human.stderr
    sub = symblctl(daemon, "subscribe", conv, "--json", timeout=60)  # its events from the start, then it ends
    assert sub.returncode == 0, sub.stderr
    kinds = [json.loads(line)["type"] for line in sub.stdout.splitlines()]
    assert kinds[0] == "connection_started" and kinds[-1] == "conversation_completed"


def test_unknown_connection_is_refused_with_exit_1(daemon: DaemonProc) -> None:
    r = symblctl(daemon, "transcript", "nosuchconversation")
    assert r.returncode == 1 and r.stderr.strip() == "symblctl: no connection 'nosuchconversation' [unknown_connection]"
    sub = symblctl(daemon, "subscribe", "nosuchconversation", timeout=60)
    assert sub.returncode == 1 and "no connection 'nosuchconversation'" in sub.stderr
    assert "credential" not in sub.stderr.lower() and "symbl" not in sub.stderr.replace("symblctl", "")


def test_subscribe_with_an_unknown_event_type_is_an_error(daemon: DaemonProc) -> None:
    r = symblctl(daemon, "subscribe", "--events", "message_response,mesage_response", timeout=60)
    assert r.returncode == 2
    assert r.stderr.startswith("symblctl: unknown event type mesage_response; known: ")


@pytest.mark.parametrize("kind,needle", [
    ("dir", "is a directory"), ("fifo", "is not a regular file"), ("text", "not a readable audio file"),
    pytest.param("unreadable", "permission denied for the daemon's user", marks=pytest.mark.skipif(
        os.geteuid() == 0, reason="root reads any file")),
    ("missing", "audio file not found"),
])
def test_the_daemon_names_a_file_it_cannot_use(daemon: DaemonProc, tmp_path: Path, kind: str, needle: str) -> None:
    target = tmp_path / "notes.txt"
    if kind == "dir":
        target = tmp_path / "folder"
        target.mkdir()
    elif kind == "fifo":
        target = tmp_path / "pipe"
        os.mkfifo(target)
    elif kind != "missing":
        target.write_text("not audio at all\n" * 10)
        if kind == "unreadable":
            target.chmod(0)
    r = symblctl(daemon, "start", target.name, cwd=tmp_path)
    assert r.returncode == 1 and str(target) in r.stderr and needle in r.stderr, r.stderr


def test_corrupt_audio_fails_the_connection_with_exit_4(daemon: DaemonProc, speech_flac: Path, tmp_path: Path) -> None:
    data = bytearray(speech_flac.read_bytes())
    for i in range(400, len(data), 7):  # keep the header, scramble the frames
        data[i] = (data[i] * 31 + 7) & 0xFF
    bad = tmp_path / "corrupt.flac"
    bad.write_bytes(bytes(data))
    r = symblctl(daemon, "start", str(bad), "--fast", "--follow")
    assert r.returncode == 4, (r.stdout, r.stderr)
    assert "symblctl: connection failed: cannot decode" in r.stderr and str(bad) in r.stderr
    assert r.stdout.splitlines()[-1].startswith("failed; conversationId ")


def test_conversations_lists_past_ones_after_a_restart(tmp_path: Path, speech_flac: Path) -> None:
    d = DaemonProc(tmp_path / "d").start()
    try:
        r = symblctl(d, "start", str(speech_flac), "--fast", "--follow", "--title", "Planning")
        assert r.returncode == 0, r.stderr
        push = json.loads(symblctl(d, "start", "--push", "--json").stdout)
        symblctl(d, "stop", push["connectionId"])
        d.stop()
        d.start()
        assert json.loads(symblctl(d, "status", "--json").stdout)["connections"] == []
        rows = [json.loads(line) for line in symblctl(d, "ls", "--json").stdout.splitlines()]
        assert [r["source"] for r in rows] == ["push", "file"]  # newest first
        planning = rows[1]
        assert planning["title"] == "Planning" and planning["state"] == "stopped"
        assert planning["sourceLabel"] == "file meeting.flac" and planning["words"] >= 15
        assert planning["audioSeconds"] > 3
        only_files = symblctl(d, "conversations", "--source", "file")
        lines = only_files.stdout.splitlines()
        assert only_files.returncode == 0 and lines[0].startswith("STARTED") and len(lines) == 2
        assert "file meeting.flac" in lines[1] and "Planning" in lines[1] and " stopped " in lines[1]
        assert len(symblctl(d, "ls", "--since", "1h", "--json").stdout.splitlines()) == 2
        future = symblctl(d, "ls", "--since", "2999-01-01")
        assert future.returncode == 0 and future.stdout.strip() == "no conversations in the journals"
    finally:
        d.kill()


def test_devices_without_any_says_why(tmp_path: Path) -> None:
    d = DaemonProc(tmp_path / "d", args=["--no-preload"], env={"PULSE_SERVER": f"unix:{tmp_path}/no-pulse"}).start()
    try:
        listed = json.loads(symblctl(d, "devices", "--json").stdout)["devices"]
        if listed:
            pytest.skip("this machine has a capture device")
        r = symblctl(d, "devices")
        assert r.returncode == 0 and r.stdout == ""
        assert r.stderr.startswith("no audio input devices: no audio input device")
    finally:
        d.kill()


def test_absent_daemon_is_exit_3_with_what_to_do(tmp_path: Path) -> None:
    r = symblctl(None, "status", "--control", f"ipc://{tmp_path}/control")
    assert r.returncode == 3
    assert r.stderr.strip() == (f"symblctl: symbld is not running at ipc://{tmp_path}/control (no socket file "
                                f"{tmp_path}/control; start it: `symbld &`, or `systemctl --user start symbld` "
                                "for the service)")


def test_killed_daemon_with_a_stale_socket_fails_at_once(tmp_path: Path, speech_flac: Path) -> None:
    d = DaemonProc(tmp_path / "d", args=["--no-preload"]).start()
    d.kill()  # SIGKILL: the socket files stay
    assert (d.run_dir / "control").exists()
    for args in (("start", str(speech_flac), "--timeout", "3"), ("stop", "x" * 32, "--timeout", "3")):
        # A deadline for the old hang (180 s for start, 360 s for stop), not a speed figure.
        r = symblctl(d, *args, timeout=60)
        assert r.returncode == 3, r.stderr
        assert "stale socket file" in r.stderr and "start it: `symbld &`" in r.stderr


def test_wedged_daemon_is_detected_within_the_timeout(tmp_path: Path) -> None:
    stall = tmp_path / "stall"
    d = DaemonProc(tmp_path / "d", args=["--no-preload"], env={"SYMBLD_DEBUG_STALL_FILE": str(stall)}).start()
    try:
        push = json.loads(symblctl(d, "start", "--push", "--json").stdout)
        stall.touch()  # the control loop stops answering (the process is alive, its socket is there)
        # ... once its housekeeping has seen the file: a loaded machine may answer a request or two first.
        wait_until("the control loop stalls", lambda: symblctl(d, "ping", "--timeout", "1", timeout=50).returncode == 3)
        for args in (("status",), ("stop", push["connectionId"])):
            # --timeout bounds the wait: a deadline well under the old 60-120 s, not a speed figure.
            r = symblctl(d, *args, "--timeout", "2", timeout=50)
            assert r.returncode == 3, r.stderr
            assert "is not answering" in r.stderr and "restart it" in r.stderr, r.stderr
    finally:
        stall.unlink(missing_ok=True)
        d.kill()


def test_install_service_user_as_the_docs_say(tmp_path: Path) -> None:
    if shutil.which("symbld") is None and not (Path(sys.executable).parent / "symbld").exists():
        pytest.skip("no symbld executable installed next to this Python")
    r = symblctl(None, "install-service", "--user", "--dest", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "symbld.service").exists() and "systemctl --user enable --now symbld" in r.stdout


def test_the_python_file_example_of_docs_client_md_runs(daemon: DaemonProc, speech_flac: Path) -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "client.md").read_text()
    section = doc[doc.index("## Transcribing a file from Python"):]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    code = code.replace("Client()", f"Client({daemon.control!r}, {daemon.events!r}, timeout=10)")
    r = subprocess.run([sys.executable, "-c", code], cwd=speech_flac.parent, capture_output=True, text=True,
                       timeout=120, env=cli_env())
    assert r.returncode == 0, r.stderr
    printed, _, srt = r.stdout.partition("\n1\n")
    assert wer(SENTENCES[:2], printed.splitlines()) <= 0.2, r.stdout
    assert re.match(r"00:00:0\d,\d{3} --> ", srt) and "Ann: " in srt


def test_follow_ends_with_exit_3_when_the_daemon_dies_under_it(tmp_path: Path) -> None:
    d = DaemonProc(tmp_path / "d", args=["--no-preload"]).start()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "symblctl", "start", "--push", "--follow", "--timeout", "10",
                                 "--control", d.control, "--events", d.events], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=cli_env())
        assert proc.stderr is not None
        first = proc.stderr.readline()
        assert "(Ctrl-C stops)" in first, first
        d.kill()
        assert proc.wait(60) == 3
        err = proc.stderr.read()
        assert "stale socket file" in err and "start it" in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
        d.kill()


def test_the_symbl_shaped_api_resolves_a_relative_file_too(daemon: DaemonProc, speech_flac: Path) -> None:
    code = ("import symblctl as symbl\n"
            f"api = symbl.StreamingApi({daemon.control!r}, {daemon.events!r})\n"
            "c = api.start_connection(source={'type': 'file', 'path': 'meeting.flac', 'realtime': False})\n"
            "print(c.info['source']['path'])\n"
            "c.stop()\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=speech_flac.parent, capture_output=True, text=True,
                       timeout=120, env=cli_env())
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(speech_flac)
