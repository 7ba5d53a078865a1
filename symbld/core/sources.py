"""Opening audio sources from the ``source`` argument of ``start``.

Each kind of source lives in ``symbld/audio/``; this module only picks one, checks its spec
and reports which kinds this machine can serve (``describe``). Optional kinds (microphone,
telephony) are loaded lazily so a machine without PortAudio still runs file and push
sessions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
import structlog

from symblctl import protocol
from symbld.audio.base import AudioSource, SourceContext, SourceError
from symbld.audio.file import FileSource
from symbld.audio.push import PushSource
from symbld.config import section

if TYPE_CHECKING:  # the mic stack (PortAudio) is imported only when a mic is used
    from symbld.audio.mic import MicHub

log = structlog.get_logger(__name__)

KINDS = ("file", "push", "mic", "sip", "pstn")


class SourceFactory:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self._mic_hub: MicHub | None = None
        self._telephony_cfg: Any = None

    # -- optional parts, created on first use ---------------------------------------------
    def mic_hub(self) -> MicHub:
        if self._mic_hub is None:
            from symbld.audio.mic import MicHub

            self._mic_hub = MicHub(section(self.config, "mic"))
        return self._mic_hub

    def telephony_config(self) -> Any:
        if self._telephony_cfg is None:
            from symbld.audio.telephony.calls import TelephonyConfig
            from symbld.audio.telephony.table import TelephonyTable

            # the table as the config check decoded it at load (so this cannot fail here)
            table = msgspec.convert(section(self.config, "telephony"), TelephonyTable, strict=True)
            self._telephony_cfg = TelephonyConfig.from_table(table)
        return self._telephony_cfg

    # -- opening ----------------------------------------------------------------------------------
    def open(self, spec: protocol.Source, ctx: SourceContext) -> AudioSource:
        """Open the source a start request declared (``symblctl.protocol.Source``: types and ranges hold)."""
        if isinstance(spec, protocol.FileSource):
            return FileSource(spec.path, realtime=spec.realtime)
        if isinstance(spec, protocol.PushSource):
            return PushSource(sample_rate=spec.sample_rate, encoding=spec.encoding)
        if isinstance(spec, protocol.MicSource):
            hub = self.mic_hub()
            hub.check(spec.device)
            return hub.open(ctx, spec.device)
        from symbld.audio.telephony.calls import TelephonySource

        return TelephonySource(spec, ctx, self.telephony_config())

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"file": {"available": True, "formats": "what libsndfile reads: WAV, FLAC, OGG, MP3"},
                               "push": {"available": True, "encodings": ["LINEAR16"]}}
        try:
            self.mic_hub().check(None)
            out["mic"] = {"available": True}
        except SourceError as e:
            out["mic"] = {"available": False, "reason": e.message}
        except Exception as e:  # noqa: BLE001 - the mic module itself missing or broken
            out["mic"] = {"available": False, "reason": f"{type(e).__name__}: {e}"}
        try:
            cfg = self.telephony_config()
            out["sip"] = {"available": True}
            out["pstn"] = {"available": bool(getattr(cfg, "gateway", None)),
                           **({} if getattr(cfg, "gateway", None) else {"reason": "no [telephony] gateway configured"})}
        except Exception as e:  # noqa: BLE001 - telephony missing or misconfigured: reported, not raised
            out["sip"] = out["pstn"] = {"available": False, "reason": f"{type(e).__name__}: {e}"}
        return out

    def close(self) -> None:
        if self._mic_hub is not None:
            self._mic_hub.close()
