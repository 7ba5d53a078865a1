"""RTP media for a telephone call: parse, reorder, decode G.711, resample, send silence and DTMF.

Everything here is pure computation on bytes and numpy arrays plus one ``sendto`` in
``RtpSender``; the call loop in ``telephony.py`` owns the sockets and the clock.

- ``parse_rtp`` handles CSRC lists, header extensions and padding (RFC 3550 §5.1).
- ``JitterBuffer`` holds a few packets (default 80 ms) to put them back in sequence order,
  drops late duplicates, and fills gaps with silence measured by RTP timestamp, so the
  audio that comes out keeps the call's timing even when packets are lost.
- G.711 µ-law/A-law are decoded with the 256-entry tables of ``symbld.audio.g711`` (shared with the
  Symbl server's MULAW client audio).
- ``PcmFramer`` resamples 8 kHz to the engine's 16 kHz with ``soxr`` (streaming, so no
  clicks at packet boundaries) and cuts 20 ms frames.
- ``RtpSender`` sends a 20 ms packet of G.711 silence on every tick, so NATs, gateways and
  PBXes that hang up on one-way or absent media keep the call up, and sends RFC 4733
  telephone-event packets for DTMF digits in place of the silence.
"""

from __future__ import annotations

import random
import socket
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import soxr
import structlog

from symbld.audio import g711
from symbld.audio.base import FRAME_BYTES, SAMPLE_RATE

log = structlog.get_logger(__name__)

PT_PCMU = 0
PT_PCMA = 8
G711_RATE = 8000
PACKET_MS = 20
SAMPLES_PER_PACKET = G711_RATE * PACKET_MS // 1000  # 160

# The byte that encodes linear 0 in each law: what a silent packet carries.
SILENCE_BYTE = {PT_PCMU: 0xFF, PT_PCMA: 0xD5}
CODEC_NAMES = {PT_PCMU: "PCMU", PT_PCMA: "PCMA"}

# RFC 4733 §3.2 event codes for the DTMF keys.
DTMF_EVENTS = {**{str(d): d for d in range(10)}, "*": 10, "#": 11, "A": 12, "B": 13, "C": 14, "D": 15}


DECODE_TABLES = {PT_PCMU: g711.ULAW_TO_PCM, PT_PCMA: g711.ALAW_TO_PCM}  # symbld.audio.g711


def decode_g711(payload: bytes, payload_type: int) -> np.ndarray:
    """G.711 bytes to int16 samples at 8 kHz (one table lookup per byte)."""
    return DECODE_TABLES[payload_type][np.frombuffer(payload, dtype=np.uint8)]


@dataclass(frozen=True)
class RtpPacket:
    payload_type: int
    marker: bool
    seq: int
    timestamp: int
    ssrc: int
    payload: bytes


def parse_rtp(data: bytes) -> RtpPacket | None:
    """Parse one RTP datagram; None for anything that is not RTP version 2 or is truncated."""
    if len(data) < 12 or data[0] >> 6 != 2:
        return None
    cc = data[0] & 0x0F
    off = 12 + 4 * cc
    if data[0] & 0x10:  # header extension: 16-bit profile, 16-bit length in 32-bit words
        if len(data) < off + 4:
            return None
        off += 4 + 4 * struct.unpack_from("!H", data, off + 2)[0]
    end = len(data)
    if data[0] & 0x20:  # padding: the last byte says how many bytes to drop
        end -= data[-1]
    if end < off:
        return None
    seq, ts, ssrc = struct.unpack_from("!HII", data, 2)
    return RtpPacket(data[1] & 0x7F, bool(data[1] & 0x80), seq, ts, ssrc, data[off:end])


class JitterBuffer:
    """Reorder packets by sequence number and emit 8 kHz PCM in order, gaps filled with silence.

    A packet is held until either more than ``depth`` packets wait behind it or it has waited
    ``depth_ms``; a packet that arrives after its slot was played out is dropped as late. Gaps
    are measured by RTP timestamp (not by sequence number) so the output keeps real time also
    across silence suppression; a gap longer than ``max_gap_ms`` (a new SSRC, a timestamp jump)
    is not filled.
    """

    def __init__(self, depth_ms: int = 80, max_gap_ms: int = 1000) -> None:
        self.depth_s = depth_ms / 1000
        self.depth = max(1, depth_ms // PACKET_MS)
        self.max_gap = G711_RATE * max_gap_ms // 1000
        self._held: dict[int, tuple[float, int, np.ndarray]] = {}  # ext seq -> (arrival, ts, pcm)
        self._highest: int | None = None  # highest extended sequence number seen
        self._next_seq: int | None = None  # next extended sequence number to play out
        self._next_ts: int | None = None  # RTP timestamp right after the last played sample
        self._ssrc: int | None = None
        self.received = 0
        self.lost = 0
        self.reordered = 0
        self.late = 0
        self.duplicates = 0
        self.filled_samples = 0

    def _extend(self, seq: int) -> int:
        if self._highest is None:
            return seq
        delta = (seq - self._highest) & 0xFFFF
        return self._highest + delta if delta < 0x8000 else self._highest - (0x10000 - delta)

    def push(self, pkt: RtpPacket, pcm: np.ndarray, now: float) -> None:
        if self._ssrc is not None and pkt.ssrc != self._ssrc:
            # A new stream (far end switched media source): play out the old one and restart.
            self._reset_stream_keep_held()
        self._ssrc = pkt.ssrc
        ext = self._extend(pkt.seq)
        if ext in self._held or (self._next_seq is not None and ext < self._next_seq):
            if ext in self._held:
                self.duplicates += 1
            else:
                self.late += 1
            return
        self.received += 1
        if self._highest is None or ext > self._highest:
            self._highest = ext
        else:
            self.reordered += 1
        self._held[ext] = (now, pkt.timestamp, pcm)

    def _reset_stream_keep_held(self) -> None:
        # Sequence numbers of the new SSRC are unrelated to the old ones.
        self._highest = None
        self._next_seq = None
        self._next_ts = None

    def pop_ready(self, now: float) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        while self._held:
            first = min(self._held)
            arrived = self._held[first][0]
            if len(self._held) <= self.depth and now - arrived < self.depth_s:
                break
            out.extend(self._play(first))
        return out

    def flush(self) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        while self._held:
            out.extend(self._play(min(self._held)))
        return out

    def _play(self, ext: int) -> list[np.ndarray]:
        _, ts, pcm = self._held.pop(ext)
        out: list[np.ndarray] = []
        if self._next_seq is not None and ext > self._next_seq:
            self.lost += ext - self._next_seq
        if self._next_ts is not None:
            gap = (ts - self._next_ts) & 0xFFFFFFFF
            if 0 < gap <= self.max_gap:
                out.append(np.zeros(gap, dtype=np.int16))
                self.filled_samples += gap
        out.append(pcm)
        self._next_seq = ext + 1
        self._next_ts = (ts + len(pcm)) & 0xFFFFFFFF
        return out


class PcmFramer:
    """8 kHz int16 chunks in, 16 kHz s16le 20 ms frames out (streaming soxr resampler)."""

    def __init__(self, in_rate: int = G711_RATE, out_rate: int = SAMPLE_RATE) -> None:
        self._resampler = soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality="HQ")
        self._pending = bytearray()

    def push(self, chunks: Iterable[np.ndarray], last: bool = False) -> list[bytes]:
        for chunk in chunks:
            self._pending += self._resampler.resample_chunk(chunk, last=False).tobytes()
        if last:
            self._pending += self._resampler.resample_chunk(np.zeros(0, dtype=np.int16), last=True).tobytes()
        frames = []
        while len(self._pending) >= FRAME_BYTES:
            frames.append(bytes(self._pending[:FRAME_BYTES]))
            del self._pending[:FRAME_BYTES]
        if last and self._pending:
            frames.append(bytes(self._pending))
            self._pending.clear()
        return frames


class RtpSender:
    """Send one 20 ms RTP packet per tick: G.711 silence, or RFC 4733 DTMF events when queued.

    ``tick(now)`` is called often by the call loop; it sends as many packets as are due by the
    wall clock (at most a few at once after a stall, never a burst of seconds).
    """

    DIGIT_MS = 100  # tone length per digit
    GAP_MS = 80  # silence between digits
    PAUSE_MS = 500  # what a ',' in the digit string stands for
    END_PACKETS = 3  # RFC 4733 §2.5.1.4: the end packet is sent three times

    def __init__(self, sock: socket.socket, payload_type: int, dtmf_payload_type: int | None) -> None:
        self._sock = sock
        self._addr: tuple[str, int] | None = None
        self.payload_type = payload_type
        self.dtmf_payload_type = dtmf_payload_type
        self._seq = random.getrandbits(16)
        self._ts = random.getrandbits(32)
        self._ssrc = random.getrandbits(32)
        self._next_send: float | None = None
        self._silence = bytes([SILENCE_BYTE[payload_type]]) * SAMPLES_PER_PACKET
        self._plan: list[tuple[str, int, int]] = []  # ("tone", event, packets) | ("quiet", 0, packets)
        self._event_start_ts = 0
        self._event_packets_sent = 0
        self.sent = 0
        self.dtmf_sent = ""

    def set_destination(self, addr: tuple[str, int] | None) -> None:
        """Where to send; None pauses sending (call on hold with a 0.0.0.0 address)."""
        self._addr = addr

    def queue_dtmf(self, digits: str) -> None:
        for d in digits.upper():
            if d == ",":
                self._plan.append(("quiet", 0, self.PAUSE_MS // PACKET_MS))
            else:
                self._plan.append(("tone", DTMF_EVENTS[d], self.DIGIT_MS // PACKET_MS))
                self._plan.append(("quiet", 0, self.GAP_MS // PACKET_MS))

    @property
    def dtmf_pending(self) -> bool:
        return bool(self._plan)

    def tick(self, now: float) -> None:
        if self._next_send is None:
            self._next_send = now
        if now - self._next_send > 0.2:  # the loop stalled: skip ahead rather than burst
            self._next_send = now
        while now >= self._next_send:
            self._send_one()
            self._next_send += PACKET_MS / 1000

    def next_due(self) -> float:
        return self._next_send if self._next_send is not None else time.monotonic()

    def _send_one(self) -> None:
        if self._plan and self._plan[0][0] == "tone" and self.dtmf_payload_type is not None:
            self._send_dtmf_packet()
            return
        if self._plan:  # a quiet slot, or a tone the far end cannot take (no telephone-event)
            kind, event, left = self._plan[0]
            self._plan[0] = (kind, event, left - 1)
            if left - 1 <= 0:
                self._plan.pop(0)
        self._emit(self.payload_type, False, self._ts, self._silence)
        self._ts = (self._ts + SAMPLES_PER_PACKET) & 0xFFFFFFFF

    def _send_dtmf_packet(self) -> None:
        assert self.dtmf_payload_type is not None
        _, event, tone_packets = self._plan[0]
        n = self._event_packets_sent
        if n == 0:
            self._event_start_ts = self._ts
        end = n >= tone_packets - 1
        duration = min(n + 1, tone_packets) * SAMPLES_PER_PACKET
        payload = struct.pack("!BBH", event, (0x80 if end else 0) | 10, duration)  # volume -10 dBm0
        self._emit(self.dtmf_payload_type, n == 0, self._event_start_ts, payload)
        self._event_packets_sent += 1
        if self._event_packets_sent >= tone_packets - 1 + self.END_PACKETS:
            self._plan.pop(0)
            self._event_packets_sent = 0
            key = next(k for k, v in DTMF_EVENTS.items() if v == event)
            self.dtmf_sent += key
            # The next audio packet starts where the event's duration ended.
            self._ts = (self._event_start_ts + duration) & 0xFFFFFFFF

    def _emit(self, pt: int, marker: bool, ts: int, payload: bytes) -> None:
        header = struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, self._seq, ts, self._ssrc)
        self._seq = (self._seq + 1) & 0xFFFF
        if self._addr is None:
            return
        try:
            self._sock.sendto(header + payload, self._addr)
            self.sent += 1
        except OSError as e:  # ICMP unreachable from an earlier packet, full buffer: not fatal
            log.debug("rtp_send_failed", error=str(e))


# ---------------------------------------------------------------- SDP (RFC 4566 / 3264), audio only


@dataclass(frozen=True)
class MediaDescription:
    """What the far end's SDP says about its audio stream."""

    address: str
    port: int
    payload_type: int | None  # the G.711 codec to use (first one we support in its list)
    dtmf_payload_type: int | None  # telephone-event/8000, if offered
    direction: str  # sendrecv | sendonly | recvonly | inactive

    @property
    def on_hold(self) -> bool:
        """The far end wants no audio from us (RFC 3264 §8.4: inactive/sendonly or a null address)."""
        null_address = self.address in ("0.0.0.0", "::") or self.port == 0
        return self.direction in ("sendonly", "inactive") or null_address


DTMF_PAYLOAD_TYPE = 101  # the dynamic payload type we offer for telephone-event


def build_sdp(address: str, port: int, session_id: int, version: int) -> str:
    """Our offer (and answer to re-INVITEs): PCMU, PCMA, telephone-event/8000, 20 ms packets."""
    ip = "IP6" if ":" in address else "IP4"
    return (
        f"v=0\r\no=symbld {session_id} {version} IN {ip} {address}\r\ns=symbld\r\n"
        f"c=IN {ip} {address}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP {PT_PCMU} {PT_PCMA} {DTMF_PAYLOAD_TYPE}\r\n"
        f"a=rtpmap:{PT_PCMU} PCMU/8000\r\na=rtpmap:{PT_PCMA} PCMA/8000\r\n"
        f"a=rtpmap:{DTMF_PAYLOAD_TYPE} telephone-event/8000\r\na=fmtp:{DTMF_PAYLOAD_TYPE} 0-16\r\n"
        f"a=ptime:{PACKET_MS}\r\na=sendrecv\r\n"
    )


def parse_sdp(body: str) -> MediaDescription | None:
    """The first audio stream of an SDP body, or None when there is none."""
    session_addr = ""
    media_addr = ""
    port = -1
    fmts: list[int] = []
    rtpmap: dict[int, str] = {}
    direction = "sendrecv"
    in_audio = False
    seen_audio = False
    for raw in body.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        kind, _, value = line.partition("=")
        if kind == "m":
            if seen_audio:
                break  # only the first audio stream matters
            parts = value.split()
            in_audio = len(parts) >= 3 and parts[0] == "audio" and parts[2].startswith("RTP/")
            if in_audio:
                seen_audio = True
                port = int(parts[1].split("/")[0])
                fmts = [int(f) for f in parts[3:] if f.isdigit()]
        elif kind == "c":
            addr = value.split()[-1].split("/")[0] if value.split() else ""
            if seen_audio and in_audio:
                media_addr = addr
            elif not seen_audio:
                session_addr = addr
        elif kind == "a" and (in_audio or not seen_audio):
            if value.startswith("rtpmap:"):
                pt, _, enc = value[7:].partition(" ")
                if pt.isdigit():
                    rtpmap[int(pt)] = enc.strip().lower()
            elif value in ("sendrecv", "sendonly", "recvonly", "inactive"):
                direction = value
    if not seen_audio or port < 0:
        return None
    # G.711 has static payload types (RFC 3551); a dynamic number for it is not supported.
    codec = next((pt for pt in fmts if pt in (PT_PCMU, PT_PCMA)), None)
    dtmf = next((pt for pt in fmts if rtpmap.get(pt, "").startswith("telephone-event/8000")), None)
    return MediaDescription(media_addr or session_addr, port, codec, dtmf, direction)
