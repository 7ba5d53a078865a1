"""Flow control for a live source that cannot wait (issue 13): the microphone, through a real
PulseAudio server, with a backlog bound so small that every utterance puts the engine over it.
The frames then wait in the disk spool and are fed back; every word still becomes a final."""

from __future__ import annotations

import test_mic_daemon
from conftest import DaemonProc, messages, wait_for_events
from speechgen import SENTENCES, synth, wer
from virtmic import VirtMic

# The private PulseAudio server and the skip when its tools are missing: the mic tests' own.
mic = test_mic_daemon.mic
pytestmark = test_mic_daemon.pytestmark


def test_live_mic_spools_when_behind_and_keeps_every_word(mic: VirtMic, tmp_path_factory) -> None:
    env = {k: v for k, v in mic.env.items() if k in ("XDG_RUNTIME_DIR", "PULSE_RUNTIME_PATH", "PULSE_SERVER",
                                                    "XDG_CONFIG_HOME")}
    d = DaemonProc(tmp_path_factory.mktemp("symbld-live"), env=env, config="max_engine_backlog_s = 0.4\n").start()
    said = SENTENCES[4:7]
    try:
        with d.client(timeout=30) as c:
            cid = c.start(source={"type": "mic"})["connectionId"]
            for s in said:
                mic.play(synth(s))  # back to back, in real time: the engine is over the bound at each final
            wait_for_events(c, cid, lambda ev: len(messages(ev)) >= len(said), 120, "a final per sentence")
            stopped = c.stop(cid)
            events = c.all_history(cid)
    finally:
        assert d.stop() == 0
    steps = [e["data"].get("step") for e in events if e["type"] == "engine_backlog"]
    print(f"\nflow steps {steps}; flow {stopped['flow']}")
    assert "spooling" in steps and stopped["flow"]["spooledSeconds"] > 0, steps
    assert stopped["flow"]["audioSecondsDropped"] == 0 and stopped["flow"]["spoolFailures"] == 0
    assert wer(said, messages(events)) <= 0.25, messages(events)
    assert not list((d.state_dir / "spool").glob("*.live.pcm")), "the spool file outlived its connection"
