"""Audio → one 256-dimensional voice print (L2-normalised), with the community-1 network.

The network's input is what pyannote's ``BaseWeSpeakerResNet.compute_fbank`` makes: Kaldi log
mel filterbanks (80 bins, 25 ms Hamming windows every 10 ms, no dither) of the waveform scaled
to 16-bit range, minus their mean over time. ``kaldi-native-fbank`` computes exactly Kaldi's.
"""

from __future__ import annotations

import numpy as np

from symbld.diarization import model

RATE = 16000
MIN_SECONDS = 0.5  # shorter audio gives prints too noisy to compare
MAX_SECONDS = 10.0  # cost is linear in length (≈50 ms per second of audio on one core); 10 s says enough


def fbank(audio: np.ndarray) -> np.ndarray:
    """(frames, 80) mean-normalised log mel filterbank of float audio in [-1, 1] at 16 kHz."""
    import kaldi_native_fbank as knf

    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = RATE
    opts.frame_opts.frame_length_ms = 25.0
    opts.frame_opts.frame_shift_ms = 10.0
    opts.frame_opts.dither = 0.0
    opts.frame_opts.window_type = "hamming"
    opts.frame_opts.snip_edges = True
    opts.mel_opts.num_bins = 80
    opts.use_energy = False
    computer = knf.OnlineFbank(opts)
    computer.accept_waveform(RATE, (audio.astype(np.float32) * 32768.0).tolist())
    computer.input_finished()
    n = computer.num_frames_ready
    if n == 0:
        return np.zeros((0, 80), dtype=np.float32)
    feats: np.ndarray = np.stack([computer.get_frame(i) for i in range(n)]).astype(np.float32)
    centred: np.ndarray = feats - feats.mean(axis=0, keepdims=True)
    return centred


def embed(audio: np.ndarray) -> np.ndarray | None:
    """The voice print of ``audio`` (float32 16 kHz mono), or None when it is too short to tell.
    Longer audio is cut to its middle ``MAX_SECONDS``."""
    if len(audio) < MIN_SECONDS * RATE:
        return None
    cap = int(MAX_SECONDS * RATE)
    if len(audio) > cap:
        start = (len(audio) - cap) // 2
        audio = audio[start : start + cap]
    feats = fbank(audio)[None]
    weights = np.ones(feats.shape[:2], dtype=np.float32)
    out = model.embedding_session().run(["embedding"], {"fbank": feats, "weights": weights})[0][0]
    out = np.asarray(out, dtype=np.float32)
    norm = float(np.linalg.norm(out))
    return out / norm if norm > 0 and np.isfinite(norm) else None
