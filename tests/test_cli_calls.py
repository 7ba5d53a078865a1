"""symblctl start --sip --follow against real sipp callees: call progress as it happens, and exit 4
when the call does not connect."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from cli_helpers import symblctl
from conftest import DaemonProc
from test_telephony import sipp, speech  # noqa: F401 - the sipp fixtures of the UA tests

pytestmark = pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp missing: apt-get install sip-tester")

# T1 = 50 ms: timer B (64*T1) gives up on a silent host after 3.2 s instead of 32 s.
CONFIG = "[telephony]\nsip_t1 = 0.05\nanswer_timeout = 5\n"  # answer_timeout > timer B


@pytest.fixture(scope="module")
def call_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProc]:
    d = DaemonProc(tmp_path_factory.mktemp("symbld-calls"), config=CONFIG).start()
    yield d
    d.kill()


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("[call]")]


def test_unanswered_call_shows_ringing_then_fails_with_exit_4(call_daemon: DaemonProc, sipp) -> None:  # noqa: F811
    callee = sipp("uas_ring.xml")
    r = symblctl(call_daemon, "start", "--sip", callee.uri, "--follow", timeout=90)
    assert r.returncode == 4, (r.stdout, r.stderr)
    assert _lines(r.stdout) == [f"[call] dialling {callee.uri}", "[call] ringing (SIP 180 Ringing)",
                                "[call] failed: SIP 408 No answer within 5 s"]
    assert "symblctl: connection failed: call to" in r.stderr and "408 No answer within 5 s" in r.stderr
    assert r.stdout.splitlines()[-1].startswith("failed; conversationId ")


def test_silent_host_fails_after_timer_b(call_daemon: DaemonProc, sipp) -> None:  # noqa: F811
    callee = sipp("uas_silent.xml")
    r = symblctl(call_daemon, "start", "--sip", callee.uri, "--follow", timeout=90)
    assert r.returncode == 4, (r.stdout, r.stderr)
    lines = _lines(r.stdout)
    assert lines[0] == f"[call] dialling {callee.uri}"
    assert lines[1].startswith("[call] failed: SIP 408 No response to INVITE within 3.2 s (timer B): is 127.0.0.1:")
    assert len(lines) == 2


def test_rejected_call_names_the_sip_code(call_daemon: DaemonProc, sipp) -> None:  # noqa: F811
    callee = sipp("uas_reject.xml")
    r = symblctl(call_daemon, "start", "--sip", callee.uri, "--follow", timeout=90)
    assert r.returncode == 4
    assert "[call] failed: SIP 486 Busy Here" in _lines(r.stdout)


def test_answered_call_shows_each_step_and_exits_0(call_daemon: DaemonProc, sipp) -> None:  # noqa: F811
    callee = sipp("uas_speak_pcmu.xml")
    r = symblctl(call_daemon, "start", "--sip", callee.uri, "--follow", timeout=90)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert _lines(r.stdout) == [f"[call] dialling {callee.uri}", "[call] ringing (SIP 180 Ringing)",
                                "[call] answered (PCMU)", "[call] ended by the far end: BYE"]
    assert r.stdout.splitlines()[-1].startswith("completed; conversationId ")
