"""A small SIP user agent client (RFC 3261 over UDP) for one outbound call.

``SipCall`` is the UAC side of one dialog. It owns no thread and no clock: the call loop
(``calls.py``) hands it every datagram from the SIP socket (``on_datagram``), sleeps until
``next_deadline()`` and then calls ``tick(now)`` so it can retransmit or time out; the call reports
what happened through ``on_event``.

What it does:
- INVITE with an SDP offer, retransmitted per timer A (T1 doubling) until a response,
  given up per timer B (64*T1) with 408; 1xx are reported, the first 2xx is ACKed (a new
  transaction to the remote target) and every retransmitted 2xx is ACKed again; a non-2xx
  final response is ACKed in the INVITE transaction (same branch).
- 401/407 challenges are answered once per challenge with an RFC 7616/2617 digest
  (MD5, MD5-sess, SHA-256, SHA-256-sess; qop=auth or none) from the configured credentials.
- In the dialog: the far end's BYE gets 200 and ends the call; a re-INVITE (hold, codec
  change, session refresh) gets 200 with our SDP and is reported; OPTIONS/INFO/UPDATE get 200;
  requests for other dialogs get 481.
- ``hangup()``: CANCEL while ringing (or once the first provisional arrives), BYE once
  answered. Both are non-INVITE transactions retransmitted per timer E until timer F.

Security: every datagram is sent to ``peer`` (the address the user asked for or the configured
gateway), never to an address learned from a message (Contact, Via, Record-Route only shape
the request, as with an outbound proxy), and datagrams from other hosts are ignored.
"""

from __future__ import annotations

import hashlib
import random
import re
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

log = structlog.get_logger(__name__)

T1 = 0.5  # RFC 3261 §17: RTT estimate (the default; ``SipCall(t1=...)`` takes another)
T2 = 4.0  # maximum retransmit interval for non-INVITE requests

# Compact header forms (RFC 3261 §7.3.3) to their full names.
COMPACT = {"i": "call-id", "m": "contact", "e": "content-encoding", "l": "content-length",
           "c": "content-type", "f": "from", "s": "subject", "k": "supported", "t": "to", "v": "via"}

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE"

SipEvent = Callable[[str, dict[str, Any]], None]


class SipError(Exception):
    """A malformed SIP message or URI."""


@dataclass
class SipMessage:
    start: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: str = ""

    @property
    def is_response(self) -> bool:
        return self.start.startswith("SIP/2.0 ")

    @property
    def code(self) -> int:
        return int(self.start.split(" ", 2)[1])

    @property
    def reason(self) -> str:
        parts = self.start.split(" ", 2)
        return parts[2] if len(parts) > 2 else ""

    @property
    def method(self) -> str:
        """The request's method, or for a response the method in its CSeq."""
        if self.is_response:
            return self.cseq[1]
        return self.start.split(" ", 1)[0]

    @property
    def cseq(self) -> tuple[int, str]:
        num, _, method = self.get("cseq").partition(" ")
        return int(num), method.strip().upper()

    def get(self, name: str, default: str = "") -> str:
        values = self.get_all(name)
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.headers if k == name]

    @classmethod
    def parse(cls, data: bytes) -> SipMessage:
        head, sep, body = data.partition(b"\r\n\r\n")
        if not sep:
            head, sep, body = data.partition(b"\n\n")
        lines = head.decode("utf-8", errors="replace").replace("\r\n", "\n").split("\n")
        start = lines[0].strip()
        if not (start.startswith("SIP/2.0 ") or start.endswith(" SIP/2.0")):
            raise SipError(f"not a SIP message: {start[:60]!r}")
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and headers:  # folded continuation line
                k, v = headers[-1]
                headers[-1] = (k, v + " " + line.strip())
                continue
            name, colon, value = line.partition(":")
            if not colon:
                continue
            key = name.strip().lower()
            key = COMPACT.get(key, key)
            # Via, Contact, Record-Route and Route may carry several comma-separated values.
            if key in ("via", "record-route", "route"):
                headers.extend((key, part.strip()) for part in _split_commas(value))
            else:
                headers.append((key, value.strip()))
        msg = cls(start, headers)
        length = msg.get("content-length")
        msg.body = (body[: int(length)] if length.isdigit() else body).decode("utf-8", errors="replace")
        return msg


def _split_commas(value: str) -> list[str]:
    """Split a header value on commas that are outside <...> and quotes."""
    parts: list[str] = []
    cur: list[str] = []
    depth, quoted = 0, False
    for ch in value:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "<":
            depth += 1
        elif not quoted and ch == ">":
            depth -= 1
        if ch == "," and depth == 0 and not quoted:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p for p in (s.strip() for s in parts) if p]


_URI_RE = re.compile(
    r"^(?P<scheme>sips?):(?:(?P<user>[^@;?]+)@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+)"
    r"(?::(?P<port>\d{1,5}))?(?P<params>(?:;[^?]*)?)(?:\?.*)?$"
)


@dataclass(frozen=True)
class SipUri:
    scheme: str
    user: str | None
    host: str  # without brackets
    port: int | None
    params: str  # ";transport=udp;user=phone" as written

    @classmethod
    def parse(cls, text: str) -> SipUri:
        m = _URI_RE.match(text.strip())
        if not m:
            raise SipError(f"not a SIP URI: {text!r}")
        port = int(m["port"]) if m["port"] else None
        if port is not None and not 0 < port < 65536:
            raise SipError(f"bad port in {text!r}")
        return cls(m["scheme"], m["user"], m["host"].strip("[]"), port, m["params"] or "")

    def param(self, name: str) -> str | None:
        for p in self.params.split(";"):
            k, _, v = p.partition("=")
            if k.strip().lower() == name:
                return v.strip()
        return None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"{self.scheme}:{user}{host}{port}{self.params}"


def _param(header: str, name: str) -> str | None:
    m = re.search(rf";\s*{name}=([^;,>\s]+)", header, re.IGNORECASE)
    return m.group(1) if m else None


def _angle_uri(header: str) -> str:
    """The URI in a name-addr (``"Bob" <sip:bob@x>;tag=1``) or addr-spec (``sip:bob@x``)."""
    m = re.search(r"<([^>]*)>", header)
    return m.group(1) if m else header.split(";", 1)[0].strip()


# ---------------------------------------------------------------- digest authentication


def parse_challenge(header: str) -> dict[str, str]:
    """``Digest realm="x", nonce="y", qop="auth,auth-int"`` -> {"realm": "x", ...}."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "digest":
        return {}
    out = {}
    for m in re.finditer(r'([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))', rest):
        out[m.group(1).lower()] = m.group(2) if m.group(2) is not None else m.group(3)
    return out


_HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


def digest_supported(challenge: dict[str, str]) -> bool:
    algo = challenge.get("algorithm", "MD5").upper().removesuffix("-SESS")
    qops = [q.strip() for q in challenge.get("qop", "").split(",") if q.strip()]
    return algo in _HASHES and "nonce" in challenge and (not qops or "auth" in qops)


def digest_authorization(challenge: dict[str, str], method: str, uri: str, username: str, password: str,
                         nc: int = 1, cnonce: str | None = None) -> str:
    """The Authorization/Proxy-Authorization value answering ``challenge`` (RFC 7616 §3.4)."""
    algorithm = challenge.get("algorithm", "MD5")
    base = algorithm.upper().removesuffix("-SESS")

    def h(text: str) -> str:
        return _HASHES[base](text.encode()).hexdigest()

    realm, nonce = challenge.get("realm", ""), challenge["nonce"]
    qops = [q.strip() for q in challenge.get("qop", "").split(",") if q.strip()]
    qop = "auth" if "auth" in qops else None
    cnonce = cnonce or secrets.token_hex(8)
    ha1 = h(f"{username}:{realm}:{password}")
    if algorithm.upper().endswith("-SESS"):
        ha1 = h(f"{ha1}:{nonce}:{cnonce}")
    ha2 = h(f"{method}:{uri}")
    ncs = f"{nc:08x}"
    response = h(f"{ha1}:{nonce}:{ncs}:{cnonce}:{qop}:{ha2}") if qop else h(f"{ha1}:{nonce}:{ha2}")
    parts = [f'username="{username}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"',
             f'response="{response}"', f"algorithm={algorithm}"]
    if qop:
        parts += [f"qop={qop}", f"nc={ncs}", f'cnonce="{cnonce}"']
    if "opaque" in challenge:
        parts.append(f'opaque="{challenge["opaque"]}"')
    return "Digest " + ", ".join(parts)


# ---------------------------------------------------------------- transactions and the call


def new_branch() -> str:
    return "z9hG4bK" + secrets.token_hex(8)


@dataclass
class _ClientTransaction:
    method: str
    branch: str
    data: bytes
    invite: bool
    started: float
    next_retransmit: float
    interval: float = T1
    provisional: bool = False
    done: bool = False


@dataclass
class _Credentials:
    username: str
    password: str


class SipCall:
    """One outbound call's SIP signalling (UAC side of a single dialog).

    Events reported through ``on_event(name, data)``:
    ``progress`` {code, reason, sdp}, ``answered`` {code, reason, sdp}, ``failed`` {code, reason},
    ``reinvite`` {sdp}, ``ended`` {by: "local"|"remote", code, reason}.
    ``local_sdp()`` is asked for the SDP to send in the INVITE and in answers to re-INVITEs.
    """

    def __init__(self, sock: socket.socket, peer: tuple[str, int], target: SipUri, *,
                 local_sdp: Callable[[], str], on_event: SipEvent,
                 username: str | None = None, password: str | None = None,
                 display_user: str = "symbld", user_agent: str = "symbld", t1: float = T1) -> None:
        self.sock = sock
        self.t1 = t1
        self.timer_b = 64 * t1  # timer B (INVITE) and timer F (non-INVITE) are both 64*T1
        self.peer = peer
        self.target = target
        self.local_sdp = local_sdp
        self.on_event = on_event
        self.user_agent = user_agent
        self.creds = _Credentials(username, password or "") if username else None
        lhost, lport = sock.getsockname()[:2]
        self.local = (lhost, lport)
        host = f"[{lhost}]" if ":" in lhost else lhost
        self._hostport = f"{host}:{lport}"
        self.from_uri = f"sip:{username or display_user}@{host}"
        self.contact = f"<sip:{display_user}@{self._hostport}>"
        self.call_id = f"{secrets.token_hex(12)}@symbld"
        self.from_tag = secrets.token_hex(6)
        self.to_tag: str | None = None
        self.remote_target = str(target)
        self.route_set: list[str] = []
        self.cseq = random.randint(1, 10_000)
        self.state = "idle"  # idle|calling|ringing|talking|cancelling|ending|ended|failed
        self.sip_code: int | None = None
        self.sip_reason = ""
        self._invite: _ClientTransaction | None = None
        self._invite_cseq = 0
        self._invite_auth: list[str] = []  # Authorization header lines used on the INVITE
        self._ack: bytes | None = None  # ACK for the 2xx, re-sent for each 2xx retransmission
        self._transactions: dict[str, _ClientTransaction] = {}
        self._challenges_answered: set[str] = set()
        self._nc = 0
        self._cancel_wanted = False
        self._ended_reported = False
        self._reinvite_ok: tuple[bytes, float, int] | None = None  # (200, next resend, cseq) until ACK
        self.retransmits = 0  # requests re-sent by timers A and E (shown in describe())

    # ---------------------------------------------------------------- outgoing requests

    def _request(self, method: str, uri: str, cseq: int, branch: str, *, body: str = "",
                 extra: list[str] | None = None, in_dialog: bool = False) -> bytes:
        to = f"<{self.target}>" + (f";tag={self.to_tag}" if self.to_tag and in_dialog else "")
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {self._hostport};branch={branch};rport",
            "Max-Forwards: 70",
            f"From: <{self.from_uri}>;tag={self.from_tag}",
            f"To: {to}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq} {method}",
        ]
        if in_dialog:
            lines += [f"Route: {r}" for r in self.route_set]
        if method in ("INVITE", "ACK") or in_dialog:
            lines.append(f"Contact: {self.contact}")
        if method == "INVITE":
            lines.append(f"Allow: {ALLOW}")
        lines.append(f"User-Agent: {self.user_agent}")
        lines += extra or []
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()

    def _send(self, data: bytes) -> None:
        try:
            self.sock.sendto(data, self.peer)
        except OSError as e:  # e.g. ICMP port unreachable reported on a later send: keep retrying
            log.debug("sip_send_failed", error=str(e))

    def _start_transaction(self, method: str, data: bytes, branch: str, now: float) -> _ClientTransaction:
        tx = _ClientTransaction(method, branch, data, method == "INVITE", now, now + self.t1, self.t1)
        self._transactions[branch] = tx
        self._send(data)
        return tx

    def invite(self, now: float) -> None:
        self.state = "calling"
        self._send_invite(now, [])

    def _send_invite(self, now: float, auth: list[str]) -> None:
        self.cseq += 1
        self._invite_cseq = self.cseq
        self._invite_auth = auth
        branch = new_branch()
        data = self._request("INVITE", str(self.target), self.cseq, branch, body=self.local_sdp(), extra=auth)
        self._invite = self._start_transaction("INVITE", data, branch, now)

    def hangup(self, now: float) -> None:
        """CANCEL while ringing, BYE while talking; idempotent."""
        if self.state in ("calling", "ringing"):
            if self._invite and self._invite.provisional:
                self._send_cancel(now)
            else:  # RFC 3261 §9.1: CANCEL only after a provisional; send it when one arrives
                self._cancel_wanted = True
                self.state = "cancelling"
        elif self.state == "talking":
            self._send_bye(now, [])
        elif self.state == "idle":
            self._finish("ended", {"by": "local", "code": None, "reason": "closed before dialling"})

    def _send_cancel(self, now: float) -> None:
        assert self._invite is not None
        self.state = "cancelling"
        # CANCEL copies the INVITE's Request-URI, Call-ID, From, To, CSeq number and branch.
        data = self._request("CANCEL", str(self.target), self._invite_cseq, self._invite.branch,
                             extra=self._invite_auth)
        tx = _ClientTransaction("CANCEL", self._invite.branch + ":cancel", data, False, now, now + self.t1,
                                self.t1)
        self._transactions[tx.branch] = tx
        self._send(data)

    def _send_bye(self, now: float, auth: list[str]) -> None:
        self.state = "ending"
        self.cseq += 1
        branch = new_branch()
        data = self._request("BYE", self.remote_target, self.cseq, branch, extra=auth, in_dialog=True)
        self._start_transaction("BYE", data, branch, now)

    # ---------------------------------------------------------------- timers

    def tick(self, now: float) -> None:
        """Run the timers that are due: A/B on the INVITE, E/F on BYE and CANCEL, G on a re-INVITE's 200."""
        for tx in list(self._transactions.values()):
            if tx.done:
                continue
            if tx.invite:
                self._tick_invite(tx, now)
            else:
                self._tick_non_invite(tx, now)
        if self._reinvite_ok and now >= self._reinvite_ok[1]:  # timer G: resend 200 until ACK
            data, _, cseq = self._reinvite_ok
            self._send(data)
            self._reinvite_ok = (data, now + 2 * self.t1, cseq)

    def _tick_invite(self, tx: _ClientTransaction, now: float) -> None:
        # RFC 3261 §17.1.1.2: timers A and B run only in the Calling state (before any response);
        # once a provisional arrives the transaction waits for the final response unbounded
        # (our answer timeout ends the wait), so nothing is due.
        if tx.provisional:
            return
        if now - tx.started >= self.timer_b:  # timer B
            tx.done = True
            if self.state == "cancelling":  # closed before the far end ever answered
                self._finish("ended", {"by": "local", "code": None, "reason": "no response"})
            else:
                self._fail(408, f"No response to INVITE within {self.timer_b:g} s (timer B): "
                                f"is {self.peer[0]}:{self.peer[1]} a SIP endpoint and reachable?")
            return
        if now >= tx.next_retransmit:  # timer A: T1, 2*T1, 4*T1, ...
            self._send(tx.data)
            self.retransmits += 1
            tx.interval *= 2
            tx.next_retransmit = now + tx.interval

    def _tick_non_invite(self, tx: _ClientTransaction, now: float) -> None:
        if now - tx.started >= self.timer_b:  # timer F
            tx.done = True
            self._on_non_invite_final(tx, 408, "Request Timeout")
            return
        if now >= tx.next_retransmit:  # timer E: doubling to T2, then T2 once a provisional came
            self._send(tx.data)
            self.retransmits += 1
            tx.interval = T2 if tx.provisional else min(tx.interval * 2, T2)
            tx.next_retransmit = now + tx.interval

    def next_deadline(self) -> float | None:
        """When ``tick`` next has something to do (monotonic seconds), or None while nothing is due."""
        times: list[float] = []
        for tx in self._transactions.values():
            if tx.done or (tx.invite and tx.provisional):
                continue
            times += [tx.next_retransmit, tx.started + self.timer_b]
        if self._reinvite_ok:
            times.append(self._reinvite_ok[1])
        return min(times, default=None)

    # ---------------------------------------------------------------- incoming

    def on_datagram(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        if addr[0] != self.peer[0]:
            log.warning("sip_datagram_from_unexpected_host", host=addr[0])
            return
        if not data.strip():  # keep-alive CRLF
            return
        try:
            msg = SipMessage.parse(data)
            if msg.is_response:
                self._on_response(msg, now)
            else:
                self._on_request(msg, addr, now)
        except (SipError, ValueError, IndexError) as e:
            log.warning("sip_bad_message", error=str(e))

    def _on_response(self, msg: SipMessage, now: float) -> None:
        if msg.get("call-id") != self.call_id:
            return
        branch = _param(msg.get("via"), "branch") or ""
        cseq, method = msg.cseq
        if method == "CANCEL":
            branch += ":cancel"
        tx = self._transactions.get(branch)
        if method == "INVITE":
            self._on_invite_response(msg, tx, cseq, now)
            return
        if tx is None or tx.done:
            return
        if msg.code < 200:
            tx.provisional = True
            return
        tx.done = True
        if msg.code in (401, 407) and method == "BYE":
            auth = self._answer_challenge(msg, "BYE", self.remote_target)
            if auth:
                self._send_bye(now, auth)
                return
        self._on_non_invite_final(tx, msg.code, msg.reason)

    def _on_non_invite_final(self, tx: _ClientTransaction, code: int, reason: str) -> None:
        if tx.method == "BYE":
            self._finish("ended", {"by": "local", "code": code, "reason": reason})
        # A CANCEL's own final response changes nothing: the INVITE's 487 (or 200) decides.

    def _on_invite_response(self, msg: SipMessage, tx: _ClientTransaction | None, cseq: int,
                            now: float) -> None:
        code = msg.code
        if code >= 200 and code < 300:
            self._on_invite_2xx(msg, tx, now)
            return
        if tx is None or tx.done or cseq != self._invite_cseq:
            # A retransmitted final response for an INVITE we already finished: ACK it again.
            if code >= 300 and tx is not None:
                self._send_ack_non2xx(msg, tx.branch, cseq)
            return
        if code < 200:
            first = not tx.provisional
            tx.provisional = True
            if self._cancel_wanted and first:
                self._cancel_wanted = False
                self._send_cancel(now)
                return
            if code > 100 and self.state == "calling":
                self.state = "ringing"
            if code > 100:
                self.on_event("progress", {"code": code, "reason": msg.reason, "sdp": msg.body})
            return
        # Non-2xx final: ACK in the INVITE transaction (same branch), then retry or fail.
        tx.done = True
        self._send_ack_non2xx(msg, tx.branch, cseq)
        if code in (401, 407) and self.state in ("calling", "ringing"):
            auth = self._answer_challenge(msg, "INVITE", str(self.target))
            if auth:
                self._send_invite(now, auth)
                return
        if self.state == "cancelling" and code == 487:
            self._finish("ended", {"by": "local", "code": 487, "reason": msg.reason or "Request Terminated"})
            return
        self._fail(code, msg.reason)

    def _send_ack_non2xx(self, msg: SipMessage, branch: str, cseq: int) -> None:
        to_tag = _param(msg.get("to"), "tag")
        to = f"<{self.target}>" + (f";tag={to_tag}" if to_tag else "")
        lines = [
            f"ACK {self.target} SIP/2.0",
            f"Via: SIP/2.0/UDP {self._hostport};branch={branch};rport",
            "Max-Forwards: 70",
            f"From: <{self.from_uri}>;tag={self.from_tag}",
            f"To: {to}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq} ACK",
            *self._invite_auth,
            "Content-Length: 0",
        ]
        self._send(("\r\n".join(lines) + "\r\n\r\n").encode())

    def _on_invite_2xx(self, msg: SipMessage, tx: _ClientTransaction | None, now: float) -> None:
        if tx is not None:
            tx.done = True
        if self._ack is not None:  # a retransmitted 2xx: our ACK was lost
            self._send(self._ack)
            return
        self.to_tag = _param(msg.get("to"), "tag")
        contact = msg.get("contact")
        if contact:
            self.remote_target = _angle_uri(contact)
        self.route_set = list(reversed(msg.get_all("record-route")))
        cseq = msg.cseq[0]
        self._ack = self._request("ACK", self.remote_target, cseq, new_branch(), extra=self._invite_auth,
                                  in_dialog=True)
        self._send(self._ack)
        self.sip_code, self.sip_reason = msg.code, msg.reason
        if self.state == "cancelling":
            # The callee answered while our CANCEL was on its way: the call exists, so end it.
            self.on_event("answered", {"code": msg.code, "reason": msg.reason, "sdp": msg.body})
            self.state = "talking"
            self._send_bye(now, [])
            return
        self.state = "talking"
        self.on_event("answered", {"code": msg.code, "reason": msg.reason, "sdp": msg.body})

    def _answer_challenge(self, msg: SipMessage, method: str, uri: str) -> list[str] | None:
        if self.creds is None:
            return None
        header, answer = ("www-authenticate", "Authorization") if msg.code == 401 else (
            "proxy-authenticate", "Proxy-Authorization")
        lines = []
        for value in msg.get_all(header):
            ch = parse_challenge(value)
            if not ch or not digest_supported(ch):
                continue
            key = f"{ch.get('realm')}|{ch['nonce']}"
            # The same nonce challenged twice means the credentials were refused; a new nonce
            # with stale=true means only the nonce expired.
            if key in self._challenges_answered:
                return None
            self._challenges_answered.add(key)
            self._nc += 1
            lines.append(f"{answer}: " + digest_authorization(ch, method, uri, self.creds.username,
                                                              self.creds.password, nc=self._nc))
            break
        return lines or None

    def _on_request(self, msg: SipMessage, addr: tuple[str, int], now: float) -> None:
        method = msg.method
        if msg.get("call-id") != self.call_id:
            if method != "ACK":
                self._respond(msg, addr, 481, "Call/Transaction Does Not Exist")
            return
        if method == "ACK":
            if self._reinvite_ok and msg.cseq[0] == self._reinvite_ok[2]:
                self._reinvite_ok = None
            return
        if method == "BYE":
            self._respond(msg, addr, 200, "OK")
            if self.state not in ("ended", "failed"):
                reason = _param(msg.get("reason"), "text") or "BYE"
                self._finish("ended", {"by": "remote", "code": None, "reason": reason.strip('"')})
            return
        if method == "INVITE":  # re-INVITE: hold/resume, new media address, session refresh
            if self.state != "talking":
                self._respond(msg, addr, 491, "Request Pending")
                return
            self.on_event("reinvite", {"sdp": msg.body})
            data = self._response_bytes(msg, 200, "OK", body=self.local_sdp())
            self.sock.sendto(data, addr)
            self._reinvite_ok = (data, now + self.t1, msg.cseq[0])
            return
        if method in ("OPTIONS", "INFO", "UPDATE", "NOTIFY"):
            self._respond(msg, addr, 200, "OK")
            return
        if method == "CANCEL":
            self._respond(msg, addr, 481, "Call/Transaction Does Not Exist")
            return
        self._respond(msg, addr, 501, "Not Implemented")

    def _response_bytes(self, req: SipMessage, code: int, reason: str, body: str = "") -> bytes:
        lines = [f"SIP/2.0 {code} {reason}"]
        lines += [f"Via: {v}" for v in req.get_all("via")]
        lines += [f"From: {req.get('from')}", f"To: {req.get('to')}", f"Call-ID: {req.get('call-id')}",
                  f"CSeq: {req.get('cseq')}", f"User-Agent: {self.user_agent}"]
        if body:
            lines += [f"Contact: {self.contact}", f"Allow: {ALLOW}", "Content-Type: application/sdp"]
        lines.append(f"Content-Length: {len(body.encode())}")
        return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()

    def _respond(self, req: SipMessage, addr: tuple[str, int], code: int, reason: str) -> None:
        try:
            self.sock.sendto(self._response_bytes(req, code, reason), addr)
        except OSError as e:
            log.debug("sip_send_failed", error=str(e))

    # ---------------------------------------------------------------- outcome

    def _fail(self, code: int, reason: str) -> None:
        self.sip_code, self.sip_reason = code, reason
        self._finish("failed", {"code": code, "reason": reason})

    def _finish(self, event: str, data: dict[str, Any]) -> None:
        if self._ended_reported:
            return
        self._ended_reported = True
        self.state = "failed" if event == "failed" else "ended"
        if data.get("code") is not None and event == "ended" and self.sip_code is None:
            self.sip_code = data["code"]
        self.on_event(event, data)

    @property
    def finished(self) -> bool:
        """The call is over and nothing is left to retransmit (except a late 2xx ACK)."""
        return self._ended_reported and all(tx.done or tx.method == "INVITE" for tx in
                                            self._transactions.values())
