"""Entities: dates, times, amounts, phones and e-mails, offline; entity_response through the real daemon."""

from __future__ import annotations

from datetime import date

import pytest
from conftest import DaemonProc, events_until_complete
from feeding import speak

from symblctl.client import Client
from symbld.insights.entities import find_entities

TUESDAY = date(2026, 12, 1)


def _found(text: str) -> list[tuple[str, str, str]]:
    return [(e.type, e.sub_type, e.value) for e in find_entities(text, TUESDAY)]


def test_each_kind() -> None:
    assert _found("The budget is $1,500 and 20 thousand euros.") == [
        ("money", "USD", "1500.00 USD"), ("money", "EUR", "20000.00 EUR")]
    assert _found("Let's meet tomorrow at 3 pm.") == [("datetime", "date", "2026-12-02"), ("datetime", "time", "15:00")]
    assert _found("Call 415 555 0134 or mail Bob@Acme.org at 10:30.") == [
        ("phone", "phone", "4155550134"), ("email", "email", "bob@acme.org"), ("datetime", "time", "10:30")]
    assert _found("We sold 1500 units in 25:99 minutes.") == []
    e = find_entities("Pay 40 dollars.", TUESDAY)[0]
    assert "Pay 40 dollars."[e.offset:e.offset + len(e.text)] == "40 dollars"


@pytest.mark.speech
def test_spoken_entities_arrive_as_entity_response(daemon: DaemonProc, client: Client) -> None:
    cid = client.start(source={"type": "push"}, detectEntities=True, config={"timezoneOffset": 0})["connectionId"]
    speak(client, cid, ["The new budget is twenty thousand dollars.", "Let's meet tomorrow at three p.m."], speed=150)
    events = events_until_complete(client, cid, timeout=120)
    messages = {m["id"]: m for e in events if e["type"] == "message_response" for m in e["data"]["messages"]}
    entities = [x for e in events if e["type"] == "entity_response" for x in e["data"]["entities"]]
    kinds = {(x["type"], x["subType"]): x for x in entities}
    assert ("money", "USD") in kinds, (entities, [m["payload"]["content"] for m in messages.values()])
    said = [m["payload"]["content"] for m in messages.values()]
    assert kinds[("money", "USD")]["matches"][0]["detectedValue"] == "20000.00 USD", said
    assert ("datetime", "date") in kinds and ("datetime", "time") in kinds, entities
    assert kinds[("datetime", "time")]["matches"][0]["detectedValue"] == "15:00"
    for x in entities:
        for match in x["matches"]:
            for ref in match["messageRefs"]:
                content = messages[ref["id"]]["payload"]["content"]
                assert content[ref["startIndex"]:ref["endIndex"]] == ref["text"]
