"""The Symbl-compatible server, driven over real loopback sockets, backed by a real symbld.

Frames are checked against ``shared/spec/symbl-protocol.md`` §6 (the numbers in comments).
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websocket
from conftest import wait_until
from speechgen import SENTENCES, pcm16, silence, synth, wer

from symblctl.client import Client
from symbld.gateways.symbl import wire
from symbld.gateways.symbl.auth import decode_claims
from symbld.gateways.symbl.server import ServerHandle, serve_symbl

pytestmark = pytest.mark.timeout(90)

APP_ID = "0123456789abcdef" * 4  # Symbl's format: 64 and 128 lowercase hex characters
APP_SECRET = "fedcba9876543210" * 8
REPO = Path(__file__).resolve().parent.parent


def stop_process(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.fixture(scope="module")
def server(daemon_endpoints: tuple[str, str]) -> Iterator[ServerHandle]:
    control, events = daemon_endpoints
    handle = serve_symbl("127.0.0.1", 0, lambda: Client(control, events),
                         {"app_id": APP_ID, "app_secret": APP_SECRET, "first_frame_delay": 0.1,
                          "no_connection_timeout": 3})
    try:
        yield handle
    finally:
        handle.close()


def post(port: int, path: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else {}
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def token(port: int) -> str:
    grant = {"type": "application", "appId": APP_ID, "appSecret": APP_SECRET}
    status, body = post(port, "/oauth2/token:generate", grant)
    assert status == 200, body
    return body["accessToken"]


def connect(port: int, path: str, tok: str | None = None, **kw: Any) -> websocket.WebSocket:
    header = [f"x-api-key: {tok}"] if tok else []
    return websocket.create_connection(f"ws://127.0.0.1:{port}{path}", header=header, timeout=20, **kw)


def recv_json(ws: websocket.WebSocket) -> dict[str, Any]:
    while True:
        opcode, data = ws.recv_data()
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            raise ConnectionError("closed")
        text = data.decode()
        if text != "__PONG__":
            return json.loads(text)


def subtype(frame: dict[str, Any]) -> str:
    return frame["message"]["type"] if frame.get("type") == "message" else frame["type"]


def start_request(**over: Any) -> str:
    req = {"type": "start_request", "insightTypes": ["question", "action_item"],
           "speaker": {"userId": "jane@example.com", "name": "Jane"}, "trackers": None,
           "config": {"confidenceThreshold": 0.5, "languageCode": "en-US", "meetingTitle": "T",
                      "speechRecognition": {"encoding": "LINEAR16", "sampleRateHertz": 16000}, "unknownKey": 1}}
    req.update(over)
    return json.dumps(req)


def read_until_close(ws: websocket.WebSocket, limit: float = 60) -> tuple[list[dict[str, Any]], int | None, int]:
    """(frames, close code, pongs) until the server closes."""
    frames: list[dict[str, Any]] = []
    pongs = 0
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        frame = ws.recv_frame()
        if frame.opcode == websocket.ABNF.OPCODE_CLOSE:
            code = int.from_bytes(frame.data[:2], "big") if len(frame.data) >= 2 else None
            ws.send_close()  # answer the close handshake
            return frames, code, pongs
        if frame.opcode == websocket.ABNF.OPCODE_TEXT:
            text = frame.data.decode()
            if text == "__PONG__":
                pongs += 1
            else:
                frames.append(json.loads(text))
    raise TimeoutError("server did not close")


# ---------------------------------------------------------------- wire (no sockets)


def test_wire_round_trip_and_client_frames() -> None:
    ours = {"type": "transcript_response", "id": "u1", "isFinal": True,
            "payload": {"content": "hello world", "contentType": "text/plain"},
            "punctuated": {"transcript": "Hello world."},
            "user": {"id": "x", "name": "Jane", "userId": "jane@example.com"},
            "duration": {"startTime": "2026-11-24T08:00:01.000Z", "endTime": "2026-11-24T08:00:02.500Z",
                         "timeOffset": 1.0, "duration": 1.5}}
    (frame,) = wire.event_to_frames("transcript_response", ours)
    raw = frame["message"]["payload"]["raw"]["alternatives"][0]
    assert frame["type"] == "message" and frame["message"]["type"] == "recognition_result"
    assert raw["words"][1] == {"word": "world", "startTime": {"seconds": "1", "nanos": "750000000"},
                               "endTime": {"seconds": "2", "nanos": "500000000"}}
    (back,) = wire.FrameMapper(0.0).map(frame).events
    assert back == ("transcript_response", ours)
    assert wire.event_to_frames("transcript_response", ours, "telephony") == [ours]
    assert wire.event_to_frames("connection_started", {}) == []
    # a plain Symbl recognition_result (no id/duration): ids per utterance, times from words
    mapper = wire.FrameMapper(1_795_000_000.0)
    plain = {"type": "message", "message": {"type": "recognition_result", "isFinal": False,
                                            "payload": {"raw": {"alternatives": [{"transcript": "hi", "words": [
                                                {"word": "hi", "startTime": {"seconds": "3", "nanos": "500000000"},
                                                 "endTime": {"seconds": "4", "nanos": "0"}}]}]}}}}
    (_, interim), = mapper.map(plain).events
    plain["message"]["isFinal"] = True
    (_, final), = mapper.map(plain).events
    (_, nxt), = mapper.map(plain).events
    assert interim["id"] == final["id"] != nxt["id"]
    assert final["duration"]["timeOffset"] == 3.5 and final["duration"]["duration"] == 0.5
    assert mapper.map_text("__PONG__").system == "__PONG__"
    assert mapper.map({"type": "error", "message": "m", "details": "d"}).error == {"message": "m", "details": "d"}

    assert wire.parse_client_text('{"type": "stop_request"}') == ({"type": "stop_request"}, True)
    assert wire.parse_client_text("{'type': 'stop_request'}") == ({"type": "stop_request"}, False)
    assert wire.parse_client_text("[1, 2]") == (None, False)
    assert wire.parse_client_text("{not json") == (None, False)
    assert wire.parse_client_text("__import__('os').system('true')") == (None, False)


# ---------------------------------------------------------------- auth


def test_token_service(server: ServerHandle) -> None:
    status, body = post(server.port, "/oauth2/token:generate",
                        {"type": "application", "appId": APP_ID, "appSecret": APP_SECRET})
    assert status == 200 and body["expiresIn"] == 86400
    parts = body["accessToken"].split(".")
    assert len(parts) == 3  # [2] JWT-shaped
    claims = decode_claims(body["accessToken"])
    assert claims["exp"] - claims["iat"] == 86400 and claims["sub"] == APP_ID
    # [3] asking again returns the cached token with what is left of its lifetime
    status, again = post(server.port, "/oauth2/token:generate",
                         {"type": "application", "appId": APP_ID, "appSecret": APP_SECRET})
    assert again["accessToken"] == body["accessToken"] and again["expiresIn"] <= 86400

    status, bad = post(server.port, "/oauth2/token:generate",
                       {"type": "application", "appId": APP_ID, "appSecret": "0" * 128})
    assert status == 401 and "not valid" in bad["message"]
    status, bad = post(server.port, "/oauth2/token:generate", b"{not json")
    assert status == 400


def test_websocket_token_forms(server: ServerHandle) -> None:
    tok = token(server.port)
    cid = "tokenforms01"
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        connect(server.port, f"/v1/streaming/{cid}", "not-a-token")
    assert refused.value.status_code == 401  # [5] refused at the upgrade
    ws = connect(server.port, f"/v1/streaming/{cid}?access_token={tok}&source=python_sdk")
    ws.close()
    ws = websocket.create_connection(f"ws://127.0.0.1:{server.port}/v1/realtime/insights/{cid}",
                                     header=[f"Authorization: Bearer {tok}"], timeout=10)
    ws.close()
    ws = websocket.create_connection(f"ws://127.0.0.1:{server.port}/v1/streaming/{cid}",
                                     subprotocols=[tok], timeout=10)
    assert ws.getsubprotocol() == tok.lower()  # [4] echoed (websocket-client lower-cases it)
    ws.close()
    with pytest.raises(websocket.WebSocketBadStatusException) as bad_id:
        connect(server.port, "/v1/streaming/abc", tok)
    assert bad_id.value.status_code == 400  # [7] ids are 6-64 characters


# ---------------------------------------------------------------- streaming


@pytest.mark.speech
def test_stream_start_results_stop(server: ServerHandle, daemon_endpoints: tuple[str, str]) -> None:
    tok = token(server.port)
    cid = "c2FtcGxlaWQxMjM0"  # like the Python SDK's base64 ids
    ws = connect(server.port, f"/v1/realtime/insights/{cid}?source=python_sdk", tok)
    ws.send_binary(pcm16(synth("Nobody should ever hear this sentence.")))  # [9] before start: ignored
    ws.send(start_request())
    first = [recv_json(ws) for _ in range(3)]
    assert [subtype(f) for f in first] == ["conversation_created", "started_listening", "recognition_started"]  # [13]
    conversation_id = first[0]["message"]["data"]["conversationId"]
    assert conversation_id.isdigit() and first[2]["message"]["data"]["conversationId"] == conversation_id

    # listeners: streaming-style and telephony-style subscribe sockets [27]
    listener = connect(server.port, f"/v1/subscribe/{cid}", tok)
    session_listener = connect(server.port, f"/session/subscribe/{cid}?access_token={tok}")

    pcm = pcm16(synth(SENTENCES[0])) + silence(0.5)
    for i in range(0, len(pcm), 8192):
        ws.send_binary(pcm[i:i + 8192])
        time.sleep(0.02)  # pacing the feed like a live client, not waiting for a condition
    ws.send("__PING__")  # [23]  (no wait before stop: stop flushes everything already sent)
    ws.send(str({"type": "stop_request"}))  # [20] the Python SDK's non-JSON stop
    ws.send("__PING__")  # a keep-alive while the daemon flushes: answered, or clients reconnect
    frames, code, pongs = read_until_close(ws)
    assert pongs == 2 and code == 1000  # [21]
    kinds = [subtype(f) for f in frames]
    finals = [f["message"] for f in frames if subtype(f) == "recognition_result" and f["message"]["isFinal"]]
    assert finals, kinds
    word = finals[0]["payload"]["raw"]["alternatives"][0]["words"][0]
    assert set(word["startTime"]) == {"seconds", "nanos"} and isinstance(word["startTime"]["seconds"], str)
    assert finals[0]["user"]["userId"] == "jane@example.com" and finals[0]["user"]["id"]
    messages = [m for f in frames if f["type"] == "message_response" for m in f["messages"]]
    text = " ".join(m["payload"]["content"] for m in messages)
    assert "nobody" not in text.lower()
    assert wer(SENTENCES[0], text) <= 0.35, text
    assert isinstance(messages[0]["metadata"]["words"], str) and messages[0]["channel"]["id"] == "realtime-api"
    assert kinds[-2:] == ["conversation_completed", "recognition_stopped"]
    completed = frames[-2]["message"]
    assert completed["conversationId"] == conversation_id == completed["data"]["conversationId"]
    assert completed["summaryUrl"]

    sub_frames, sub_code, _ = read_until_close(listener)
    assert [f["type"] for f in sub_frames if f["type"] == "message_response"] and sub_code == 1000
    assert [subtype(f) for f in sub_frames][-2:] == ["conversation_completed", "recognition_stopped"]
    tel_frames, _, _ = read_until_close(session_listener)
    live = [f for f in tel_frames if f["type"] == "transcript_response"]
    assert live and live[-1]["isFinal"] is True and live[-1]["payload"]["content"]  # §3.5: top-level
    for sock in (ws, listener, session_listener):
        sock.close()

    # The connection is an ordinary daemon connection (control/PUB).
    with Client(*daemon_endpoints) as c:
        conns = [x for x in c.status().get("connections", []) if x.get("conversationId") == conversation_id]
    assert conns and conns[0]["state"] == "stopped" and conns[0]["connectionId"] == cid


def test_protocol_errors(server: ServerHandle) -> None:
    tok = token(server.port)
    ws = connect(server.port, "/v1/streaming/errors-0001", tok)
    ws.send("{not json")
    assert recv_json(ws) == {"type": "error", "message": "Invalid JSON",
                             "details": "text frames must be JSON objects"}  # [26]
    ws.send(json.dumps({"type": "stop_request"}))
    assert recv_json(ws)["message"] == "Not started"
    ws.send(start_request())
    system = [subtype(recv_json(ws)) for _ in range(3)]
    assert system == ["conversation_created", "started_listening", "recognition_started"]
    ws.send_binary(b"\0" * 9000)  # [25] over 8192 bytes
    err = recv_json(ws)
    assert err["type"] == "error" and "8192" in err["details"]
    ws.send("__PING__")
    assert ws.recv() == "__PONG__"  # still open and answering
    ws.send(json.dumps({"type": "modify_request", "speechRecognition": {"sampleRateHertz": 8000}}))
    assert subtype(recv_json(ws)) == "session_modified"  # [22]
    ws.send(json.dumps({"type": "stop_request"}))
    frames, code, _ = read_until_close(ws)
    assert code == 1000 and subtype(frames[-1]) == "recognition_stopped"
    ws.close()

    ws = connect(server.port, "/v1/streaming/errors-0002", tok)
    ws.send(start_request(config={"speechRecognition": {"encoding": "OPUS", "sampleRateHertz": 48000}}))
    err = recv_json(ws)
    assert err["type"] == "error" and "OPUS" in err["details"]  # [12]
    ws.send(start_request(config={"speechRecognition": {"encoding": "MULAW", "sampleRateHertz": 16000}}))
    err = recv_json(ws)
    assert err["type"] == "error" and "MULAW" in err["details"]  # MULAW is 8 kHz only
    ws.close()

    with pytest.raises(websocket.WebSocketBadStatusException) as unknown:
        connect(server.port, "/v1/subscribe/no-such-connection", tok)
    assert unknown.value.status_code == 404  # [28] choice: refuse unknown ids


def test_second_socket_and_reconnect_join_same_conversation(server: ServerHandle) -> None:
    tok = token(server.port)
    cid = "rejoin-0001"
    a = connect(server.port, f"/v1/streaming/{cid}", tok)
    a.send(start_request(speaker=None))  # [10] null speaker accepted
    conv_a = recv_json(a)["message"]["data"]["conversationId"]
    b = connect(server.port, f"/v1/streaming/{cid}", tok)
    b.send(start_request())
    assert recv_json(b)["message"]["data"]["conversationId"] == conv_a  # [8]
    a.close()
    b.close()  # dropped without stop: the conversation waits for a reconnect [24]

    def waiting_for_reconnect() -> bool:
        conv = server.server.conversations.get(cid)
        return conv is not None and not conv.sockets and conv.orphan_timer is not None

    # Only once the server has seen both sockets go does the reconnect below test joining a waiting
    # conversation (before that it would merely be a third socket on a live one).
    wait_until("the server holds the dropped conversation for a reconnect", waiting_for_reconnect, 20)
    c = connect(server.port, f"/v1/streaming/{cid}", tok)
    c.send(start_request())
    assert recv_json(c)["message"]["data"]["conversationId"] == conv_a
    c.send(json.dumps({"type": "stop_request"}))
    frames, code, _ = read_until_close(c)
    assert code == 1000 and subtype(frames[-2]) == "conversation_completed"
    c.close()


# ---------------------------------------------------------------- telephony


def test_telephony_endpoint(server: ServerHandle) -> None:
    tok = token(server.port)
    headers = {"x-api-key": tok}
    status, body = post(server.port, "/v1/endpoint:connect", {"operation": "start", "endpoint": {"type": "sip"}},
                        headers)
    assert status == 400 and "uri" in body["details"]  # [29] validation
    status, body = post(server.port, "/v1/endpoint:connect", {"operation": "stop", "connectionId": "nope"}, headers)
    assert status == 404
    status, body = post(server.port, "/v1/endpoint:connect", {"operation": "stop", "connectionId": "x"},
                        {"x-api-key": "bad"})
    assert status == 401
    # The Python SDK's own SIP body ([30]: actions as {}). The daemon behind this server has telephony,
    # so the call starts (201); sipp is not listening, so it cannot connect and ends by itself, and
    # stop must still answer with the conversation (Symbl: always call stop).
    sdk_body = {"operation": "start",
                "endpoint": {"type": "sip", "uri": "sip:nobody@127.0.0.1:9", "audioConfig": {"sampleRate": 16000,
                                                                                          "sampleSize": "16"}},
                "actions": {}, "data": {"session": {"name": "S"}}, "languages": ["en-US"], "timezone": "UTC"}
    status, body = post(server.port, "/v1/endpoint:connect", sdk_body, {"Authorization": f"Bearer {tok}"})
    assert status == 201, body
    assert body["conversationId"].isdigit() and body["resultWebSocketUrl"].endswith(body["connectionId"])
    status, stopped = post(server.port, "/v1/endpoint:connect",
                           {"operation": "stop", "connectionId": body["connectionId"]}, headers)
    assert status == 200, stopped  # also after the call ended by itself
    assert stopped["conversationId"] == body["conversationId"]
    assert [i["summary"] for i in stopped["summaryInfo"]] == [[]]  # nothing said; its page: test_summary_page


def test_gateway_modules_stay_small() -> None:
    """gateways/symbl is kept in parts with one job each (issue 23): no module over 400 lines."""
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines())
             for p in (REPO / "symbld" / "gateways" / "symbl").glob("*.py")}
    assert "server.py" in sizes
    assert {name: n for name, n in sizes.items() if n > 400} == {}
