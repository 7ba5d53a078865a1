"""Spoken meetings through the real daemon: insights, topics and trackers arrive, pointing at real messages."""

from __future__ import annotations

import datetime as dt

import pytest
from conftest import DaemonProc, events_until_complete
from speechgen import pcm16, synth

from symblctl.client import Client, DaemonError

SPOKEN = [
    "Can you send me the quarterly report before Friday?",
    "Let's schedule a call next week to discuss the budget.",
    "The weather was nice yesterday.",
]


def _feed(client: Client, cid: str, sentences: list[str]) -> None:
    for s in sentences:
        client.send_audio(cid, pcm16(synth(s)) + bytes(24000))
    client.end_audio(cid)


@pytest.mark.speech
def test_spoken_insights_reference_their_messages_with_due_dates(daemon: DaemonProc, client: Client) -> None:
    conn = client.start(source={"type": "push"}, config={"timezoneOffset": 0, "meetingTitle": "Budget"},
                        trackers=[{"name": "money", "vocabulary": ["budget", "costs"]}])
    cid = conn["connectionId"]
    _feed(client, cid, SPOKEN)
    events = events_until_complete(client, cid)
    messages = {m["id"]: m for e in events if e["type"] == "message_response" for m in e["data"]["messages"]}
    insights = [i for e in events if e["type"] == "insight_response" for i in e["data"]["insights"]]
    by_type: dict[str, list[dict]] = {}
    for i in insights:
        by_type.setdefault(i["type"], []).append(i)
        assert i["messageReference"]["id"] in messages, "insight must point at a published message"
        assert 0.5 <= i["confidence"] <= 1
        assert i["payload"]["content"] == messages[i["messageReference"]["id"]]["payload"]["content"]
    question = [i for i in by_type.get("question", []) if "report" in i["payload"]["content"].lower()]
    assert question, insights
    action = [i for i in by_type.get("action_item", []) if "report" in i["payload"]["content"].lower()]
    assert action and action[0].get("dueBy"), action
    # "before Friday", said on the conversation's day, resolves to the coming Friday (UTC, timezoneOffset 0).
    due = dt.date.fromisoformat(action[0]["dueBy"]["value"][:10])
    assert due.weekday() == 4 and 0 <= (due - dt.datetime.now(dt.UTC).date()).days <= 7
    follow = [i for i in by_type.get("follow_up", []) if "call" in i["payload"]["content"].lower()]
    assert follow, insights
    assert not any("weather" in i["payload"]["content"].lower() for i in insights), "a neutral statement"
    trackers = [t for e in events if e["type"] == "tracker_response" for t in e["data"]["trackers"]]
    assert any(t["name"] == "money" for t in trackers)
    for t in trackers:
        for match in t["matches"]:
            for ref in match["messageRefs"]:
                assert ref["id"] in messages
    topics = [t for e in events if e["type"] == "topic_response" for t in e["data"]["topics"]]
    assert any("report" in t["phrases"] or "budget" in t["phrases"] for t in topics), topics


@pytest.mark.speech
def test_insight_types_filter_and_bad_trackers(daemon: DaemonProc, client: Client) -> None:
    conn = client.start(source={"type": "push"}, insightTypes=["question"])
    _feed(client, conn["connectionId"], SPOKEN[:1])
    events = events_until_complete(client, conn["connectionId"])
    kinds = {i["type"] for e in events if e["type"] == "insight_response" for i in e["data"]["insights"]}
    assert kinds == {"question"}
    for bad in ([{"name": "", "vocabulary": ["x"]}], [{"name": "a", "vocabulary": []}],
                [{"name": "a", "vocabulary": [3]}], [{"name": f"t{i}", "vocabulary": ["x"]} for i in range(501)]):
        with pytest.raises(DaemonError) as e:
            client.start(source={"type": "push"}, trackers=bad)
        assert e.value.code == "bad_request" and "tracker" in e.value.message
