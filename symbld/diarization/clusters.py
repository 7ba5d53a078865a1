"""Online speaker clustering by cosine similarity to running centroids, bounded in memory.

Each voice print joins the closest speaker whose centroid it resembles (cosine ≥ ``threshold``),
or starts a new speaker while there are fewer than ``max_speakers``. Memory is one summed vector
per speaker, whatever the length of the conversation. After each update, two speakers whose
centroids have come to resemble each other (≥ ``merge_threshold``) are one person: the later
label is merged into the earlier one and the merge is returned, for a ``speaker_revision``.

Thresholds (cosine of L2-normalised community-1 prints) from real voices in Debian's
pocketsphinx and codec2 test data: the same reader scores 0.60–0.81, different people -0.09–0.39
(docs/diarization.md); a print from under a second of speech is too noisy to found a speaker.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SURE_SECONDS = 1.0  # audio shorter than this may join a speaker but never starts or moves one


@dataclass
class Speaker:
    number: int  # 1, 2, ...: "Speaker N", never reused in a conversation
    total: np.ndarray  # sum of the prints that joined (the direction is the centroid)
    count: int = 0
    seconds: float = 0.0

    def centroid(self) -> np.ndarray:
        return self.total / max(float(np.linalg.norm(self.total)), 1e-9)


@dataclass(frozen=True)
class Merge:
    kept: int  # the speaker number that stays
    gone: int  # the number merged into it (never used again)


class OnlineClusters:
    def __init__(self, *, threshold: float = 0.5, merge_threshold: float = 0.6, max_speakers: int = 8,
                 min_speakers: int = 1) -> None:
        self.threshold = threshold
        self.merge_threshold = merge_threshold
        self.max_speakers = max_speakers
        self.min_speakers = min_speakers
        self.speakers: list[Speaker] = []
        self._next = 1

    def assign(self, vec: np.ndarray, seconds: float) -> tuple[int, list[Merge]]:
        """The speaker number for one print of ``seconds`` of audio, and any merges it caused."""
        best, score = self._closest(vec)
        sure = seconds >= SURE_SECONDS
        if best is None or (score < self.threshold and sure and len(self.speakers) < self.max_speakers):
            if best is not None and not sure:
                return best.number, []
            best = Speaker(self._next, np.zeros_like(vec))
            self._next += 1
            self.speakers.append(best)
        elif not sure:
            return best.number, []
        best.total = best.total + vec * seconds  # longer speech says more about a voice
        best.count += 1
        best.seconds += seconds
        return best.number, self._merges()

    def resembles(self, vec: np.ndarray) -> int | None:
        """The speaker a print resembles (cosine ≥ ``threshold``), changing nothing; None if no one."""
        best, score = self._closest(vec)
        return best.number if best is not None and score >= self.threshold else None

    def _closest(self, vec: np.ndarray) -> tuple[Speaker | None, float]:
        if not self.speakers:
            return None, -1.0
        scores = [float(s.centroid() @ vec) for s in self.speakers]
        i = int(np.argmax(scores))
        return self.speakers[i], scores[i]

    def _merges(self) -> list[Merge]:
        out: list[Merge] = []
        while len(self.speakers) > self.min_speakers:
            pair = self._closest_pair()
            if pair is None:
                break
            keep, gone = pair
            keep.total = keep.total + gone.total
            keep.count += gone.count
            keep.seconds += gone.seconds
            self.speakers.remove(gone)
            out.append(Merge(keep.number, gone.number))
        return out

    def _closest_pair(self) -> tuple[Speaker, Speaker] | None:
        best: tuple[Speaker, Speaker] | None = None
        top = self.merge_threshold
        for i, a in enumerate(self.speakers):
            for b in self.speakers[i + 1 :]:
                score = float(a.centroid() @ b.centroid())
                if score >= top:
                    top, best = score, (a, b)  # a is the older (lower number): it stays
        return best
