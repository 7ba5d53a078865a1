"""The ``[telephony]`` table, declared: the config check decodes it into ``TelephonyTable``, so a wrong type or a
value out of range stops the daemon naming the key and its line; ``TelephonyConfig.from_table`` reads it.

The call limits may sit at the top of the table or in ``[telephony.limits]`` (a key at the top wins).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

Seconds = Annotated[float, msgspec.Meta(ge=0)]
Port = Annotated[int, msgspec.Meta(ge=1024, le=65535)]


class TelephonyLimitsTable(msgspec.Struct, kw_only=True):
    """Bounds on calls (all seconds unless named otherwise)."""

    max_calls: Annotated[int, msgspec.Meta(ge=1)] = 4  # concurrent calls across the process
    answer_timeout: Annotated[float, msgspec.Meta(gt=0)] = 60.0  # INVITE sent -> 200 OK; then CANCEL and fail
    max_duration: Annotated[float, msgspec.Meta(gt=0)] = 4 * 3600.0  # talking -> BYE
    rtp_timeout: Seconds = 60.0  # no RTP while talking (and not on hold) -> BYE; 0 disables
    hangup_timeout: Seconds = 4.0  # how long a BYE/CANCEL is retransmitted after close()


class TelephonyTable(msgspec.Struct, kw_only=True):
    gateway: str | None = None  # "host[:port]" or "sip:host[:port]"; needed for {"type": "pstn"}
    username: str | None = None  # digest credentials for 401/407 challenges
    password: str | None = None
    local_address: str | None = None  # bind SIP/RTP here; default: the address that routes to the peer
    sip_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 0  # 0: an ephemeral port per call
    # [lo, hi] or "lo-hi"
    rtp_port_range: str | Annotated[list[Port], msgspec.Meta(min_length=2, max_length=2)] = msgspec.field(
        default_factory=lambda: [40000, 40999])
    allowed_hosts: list[str] = []  # non-empty: only these may be dialled
    media_hosts: list[str] = []  # RTP peers besides the SIP peer; "*": any
    jitter_ms: Annotated[int, msgspec.Meta(ge=0)] = 80
    # RFC 3261 T1 (RTT estimate): INVITE retransmits at T1, 2*T1...; timer B = 64*T1
    sip_t1: Annotated[float, msgspec.Meta(gt=0)] = 0.5
    user_agent: str = "symbld"
    limits: TelephonyLimitsTable = msgspec.field(default_factory=TelephonyLimitsTable)
    # The same limits at the top of the table (None: as in [telephony.limits])
    max_calls: Annotated[int, msgspec.Meta(ge=1)] | None = None
    answer_timeout: Annotated[float, msgspec.Meta(gt=0)] | None = None
    max_duration: Annotated[float, msgspec.Meta(gt=0)] | None = None
    rtp_timeout: Seconds | None = None
    hangup_timeout: Seconds | None = None

    def __post_init__(self) -> None:
        self.port_range()  # "lo-hi" parses, lo < hi

    def port_range(self) -> tuple[int, int]:
        r = self.rtp_port_range
        try:
            lo, hi = (int(x) for x in (r.split("-") if isinstance(r, str) else r))
        except ValueError:
            raise ValueError(f"rtp_port_range must be \"lo-hi\" or [lo, hi], not {r!r}") from None
        if not (1024 <= lo < hi <= 65535):
            raise ValueError(f"rtp_port_range {r!r}: need 1024 <= lo < hi <= 65535")
        return lo, hi

    def merged_limits(self) -> TelephonyLimitsTable:
        """[telephony.limits] with the limits set at the top of the table over it."""
        top = {f: getattr(self, f) for f in TelephonyLimitsTable.__struct_fields__ if getattr(self, f) is not None}
        return msgspec.structs.replace(self.limits, **top)
