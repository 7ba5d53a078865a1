"""``TelephonySource``: dial a SIP URI (or a phone number through a gateway) and deliver the call's audio.

One call = one worker thread that owns two UDP sockets (SIP and RTP, bound to the local address
that routes to the far end, never 0.0.0.0 unless configured) and runs a select loop:
SIP messages go to ``SipCall``, RTP to the jitter buffer, decoded 16 kHz frames into a
bounded queue that ``frames()`` drains on the session's thread. The same loop sends 20 ms of
RTP silence (or RFC 4733 DTMF) to keep the far end from hanging up on absent media.

Events through ``ctx.emit`` (called from the call's worker thread):
``call_dialling`` {uri}                                   - the first INVITE went out
``call_ringing``  {sipCode, reason}                       - 180/181/182/183 from the far end
``call_answered`` {sipCode, reason, codec}                - 200 OK, media flowing
``call_held``     {held: bool}                            - a re-INVITE put the call on/off hold
``call_dtmf``     {digits}                                - the DTMF digits were sent
``call_ended``    {sipCode, reason, by: local|remote}     - BYE (either side) or CANCEL after close()
``call_failed``   {sipCode, reason}                       - 4xx/5xx/6xx, no answer, timeouts
"""

from __future__ import annotations

import contextlib
import ipaddress
import queue
import random
import re
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import structlog

from symblctl import protocol
from symbld.audio.base import SourceContext, SourceError
from symbld.audio.telephony.call_state import CallState
from symbld.audio.telephony.rtp import (
    CODEC_NAMES,
    DECODE_TABLES,
    JitterBuffer,
    MediaDescription,
    PcmFramer,
    RtpSender,
    build_sdp,
    decode_g711,
    parse_rtp,
    parse_sdp,
)
from symbld.audio.telephony.sip import SipCall, SipError, SipUri
from symbld.audio.telephony.table import TelephonyLimitsTable, TelephonyTable

log = structlog.get_logger(__name__)

# Error codes this source raises (``SourceError.code``); the control protocol maps them.
ERR_BAD_REQUEST = "bad_request"  # bad uri/number/dtmf, pstn without gateway, host not allowed
ERR_BUSY = "limit_exceeded"  # over the concurrent-call limit
ERR_CALL_FAILED = "call_failed"  # the call did not connect or was dropped (details carry sipCode)
ERR_ENGINE = "engine_error"  # local failure: no free RTP port, cannot bind

_PHONE_RE = re.compile(r"^\+?[0-9]{3,20}$")
_QUEUE_FRAMES = 3000  # 60 s of 20 ms frames: bounded so a stalled consumer cannot eat memory


@dataclass(frozen=True)
class TelephonyConfig:
    """The ``[telephony]`` settings a call reads: ``from_table`` of the declared table (``table.TelephonyTable``,
    where the keys, their defaults and ranges are: docs/telephony.md)."""

    gateway: str | None  # "host[:port]" or "sip:host[:port]"; needed for {"type": "pstn"}
    username: str | None  # digest credentials for 401/407 challenges
    password: str | None
    local_address: str | None  # bind SIP/RTP here; None: the address that routes to the peer
    sip_port: int  # 0: an ephemeral port per call
    rtp_port_range: tuple[int, int]
    allowed_hosts: tuple[str, ...]  # non-empty: only these may be dialled
    media_hosts: tuple[str, ...]  # RTP peers besides the SIP peer; "*": any
    jitter_ms: int
    sip_t1: float  # RFC 3261 T1 (RTT estimate): INVITE retransmits at T1, 2*T1...; timer B = 64*T1
    user_agent: str
    limits: TelephonyLimitsTable

    @classmethod
    def from_table(cls, t: TelephonyTable | None = None) -> TelephonyConfig:
        """The decoded table (its types and ranges hold; unknown keys were the config check's to refuse);
        None: every default."""
        t = t if t is not None else TelephonyTable()
        return cls(gateway=t.gateway, username=t.username, password=t.password, local_address=t.local_address,
                   sip_port=t.sip_port, rtp_port_range=t.port_range(), allowed_hosts=tuple(t.allowed_hosts),
                   media_hosts=tuple(t.media_hosts), jitter_ms=t.jitter_ms, sip_t1=t.sip_t1, user_agent=t.user_agent,
                   limits=t.merged_limits())


def _resolve(host: str, port: int) -> str:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as e:
        raise SourceError(ERR_BAD_REQUEST, f"cannot resolve SIP host {host!r}: {e}") from e
    # Prefer IPv4: our SDP and tests are IPv4-first, and a dual-stack host resolves both.
    infos.sort(key=lambda i: i[0] != socket.AF_INET)
    return str(infos[0][4][0])


def _local_address_for(peer_ip: str) -> str:
    """The local address the kernel would use to reach ``peer_ip`` (loopback for a loopback peer)."""
    family = socket.AF_INET6 if ":" in peer_ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.connect((peer_ip, 9))  # UDP connect sends nothing; it only picks a route
        return str(s.getsockname()[0])


@dataclass
class _Target:
    uri: SipUri
    peer: tuple[str, int]  # resolved address every SIP datagram goes to


def _target_from_spec(spec: protocol.Call, cfg: TelephonyConfig) -> _Target:
    """Where the declared call goes; what its declaration cannot say (a parseable URI, a number, the
    gateway, the allowed hosts) is a bad_request here, before anything is dialled."""
    if isinstance(spec, protocol.PstnSource):
        kind = "pstn"
        number = re.sub(r"[\s().-]", "", spec.phone_number)
        if not _PHONE_RE.match(number):
            raise SourceError(ERR_BAD_REQUEST, f"bad phoneNumber {spec.phone_number!r}")
        if not cfg.gateway:
            raise SourceError(ERR_BAD_REQUEST, "pstn calls need a SIP gateway: set telephony.gateway "
                              "(\"host[:port]\") in the daemon config")
        gw = cfg.gateway if cfg.gateway.startswith("sip:") else f"sip:{cfg.gateway}"
        try:
            g = SipUri.parse(gw)
        except SipError as e:
            raise SourceError(ERR_BAD_REQUEST, f"bad telephony.gateway {cfg.gateway!r}") from e
        uri = SipUri("sip", number, g.host, g.port, ";user=phone")
        gateway_host = g.host
    else:
        kind = "sip"
        text = spec.uri
        try:
            uri = SipUri.parse(text)
        except SipError as e:
            raise SourceError(ERR_BAD_REQUEST, f"bad SIP uri {text!r} (want sip:user@host[:port])") from e
        if uri.scheme != "sip":
            raise SourceError(ERR_BAD_REQUEST, "sips: (SIP over TLS) is not supported; use sip:")
        transport = (uri.param("transport") or "udp").lower()
        if transport != "udp":
            raise SourceError(ERR_BAD_REQUEST, f"transport={transport} is not supported; only UDP")
        gateway_host = None
    port = uri.port or 5060
    ip = _resolve(uri.host, port)
    if cfg.allowed_hosts and kind == "sip":
        allowed = set(cfg.allowed_hosts)
        if uri.host not in allowed and ip not in allowed and gateway_host not in allowed:
            raise SourceError(ERR_BAD_REQUEST, f"SIP host {uri.host} is not in telephony.allowed_hosts")
    return _Target(uri, (ip, port))


class TelephonySource:
    """An ``AudioSource`` that places one SIP call and yields its audio (16 kHz s16le, 20 ms frames)."""

    kind = "sip"
    _slots_lock: ClassVar[threading.Lock] = threading.Lock()
    _active_calls: ClassVar[int] = 0

    def __init__(self, spec: protocol.Call, ctx: SourceContext, cfg: TelephonyConfig) -> None:
        dtmf = spec.dtmf or ""  # its characters and length are the declaration's (protocol.Dtmf)
        self._target = _target_from_spec(spec, cfg)
        self._spec_kind = "pstn" if isinstance(spec, protocol.PstnSource) else "sip"
        self._ctx = ctx
        self._cfg = cfg
        self._dtmf = dtmf
        self._acquire_slot(cfg.limits.max_calls)
        self._slot_held = True
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=_QUEUE_FRAMES)
        self._error: SourceError | None = None
        self._closing = threading.Event()
        self._done = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._call = CallState()  # written by the call's worker thread only
        self._jitter = JitterBuffer(cfg.jitter_ms)

    # ---------------------------------------------------------------- call slots

    @classmethod
    def _acquire_slot(cls, max_calls: int) -> None:
        with cls._slots_lock:
            if cls._active_calls >= max_calls:
                raise SourceError(ERR_BUSY, f"too many concurrent calls (limit {max_calls})",
                                  {"limit": max_calls})
            cls._active_calls += 1

    def _release_slot(self) -> None:
        with self._slots_lock:
            if self._slot_held:
                self._slot_held = False
                type(self)._active_calls -= 1

    @classmethod
    def active_calls(cls) -> int:
        with cls._slots_lock:
            return cls._active_calls

    # ---------------------------------------------------------------- AudioSource

    def start(self) -> None:
        """Start dialling (idempotent). ``frames()`` calls it; call it earlier to dial sooner."""
        with self._start_lock:
            if self._thread is not None or self._closing.is_set():
                return
            self._thread = threading.Thread(target=self._run, name=f"sip-{self._ctx.connection_id}",
                                            daemon=True)
            self._thread.start()

    def frames(self) -> Iterator[bytes]:
        self.start()
        while not self._closing.is_set():
            try:
                item = self._queue.get(timeout=0.05)
            except queue.Empty:
                continue
            if item is None:
                break
            self._call.first_frame(time.monotonic())
            yield item
        if self._error is not None and not self._closing.is_set():
            raise self._error

    def close(self) -> None:
        """Hang up (CANCEL while ringing, BYE while talking) in the background; returns at once."""
        self._closing.set()
        with self._start_lock:
            started = self._thread is not None
        if not started:
            self._release_slot()
            self._done.set()
            with contextlib.suppress(OSError):
                self._wake_r.close()
                self._wake_w.close()
            return
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def wait_closed(self, timeout: float) -> bool:
        """Wait until the hang-up finished (BYE answered or given up); for tests and shutdown."""
        return self._done.wait(timeout)

    def describe(self) -> dict[str, Any]:
        j = self._jitter
        return {
            "kind": self.kind,
            "type": self._spec_kind,  # "sip" or "pstn"
            "uri": str(self._target.uri),
            "packets": j.received,
            "lost": j.lost,
            "reordered": j.reordered,
            "late": j.late + j.duplicates,
            **self._call.describe(),
        }

    # ---------------------------------------------------------------- the call loop (worker thread)

    def _emit(self, event: str, data: dict[str, Any]) -> None:
        try:
            self._ctx.emit(event, data)
        except Exception:  # a broken subscriber must not drop the call
            log.exception("telephony_emit_failed", event=event)

    def _bind_sockets(self) -> tuple[socket.socket, socket.socket, str]:
        cfg = self._cfg
        local = cfg.local_address or _local_address_for(self._target.peer[0])
        family = socket.AF_INET6 if ":" in local else socket.AF_INET
        sip = socket.socket(family, socket.SOCK_DGRAM)
        rtp = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sip.bind((local, cfg.sip_port))
            lo, hi = cfg.rtp_port_range
            ports = list(range(lo + (lo % 2), hi, 2))  # RTP on even ports (RTCP would be +1)
            random.shuffle(ports)
            for port in ports[:200]:
                try:
                    rtp.bind((local, port))
                    break
                except OSError:
                    continue
            else:
                raise SourceError(ERR_ENGINE, f"no free RTP port in {lo}-{hi} on {local}")
        except OSError as e:
            sip.close()
            rtp.close()
            raise SourceError(ERR_ENGINE, f"cannot bind SIP/RTP sockets on {local}: {e}") from e
        except SourceError:
            sip.close()
            rtp.close()
            raise
        rtp.setblocking(False)  # drained in a loop until EAGAIN
        return sip, rtp, local

    def _run(self) -> None:
        sip_sock = rtp_sock = None
        framer = PcmFramer()
        try:
            sip_sock, rtp_sock, local = self._bind_sockets()
            _CallRun(self, sip_sock, rtp_sock, local, framer).run()
        except SourceError as e:
            self._error = e
        except Exception as e:  # keep the session informed instead of dying silently
            log.exception("telephony_loop_crashed")
            self._error = SourceError(ERR_ENGINE, f"telephony failed: {e}")
        finally:
            for chunk in framer.push(self._jitter.flush(), last=True):
                self._put(chunk)
            for s in (sip_sock, rtp_sock, self._wake_r, self._wake_w):
                if s is not None:
                    with contextlib.suppress(OSError):
                        s.close()
            self._release_slot()
            self._call.loop_done()
            self._put(None, force=True)
            self._done.set()

    def _put(self, item: bytes | None, force: bool = False) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            if force:  # make room for the end marker: the consumer is gone or far behind
                with contextlib.suppress(queue.Empty):
                    self._queue.get_nowait()
                self._queue.put_nowait(item)
            else:
                log.warning("telephony_queue_full_dropping_frame")

    def _on_rtp(self, data: bytes, addr: tuple[str, int], media: MediaDescription | None, now: float) -> bool:
        if media is None or self._call.phase != "talking":
            self._call.ignored_rtp += 1  # early media / before the answer: not transcribed
            return False
        allowed = addr[0] == media.address or addr[0] == self._target.peer[0] or "*" in self._cfg.media_hosts
        if not allowed:
            self._call.ignored_rtp += 1
            return False
        pkt = parse_rtp(data)
        if pkt is None or pkt.payload_type not in DECODE_TABLES:
            return pkt is not None  # telephone-event or comfort noise: alive, nothing to decode
        self._jitter.push(pkt, decode_g711(pkt.payload, pkt.payload_type), now)
        return True

    def _finish_call(self, failure: tuple[int, str] | None, ended: dict[str, Any] | None) -> None:
        hung_up_by_far_end = bool(ended and ended.get("by") == "remote" and self._call.times.get("answered"))
        if failure is not None and not hung_up_by_far_end:
            code, reason = failure
            self._call.failed(code, reason)
            self._emit("call_failed", {"sipCode": code, "reason": reason})
            if not self._closing.is_set():
                message = f"call to {self._target.uri} failed: SIP {code} {reason}"
                self._error = SourceError(ERR_CALL_FAILED, message, {"sipCode": code, "reason": reason})
            log.info("call_failed", sip_code=code, reason=reason)
            return
        if ended is None:  # gave up waiting for the far end to confirm our BYE/CANCEL
            ended = {"by": "local", "code": None, "reason": "no reply to hang-up"}
        self._call.ended(ended.get("code"), ended.get("reason") or "")
        self._emit("call_ended", {"sipCode": ended.get("code"), "reason": self._call.reason, "by": ended["by"]})
        log.info("call_ended", by=ended["by"], sip_code=ended.get("code"), packets=self._jitter.received,
                 lost=self._jitter.lost, reordered=self._jitter.reordered)


class _CallRun:
    """One call's loop on the worker thread: its state, and each step of the loop as a method.

    The loop sleeps in ``select`` until a datagram, a wake-up from ``close()`` or the next
    deadline (a SIP timer, the answer timeout, the hang-up limit, or the 20 ms media tick once
    talking): a ringing call costs no CPU.
    """

    def __init__(self, src: TelephonySource, sip_sock: socket.socket, rtp_sock: socket.socket, local: str,
                 framer: PcmFramer) -> None:
        cfg = src._cfg
        self.src, self.limits = src, cfg.limits
        self.sip_sock, self.rtp_sock, self.local, self.framer = sip_sock, rtp_sock, local, framer
        self.rtp_port = rtp_sock.getsockname()[1]
        self.session_id = random.randint(1, 2**31)
        self.sdp_version = 0
        self.media_allowed = {src._target.peer[0]} | {_resolve(h, 0) for h in cfg.media_hosts if h != "*"}
        self.any_media = "*" in cfg.media_hosts
        self.media: MediaDescription | None = None
        self.failure: tuple[int, str] | None = None  # why the call failed (SIP code, reason)
        self.ended: dict[str, Any] | None = None  # SipCall's "ended" event
        self.t_invite = time.monotonic()
        self.last_rtp = self.t_invite
        self.ringing_codes: set[int] = set()
        self.hangup_at: float | None = None
        self.dtmf_reported = False
        self.call = SipCall(sip_sock, src._target.peer, src._target.uri, local_sdp=self.local_sdp,
                            on_event=self.on_sip, username=cfg.username, password=cfg.password,
                            user_agent=cfg.user_agent, t1=cfg.sip_t1)
        self.state = src._call  # the call's state: this loop is its only writer
        self.state.sip = self.call

    def local_sdp(self) -> str:
        self.sdp_version += 1
        return build_sdp(self.local, self.rtp_port, self.session_id, self.sdp_version)

    def run(self) -> None:
        src = self.src
        self.state.dialling(self.t_invite)
        src._emit("call_dialling", {"uri": str(src._target.uri)})
        self.call.invite(self.t_invite)
        log.info("call_dialling", uri=str(src._target.uri), local=self.local)
        while True:
            now = time.monotonic()
            self.call.tick(now)
            self._check_limits(now)
            if self._over(now):
                break
            self._send_media(now)
            self._play_out(now)
            self._receive(self._timeout(now))
        src._finish_call(self.failure, self.ended)

    # ---------------------------------------------------------------- loop steps

    def _check_limits(self, now: float) -> None:
        """Hang up when closed, unanswered too long, talking too long or the media stopped."""
        if self.hangup_at is not None:
            return
        src, limits = self.src, self.limits
        why = None
        if src._closing.is_set():
            why = "closed"
        elif self.state.unanswered() and now - self.t_invite >= limits.answer_timeout:
            self.failure = (408, f"No answer within {limits.answer_timeout:g} s")
            why = "no answer"
        elif self.state.phase == "talking":
            m = self.media
            held = m is not None and m.direction in ("recvonly", "inactive")  # the far end sends nothing
            if now - self.state.times["answered"] >= limits.max_duration:
                why = "max_duration"
            elif limits.rtp_timeout and not held and now - self.last_rtp >= limits.rtp_timeout:
                why = "rtp_timeout"
        if why is not None:
            self._hang_up(now, why)

    def _hang_up(self, now: float, why: str) -> None:
        if self.hangup_at is None:
            self.hangup_at = now
            log.info("call_hangup", why=why, state=self.call.state)
        self.call.hangup(now)

    def _over(self, now: float) -> bool:
        if self.call.state in ("ended", "failed") and self.call.finished:
            return True
        if self.hangup_at is not None and now - self.hangup_at >= self.limits.hangup_timeout:
            log.info("call_hangup_gave_up", state=self.call.state)
            return True
        return False

    def _send_media(self, now: float) -> None:
        src, sender = self.src, self.state.sender
        if sender is None or self.call.state != "talking":
            return
        sender.tick(now)
        if src._dtmf and not self.dtmf_reported and not sender.dtmf_pending:
            self.dtmf_reported = True
            src._emit("call_dtmf", {"digits": sender.dtmf_sent, "supported": sender.dtmf_payload_type is not None})

    def _play_out(self, now: float) -> None:
        for chunk in self.framer.push(self.src._jitter.pop_ready(now)):
            self.src._put(chunk)

    def _timeout(self, now: float) -> float:
        """Seconds until something is due; datagrams and ``close()`` wake the select earlier."""
        due = [now + 1.0]  # an upper bound, so no wake-up can be missed for long
        sip_due = self.call.next_deadline()
        if sip_due is not None:
            due.append(sip_due)
        if self.hangup_at is not None:
            due.append(self.hangup_at + self.limits.hangup_timeout)
        elif self.state.unanswered():
            due.append(self.t_invite + self.limits.answer_timeout)
        if self.call.state == "talking":
            due.append(now + 0.02)  # jitter buffer play-out and the limits, every packet time
            if self.state.sender is not None:
                due.append(self.state.sender.next_due())
        return max(0.0, min(due) - now)

    def _receive(self, timeout: float) -> None:
        src = self.src
        ready, _, _ = select.select([self.sip_sock, self.rtp_sock, src._wake_r], [], [], timeout)
        now = time.monotonic()
        if src._wake_r in ready:
            with contextlib.suppress(OSError):
                src._wake_r.recv(64)
        if self.sip_sock in ready:
            with contextlib.suppress(OSError):
                data, addr = self.sip_sock.recvfrom(65535)
                self.call.on_datagram(data, addr, now)
        if self.rtp_sock in ready:
            for _ in range(64):  # drain what is there; bounded so SIP is never starved
                try:
                    data, addr = self.rtp_sock.recvfrom(2048)
                except (BlockingIOError, OSError):
                    break
                if src._on_rtp(data, addr, self.media, now):
                    self.last_rtp = now

    # ---------------------------------------------------------------- SIP events

    def on_sip(self, event: str, data: dict[str, Any]) -> None:
        now = time.monotonic()
        if event == "progress":
            self._on_progress(data)
        elif event == "answered":
            self._on_answered(data, now)
        elif event == "reinvite":
            self._on_reinvite(data, now)
        elif event == "failed":
            self.failure = self.failure or (data["code"], data["reason"])
        elif event == "ended":
            self.ended = data

    def _on_progress(self, data: dict[str, Any]) -> None:
        self.state.ringing()
        if data["code"] not in self.ringing_codes:
            self.ringing_codes.add(data["code"])
            self.src._emit("call_ringing", {"sipCode": data["code"], "reason": data["reason"]})

    def _media_ok(self, m: MediaDescription) -> bool:
        return self.any_media or m.on_hold or m.address in self.media_allowed or _same_ip(m.address,
                                                                                         self.media_allowed)

    def _on_answered(self, data: dict[str, Any], now: float) -> None:
        src = self.src
        m = parse_sdp(data["sdp"])
        self.state.answer_received(data["code"], data["reason"])
        if src._closing.is_set():
            return  # answered while our CANCEL was in flight: SipCall sends BYE
        if m is None or m.payload_type not in DECODE_TABLES:
            self.failure = (488, "Not Acceptable Here (no PCMU/PCMA in the answer)")
            self._hang_up(now, "no usable codec")
            return
        if not self._media_ok(m):
            self.failure = (488, f"media address {m.address} not allowed (telephony.media_hosts)")
            self._hang_up(now, "media address not allowed")
            return
        self.last_rtp = now
        self.media = m
        sender = RtpSender(self.rtp_sock, m.payload_type, m.dtmf_payload_type)
        codec = CODEC_NAMES[m.payload_type]
        self.state.talking(codec, sender, now)
        sender.set_destination(None if m.on_hold else (m.address, m.port))
        if src._dtmf:
            sender.queue_dtmf(src._dtmf)
        src._emit("call_answered", {"sipCode": data["code"], "reason": data["reason"], "codec": codec})
        log.info("call_answered", uri=str(src._target.uri), codec=codec,
                 setup_ms=round((now - self.t_invite) * 1000, 1))

    def _on_reinvite(self, data: dict[str, Any], now: float) -> None:
        m = parse_sdp(data["sdp"])
        sender = self.state.sender
        if m is None or sender is None:
            return
        if not self._media_ok(m):
            log.warning("reinvite_media_not_allowed", address=m.address)
            return
        was_held = self.media.on_hold if self.media else False
        self.media = m
        self.last_rtp = now
        sender.set_destination(None if m.on_hold else (m.address, m.port))
        if m.on_hold != was_held:
            self.src._emit("call_held", {"held": m.on_hold})


def _same_ip(address: str, allowed: set[str]) -> bool:
    try:
        a = ipaddress.ip_address(address)
    except ValueError:
        return False
    for h in allowed:
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(h) == a:
                return True
    return False
