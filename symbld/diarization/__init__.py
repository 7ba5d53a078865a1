"""Speaker diarization on one mixed channel: who said each final (``docs/diarization.md``).

The speaker-embedding network is pyannote's community-1 (CC BY 4.0), taken from inside
``moonshine-voice==0.1.0`` (``model.py``), run on onnxruntime over Kaldi fbank features
(``embedder.py``); each final utterance gets one embedding, clustered online by cosine
(``clusters.py``); ``labeller.py`` puts the labels on a connection's events and publishes
``speaker_revision`` when clusters merge, a label is named, or a live final's prints come after it
went out (it waits 100 ms at most, then is published with a provisional label). Everything here needs
the ``[diarize]`` extra, imported only when a connection diarizes; ``available()`` tells without
importing it.
"""

from __future__ import annotations

import importlib.util

EXTRA = "diarize"
MODEL = "pyannote/speaker-diarization-community-1 embedding (WeSpeaker ResNet34, via moonshine-voice==0.1.0)"
_NEEDS = ("moonshine_voice", "elftools", "kaldi_native_fbank", "onnxruntime")


def missing() -> list[str]:
    """The modules of the extra that are not installed (empty: diarization can run)."""
    return [m for m in _NEEDS if importlib.util.find_spec(m) is None]


def available() -> bool:
    return not missing()


def describe() -> dict[str, object]:
    """What ``describe`` says about diarization."""
    gone = missing()
    out: dict[str, object] = {"available": not gone, "model": MODEL, "extra": EXTRA}
    if gone:
        out["reason"] = f"install symbld[{EXTRA}] (missing: {', '.join(gone)})"
    return out
