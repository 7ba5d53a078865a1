"""Telephony through the real daemon: symblctl dials a real sipp callee on loopback."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from conftest import DaemonProc, messages, wait_for_type
from speechgen import PHONE_KEY_WORDS, in_order
from test_telephony import SENTENCE, sipp, speech  # noqa: F401 - fixtures shared with the UA tests

from symblctl.client import Client, DaemonError

pytestmark = pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp missing: apt-get install sip-tester")


@pytest.mark.speech
def test_symblctl_start_sip_transcribes_the_call_and_remote_hangup_ends_it(daemon: DaemonProc, sipp) -> None:  # noqa: F811
    callee = sipp("uas_speak_pcmu.xml")
    out = subprocess.run([sys.executable, "-m", "symblctl.cli", "--control", daemon.control, "--events",
                          daemon.events, "--json", "start", "--sip", callee.uri, "--follow"],
                         capture_output=True, timeout=90)
    assert out.returncode == 0, out.stderr.decode()
    events = [json.loads(line) for line in out.stdout.decode().splitlines()]
    kinds = [e["type"] for e in events]
    assert "call_answered" in kinds and "call_ended" in kinds
    ended = next(e for e in events if e["type"] == "call_ended")
    assert ended["data"]["by"] == "remote"
    assert kinds[-2:] == ["connection_stopped", "conversation_completed"]
    assert events[-2]["data"]["reason"] == "source_ended"
    assert in_order(PHONE_KEY_WORDS, " ".join(messages(events))), messages(events)  # with margin at 8 kHz


def test_busy_callee_fails_the_connection_with_the_sip_code(daemon: DaemonProc, client: Client, sipp) -> None:  # noqa: F811
    callee = sipp("uas_reject.xml")
    conn = client.start(telephony={"type": "sip", "uri": callee.uri})
    assert conn["state"] == "live" and conn["conversationId"]  # returned at once, while the call sets up
    events = wait_for_type(client, conn["connectionId"], "conversation_completed", timeout=20.0)
    failed = next(e for e in events if e["type"] == "connection_failed")
    assert failed["data"]["error"]["code"] == "call_failed"
    assert failed["data"]["error"]["details"]["sipCode"] == 486
    assert "486" in failed["data"]["error"]["message"]
    assert client.ping()["pong"]


def test_stop_while_talking_hangs_up_with_bye(daemon: DaemonProc, client: Client, sipp) -> None:  # noqa: F811
    callee = sipp("uas_answer_wait_bye.xml")
    conn = client.start(source={"type": "sip", "uri": callee.uri})
    wait_for_type(client, conn["connectionId"], "call_answered", timeout=20.0)
    final = client.stop(conn["connectionId"])
    assert final["state"] == "stopped" and final["conversationId"] == conn["conversationId"]
    assert callee.wait(10) == 0, callee.errors()  # sipp's scenario completes only on our BYE
    events = client.all_history(conn["connectionId"])
    assert any(e["type"] == "call_ended" and e["data"]["by"] == "local" for e in events)


def test_pstn_without_gateway_is_a_clear_error(daemon: DaemonProc, client: Client) -> None:
    with pytest.raises(DaemonError) as e:
        client.start(telephony={"type": "pstn", "phoneNumber": "+15551234567"})
    assert e.value.code == "bad_request" and "gateway" in e.value.message
