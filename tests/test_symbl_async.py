"""Symbl's Async API through the official ``symbl`` SDK: ``Audio.process_file`` and ``process_url``
against symbld, then the Conversation API and ``symblctl conversations`` read the result.

The SDK (test-only, installed with --no-deps as for test_symbl_sdk) waits for a job by polling
``GET /v1/job/{jobId}`` every 30 s; the test shortens that constant the way point_symbl_sdk
redirects its URL constants, and changes nothing else.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import serving_symbl
from speechgen import SENTENCES, pcm16, silence, synth, wav_file, wer
from test_symbl_sdk import CREDENTIALS, point_symbl_sdk

from symblctl.client import Client
from symbld.gateways.symbl.server import ServerHandle

pytestmark = [pytest.mark.timeout(180), pytest.mark.speech]


@pytest.fixture(scope="module")
def server(daemon_endpoints: tuple[str, str]) -> Iterator[ServerHandle]:
    with serving_symbl(daemon_endpoints, dict(CREDENTIALS)) as handle:
        yield handle


@pytest.fixture(scope="module")
def symbl(server: ServerHandle) -> Any:
    sdk = point_symbl_sdk(f"http://127.0.0.1:{server.port}")
    sys.modules["symbl.Conversations"].Conversation._Conversation__INTERVAL_TIME_IN_SECONDS = 0.2  # its poll interval
    return sdk


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return wav_file(tmp_path_factory.mktemp("async") / "meeting.wav",
                    pcm16(synth(SENTENCES[0])) + silence(0.8) + pcm16(synth(SENTENCES[6])) + silence(0.5))


def test_process_file_then_conversation_api(symbl: Any, recording: Path, client: Client) -> None:
    conversation = symbl.Audio.process_file(
        file_path=str(recording), credentials=dict(CREDENTIALS), content_type="audio/wav", wait=True,
        parameters={"name": "Async meeting", "languageCode": "en-US", "enableSpeakerDiarization": False})
    assert conversation.get_job_status() == "completed"
    texts = [m.text for m in conversation.get_messages().messages]
    assert min(wer(SENTENCES[0], t) for t in texts) <= 0.35, texts
    assert min(wer(SENTENCES[6], t) for t in texts) <= 0.35, texts
    questions = [q.text for q in conversation.get_questions().questions]
    assert questions, texts  # both sentences are questions; the analyzer ran as for a stream
    meta = conversation.get_conversation()
    assert meta.name == "Async meeting"
    # One more connection of the daemon: listed with its conversation.
    listed = client.request("conversations")
    ours = conversation.get_conversation_id()
    assert [c for c in listed.get("conversations", []) if c.get("conversationId") == ours], listed


def test_process_url_file_scheme(symbl: Any, server: ServerHandle) -> None:
    conversation = symbl.Audio.process_url(payload={"url": synth(SENTENCES[6]).as_uri()},
                                           credentials=dict(CREDENTIALS), wait=True)
    assert conversation.get_job_status() == "completed"
    texts = [m.text for m in conversation.get_messages().messages]
    assert wer(SENTENCES[6], " ".join(texts)) <= 0.35, texts


def _token(port: int) -> str:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/oauth2/token:generate", method="POST",
                                 data=json.dumps({"type": "application", "appId": CREDENTIALS["app_id"],
                                                  "appSecret": CREDENTIALS["app_secret"]}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)["accessToken"]


def _call(port: int, path: str, body: bytes | None, ctype: str, token: str) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST" if body is not None
                                 else "GET", headers={"Content-Type": ctype, "x-api-key": token})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def test_hostile_requests_get_symbl_errors(server: ServerHandle, client: Client) -> None:
    port, token = server.port, _token(server.port)

    def status(reply: tuple[int, dict[str, Any]]) -> int:
        assert set(reply[1]) == {"message", "details"}, reply
        return reply[0]

    assert status(_call(port, "/v1/process/audio", b"RIFF", "audio/wav", "not-a-token")) == 401
    assert status(_call(port, "/v1/process/audio", b"not audio", "audio/wav", token)) == 400
    assert status(_call(port, "/v1/process/audio", b'{"a": 1}', "application/json", token)) == 415
    assert status(_call(port, "/v1/process/audio/url", b"{bad", "application/json", token)) == 400
    assert status(_call(port, "/v1/process/audio/url", b'{"url": "http://10.0.0.1/a.wav"}', "application/json",
                        token)) == 400
    assert status(_call(port, "/v1/process/audio/url", b'{"url": "file:///nonexistent.wav"}', "application/json",
                        token)) == 400
    assert status(_call(port, "/v1/job/no-such-job", None, "application/json", token)) == 404
    assert client.ping()
