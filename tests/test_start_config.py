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
