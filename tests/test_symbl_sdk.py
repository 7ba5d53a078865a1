"""The official ``symbl`` 2.0.6 Python SDK (PyPI) as an outside client of symbld's Symbl server.

Test-only dependency: ``pip install --no-deps symbl==2.0.6 symbl-rest==1.0.14`` (its ``pyaudio``
requirement is only imported by ``send_audio_from_mic`` and needs PortAudio headers to build).
The SDK hard-codes api.symbl.ai; :func:`point_symbl_sdk` is the redirection documented in
``docs/symbl-compat.md``.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import symbl_rest  # installed by the Makefile (symbl==2.0.6 symbl-rest==1.0.14, --no-deps)
from conftest import free_rtp_port, serving_symbl, udp_port_taken, wait_until
from speechgen import SENTENCES, pcm16, phone_audio, silence, synth, wer
from test_symbl_server import APP_ID, APP_SECRET

from symblctl.client import Client
from symbld.gateways.symbl.server import ServerHandle

pytestmark = pytest.mark.timeout(90)

CREDENTIALS = {"app_id": APP_ID, "app_secret": APP_SECRET}
SIPP_DIR = Path(__file__).resolve().parent / "sipp"


def point_symbl_sdk(base_url: str) -> Any:
    """Send the SDK's REST and WebSocket calls to ``base_url`` instead of api.symbl.ai.

    REST: the default ``symbl_rest.Configuration`` host, set *before* ``import symbl`` (its
    module-level API objects copy the default when imported; patched too in case it was
    imported already). WebSockets: the two URL constants, in the modules that imported them.
    """
    cfg = symbl_rest.Configuration()
    cfg.host = base_url
    symbl_rest.Configuration.set_default(cfg)
    import symbl

    ws = base_url.replace("http", "ws", 1)
    sys.modules["symbl.streaming_api.StreamingApi"].SYMBL_STREAMING_API_FORMAT = (
        ws + "/v1/realtime/insights/{}?source=python_sdk")
    sys.modules["symbl.Connection"].SYMBL_WEBSOCKET_BASE_PATH = ws + "/session/subscribe/"
    # Its access token came from whichever server it first asked: ask this one.
    sys.modules["symbl.AuthenticationToken"].configuration = None
    # The SDK's module-level objects (Audio, Video, Text, Telephony, callScore's api) each made their REST
    # client when ``symbl`` was first imported, from whatever default was set then (another module's
    # server, when several test modules share a worker): point every one of them here.
    for name, module in list(sys.modules.items()):
        if name == "symbl" or name.startswith("symbl."):
            for value in list(vars(module).values()):
                for api in (value, *getattr(value, "__dict__", {}).values()):
                    client = getattr(api, "api_client", None)
                    if client is not None and hasattr(client, "configuration"):
                        client.configuration.host = base_url
    return symbl


@pytest.fixture(scope="module")
def server(daemon_endpoints: tuple[str, str]) -> Iterator[ServerHandle]:
    with serving_symbl(daemon_endpoints, dict(CREDENTIALS)) as handle:
        yield handle


@pytest.fixture(scope="module")
def symbl(server: ServerHandle) -> Any:
    return point_symbl_sdk(f"http://127.0.0.1:{server.port}")


class Frames:
    def __init__(self) -> None:
        self.frames: list[tuple[str, Any]] = []
        self.cond = threading.Condition()

    def callback(self, key: str) -> Any:
        def on(frame: Any) -> None:
            with self.cond:
                self.frames.append((key, frame))
                self.cond.notify_all()
        return on

    def wait(self, pred: Any, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: pred(self.frames), timeout)


def completed(frames: list[tuple[str, Any]]) -> bool:
    return any(k == "message" and f["message"]["type"] == "conversation_completed" for k, f in frames)


@pytest.mark.speech
def test_sdk_streaming(symbl: Any, daemon_endpoints: tuple[str, str]) -> None:
    conn = symbl.Streaming.start_connection(
        credentials=dict(CREDENTIALS),
        speaker={"userId": "jane@example.com", "name": "Jane"},
        insight_types=["question", "action_item"],
        config={"meetingTitle": "SDK test", "speechRecognition": {"sampleRateHertz": 16000}},
    )
    got = Frames()
    conn.subscribe({key: got.callback(key) for key in
                    ("message", "message_response", "insight_response", "topic_response", "error")})
    pcm = pcm16(synth(SENTENCES[0])) + silence(0.6) + pcm16(synth(SENTENCES[6])) + silence(0.6)
    for i in range(0, len(pcm), 8192):  # send_audio_from_mic's frame size
        conn.send_audio(pcm[i:i + 8192])
        time.sleep(0.064)  # 4x real time
    assert got.wait(lambda fs: sum(k == "message_response" for k, _ in fs) >= 2, 30), got.frames
    conn.stop()  # the SDK sends the non-JSON {'type': 'stop_request'}
    assert got.wait(completed, 30), [k for k, _ in got.frames]

    kinds = [(k, f["message"]["type"]) if k == "message" else (k, f["type"]) for k, f in got.frames]
    assert ("message", "recognition_started") in kinds  # arrived after subscribe() (first-frame delay)
    assert ("error", "error") not in kinds
    live = [f["message"] for k, f in got.frames if k == "message" and "punctuated" in f["message"]]
    assert any(m["isFinal"] for m in live)
    messages = [m for k, f in got.frames if k == "message_response" for m in f["messages"]]
    texts = [m["payload"]["content"] for m in messages]
    assert min(wer(SENTENCES[0], t) for t in texts) <= 0.35, texts
    assert min(wer(SENTENCES[6], t) for t in texts) <= 0.35, texts
    assert messages[0]["from"]["name"] == "Jane"
    insights = [i for k, f in got.frames if k == "insight_response" for i in f["insights"]]
    try:
        from symbld.insights import Analyzer  # noqa: F401
        assert any(i["type"] == "question" for i in insights), kinds
    except ImportError:
        pass  # the daemon has no insights analyzer yet
    conversation_id = conn.conversation.get_conversation_id()
    assert conversation_id and conversation_id.isdigit()
    done = next(f["message"] for k, f in got.frames
                if k == "message" and f["message"]["type"] == "conversation_completed")
    assert done["conversationId"] == conversation_id
    conn.connection.close()
    with Client(*daemon_endpoints) as c:  # it is an ordinary daemon connection
        assert any(x.get("conversationId") == conversation_id for x in c.status().get("connections", []))


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def speaking_sip_peer(tmp_path: Path, sentence: str) -> tuple[subprocess.Popen, int]:
    """sipp answering one call on a free port and speaking ``sentence`` as PCMU; (process, SIP port)."""
    phone_audio(tmp_path / "speech.ulaw", text=sentence, voice="en-us")  # the default voice: see PHONE_VOICE
    sip_port, media_port = free_udp_port(), free_rtp_port()
    sipp = subprocess.Popen(
        ["sipp", "-sf", str(SIPP_DIR / "uas_speak_pcmu.xml"), "-i", "127.0.0.1", "-p", str(sip_port),
         "-mp", str(media_port), "-m", "1", "-nostdin"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    wait_until("sipp binds its SIP port", lambda: udp_port_taken(sip_port) or sipp.poll() is not None, 10)
    return sipp, sip_port


@pytest.mark.speech
@pytest.mark.skipif(shutil.which("sipp") is None or shutil.which("sox") is None, reason="needs sipp and sox")
def test_sdk_telephony_sip_call(symbl: Any, tmp_path: Path) -> None:
    """Telephony.start_sip dials a real SIP peer (sipp) that answers and speaks; results arrive on
    the SDK's blocking subscribe socket; Telephony.stop returns the conversationId."""
    sipp, sip_port = speaking_sip_peer(tmp_path, SENTENCES[2])
    try:
        try:
            call = symbl.Telephony.start_sip(uri=f"sip:symbl@127.0.0.1:{sip_port}", credentials=dict(CREDENTIALS),
                                             data={"session": {"name": "SDK call"}}, languages=["en-US"])
        except symbl_rest.rest.ApiException as exc:
            raise AssertionError(f"start_sip refused: {exc.status} {exc.body}") from None
        got = Frames()
        listener = threading.Thread(
            target=call.subscribe,
            args=({k: got.callback(k) for k in ("transcript_response", "message_response", "insight_response")},),
            daemon=True)
        listener.start()
        # The resultWebSocketUrl handed out answers too (the JS SDK's pushSpeakerEvents uses it).
        import websocket

        result_ws = websocket.create_connection(call.resultWebSocketUrl, header=[call.header], timeout=30)
        assert result_ws.connected
        assert got.wait(lambda fs: any(k == "message_response" for k, _ in fs), 40), got.frames
        result_ws.close()
        stopped = symbl.Telephony.stop(call.connectionId)
        assert stopped.conversation_id == call.conversation.get_conversation_id()
        texts = [m["payload"]["content"] for k, f in got.frames if k == "message_response"
                 for m in json.loads(f)["messages"]]  # telephony callbacks get str, not dict
        assert min(wer(SENTENCES[2], t) for t in texts) <= 0.4, texts
        listener.join(10)
    finally:
        sipp.kill()
        sipp.wait(5)


def resample(pcm: bytes, rate: int) -> bytes:
    """16 kHz s16le → ``rate`` (what an app recording at its own rate sends)."""
    import numpy as np
    import soxr

    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    return (np.clip(soxr.resample(samples, 16000, rate), -1, 1) * 32767).astype("<i2").tobytes()


# A question, an action item and a follow-up (SENTENCES 0, 5, 12); the tracker hears two of them.
SAID = (SENTENCES[0], SENTENCES[5], SENTENCES[12])
TRACKERS = [{"name": "Deliverables", "vocabulary": ["quarterly report", "slides"]}]
LIVE_KINDS = ("message_response", "insight_response", "topic_response", "tracker_response")


def stream_44k(symbl: Any) -> tuple[Any, Frames]:
    """The SDK's default rate (44100 Hz, as ``send_audio_from_mic``): three sentences; messages,
    insights, topics and trackers arrive while streaming; then stopped."""
    conn = symbl.Streaming.start_connection(
        credentials=dict(CREDENTIALS),
        speaker={"userId": "jane@example.com", "name": "Jane"},
        insight_types=["question", "action_item", "follow_up"],
        config={"meetingTitle": "Conversation API test"},  # no sampleRateHertz: the SDK says 44100
        trackers=TRACKERS,
    )
    got = Frames()
    conn.subscribe({key: got.callback(key) for key in ("message", *LIVE_KINDS, "error")})
    pcm = b"".join(pcm16(synth(s)) + silence(0.7) for s in SAID)
    pcm = resample(pcm, 44100)
    for i in range(0, len(pcm), 8192):
        conn.send_audio(pcm[i:i + 8192])
        time.sleep(8192 / 88200 / 2)  # 2x real time
    def live_insights(fs: list[tuple[str, Any]]) -> set[str]:
        return {i["type"] for k, f in fs if k == "insight_response" for i in f["insights"]}

    assert got.wait(lambda fs: sum(k == "message_response" for k, _ in fs) >= 3 and len(live_insights(fs)) == 3
                    and all(any(k == kind for k, _ in fs) for kind in LIVE_KINDS), 60), [k for k, _ in got.frames]
    live_messages = [m["payload"]["content"] for k, f in got.frames if k == "message_response" for m in f["messages"]]
    for sentence in SAID:
        assert min(wer(sentence, t) for t in live_messages) <= 0.35, (sentence, live_messages)
    assert live_insights(got.frames) == {"question", "action_item", "follow_up"}
    live_topics = [t["phrases"] for k, f in got.frames if k == "topic_response" for t in f["topics"]]
    assert live_topics and all(p.lower() in " ".join(live_messages).lower() for p in live_topics), live_topics
    matched = {m["value"] for k, f in got.frames if k == "tracker_response" for t in f["trackers"]
               for m in t["matches"]}
    assert matched == {"quarterly report", "slides"}, matched
    conn.stop()
    assert got.wait(completed, 30), [k for k, _ in got.frames]
    assert not [f for k, f in got.frames if k == "error"], got.frames
    return conn, got


@pytest.mark.speech
def test_sdk_44k_then_conversation_api(symbl: Any, daemon_endpoints: tuple[str, str]) -> None:
    """Streaming at 44.1 kHz, then every ``symbl.Conversations`` call answers in Symbl's models."""
    conn, _ = stream_44k(symbl)
    conversation_id = conn.conversation.get_conversation_id()
    conv = symbl.Conversations(conversation_id, credentials=dict(CREDENTIALS)) \
        if callable(getattr(symbl, "Conversations", None)) else conn.conversation

    messages = conv.get_messages().messages
    texts = [m.text for m in messages]
    for sentence in SAID:
        assert min(wer(sentence, t) for t in texts) <= 0.35, texts
    assert messages[0]._from.name == "Jane" and messages[0].conversation_id == conversation_id
    verbose = conv.get_messages(parameters={"verbose": True}).messages
    assert verbose[0].words and verbose[0].words[0].start_time is not None

    ids = {m.id for m in messages}
    questions = conv.get_questions().questions
    assert any(wer(SENTENCES[0], q.text) <= 0.35 for q in questions), [q.text for q in questions]
    actions = conv.get_action_items().action_items
    assert any(wer(SENTENCES[5], a.text) <= 0.35 for a in actions), [a.text for a in actions]
    follow_ups = conv.get_follow_ups().follow_ups
    assert any(wer(SENTENCES[12], f.text) <= 0.35 for f in follow_ups), [f.text for f in follow_ups]
    for item in [*questions, *actions, *follow_ups]:
        assert set(item.message_ids) <= ids and item.message_ids and item._from.name == "Jane", item
    topics = conv.get_topics().topics
    assert topics and all(t.text.lower() in " ".join(texts).lower() and t.type == "topic" for t in topics), topics
    assert all(set(t.message_ids) <= ids for t in topics)
    trackers = conv.get_trackers()
    assert [t.name for t in trackers] == ["Deliverables"], trackers
    assert {m.value for m in trackers[0].matches} == {"quarterly report", "slides"}
    assert all(set(r.id for r in m.message_refs) <= ids for m in trackers[0].matches)
    members = conv.get_members().members
    assert [m.name for m in members] == ["Jane"] and members[0].email == "jane@example.com"
    info = conv.get_conversation()
    assert info.id == conversation_id and info.name == "Conversation API test" and info.start_time
    analytics = conv.get_analytics()
    talk = next(m for m in analytics.metrics if m.type == "total_talk_time")
    assert talk.seconds > 1 and analytics.members[0].pace.wpm > 0
    assert conv.get_entities() is not None
    rest = conv._Conversation__conversation_api.conversations_api_rest
    token = rest.api_client.configuration.api_key["x-api-key"]
    base = rest.api_client.configuration.host
    # Symbl's GET .../summary (the SDK has no call for it): sentences said, each naming its message.
    with urllib.request.urlopen(urllib.request.Request(f"{base}/v1/conversations/{conversation_id}/summary",
                                                       headers={"x-api-key": token}), timeout=30) as reply:
        summary = json.load(reply)["summary"]
    assert summary and all(min(wer(s["text"], t) for t in texts) <= 0.35 for s in summary), summary
    assert all({r["id"] for r in s["messageRefs"]} <= ids and s["messageRefs"] for s in summary)

    # symbl 2.0.6's put_members passes its arguments to symbl-rest in the wrong order (a TypeError
    # it swallows), so it can only answer its generic error; the REST call it means to make works.
    renamed = rest.put_members_information_by_members_id(
        {"id": members[0].id, "name": "Jane Doe", "email": "jane@example.com"}, conversation_id, members[0].id)
    assert "updated" in renamed.message
    assert conv.get_messages().messages[0]._from.name == "Jane Doe"

    # symbl-rest 1.0.14 has no DELETE operation: the SDK's delete_conversation swallows an
    # AttributeError and sends nothing. Symbl's documented DELETE, with the SDK's own token:
    assert conv.delete_conversation() is None
    assert conv.get_messages().messages  # so nothing was deleted by it
    req = urllib.request.Request(f"{base}/v1/conversations/{conversation_id}", method="DELETE",
                                 headers={"x-api-key": token})
    with urllib.request.urlopen(req, timeout=30) as reply:
        assert reply.status == 200 and conversation_id in json.load(reply)["message"]
    gone = conv.get_messages()
    assert gone == {"message": "The conversationId is either invalid or does not exist."}
    with Client(*daemon_endpoints) as c:  # and its journal is gone from the daemon's disk
        assert c.request("find_conversation", conversationId=conversation_id)["connections"] == []


def mulaw(pcm: bytes) -> bytes:
    """8 kHz s16le → G.711 mu-law, with the stdlib's encoder (a reference independent of ours)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop
    return audioop.lin2ulaw(pcm, 2)


def send_paced(ws: Any, audio: bytes, bytes_per_second: int) -> None:
    for i in range(0, len(audio), 8000):
        ws.send_binary(audio[i:i + 8000])
        time.sleep(8000 / bytes_per_second / 4)  # 4x real time


@pytest.mark.speech
def test_rates_change_mid_stream_and_formatted_transcript(server: ServerHandle) -> None:
    """8 kHz LINEAR16, then 48 kHz after modify_request, then MULAW: each sentence is heard.
    insightTypes [] gets no insights; timezoneOffset comes back as sent; the transcript is served."""
    from test_symbl_server import connect, read_until_close, recv_json, start_request, token

    tok = token(server.port)
    ws = connect(server.port, "/v1/streaming/rates-0001", tok)
    ws.send(start_request(insightTypes=[], config={
        "meetingTitle": "Rates", "timezoneOffset": 480,
        "speechRecognition": {"encoding": "LINEAR16", "sampleRateHertz": 8000}}))
    system = [recv_json(ws)["message"]["type"] for _ in range(3)]
    assert system == ["conversation_created", "started_listening", "recognition_started"]
    send_paced(ws, resample(pcm16(synth(SENTENCES[3])) + silence(0.8), 8000), 16000)
    ws.send(json.dumps({"type": "modify_request", "speechRecognition": {"sampleRateHertz": 48000}}))
    send_paced(ws, resample(pcm16(synth(SENTENCES[9])) + silence(0.8), 48000), 96000)
    ws.send(json.dumps({"type": "modify_request", "speechRecognition": {"encoding": "MULAW",
                                                                      "sampleRateHertz": 8000}}))
    send_paced(ws, mulaw(resample(pcm16(synth(SENTENCES[2])) + silence(0.8), 8000)), 8000)
    ws.send(json.dumps({"type": "stop_request"}))
    frames, code, _ = read_until_close(ws, 90)
    ws.close()
    assert code == 1000
    modified = [f["message"] for f in frames if f.get("type") == "message"
                and f["message"]["type"] == "session_modified"]
    assert [m["data"]["speechRecognition"] for m in modified] == [
        {"encoding": "LINEAR16", "sampleRateHertz": 48000}, {"encoding": "MULAW", "sampleRateHertz": 8000}]
    assert not [f for f in frames if f.get("type") == "error"], frames
    assert not [f for f in frames if f.get("type") == "insight_response"]  # [] selects none
    messages = [m for f in frames if f.get("type") == "message_response" for m in f["messages"]]
    texts = [m["payload"]["content"] for m in messages]
    for sentence in (SENTENCES[3], SENTENCES[9], SENTENCES[2]):
        assert min(wer(sentence, t) for t in texts) <= 0.4, (sentence, texts)
    assert {m["metadata"]["timezoneOffset"] for m in messages} == {480}
    conversation_id = next(f["message"]["conversationId"] for f in frames if f.get("type") == "message"
                           and f["message"]["type"] == "conversation_completed")

    for content_type in ("text/markdown", "text/srt"):
        req = urllib.request.Request(
            f"http://127.0.0.1:{server.port}/v1/conversations/{conversation_id}/transcript", method="POST",
            data=json.dumps({"contentType": content_type}).encode(),
            headers={"x-api-key": tok, "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as reply:
            transcript = json.load(reply)["transcript"]
        assert transcript["contentType"] == content_type
        said = [line.split(": ", 1)[1] for line in transcript["payload"].splitlines() if ": " in line]
        assert min(wer(SENTENCES[9], t) for t in said) <= 0.4, transcript
        assert "Jane" in transcript["payload"]
        if content_type == "text/srt":
            assert transcript["payload"].startswith("1\n00:00:00,000 --> 00:00:")
