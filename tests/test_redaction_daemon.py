"""Spoken personal data through the real daemon: masked in every event and never in the journal;
sentiment on messages and topics when asked."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from conftest import DaemonProc, events_until_complete, messages
from feeding import speak

from symblctl.client import Client, DaemonError

SPOKEN = [  # what tiny.en makes of each is in the comment: the masks must hold for that
    "My phone number is 415 555 0134.",  # "My phone number is 4555134"
    "Call me on five five five, one two three, four five six seven.",  # "5 .5, 1, 2, 3, 4, 5, 6, 7"
    "The card number is 4111 1111 1111 1111.",  # "The current number is 4 ,111, 111,"
    "Please email john, at example, dot com.",  # "Please email John at enlampo .com" (or "... at mampl.com")
    "My email is john at gmail dot com.",  # "My e-mail is dot at e-mail.com,"
    "Thanks, that is great news.",
]
# Any run of five digits (whatever separates them), a spoken address: raw personal data.
RAW = [re.compile(r"\d(?:[\s,.()-]*\d){4,}"), re.compile(r"\b\w+ at \w+ ?\.\s?com", re.IGNORECASE)]
TEXT_KEYS = ("content", "transcript", "text", "originalContent", "phrases", "value")


def _texts(data: Any) -> list[str]:
    """Every human text in an event (not its ids and times, which are digits by nature)."""
    if isinstance(data, list):
        return [t for v in data for t in _texts(v)]
    if isinstance(data, dict):
        return [t for k, v in data.items() for t in ([v] if k in TEXT_KEYS and isinstance(v, str) else _texts(v))]
    return []


@pytest.mark.speech
def test_spoken_personal_data_is_masked_everywhere(daemon: DaemonProc, client: Client) -> None:
    conn = client.start(source={"type": "push"}, redaction=True, sentiment=True)
    cid = conn["connectionId"]
    speak(client, cid, SPOKEN)
    events = events_until_complete(client, cid, timeout=180)
    said = " ".join(messages(events))
    assert re.search(r"phone number is \[PHONE\]", said, re.IGNORECASE), said
    assert re.search(r"call me on \[PHONE\]", said, re.IGNORECASE), said
    assert re.search(r"number is \[(PHONE|CARD)\]", said.split("phone number")[-1], re.IGNORECASE), said
    assert re.search(r"e-?mail (is )?\[EMAIL\]", said, re.IGNORECASE), said  # one of the two, at least
    published = [t for e in events for t in _texts(e["data"])]  # messages, interims, insights, topics
    assert any("[PHONE]" in t for e in events if e["type"] == "transcript_response" for t in _texts(e["data"]))
    on_disk = [json.loads(line) for p in (daemon.state_dir / "journal").glob(f"{cid}*") for line in
               p.read_text().splitlines() if line.strip()]
    assert len(on_disk) == len(events)
    stored = [t for e in on_disk for t in _texts(e["data"])]
    for raw in RAW:
        assert not [t for t in published if raw.search(t)], f"{raw.pattern} published"
        assert not [t for t in stored if raw.search(t)], f"{raw.pattern} on disk"
    for e in on_disk:  # the timed words too
        for m in e["data"].get("messages", []):
            assert not RAW[0].search(" ".join(w["word"] for w in json.loads(m["metadata"]["words"])))
    msgs = [m for e in events if e["type"] == "message_response" for m in e["data"]["messages"]]
    assert all(m["sentiment"]["suggested"] in ("positive", "neutral", "negative") for m in msgs)
    great = [m for m in msgs if "great" in m["payload"]["content"].lower()]
    assert great and great[0]["sentiment"]["suggested"] == "positive", great
    assert great[0]["sentiment"]["polarity"]["score"] > 0.3
    topics = [t for e in events if e["type"] == "topic_response" for t in e["data"]["topics"]]
    assert topics and all(t["sentiment"]["suggested"] in ("positive", "neutral", "negative") for t in topics)


@pytest.mark.speech
def test_without_asking_nothing_is_masked_nor_scored(daemon: DaemonProc, client: Client) -> None:
    cid = client.start(source={"type": "push"})["connectionId"]
    speak(client, cid, SPOKEN[:1])
    events = events_until_complete(client, cid, timeout=120)
    msgs = [m for e in events if e["type"] == "message_response" for m in e["data"]["messages"]]
    assert msgs and not any("sentiment" in m for m in msgs)
    assert RAW[0].search(" ".join(messages(events))), messages(events)


def test_bad_redaction_or_sentiment_is_one_clear_error(client: Client) -> None:
    with pytest.raises(DaemonError, match=r"Invalid enum value 'ssn' - at `\$\.redaction\[0\]`"):
        client.start(source={"type": "push"}, redaction=["ssn"])
    with pytest.raises(DaemonError, match="sentiment"):
        client.start(source={"type": "push"}, sentiment="yes")
    assert client.request("ping")["pong"]
