"""The official ``deepgram-sdk`` (PyPI, its environment pointed here) against symbld's Deepgram listen v1.

Pre-recorded (bytes and a file:// URL) and live (WebSocket, real-time paced) transcribe espeak
sentences the engine decodes with margin (SENTENCES[0] and [6], as test_symbl_sdk); the words are asserted.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import deepgram  # the test extra (deepgram-sdk)
import pytest
from conftest import serving_symbl
from deepgram.core.events import EventType
from speechgen import SENTENCES, normalise, pcm16, silence, synth, wer

from symblctl.client import Client
from symbld.gateways.symbl.server import ServerHandle

pytestmark = [pytest.mark.timeout(180), pytest.mark.speech]
KEY = "dg-local-test-0123456789"


@pytest.fixture(scope="module")
def server(daemon_endpoints: tuple[str, str]) -> Iterator[ServerHandle]:
    config = {"apis": {"deepgram_api": {"api_keys": [KEY], "max_body_bytes": 4 * 1024 * 1024}}}
    with serving_symbl(daemon_endpoints, config) as handle:
        yield handle


def sdk(port: int, key: str = KEY) -> Any:
    env = deepgram.DeepgramClientEnvironment(base=f"http://127.0.0.1:{port}", production=f"ws://127.0.0.1:{port}",
                                             agent=f"ws://127.0.0.1:{port}", agent_rest=f"http://127.0.0.1:{port}")
    return deepgram.DeepgramClient(api_key=key, environment=env)


def test_prerecorded_file_and_url(server: ServerHandle) -> None:
    dg = sdk(server.port)
    wav = synth(SENTENCES[0])
    reply = dg.listen.v1.media.transcribe_file(request=wav.read_bytes(), model="nova-3", punctuate=True,
                                               utterances=True)
    alt = reply.results.channels[0].alternatives[0]
    assert wer(SENTENCES[0], alt.transcript) <= 0.35, alt.transcript
    assert alt.transcript[0].isupper() and alt.transcript.rstrip().endswith(("?", "."))  # punctuate=true
    spoken = [w.word for w in alt.words]
    assert {"quarterly", "report", "friday"} <= set(spoken), spoken
    assert all(w.word == normalise(w.word).replace(" ", "") for w in alt.words)  # bare words; punctuated_word cased
    assert any(w.punctuated_word.endswith("?") for w in alt.words)
    assert all(0 <= w.start <= w.end <= reply.metadata.duration + 0.5 for w in alt.words)
    assert reply.metadata.channels == 1 and abs(reply.metadata.duration - len(pcm16(wav)) / 32000) < 0.1
    assert reply.results.utterances and wer(SENTENCES[0], reply.results.utterances[0].transcript) <= 0.35
    # The same speech by file:// URL (loopback-only fetching), without punctuation.
    by_url = dg.listen.v1.media.transcribe_url(url=synth(SENTENCES[6]).as_uri(), model="nova-3")
    text = by_url.results.channels[0].alternatives[0].transcript
    assert wer(SENTENCES[6], text) <= 0.35 and text == text.lower() and "?" not in text, text


def test_live_results_utterance_end_and_metadata(server: ServerHandle) -> None:
    dg = sdk(server.port)
    got: list[Any] = []
    cond = threading.Condition()

    def on_message(message: Any) -> None:
        with cond:
            got.append(message)
            cond.notify_all()

    pcm = pcm16(synth(SENTENCES[0])) + silence(0.8) + pcm16(synth(SENTENCES[6])) + silence(0.8)
    with dg.listen.v1.connect(model="nova-3", encoding="linear16", sample_rate=16000, channels=1,
                              interim_results=True, vad_events=True, utterance_end_ms=1000, punctuate=True) as sock:
        sock.on(EventType.MESSAGE, on_message)
        listener = threading.Thread(target=sock.start_listening, daemon=True)
        listener.start()
        step = 3200  # 100 ms frames, as a live microphone sends them
        for i in range(0, len(pcm), step):
            sock.send_media(pcm[i:i + step])
            time.sleep(0.05)  # paces the audio at twice real time (this is the client's clock, not a wait)
        sock.send_finalize()  # the daemon's finalize where it has one; otherwise the next pause finalizes
        sock.send_keep_alive()
        sock.send_close_stream()
        with cond:
            assert cond.wait_for(lambda: any(getattr(m, "type", "") == "Metadata" for m in got), 60), got
        listener.join(30)
    types = [getattr(m, "type", None) for m in got]
    finals = [m for m in got if getattr(m, "type", "") == "Results" and m.is_final]
    assert len(finals) >= 2 and all(m.speech_final or m.from_finalize for m in finals), types
    texts = [m.channel.alternatives[0].transcript for m in finals]
    assert min(wer(SENTENCES[0], t) for t in texts) <= 0.35, texts
    assert min(wer(SENTENCES[6], t) for t in texts) <= 0.35, texts
    words = [w for m in finals for w in m.channel.alternatives[0].words]
    assert {"quarterly", "friday", "pricing", "model"} <= {w.word for w in words}
    assert [w.start for w in words] == sorted(w.start for w in words)
    assert "SpeechStarted" in types and "UtteranceEnd" in types and "Error" not in types, types
    assert types.index("SpeechStarted") < types.index("UtteranceEnd")
    assert types[-1] == "Metadata" and abs(got[-1].duration - len(pcm) / 32000) < 0.2


def test_wrong_key_refused(server: ServerHandle) -> None:
    with pytest.raises(deepgram.core.api_error.ApiError) as info:
        sdk(server.port, "wrong-key").listen.v1.media.transcribe_file(request=synth(SENTENCES[0]).read_bytes(),
                                                                      model="nova-3")
    assert info.value.status_code == 401 and info.value.body["err_code"] == "INVALID_AUTH"
    with pytest.raises(Exception, match="401"), \
            sdk(server.port, "wrong-key").listen.v1.connect(model="nova-3", encoding="linear16", sample_rate=16000):
        pass


def _post(port: int, body: bytes, ctype: str, query: str = "", key: str = KEY) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/listen{query}", data=body, method="POST",
                                 headers={"Content-Type": ctype, "Authorization": f"Token {key}"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def test_hostile_requests_get_deepgram_errors_and_the_daemon_goes_on(server: ServerHandle, client: Client) -> None:
    def status(reply: tuple[int, dict[str, Any]]) -> int:
        code, body = reply
        assert set(body) == {"err_code", "err_msg", "request_id"}, body
        return code

    port = server.port
    assert status(_post(port, b"not audio at all", "audio/wav")) == 400
    assert status(_post(port, b"\0" * (5 * 1024 * 1024), "audio/wav")) == 413
    assert status(_post(port, b"{not json", "application/json")) == 400
    assert status(_post(port, b'{"url": "https://example.com/a.wav"}', "application/json")) == 400
    assert status(_post(port, b'{"url": "http://169.254.169.254/latest"}', "application/json")) == 400
    assert status(_post(port, b'{"url": "file:///etc/hostname"}', "application/json")) == 400  # not audio
    assert status(_post(port, b"\0\0" * 100, "audio/raw", "?encoding=opus")) == 400
    assert status(_post(port, b"\0\0" * 100, "audio/raw", "?encoding=linear16&sample_rate=abc")) == 400
    assert status(_post(port, b"x", "audio/wav", key="bad")) == 401
    assert client.ping()
    code, body = _post(port, pcm16(synth(SENTENCES[6])), "audio/raw", "?encoding=linear16&sample_rate=16000")
    assert code == 200 and wer(SENTENCES[6], body["results"]["channels"][0]["alternatives"][0]["transcript"]) <= 0.35


def test_live_socket_dropped_midway_stops_its_connection(server: ServerHandle, client: Client) -> None:
    """A client that vanishes without CloseStream leaves no live daemon connection behind."""
    from conftest import wait_until
    from websockets.sync.client import connect

    def ours() -> list[dict[str, Any]]:
        return [c for c in client.status()["connections"] if c["source"].get("kind") == "push"
                and c["state"] not in ("stopped", "failed")]

    before = {c["connectionId"] for c in ours()}
    with connect(f"ws://127.0.0.1:{server.port}/v1/listen?encoding=linear16&sample_rate=16000",
                 additional_headers={"Authorization": f"Token {KEY}"}) as ws:
        ws.send(pcm16(synth(SENTENCES[0]))[:32000])
        started = wait_until("the socket's daemon connection", lambda: {c["connectionId"] for c in ours()} - before)
        ws.send("not json")
        kinds: list[str] = []
        while "Error" not in kinds and len(kinds) < 5:  # a Results may come first
            kinds.append(json.loads(ws.recv(timeout=30))["type"])
        assert "Error" in kinds, kinds  # a bad text frame is told, and the socket goes on
    # closed without CloseStream
    wait_until("the dropped socket's connection stopped", lambda: not started & {c["connectionId"] for c in ours()})
    assert client.ping()


def test_live_finalize_forces_the_final(server: ServerHandle, client: Client) -> None:
    """Finalize mid-stream: the utterance heard so far comes out as a final at once (from_finalize)."""
    if "finalize" not in {c["name"] for c in client.describe()["commands"]}:
        pytest.skip("this daemon has no finalize command (issue 27 adds it)")
    got: list[Any] = []
    cond = threading.Condition()

    def on_message(message: Any) -> None:
        with cond:
            got.append(message)
            cond.notify_all()

    with sdk(server.port).listen.v1.connect(model="nova-3", encoding="linear16", sample_rate=16000) as sock:
        sock.on(EventType.MESSAGE, on_message)
        threading.Thread(target=sock.start_listening, daemon=True).start()
        pcm = pcm16(synth(SENTENCES[6]))[:-9600]  # its 0.3 s trailing pad cut: only Finalize ends the utterance
        for i in range(0, len(pcm), 3200):
            sock.send_media(pcm[i:i + 3200])
            time.sleep(0.05)  # twice real time (the client's clock)
        sock.send_finalize()
        with cond:
            assert cond.wait_for(lambda: any(getattr(m, "from_finalize", False) for m in got), 30), got
        forced = next(m for m in got if getattr(m, "from_finalize", False))
        assert forced.is_final and not forced.speech_final
        assert wer(SENTENCES[6], forced.channel.alternatives[0].transcript) <= 0.35
        sock.send_close_stream()
