"""The official ``openai`` SDK (PyPI, ``base_url`` set) against symbld's OpenAI-compatible API.

Every request is a daemon connection (``gateways/recording.py``): the words asserted are what the
engine heard in espeak sentences it decodes with margin (SENTENCES[0] and [6], as test_symbl_sdk).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai  # the test extra
import pytest
from conftest import serving_symbl
from speechgen import SENTENCES, normalise, pcm16, silence, synth, wav_file, wer

from symblctl.client import Client
from symbld.gateways.symbl.server import ServerHandle

pytestmark = [pytest.mark.timeout(180), pytest.mark.speech]

KEY = "sk-local-test-0123456789"


@pytest.fixture(scope="module")
def server(daemon_endpoints: tuple[str, str]) -> Iterator[ServerHandle]:
    config = {"apis": {"openai_api": {"api_keys": [KEY], "max_body_bytes": 4 * 1024 * 1024}}}
    with serving_symbl(daemon_endpoints, config) as handle:
        yield handle


@pytest.fixture(scope="module")
def base(server: ServerHandle) -> str:
    return f"http://127.0.0.1:{server.port}/v1"


@pytest.fixture(scope="module")
def sdk(base: str) -> Any:
    return openai.OpenAI(base_url=base, api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def two_sentences(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SENTENCES[0], a pause, SENTENCES[6]: a WAV as an application would upload it."""
    return wav_file(tmp_path_factory.mktemp("openai") / "two.wav",
                    pcm16(synth(SENTENCES[0])) + silence(0.8) + pcm16(synth(SENTENCES[6])) + silence(0.5))


def test_models_lists_what_it_accepts(sdk: Any) -> None:
    ids = [m.id for m in sdk.models.list()]
    assert "whisper-1" in ids and "gpt-4o-transcribe" in ids
    assert sdk.models.retrieve("whisper-1").owned_by == "symbld"


def test_verbose_json_with_words_and_segments(sdk: Any, two_sentences: Path) -> None:
    with two_sentences.open("rb") as f:
        result = sdk.audio.transcriptions.create(model="whisper-1", file=f, response_format="verbose_json",
                                                 timestamp_granularities=["word", "segment"])
    assert wer(SENTENCES[0] + " " + SENTENCES[6], result.text) <= 0.35, result.text
    texts = [s.text for s in result.segments]
    assert min(wer(SENTENCES[0], t) for t in texts) <= 0.35, texts
    assert min(wer(SENTENCES[6], t) for t in texts) <= 0.35, texts
    starts = [s.start for s in result.segments]
    assert starts == sorted(starts) and all(s.end > s.start for s in result.segments)
    assert result.segments[-1].start > 2.0  # the second sentence starts after the first and the pause
    spoken = {normalise(w.word) for w in result.words}
    assert {"quarterly", "report", "friday", "pricing", "model"} <= spoken, spoken
    assert all(0 <= w.start <= w.end <= result.duration + 0.5 for w in result.words)
    friday = next(w for w in result.words if normalise(w.word) == "friday")
    pricing = next(w for w in result.words if normalise(w.word) == "pricing")
    assert friday.end <= pricing.start  # word times follow the audio
    assert abs(result.duration - len(pcm16(two_sentences)) / 32000) < 0.1


def test_json_text_srt_vtt(sdk: Any, tmp_path: Path) -> None:
    one = synth(SENTENCES[0])
    with one.open("rb") as f:
        plain = sdk.audio.transcriptions.create(model="gpt-4o-transcribe", file=f, language="en")
    assert wer(SENTENCES[0], plain.text) <= 0.35, plain.text
    with one.open("rb") as f:
        srt = sdk.audio.transcriptions.create(model="whisper-1", file=f, response_format="srt")
    lines = srt.strip().splitlines()
    assert lines[0] == "1" and " --> " in lines[1] and lines[1].startswith("00:00:0")
    assert wer(SENTENCES[0], " ".join(lines[2:])) <= 0.35, srt
    with one.open("rb") as f:
        vtt = sdk.audio.transcriptions.create(model="whisper-1", file=f, response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n") and "00:00:0" in vtt and " --> " in vtt
    with one.open("rb") as f:
        text = sdk.audio.transcriptions.create(model="whisper-1", file=f, response_format="text")
    assert isinstance(text, str) and wer(SENTENCES[0], text) <= 0.35, text


def test_stream_deltas_then_done(sdk: Any, two_sentences: Path) -> None:
    with two_sentences.open("rb") as f:
        stream = sdk.audio.transcriptions.create(model="gpt-4o-mini-transcribe", file=f, stream=True)
        events = list(stream)
    kinds = [e.type for e in events]
    assert kinds[-1] == "transcript.text.done" and kinds.count("transcript.text.delta") >= 2, kinds
    joined = "".join(e.delta for e in events if e.type == "transcript.text.delta")
    assert joined == events[-1].text
    assert wer(SENTENCES[0] + " " + SENTENCES[6], events[-1].text) <= 0.35, events[-1].text


def test_wrong_key_refused_in_openai_shape(base: str, two_sentences: Path) -> None:
    bad = openai.OpenAI(base_url=base, api_key="sk-wrong-key-000000", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info, two_sentences.open("rb") as f:
        bad.audio.transcriptions.create(model="whisper-1", file=f)
    assert info.value.status_code == 401
    assert info.value.code == "invalid_api_key" and info.value.type == "invalid_request_error"
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def _post(base: str, path: str, body: bytes, ctype: str, key: str = KEY) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(base + path, data=body, method="POST",
                                 headers={"Content-Type": ctype, "Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def _multipart(fields: dict[str, tuple[str | None, bytes]]) -> tuple[bytes, str]:
    boundary = "symbldtestboundary"
    out = b""
    for name, (filename, value) in fields.items():
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disp}\r\n\r\n".encode() + value + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_hostile_requests_get_openai_errors_and_the_daemon_goes_on(sdk: Any, base: str, client: Client) -> None:
    def error(status: int, body: dict[str, Any]) -> tuple[int, str | None, str | None]:
        assert set(body) == {"error"} and {"message", "type", "param", "code"} <= set(body["error"]), body
        return status, body["error"]["param"], body["error"]["code"]

    assert error(*_post(base, "/audio/transcriptions", b'{"model": "whisper-1"}', "application/json"))[0] == 415
    assert error(*_post(base, "/audio/transcriptions", b"--x\r\ngarbage", "multipart/form-data; boundary=x"))[0] == 400
    body, ctype = _multipart({"file": ("a.wav", b"\0" * (5 * 1024 * 1024)), "model": (None, b"whisper-1")})
    assert error(*_post(base, "/audio/transcriptions", body, ctype))[:1] == (413,)
    body, ctype = _multipart({"file": ("a.wav", b"this is not audio at all"), "model": (None, b"whisper-1")})
    assert error(*_post(base, "/audio/transcriptions", body, ctype)) == (400, "file", "invalid_file_format")
    body, ctype = _multipart({"file": ("a.wav", synth(SENTENCES[0]).read_bytes())})
    assert error(*_post(base, "/audio/transcriptions", body, ctype)) == (400, "model", "missing_required_parameter")
    body, ctype = _multipart({"file": ("a.wav", b"RIFF"), "model": (None, b"dall-e-3")})
    assert error(*_post(base, "/audio/transcriptions", body, ctype)) == (400, "model", "model_not_found")
    body, ctype = _multipart({"file": ("a.wav", b"RIFF"), "model": (None, b"whisper-1"),
                              "response_format": (None, b"xml")})
    assert error(*_post(base, "/audio/transcriptions", body, ctype)) == (400, "response_format", "invalid_value")
    body, ctype = _multipart({"file": ("a.wav", synth(SENTENCES[0]).read_bytes()), "model": (None, b"whisper-1")})
    status, reply = _post(base, "/audio/translations", body, ctype)
    assert error(status, reply)[0] == 400 and "not supported" in reply["error"]["message"]
    assert _post(base, "/audio/transcriptions", body, ctype, key="sk-nope")[0] == 401
    # Still serving: the daemon answers and a good request is transcribed.
    assert client.ping()
    with synth(SENTENCES[6]).open("rb") as f:
        assert wer(SENTENCES[6], sdk.audio.transcriptions.create(model="whisper-1", file=f).text) <= 0.35


def _realtime_events(sdk: Any, session: dict[str, Any], audio: bytes, commit: bool, until: int) -> list[Any]:
    """Stream ``audio`` (24 kHz PCM16, or G.711) through a transcription session; the server events
    up to ``until`` completed transcriptions."""
    import base64

    events: list[Any] = []
    with sdk.realtime.connect(extra_query={"intent": "transcription"}) as conn:
        conn.session.update(session=session)
        step = 4800  # 100 ms of 24 kHz PCM16
        for i in range(0, len(audio), step):
            conn.input_audio_buffer.append(audio=base64.b64encode(audio[i:i + step]).decode())
        if commit:
            conn.input_audio_buffer.commit()
        for event in conn:
            events.append(event)
            done = [e for e in events if e.type == "conversation.item.input_audio_transcription.completed"]
            if len(done) >= until or event.type == "error":
                break
    return events


def _pcm24k(pcm16k: bytes) -> bytes:
    import numpy as np
    import soxr

    samples = np.frombuffer(pcm16k, dtype="<i2").astype(np.float32) / 32768
    return (soxr.resample(samples, 16000, 24000) * 32767).astype("<i2").tobytes()


def test_realtime_transcription_server_vad(sdk: Any) -> None:
    audio = _pcm24k(pcm16(synth(SENTENCES[0])) + silence(1.0) + pcm16(synth(SENTENCES[6])) + silence(1.5))
    session = {"type": "transcription", "audio": {"input": {
        "format": {"type": "audio/pcm", "rate": 24000}, "transcription": {"model": "gpt-4o-transcribe"},
        "turn_detection": {"type": "server_vad"}}}}
    events = _realtime_events(sdk, session, audio, commit=False, until=2)
    kinds = [e.type for e in events]
    assert kinds[0] == "session.created" and "session.updated" in kinds and "error" not in kinds, kinds
    done = [e for e in events if e.type == "conversation.item.input_audio_transcription.completed"]
    assert wer(SENTENCES[0], done[0].transcript) <= 0.35 and wer(SENTENCES[6], done[1].transcript) <= 0.35, done
    first = done[0].item_id
    started = next(e for e in events if e.type == "input_audio_buffer.speech_started" and e.item_id == first)
    stopped = next(e for e in events if e.type == "input_audio_buffer.speech_stopped" and e.item_id == first)
    assert 0 <= started.audio_start_ms < stopped.audio_end_ms
    order = [e.type for e in events if getattr(e, "item_id", None) == first]
    assert order == ["input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                     "input_audio_buffer.committed", "conversation.item.input_audio_transcription.delta",
                     "conversation.item.input_audio_transcription.completed"], order


def test_realtime_manual_commit_and_errors(sdk: Any, tmp_path: Path) -> None:
    from speechgen import PHONE_SENTENCE, phone_audio

    # Manual turns (turn_detection null) in G.711 A-law at 8 kHz (the telephone tests' sentence and
    # voice, which the engine decodes with margin through G.711): one commit, one item.
    alaw = phone_audio(tmp_path / "turn.alaw", encoding="a-law").read_bytes()
    session = {"type": "transcription", "audio": {"input": {"format": {"type": "audio/pcma"},
                                                            "turn_detection": None}}}
    events = _realtime_events(sdk, session, alaw, commit=True, until=1)
    kinds = [e.type for e in events]
    assert "input_audio_buffer.committed" in kinds and "error" not in kinds, kinds
    assert wer(PHONE_SENTENCE, events[-1].transcript) <= 0.35, events[-1].transcript
    # Errors in the API's shape; the session goes on.
    with sdk.realtime.connect(extra_query={"intent": "transcription"}) as conn:
        assert conn.recv().type == "session.created"
        conn.send({"type": "input_audio_buffer.append", "audio": "***not base64***"})
        bad = conn.recv()
        assert bad.type == "error" and bad.error.code == "invalid_value" and bad.error.param == "audio"
        conn.session.update(session={"type": "transcription", "audio": {"input": {"format": {"type": "audio/flac"}}}})
        bad = conn.recv()
        assert bad.type == "error" and bad.error.type == "invalid_request_error"
        conn.send({"type": "response.create"})
        assert conn.recv().error.code == "unknown_event"
        conn.session.update(session={"type": "transcription", "audio": {"input": {"turn_detection": None}}})
        assert conn.recv().type == "session.updated"
        conn.input_audio_buffer.commit()
        assert conn.recv().error.code == "input_audio_buffer_commit_empty"


def test_realtime_wrong_key(base: str) -> None:
    bad = openai.OpenAI(base_url=base, api_key="sk-wrong-key-000000", max_retries=0)
    with pytest.raises(Exception, match="401"), bad.realtime.connect(extra_query={"intent": "transcription"}) as conn:
        conn.recv()


def test_realtime_commit_under_server_vad_finalizes(sdk: Any, client: Client) -> None:
    """A commit while someone is still speaking ends the turn now (the daemon's finalize)."""
    import base64

    if "finalize" not in {c["name"] for c in client.describe()["commands"]}:
        pytest.skip("this daemon has no finalize command (issue 27 adds it)")
    audio = _pcm24k(pcm16(synth(SENTENCES[6]))[:-9600])  # its trailing pause cut: no endpoint without the commit
    with sdk.realtime.connect(extra_query={"intent": "transcription"}) as conn:
        conn.session.update(session={"type": "transcription", "audio": {"input": {
            "format": {"type": "audio/pcm", "rate": 24000}, "turn_detection": {"type": "server_vad"}}}})
        for i in range(0, len(audio), 4800):
            conn.input_audio_buffer.append(audio=base64.b64encode(audio[i:i + 4800]).decode())
        conn.input_audio_buffer.commit()
        events = []
        for event in conn:
            events.append(event)
            if event.type in ("conversation.item.input_audio_transcription.completed", "error"):
                break
    assert events[-1].type == "conversation.item.input_audio_transcription.completed", [e.type for e in events]
    assert wer(SENTENCES[6], events[-1].transcript) <= 0.35, events[-1].transcript
