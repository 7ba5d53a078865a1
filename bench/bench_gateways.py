"""The batch APIs' cost over the daemon's own file connection, on the same real recorded speech.

    python bench/bench_gateways.py              # every clip of the real-speech set, once each way
    python bench/bench_gateways.py --clips 5

A real ``python -m symbld`` serves its OpenAI and Deepgram APIs on the ``serve_symbl`` listener.
Each clip of tests/realspeech.py (recordings of people from Debian's pocketsphinx-testdata, clean
copy; nothing synthesised) is transcribed, in the same run and one after another:

- **baseline**: a ``file`` connection (``realtime: false``) through the control socket, read to
  ``conversation_completed``;
- **openai**: ``POST /v1/audio/transcriptions`` (``openai`` SDK, json);
- **deepgram**: ``POST /v1/listen`` (``deepgram-sdk``, bytes).

Per way: total wall seconds, the ratio to the baseline, and the WER of the text against the
transcripts (the same engine runs all three, so WER should match the baseline's). Prints figures
and ratios; asserts nothing. On a shared machine every figure includes its load.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from conftest import DaemonProc, events_until_complete, messages  # noqa: E402
from realspeech import RATE, available, clips  # noqa: E402
from speechgen import wer  # noqa: E402

KEY = "bench-key-0123456789"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=0, help="only the first N clips (0: all)")
    args = parser.parse_args()
    if not available():
        print("pocketsphinx-testdata is not installed (scripts/install-deps.sh)")
        return
    import openai
    from deepgram import DeepgramClient, DeepgramClientEnvironment

    chosen = clips()[: args.clips or None]
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        wavs = []
        for clip in chosen:
            path = root / f"{clip.name}.wav"
            sf.write(path, clip.audio, RATE, subtype="PCM_16")
            wavs.append(path)
        config = f'serve_symbl = "127.0.0.1:{port}"\n[openai_api]\napi_keys = ["{KEY}"]\n' \
                 f'[deepgram_api]\napi_keys = ["{KEY}"]\n'
        d = DaemonProc(root / "d", config=config).start()
        base = f"http://127.0.0.1:{port}"
        oa = openai.OpenAI(base_url=base + "/v1", api_key=KEY, max_retries=0, timeout=300)
        dg = DeepgramClient(api_key=KEY, environment=DeepgramClientEnvironment(
            base=base, production=base.replace("http", "ws"), agent=base, agent_rest=base))
        texts: dict[str, list[str]] = {"baseline": [], "openai": [], "deepgram": []}
        seconds = dict.fromkeys(texts, 0.0)
        try:
            with d.client(timeout=30) as c:
                for wav in wavs:
                    t = time.perf_counter()
                    cid = c.start(source={"type": "file", "path": str(wav), "realtime": False})["connectionId"]
                    texts["baseline"].append(" ".join(messages(events_until_complete(c, cid, timeout=300))))
                    seconds["baseline"] += time.perf_counter() - t
                    t = time.perf_counter()
                    with wav.open("rb") as f:
                        texts["openai"].append(oa.audio.transcriptions.create(model="whisper-1", file=f).text)
                    seconds["openai"] += time.perf_counter() - t
                    t = time.perf_counter()
                    reply = dg.listen.v1.media.transcribe_file(request=wav.read_bytes(), model="nova-3",
                                                               punctuate=True)
                    texts["deepgram"].append(reply.results.channels[0].alternatives[0].transcript)
                    seconds["deepgram"] += time.perf_counter() - t
        finally:
            d.stop()
    audio = sum(len(clip.audio) for clip in chosen) / RATE
    refs = [clip.text for clip in chosen]
    print(f"{len(chosen)} clips, {audio:.1f} s of real speech; load average {os.getloadavg()[0]:.2f}")
    for way in texts:
        ratio = seconds[way] / seconds["baseline"]
        print(f"  {way:9s} {seconds[way]:7.2f} s  x{ratio:.2f} of baseline  RTF {seconds[way] / audio:.3f}  "
              f"WER {wer(refs, texts[way]):.3f}")


if __name__ == "__main__":
    main()
