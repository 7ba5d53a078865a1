"""Who said what on the Symbl server: a socket per speaker, speaker events, member renames across
a restart, and the Conversation API's entities and sentiment, with spoken audio over real sockets."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websocket
from conftest import DaemonProc, wait_until
from speechgen import SENTENCES, pcm16, silence, synth, wer
from test_symbl_server import APP_ID, APP_SECRET, connect, read_until_close, recv_json, start_request, token

from symblctl.client import Client
from symbld.gateways.symbl.server import ServerHandle, serve_symbl

pytestmark = [pytest.mark.timeout(180), pytest.mark.speech]
ANN = {"userId": "ann@example.com", "name": "Ann"}
BOB = {"userId": "bob@example.com", "name": "Bob"}
CAROL = {"userId": "carol@example.com", "name": "Carol"}


def start_server(d: DaemonProc) -> ServerHandle:
    return serve_symbl("127.0.0.1", 0, lambda: Client(d.control, d.events),
                       {"app_id": APP_ID, "app_secret": APP_SECRET, "first_frame_delay": 0.1})


@pytest.fixture(scope="module")
def server(daemon: DaemonProc) -> Iterator[ServerHandle]:
    handle = start_server(daemon)
    yield handle
    handle.close()


def rest(port: int, path: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"x-api-key": token(port), "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as reply:
            raw = reply.read()
            return reply.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def open_speaker(port: int, cid: str, speaker: dict[str, str], **start: Any) -> tuple[websocket.WebSocket, str]:
    """A speaker socket past its start_request; (socket, conversationId)."""
    ws = connect(port, f"/v1/streaming/{cid}", token(port))
    ws.send(start_request(speaker=speaker, **start))
    system = [recv_json(ws) for _ in range(3)]
    assert [f["message"]["type"] for f in system] == ["conversation_created", "started_listening",
                                                      "recognition_started"]
    return ws, system[0]["message"]["data"]["conversationId"]


def utterance(sentence: str) -> bytes:
    """One sentence at 16 kHz, then silence that ends the utterance."""
    return pcm16(synth(sentence)) + silence(0.8)


def send_paced(ws: websocket.WebSocket, pcm: bytes) -> None:
    """4x real time, in 8,192-byte frames."""
    for i in range(0, len(pcm), 8192):
        ws.send_binary(pcm[i:i + 8192])
        time.sleep(8192 / 32000 / 4)  # pacing the feed at 4x real time, not waiting for a condition


def say(ws: websocket.WebSocket, sentence: str) -> None:
    send_paced(ws, utterance(sentence))


def wait_until_forwarded(daemon: DaemonProc, cid: str, pcm_bytes: int) -> None:
    """Until the daemon connection has had all the audio sent so far (the server forwards it
    asynchronously): a speaker event sent now is pinned after it."""
    with daemon.client() as c:
        wait_until("the server to forward the audio",
                   lambda: c.request("get", connectionId=cid)["audioSeconds"] >= pcm_bytes / 32000 - 0.01, 60)


def converse(sockets: dict[str, websocket.WebSocket], turns: list[tuple[str, str]]) -> None:
    """Each socket streams all the time, as a microphone does: its speaker's turns, and silence
    while the others speak (so every connection's audio clock is the conversation's). Concurrently."""
    def stream(who: str, ws: websocket.WebSocket) -> None:
        send_paced(ws, b"".join(utterance(s) if speaker == who else bytes(len(utterance(s)))
                                for speaker, s in turns))
    threads = [threading.Thread(target=stream, args=item) for item in sockets.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def stop(ws: websocket.WebSocket) -> list[dict[str, Any]]:
    ws.send(json.dumps({"type": "stop_request"}))
    frames, code, _ = read_until_close(ws, 120)
    ws.close()
    assert code == 1000 and frames[-2]["message"]["type"] == "conversation_completed", frames[-3:]
    return frames


def live_messages(frames: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(m["payload"]["content"], (m.get("from") or {}).get("name"))
            for f in frames if f.get("type") == "message_response" for m in f["messages"]]


def speaker_of(said: list[tuple[str, str | None]], sentence: str) -> str | None:
    """Who the best match for ``sentence`` is attributed to (and it must be heard)."""
    text, who = min(said, key=lambda tw: wer(sentence, tw[0]))
    assert wer(sentence, text) <= 0.35, (sentence, said)
    return who


def api_messages(port: int, conversation_id: str, query: str = "") -> list[dict[str, Any]]:
    status, body = rest(port, f"/v1/conversations/{conversation_id}/messages{query}")
    assert status == 200, body
    return body["messages"]


def test_two_speakers_each_with_their_own_socket(server: ServerHandle, daemon: DaemonProc) -> None:
    cid = "two-speakers-0001"
    ann, conversation_id = open_speaker(server.port, cid, ANN)
    bob, joined = open_speaker(server.port, cid, BOB)
    assert joined == conversation_id  # one conversation

    converse({"Ann": ann, "Bob": bob}, [("Ann", SENTENCES[0]), ("Bob", SENTENCES[9]), ("Ann", SENTENCES[5])])
    ann_frames = stop(ann)  # Ann leaves; Bob's socket goes on
    say(bob, SENTENCES[3])
    bob_frames = stop(bob)

    # Ann's socket got her words (finals flushed before her completion), each from her.
    assert speaker_of(live_messages(ann_frames), SENTENCES[0]) == "Ann"
    assert speaker_of(live_messages(ann_frames), SENTENCES[5]) == "Ann"
    said = live_messages(bob_frames)  # Bob's socket saw the whole conversation
    assert speaker_of(said, SENTENCES[0]) == "Ann" and speaker_of(said, SENTENCES[5]) == "Ann"
    assert speaker_of(said, SENTENCES[9]) == "Bob" and speaker_of(said, SENTENCES[3]) == "Bob"
    completed = bob_frames[-2]["message"]
    assert completed["conversationId"] == conversation_id

    # The Conversation API merges both speakers' connections, in spoken order.
    messages = api_messages(server.port, conversation_id)
    said = [(m["text"], m["from"]["name"]) for m in messages]
    assert [speaker_of(said, s) for s in (SENTENCES[0], SENTENCES[9], SENTENCES[5], SENTENCES[3])] == [
        "Ann", "Bob", "Ann", "Bob"]
    order = [min(range(len(said)), key=lambda i, s=s: wer(s, said[i][0]))
             for s in (SENTENCES[0], SENTENCES[9], SENTENCES[5], SENTENCES[3])]
    assert order == sorted(order), said
    members = rest(server.port, f"/v1/conversations/{conversation_id}/members")[1]
    assert sorted((m["name"], m["email"]) for m in members["members"]) == [
        ("Ann", "ann@example.com"), ("Bob", "bob@example.com")]
    conv = rest(server.port, f"/v1/conversations/{conversation_id}")[1]
    assert conv["endTime"] is not None  # both connections ended
    questions = rest(server.port, f"/v1/conversations/{conversation_id}/questions")[1]["questions"]
    asked = {q["from"]["name"] for q in questions}
    assert {"Ann", "Bob"} <= asked, questions  # SENTENCES[0] is Ann's question, SENTENCES[3] Bob's

    with daemon.client() as c:  # a daemon connection per speaker, sharing the conversationId
        legs = c.request("find_conversation", conversationId=conversation_id)["connections"]
        assert len(legs) == 2 and cid in legs


def test_speaker_events_attribute_what_follows(server: ServerHandle, daemon: DaemonProc) -> None:
    cid = "speaker-events-0001"
    ws, conversation_id = open_speaker(server.port, cid, ANN)
    say(ws, SENTENCES[0])
    wait_until_forwarded(daemon, cid, len(utterance(SENTENCES[0])))
    # REST (eventUrl): Bob starts speaking. A malformed event is refused, nothing else changes.
    status, body = rest(server.port, f"/v1/event/{cid}", "POST", {"topic": "speaker", "type": "shouting"})
    assert status == 400 and "type" in body["details"]
    status, _ = rest(server.port, f"/v1/event/{cid}", "POST",
                     {"topic": "speaker", "type": "started_speaking", "user": BOB,
                      "timestamp": "2026-12-02T01:00:00.000Z"})
    assert status == 204
    say(ws, SENTENCES[9])
    wait_until_forwarded(daemon, cid, len(utterance(SENTENCES[0])) + len(utterance(SENTENCES[9])))
    # WebSocket (resultWebSocketUrl, what the JS SDK's pushSpeakerEvents uses): Carol.
    events_ws = connect(server.port, f"/events/{cid}", token(server.port))
    events_ws.send(json.dumps({"topic": "speaker", "type": "speaker_change", "user": CAROL,
                               "timestamp": "2026-12-02T01:00:05.000Z"}))
    with daemon.client() as c:  # the socket gives no answer: wait until the daemon journaled it
        wait_until("the speaker event to reach the daemon",
                   lambda: sum(e["type"] == "speaker_event" for e in c.all_history(cid)) >= 2, 30)
        journaled = [e["data"] for e in c.all_history(cid) if e["type"] == "speaker_event"]
    assert [(e["type"], e["user"]["name"]) for e in journaled] == [("started_speaking", "Bob"),
                                                                   ("speaker_change", "Carol")]
    assert 0 < journaled[0]["timeOffset"] < journaled[1]["timeOffset"]
    say(ws, SENTENCES[3])
    frames = stop(ws)
    events_ws.close()

    said = live_messages(frames)
    assert [speaker_of(said, s) for s in (SENTENCES[0], SENTENCES[9], SENTENCES[3])] == ["Ann", "Bob", "Carol"]
    live_users = {f["message"]["user"]["name"] for f in frames if f.get("type") == "message"
                  and f["message"]["type"] == "recognition_result" and f["message"].get("user")}
    assert live_users == {"Ann", "Bob", "Carol"}

    said = [(m["text"], m["from"]["name"]) for m in api_messages(server.port, conversation_id)]
    assert [speaker_of(said, s) for s in (SENTENCES[0], SENTENCES[9], SENTENCES[3])] == ["Ann", "Bob", "Carol"]
    questions = rest(server.port, f"/v1/conversations/{conversation_id}/questions")[1]["questions"]
    by_text = {q["from"]["name"]: q["text"] for q in questions}
    assert wer(SENTENCES[3], by_text.get("Carol", "")) <= 0.35, questions
    assert wer(SENTENCES[0], by_text.get("Ann", "")) <= 0.35, questions
    names = sorted(m["name"] for m in rest(server.port, f"/v1/conversations/{conversation_id}/members")[1]["members"])
    assert names == ["Ann", "Bob", "Carol"]
    status, _ = rest(server.port, f"/v1/event/{cid}", "POST", {"topic": "speaker", "type": "left", "user": BOB})
    assert status == 404  # the connection has ended


def test_entities_and_sentiment_over_the_conversation_api(server: ServerHandle) -> None:
    budget, meeting = "The new budget is twenty thousand dollars.", "Let's meet tomorrow at three p.m."
    ws, conversation_id = open_speaker(server.port, "entities-0001", ANN,
                                       config={"detectEntities": True, "timezoneOffset": 0})
    say(ws, budget)
    say(ws, meeting)
    stop(ws)

    status, body = rest(server.port, f"/v1/conversations/{conversation_id}/entities")
    assert status == 200
    messages = {m["id"]: m for m in api_messages(server.port, conversation_id)}
    kinds = {(e["type"], e["subType"]): e for e in body["entities"]}
    assert ("money", "USD") in kinds, (body, [m["text"] for m in messages.values()])
    money = kinds[("money", "USD")]
    assert money["value"] == "20000.00 USD" and money["category"] == "Generic"
    assert kinds[("datetime", "time")]["value"] == "15:00", body
    for entity in body["entities"]:
        for ref in entity["messageRefs"]:
            message = messages[ref["id"]]
            assert ref["startTime"] == message["startTime"] and ref["text"] in message["text"]

    plain = api_messages(server.port, conversation_id)
    assert not any("sentiment" in m for m in plain)  # the start request did not ask for it
    scored = api_messages(server.port, conversation_id, "?sentiment=true")
    assert [m["text"] for m in scored] == [m["text"] for m in plain]
    for m in scored:
        assert -1 <= m["sentiment"]["polarity"]["score"] <= 1 and m["sentiment"]["suggested"] in (
            "positive", "negative", "neutral"), m


def test_member_rename_survives_a_restart(tmp_path: Path) -> None:
    d = DaemonProc(tmp_path / "d").start()
    handle = start_server(d)
    try:
        ws, conversation_id = open_speaker(handle.port, "rename-0001", ANN)
        say(ws, SENTENCES[0])
        stop(ws)
        status, body = rest(handle.port, f"/v1/conversations/{conversation_id}/members")
        (ann,) = body["members"]
        status, body = rest(handle.port, f"/v1/conversations/{conversation_id}/members/{ann['id']}", "PUT",
                            {"id": ann["id"], "name": "Ann Smith", "email": "ann.smith@example.com"})
        assert status == 200 and "updated successfully" in body["message"]
        status, _ = rest(handle.port, f"/v1/conversations/{conversation_id}/members/nobody", "PUT",
                         {"id": "nobody", "name": "X"})
        assert status == 404
        handle.close()
        assert d.stop() == 0
        d.start()
        handle = start_server(d)  # a new server (its own token secret) on the restarted daemon

        status, body = rest(handle.port, f"/v1/conversations/{conversation_id}/members")
        assert body["members"] == [{"id": ann["id"], "name": "Ann Smith", "email": "ann.smith@example.com"}]
        messages = api_messages(handle.port, conversation_id)
        assert messages and all(m["from"]["name"] == "Ann Smith" for m in messages)
        assert wer(SENTENCES[0], messages[0]["text"]) <= 0.35
        questions = rest(handle.port, f"/v1/conversations/{conversation_id}/questions")[1]["questions"]
        assert questions and questions[0]["from"]["name"] == "Ann Smith"
        assert list(d.state_dir.rglob(f"{conversation_id}.members.json"))  # kept next to the journal
        status, _ = rest(handle.port, f"/v1/conversations/{conversation_id}", "DELETE")
        assert status == 200
        assert not list(d.state_dir.rglob(f"{conversation_id}.members.json"))  # gone with the conversation
    finally:
        handle.close()
        d.kill()
