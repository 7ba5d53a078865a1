"""The extractive summary: Symbl's shape, and its overlap with reference summaries written by hand
(ROUGE-1 recall and F1 on content words, against the first sentences as a baseline)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import DaemonProc, events_until_complete, messages, wait_for_events
from feeding import speak
from speechgen import SENTENCES

from symblctl.client import Client, DaemonError
from symbld.insights.summary import Summariser

MEETINGS = json.loads((Path(__file__).parent / "data" / "summary_meetings.json").read_text())
_FILLER = {"the", "a", "an", "and", "to", "of", "for", "is", "was", "be", "by", "on", "in", "we", "will", "that"}


def _words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z']+", text.lower()) if w not in _FILLER]


def rouge1(candidate: list[str], reference: list[str]) -> tuple[float, float]:
    cand, ref = _words(" ".join(candidate)), _words(" ".join(reference))
    overlap = sum(min(cand.count(w), ref.count(w)) for w in set(ref))
    recall = overlap / len(ref) if ref else 0.0
    precision = overlap / len(cand) if cand else 0.0
    return recall, (2 * precision * recall / (precision + recall) if overlap else 0.0)


def _summarise(messages: list[str]) -> list[dict]:
    s = Summariser()
    for i, text in enumerate(messages):
        s.add(f"m{i}", text)
    return s.summary(limit=3)


def test_symbl_shape_with_message_references() -> None:
    meeting = MEETINGS[0]
    summary = _summarise(meeting["messages"])
    assert len(summary) == 3
    for entry in summary:
        ref = entry["messageRefs"][0]["id"]
        assert entry["text"] == meeting["messages"][int(ref[1:])]
    order = [int(e["messageRefs"][0]["id"][1:]) for e in summary]
    assert order == sorted(order), "in the order said"
    assert Summariser().summary() == []


def test_overlap_with_reference_summaries_beats_the_first_sentences() -> None:
    ours, lead = [], []
    for meeting in MEETINGS:
        picked = [e["text"] for e in _summarise(meeting["messages"])]
        assert not any(t in ("Okay.", "Yeah.", "Hi all.") for t in picked)
        ours.append(rouge1(picked, meeting["reference"]))
        lead.append(rouge1(meeting["messages"][:3], meeting["reference"]))
    recall = sum(r for r, _ in ours) / len(ours)
    f1 = sum(f for _, f in ours) / len(ours)
    lead_f1 = sum(f for _, f in lead) / len(lead)
    print(f"summary ROUGE-1 recall {recall:.2f} F1 {f1:.2f}; first-3-sentences F1 {lead_f1:.2f}")
    assert f1 > lead_f1
    assert recall >= 0.4


@pytest.mark.speech
def test_summary_on_demand_while_live_and_at_the_end(daemon: DaemonProc, client: Client) -> None:
    cid = client.start(source={"type": "push"})["connectionId"]
    # Both mention the budget, heard in every variant (test_fixture_margin.py); "The budget report needs a
    # review." was heard as "The magic report ..." by int8.
    spoken = ["We need to send the quarterly budget report by Friday.", SENTENCES[2]]
    speak(client, cid, spoken, speed=160, end=False)
    wait_for_events(client, cid, lambda ev: len(messages(ev)) >= 2, timeout=120, what="two messages")
    live = client.request("summary", connectionId=cid)
    assert live["live"] is True and live["summary"], live
    assert "budget" in " ".join(x["text"] for x in live["summary"]).lower()
    client.end_audio(cid)
    events = events_until_complete(client, cid, timeout=120)
    ids = {m["id"] for e in events if e["type"] == "message_response" for m in e["data"]["messages"]}
    final = [e for e in events if e["type"] == "summary_response"]
    assert final and all(x["messageRefs"][0]["id"] in ids for x in final[-1]["data"]["summary"])
    ended = client.request("summary", connectionId=cid)
    assert ended["live"] is False and ended["summary"] == final[-1]["data"]["summary"]
    with pytest.raises(DaemonError) as e:
        client.request("summary", connectionId="no-such-connection")
    assert e.value.code == "unknown_connection"


@pytest.mark.speech
def test_stop_answers_with_the_summary(daemon: DaemonProc, client: Client) -> None:
    cid = client.start(source={"type": "push"})["connectionId"]
    speak(client, cid, ["We need to send the quarterly budget report by Friday."], speed=160, end=False)
    wait_for_events(client, cid, lambda ev: len(messages(ev)) >= 1, timeout=120, what="a message")
    final = client.stop(cid)
    assert final["state"] == "stopped"
    assert final["summary"] and "budget" in final["summary"][0]["text"].lower(), final["summary"]
    assert final["summary"] == client.summary(cid)["summary"]
