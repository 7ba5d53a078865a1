"""One telephony call's state, in one object owned by the call, changed only through its transitions.

``TelephonySource`` owns a ``CallState``; the call's worker thread (``calls._CallRun``) moves it
(``dialling`` → ``ringing`` → ``talking`` → ``ended``/``failed``) and ``describe`` reads it from any
thread: each transition assigns plain fields, so a reader sees a value before or after it, never a torn one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from symbld.audio.telephony.rtp import RtpSender
from symbld.audio.telephony.sip import SipCall


@dataclass
class CallState:
    """Where one call is (``phase``), what the far end last said, and what the call has done."""

    phase: str = "idle"  # idle, dialling, ringing, talking, ended, failed
    sip_code: int | None = None
    reason: str = ""
    codec: str | None = None  # once talking: PCMU or PCMA
    sender: RtpSender | None = None  # once talking: our RTP (silence, DTMF) to the far end
    sip: SipCall | None = None  # the call's signalling, once dialling
    times: dict[str, float] = field(default_factory=dict)  # invite, answered, first_frame (monotonic)
    ignored_rtp: int = 0  # packets before the answer or from an address not allowed

    # ---------------------------------------------------------------- transitions (the worker thread)

    def dialling(self, now: float) -> None:
        self.times["invite"] = now
        self.phase = "dialling"

    def ringing(self) -> None:
        if self.phase in ("idle", "dialling"):
            self.phase = "ringing"

    def answer_received(self, code: int, reason: str) -> None:
        """The far end's 200 OK, before we know whether its media can be used."""
        self.sip_code, self.reason = code, reason

    def talking(self, codec: str, sender: RtpSender, now: float) -> None:
        self.times["answered"] = now
        self.phase = "talking"
        self.codec = codec
        self.sender = sender

    def failed(self, code: int, reason: str) -> None:
        self.phase = "failed"
        self.sip_code, self.reason = code, reason

    def ended(self, code: int | None, reason: str) -> None:
        self.phase = "ended"
        if code is not None:
            self.sip_code = code
        self.reason = reason

    def loop_done(self) -> None:
        """The worker is gone: a call that did not fail has ended."""
        if self.phase != "failed":
            self.phase = "ended"

    def first_frame(self, now: float) -> None:
        self.times.setdefault("first_frame", now)

    # ---------------------------------------------------------------- reading it

    def unanswered(self) -> bool:
        return self.phase in ("dialling", "ringing")

    def describe(self) -> dict[str, Any]:
        """The call's part of the source's ``describe``."""
        s = self.sender
        out: dict[str, Any] = {
            "state": self.phase,
            "sipCode": self.sip_code,
            "reason": self.reason,
            "codec": self.codec,
            "rtpSent": s.sent if s else 0,
            "dtmfSent": s.dtmf_sent if s else "",
            "sipRetransmits": self.sip.retransmits if self.sip else 0,
        }
        t = self.times
        if "invite" in t and "answered" in t:
            out["setupMs"] = round((t["answered"] - t["invite"]) * 1000, 1)
        if "invite" in t and "first_frame" in t:
            out["firstAudioMs"] = round((t["first_frame"] - t["invite"]) * 1000, 1)
        return out
