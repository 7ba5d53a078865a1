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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from speechgen import SENTENCES, pcm16, silence, synth, wer
from test_symbl_server import APP_ID, APP_SECRET

from symblctl.client import Client
from symbld.gateways.symbl.server import ServerHandle, serve_symbl

pytestmark = pytest.mark.timeout(90)
symbl_rest = pytest.importorskip("symbl_rest", reason="test-only dependency: pip install symbl==2.0.6")

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
    symbl.Telephony.telephony_api_rest.api_client.configuration.host = base_url
    return symbl


@pytest.fixture(scope="module")
def server(daemon_endpoints: tuple[str, str]) -> Iterator[ServerHandle]:
    control, events = daemon_endpoints
    handle = serve_symbl("127.0.0.1", 0, lambda: Client(control, events), dict(CREDENTIALS))
    try:
        yield handle
    finally:
        handle.close()


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


@pytest.mark.speech
@pytest.mark.skipif(shutil.which("sipp") is None or shutil.which("sox") is None, reason="needs sipp and sox")
def test_sdk_telephony_sip_call(symbl: Any, tmp_path: Path) -> None:
    """Telephony.start_sip dials a real SIP peer (sipp) that answers and speaks; results arrive on
    the SDK's blocking subscribe socket; Telephony.stop returns the conversationId."""
    ulaw = tmp_path / "speech.ulaw"
    wav = synth(SENTENCES[2])
    subprocess.run(["sox", str(wav), "-r", "8000", "-c", "1", "-e", "mu-law", "-t", "raw", str(ulaw)], check=True)
    sip_port, media_port = free_udp_port(), free_udp_port()
    sipp = subprocess.Popen(
        ["sipp", "-sf", str(SIPP_DIR / "uas_speak_pcmu.xml"), "-i", "127.0.0.1", "-p", str(sip_port),
         "-mp", str(media_port), "-m", "1", "-nostdin"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.3)
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
        assert got.wait(lambda fs: any(k == "message_response" for k, _ in fs), 40), got.frames
        stopped = symbl.Telephony.stop(call.connectionId)
        assert stopped.conversation_id == call.conversation.get_conversation_id()
        texts = [m["payload"]["content"] for k, f in got.frames if k == "message_response"
                 for m in json.loads(f)["messages"]]  # telephony callbacks get str, not dict
        assert min(wer(SENTENCES[2], t) for t in texts) <= 0.4, texts
        listener.join(10)
    finally:
        sipp.kill()
        sipp.wait(5)
