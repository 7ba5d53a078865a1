"""The official ``@symblai/symbl-js`` SDK (npm, pinned by tests/js/package-lock.json; installed by
``make setup``'s ``npm ci --prefix tests/js``) driven by node against symbld's Symbl server.

Only the base URL and the SDK's token host (``sdk.oauth2.setBasePath``, see docs/symbl-compat.md)
are changed; the app streams at its own rate (48 kHz, a browser's; 8 kHz with createStream) and reads
results over the Conversation API.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from speechgen import SENTENCES, pcm16, silence, synth, wer
from test_symbl_sdk import SAID, resample
from test_symbl_server import APP_ID, APP_SECRET, token

from symblctl.client import Client
from symbld.gateways.symbl.server import ServerHandle, serve_symbl

pytestmark = pytest.mark.timeout(180)
JS_DIR = Path(__file__).resolve().parent / "js"
if shutil.which("node") is None or not (JS_DIR / "node_modules" / "@symblai" / "symbl-js").is_dir():
    pytest.fail("the JS SDK is not installed: run `npm ci --prefix tests/js` (make setup does)", pytrace=False)


@pytest.fixture(scope="module")
def server(daemon_endpoints: tuple[str, str]) -> Iterator[ServerHandle]:
    control, events = daemon_endpoints
    handle = serve_symbl("127.0.0.1", 0, lambda: Client(control, events),
                         {"app_id": APP_ID, "app_secret": APP_SECRET})
    try:
        yield handle
    finally:
        handle.close()


def run_node(script: str, *args: str, timeout: float = 150) -> list[dict[str, Any]]:
    proc = subprocess.run(["node", str(JS_DIR / script), *args], capture_output=True, text=True, timeout=timeout)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0, (proc.stdout[-4000:], proc.stderr[-4000:])
    return lines


def get(base: str, path: str) -> Any:
    req = urllib.request.Request(f"{base}{path}", headers={"x-api-key": token(int(base.rsplit(":", 1)[1]))})
    with urllib.request.urlopen(req, timeout=30) as reply:
        return json.load(reply)


def close_to(sentence: str, texts: list[str], bound: float = 0.35) -> bool:
    return bool(texts) and min(wer(sentence, t) for t in texts) <= bound


@pytest.mark.speech
def test_js_sdk_realtime_48k_then_conversation_api(server: ServerHandle, tmp_path: Path) -> None:
    """The Done-when app for JS: its own rate (48 kHz); messages, insights, topics and trackers
    while streaming; then the Conversation API (plain HTTP: the JS SDK has no REST client for it)."""
    pcm = resample(b"".join(pcm16(synth(s)) + silence(0.7) for s in SAID), 48000)
    audio = tmp_path / "speech.pcm"
    audio.write_bytes(pcm)
    base = f"http://127.0.0.1:{server.port}"
    out = run_node("realtime.js", base, APP_ID, APP_SECRET, str(audio), "48000", "realtime",
                   "messages:3,insightTypes:3,topics:1,trackers:1")
    assert not [o for o in out if "error" in o], out
    live = out[:next(i for i, o in enumerate(out) if o.get("stopping"))]  # before the app stopped
    texts = [m["payload"]["content"] for o in live if o.get("cb") == "messages" for m in o["data"]]
    for sentence in SAID:
        assert close_to(sentence, texts), (sentence, texts)
    insights = [i for o in live if o.get("cb") == "insights" for i in o["data"]]
    assert {i["type"] for i in insights} == {"question", "action_item", "follow_up"}, insights
    topics = [t["phrases"] for o in live if o.get("cb") == "topics" for t in o["data"]]
    assert topics and all(p.lower() in " ".join(texts).lower() for p in topics), topics
    # the SDK hands onTrackerResponse the whole tracker_response frame (the others get its list)
    matched = {m["value"] for o in live if o.get("cb") == "trackers" for t in o["data"]["trackers"]
               for m in t["matches"]}
    assert matched == {"quarterly report", "slides"}, matched
    assert any(o.get("cb") == "speech" for o in live)
    conversation_id = next(o["done"] for o in out if "done" in o)
    assert conversation_id and conversation_id.isdigit()

    path = f"/v1/conversations/{conversation_id}"
    messages = get(base, path + "/messages")["messages"]
    said = [m["text"] for m in messages]
    for sentence in SAID:
        assert close_to(sentence, said), (sentence, said)
    assert {m["from"]["name"] for m in messages} == {"Ann"} and messages[0]["conversationId"] == conversation_id
    ids = {m["id"] for m in messages}
    for kind, key, sentence in (("questions", "questions", SENTENCES[0]), ("action-items", "actionItems", SAID[1]),
                                ("follow-ups", "followUps", SAID[2])):
        items = get(base, f"{path}/{kind}")[key]
        assert close_to(sentence, [i["text"] for i in items]), (kind, items)
        assert all(i["messageIds"] and set(i["messageIds"]) <= ids and i["from"]["name"] == "Ann" for i in items)
    rest_topics = get(base, path + "/topics")["topics"]
    assert rest_topics and all(t["text"].lower() in " ".join(said).lower() for t in rest_topics), rest_topics
    assert all(t["type"] == "topic" and set(t["messageIds"]) <= ids for t in rest_topics)
    trackers = get(base, path + "/trackers")
    assert [t["name"] for t in trackers] == ["Deliverables"]
    assert {m["value"] for m in trackers[0]["matches"]} == {"quarterly report", "slides"}
    assert get(base, path + "/members")["members"] == [
        {"id": messages[0]["from"]["id"], "name": "Ann", "email": "ann@example.com"}]


@pytest.mark.speech
def test_js_sdk_create_stream_8k(server: ServerHandle, tmp_path: Path) -> None:
    """createStream() then start(), LINEAR16 at 8 kHz (telephone-band audio)."""
    audio = tmp_path / "speech8k.pcm"
    audio.write_bytes(resample(pcm16(synth(SENTENCES[3])) + silence(1.0), 8000))
    out = run_node("realtime.js", f"http://127.0.0.1:{server.port}", APP_ID, APP_SECRET, str(audio), "8000",
                   "stream")
    assert not [o for o in out if "error" in o], out
    texts = [m["payload"]["content"] for o in out if o.get("cb") == "messages" for m in o["data"]]
    assert min(wer(SENTENCES[3], t) for t in texts) <= 0.35, texts
    insights = [i for o in out if o.get("cb") == "insights" for i in o["data"]]
    assert any(i["type"] == "question" for i in insights), insights


@pytest.mark.speech
@pytest.mark.skipif(shutil.which("sipp") is None or shutil.which("sox") is None, reason="needs sipp and sox")
def test_js_sdk_telephony_sip_subscribe_stop(server: ServerHandle, tmp_path: Path) -> None:
    """startEndpoint dials a real SIP peer (sipp) that answers and speaks; subscribeToConnection
    gets the words; stopEndpoint answers with the conversationId."""
    from test_symbl_sdk import speaking_sip_peer

    sipp, sip_port = speaking_sip_peer(tmp_path, SENTENCES[2])
    try:
        out = run_node("telephony.js", f"http://127.0.0.1:{server.port}", APP_ID, APP_SECRET,
                       f"sip:symbl@127.0.0.1:{sip_port}")
    finally:
        sipp.kill()
        sipp.wait(5)
    assert not [o for o in out if "error" in o], out
    started = next(o["started"] for o in out if "started" in o)
    frames = [o["data"] for o in out if o.get("cb") == "frame"]
    texts = [m["payload"]["content"] for f in frames if f.get("type") == "message_response" for m in f["messages"]]
    assert texts and min(wer(SENTENCES[2], t) for t in texts) <= 0.4, frames
    stopped = next(o["stopped"] for o in out if "stopped" in o)
    assert stopped["conversationId"] == started["conversationId"]
    # pushSpeakerEvents: the words after the SDK's started_speaking event are the caller's, live
    # and in the Conversation API.
    live_from = {(m.get("from") or {}).get("name") for f in frames if f.get("type") == "message_response"
                 for m in f["messages"]}
    assert live_from == {"Caller"}, frames
    base = f"http://127.0.0.1:{server.port}"
    messages = get(base, f"/v1/conversations/{started['conversationId']}/messages")["messages"]
    assert close_to(SENTENCES[2], [m["text"] for m in messages], 0.4)
    assert {m["from"]["name"] for m in messages} == {"Caller"}
    assert messages[0]["from"]["email"] == "caller@example.com"
