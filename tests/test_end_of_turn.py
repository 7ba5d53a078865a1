"""Semantic end of turn (Smart Turn v3.2 from the extra symbld[turn]) and the turn events, on the real daemon.

Audio is paced as a microphone delivers it (20 ms chunks at their capture time): a stream fed ahead of real
time keeps the fixed endpoint by design, so the turn model only runs on live audio.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import DaemonProc, events_until_complete, messages, wait_for_events
from speechgen import SENTENCES, pcm16, synth, wer

from symblctl.client import Client, DaemonError
from symbld.engines.base import EngineError
from symbld.engines.local import LocalEngine, turn

pytestmark = [pytest.mark.speech, pytest.mark.timeout(180)]
needs_model = pytest.mark.skipif(turn.model_path() is None, reason=f"the turn model is not installed ({turn.EXTRA})")

CHUNK = 640  # 20 ms of 16 kHz s16le


def live(client: Client, cid: str, pcm: bytes) -> None:
    """Send ``pcm`` at the pace a microphone captures it (pacing the audio, not waiting for a condition)."""
    t0 = time.monotonic()
    for k, i in enumerate(range(0, len(pcm), CHUNK)):
        due = t0 + k * CHUNK / 32000
        if (ahead := due - time.monotonic()) > 0:
            time.sleep(ahead)
        client.send_audio(cid, pcm[i : i + CHUNK])


def cut_speech(text: str) -> bytes:
    x = np.frombuffer(pcm16(synth(text)), "<i2")
    loud = np.flatnonzero(np.abs(x.astype(np.int32)) > 500)
    return x[: int(loud[-1]) + 1].tobytes()


def of_type(events: list[dict], event_type: str) -> list[dict]:
    return [e for e in events if e["type"] == event_type]


@needs_model
def test_semantic_end_of_turn_precedes_each_final(daemon: DaemonProc, client: Client) -> None:
    assert client.describe()["engines"]["local"]["endOfTurn"]["semanticAvailable"] is True
    cid = client.start(source={"type": "push"}, endOfTurn="semantic")["connectionId"]
    said = SENTENCES[1:3]
    for s in said:
        live(client, cid, pcm16(synth(s)) + bytes(int(2 * 16000 * 1.3)))
    client.end_audio(cid)
    events = events_until_complete(client, cid)
    assert wer(said, messages(events)) <= 0.2, messages(events)
    finals = [e for e in of_type(events, "transcript_response") if e["data"]["isFinal"] and e["data"]["punctuated"]
              ["transcript"]]
    turns = {e["data"]["utteranceId"]: e for e in of_type(events, "end_of_turn")}
    assert len(finals) == len(said)
    for f in finals:
        ended = turns[f["data"]["id"]]  # every final's utterance ended its turn ...
        assert ended["seq"] < f["seq"]  # ... and that was published before the final
        assert ended["data"]["reason"] in ("model", "silence")
        # the model judged the pause (an answer that came after the silence limit still shows)
        assert ended["data"]["silenceMs"] <= 1100


@needs_model
def test_fixed_endpoint_publishes_no_turn_events(daemon: DaemonProc, client: Client) -> None:
    cid = client.start(source={"type": "push"}, endOfTurn="fixed")["connectionId"]
    live(client, cid, pcm16(synth(SENTENCES[3])) + bytes(int(2 * 16000 * 1.0)))
    client.end_audio(cid)
    events = events_until_complete(client, cid)
    assert wer(SENTENCES[3], messages(events)) <= 0.2, messages(events)
    assert not of_type(events, "end_of_turn") and not of_type(events, "turn_resumed")


@needs_model
def test_finalize_ends_the_turn_and_speech_right_after_resumes_it(daemon: DaemonProc, client: Client) -> None:
    cid = client.start(source={"type": "push"}, endOfTurn="semantic")["connectionId"]
    client.send_audio(cid, cut_speech(SENTENCES[1]))
    assert client.finalize(cid)["utteranceClosed"] is True
    events = wait_for_events(client, cid, lambda ev: bool(of_type(ev, "message_response")), what="the final")
    (ended,) = of_type(events, "end_of_turn")
    assert ended["data"]["reason"] == "finalize"
    client.send_audio(cid, pcm16(synth(SENTENCES[2])))  # its speech starts 0.3 s after the finalized audio ends
    events = wait_for_events(client, cid, lambda ev: bool(of_type(ev, "turn_resumed")), what="turn_resumed")
    (resumed,) = of_type(events, "turn_resumed")
    assert resumed["data"]["gapMs"] < 1000
    client.stop(cid)


def test_a_start_option_that_is_not_a_mode_is_refused(client: Client) -> None:
    with pytest.raises(DaemonError) as e:
        client.start(source={"type": "push"}, endOfTurn="psychic")
    assert e.value.code == "bad_request" and "endOfTurn" in e.value.message


def test_semantic_without_the_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # pipecat-ai is installed in the shared test environment: hide it from the one lookup the engine makes.
    monkeypatch.setattr(turn, "model_path", lambda: None)
    with pytest.raises(EngineError) as e:
        LocalEngine({"end_of_turn": "semantic"}).load()
    assert e.value.code == "bad_request" and turn.EXTRA in e.value.message
    engine = LocalEngine({"end_of_turn": "auto"})
    try:
        engine.load()
        info = engine.describe()["endOfTurn"]
        assert info["default"] == "fixed" and info["semanticAvailable"] is False and turn.EXTRA in info["install"]
    finally:
        engine.close()


@needs_model
def test_a_model_file_that_is_not_the_pinned_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "smart-turn.onnx"
    shutil.copy(turn.model_path(), path)
    with path.open("r+b") as f:
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 0xFF]))
    with pytest.raises(EngineError) as e:
        turn.TurnModel(path)
    assert "SHA-256" in e.value.message


@needs_model
def test_the_turn_model_hears_a_finished_sentence_from_one_cut_mid_way() -> None:
    model = turn.load_model()
    assert model is not None
    x = np.frombuffer(cut_speech(SENTENCES[1]), "<i2").astype(np.float32) / 32768
    # Measured: 0.96 for the whole sentence, 0.17 for its first half ("I will follow up wi-").
    assert model.probability(np.concatenate([x, np.zeros(1600, np.float32)])) > 0.8
    assert model.probability(np.concatenate([x[: len(x) // 2], np.zeros(1600, np.float32)])) < 0.4


@needs_model
@pytest.mark.parametrize("option, turn_events", [(["--end-of-turn", "semantic"], 1), ([], 0)])
def test_symblctl_start_end_of_turn(daemon: DaemonProc, client: Client, option: list[str], turn_events: int) -> None:
    out = subprocess.run([sys.executable, "-m", "symblctl.cli", "--control", daemon.control, "--events",
                          daemon.events, "--json", "start", "--push", *option], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    cid = json.loads(out.stdout.splitlines()[0])["connectionId"]
    client.send_audio(cid, cut_speech(SENTENCES[3]))
    client.finalize(cid)  # an end_of_turn (reason finalize) only on a connection with semantic end of turn
    events = wait_for_events(client, cid, lambda ev: bool(of_type(ev, "message_response")), what="the final")
    assert len(of_type(events, "end_of_turn")) == turn_events
    client.stop(cid)
