"""``start``'s ``config`` is a declaration (symblctl.protocol.StartConfig): decoding it is the validation, so a
wrong type or value anywhere in it is one ``bad_request`` naming the path, and Symbl's other keys pass."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import DaemonProc

from symblctl.client import Client, DaemonError

PUSH = {"type": "push", "sampleRate": 16000}


@pytest.mark.parametrize(("config", "path"), [
    ({"languageCode": 5}, "$.config.languageCode"),
    ({"languageCode": ["x"]}, "$.config.languageCode"),
    ({"languageCode": {"a": 1}}, "$.config.languageCode"),
    ({"confidenceThreshold": 1.5}, "$.config.confidenceThreshold"),
    ({"confidenceThreshold": True}, "$.config.confidenceThreshold"),
    ({"timezoneOffset": 900}, "$.config.timezoneOffset"),
    ({"timezoneOffset": "480"}, "$.config.timezoneOffset"),
    ({"meetingTitle": 7}, "$.config.meetingTitle"),
    ({"trackers": {"interimResults": "yes"}}, "$.config.trackers.interimResults"),
    ({"sentiment": "on"}, "$.config.sentiment"),
    ("standup", "$.config"),
])
def test_a_wrong_config_value_is_bad_request_naming_it(client: Client, config: Any, path: str) -> None:
    with pytest.raises(DaemonError) as e:
        client.start(source=PUSH, config=config)
    assert e.value.code == "bad_request"
    assert f"at `{path}`" in e.value.message, e.value.message
    assert e.value.details.get("argument") == "config"


@pytest.mark.parametrize("code", ["en", "en-US", "es-419", "zh-Hant-TW", "fr-CA"])
def test_language_tags_and_symbls_other_keys_are_accepted(daemon: DaemonProc, client: Client, code: str) -> None:
    conn = client.start(source=PUSH, config={
        "languageCode": code, "meetingTitle": "Standup", "confidenceThreshold": 0.7, "timezoneOffset": -60,
        "trackers": {"interimResults": True}, "speechRecognition": {"encoding": "LINEAR16", "sampleRateHertz": 16000}})
    assert conn["meetingTitle"] == "Standup"
    client.stop(conn["connectionId"])


@pytest.mark.parametrize(("trackers", "path"), [
    ([{"name": "Pricing", "vocabulary": ["price", 3]}], "$.trackers[0].vocabulary[1]"),
    ([{"name": "Pricing", "vocabulary": ["..."]}], "$.trackers[0].vocabulary[0]"),
    ([{"name": " ", "vocabulary": ["price"]}], "$.trackers[0].name"),
    ([{"name": "Pricing", "vocabulary": []}], "$.trackers[0].vocabulary"),
    ({"name": "Pricing"}, "$.trackers"),
])
def test_a_wrong_tracker_is_bad_request_naming_it(client: Client, trackers: Any, path: str) -> None:
    with pytest.raises(DaemonError) as e:
        client.start(source=PUSH, trackers=trackers)
    assert e.value.code == "bad_request"
    assert f"at `{path}`" in e.value.message, e.value.message


@pytest.mark.parametrize(("args", "path"), [
    # Symbl's telephony form is a sip or pstn source: its type, its fields, its audioConfig declared.
    ({"telephony": {"type": "fax", "uri": "sip:bob@127.0.0.1"}}, "$.telephony.type"),
    ({"telephony": {"uri": "sip:bob@127.0.0.1"}}, "$.telephony"),
    ({"telephony": {"type": "sip"}}, "$.telephony"),
    ({"telephony": {"type": "sip", "uri": 5}}, "$.telephony.uri"),
    ({"telephony": {"type": "sip", "uri": "sip:bob@127.0.0.1", "dtmf": "12x"}}, "$.telephony.dtmf"),
    ({"telephony": {"type": "pstn", "phoneNumber": "+15551234567", "dtmf": 5}}, "$.telephony.dtmf"),
    ({"telephony": {"type": "sip", "uri": "sip:bob@127.0.0.1", "audioConfig": {"sampleRate": "16000"}}},
     "$.telephony.audioConfig.sampleRate"),
    ({"telephony": {"type": "sip", "uri": "sip:bob@127.0.0.1", "audioConfig": {"sampleSize": [16]}}},
     "$.telephony.audioConfig.sampleSize"),
    ({"telephony": {"type": "sip", "uri": "sip:bob@127.0.0.1", "audioConfig": "PCMU"}},
     "$.telephony.audioConfig"),
    ({"source": {"type": "sip", "uri": "sip:bob@127.0.0.1", "audioConfig": {"encoding": 8}}},
     "$.source.audioConfig.encoding"),
    # redaction: true/false, a list of kinds, or {enabled, kinds}; at the top level or in config.
    ({"source": PUSH, "redaction": ["ssn"]}, "$.redaction[0]"),
    ({"source": PUSH, "redaction": "yes"}, "$.redaction"),
    ({"source": PUSH, "redaction": {"enabled": "yes"}}, "$.redaction.enabled"),
    ({"source": PUSH, "redaction": {"kinds": ["email", 3]}}, "$.redaction.kinds[1]"),
    ({"source": PUSH, "config": {"redaction": ["email", "ssn"]}}, "$.config.redaction[1]"),
])
def test_a_wrong_call_or_redaction_is_bad_request_naming_it(client: Client, args: dict[str, Any], path: str) -> None:
    with pytest.raises(DaemonError) as e:
        client.request("start", **args)
    assert e.value.code == "bad_request"
    assert f"at `{path}`" in e.value.message, e.value.message


@pytest.mark.parametrize("redaction", [True, ["email"], {"kinds": ["card", "phone"]}, {"enabled": False}])
def test_every_declared_redaction_form_starts(client: Client, redaction: Any) -> None:
    conn = client.start(source=PUSH, redaction=redaction)
    client.stop(conn["connectionId"])


def test_symbls_audio_config_forms_are_accepted(client: Client) -> None:
    """Symbl's docs write sampleSize both as a string and a number; either is a call the daemon places
    (no one answers at port 9: the call then ends by itself, which is not what this test is about)."""
    for audio in ({"sampleRate": 16000, "sampleSize": "16"},
                  {"sampleRate": 48000, "encoding": "OPUS", "sampleSize": 16},
                  {"encoding": "PCMU", "sampleRate": 8000, "payloadType": 0}):
        conn = client.request("start", telephony={"type": "sip", "uri": "sip:nobody@127.0.0.1:9", "audioConfig": audio,
                                                  "providerName": "AnyMeeting"})
        assert conn["source"]["type"] == "sip", conn
        client.stop(conn["connectionId"])
