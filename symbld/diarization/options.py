"""Whether a connection diarizes, from its ``start`` request, and the ``[diarization]`` config table.

Asked for by the control ``start`` argument ``diarization`` (true, false, or
``{"minSpeakers": n, "maxSpeakers": n}``) or Symbl's start_request names ``enableSpeakerDiarization``
and ``diarizationSpeakerCount``. Unasked, it is on for the sources that carry one mixed channel
(mic, file, push: stdin comes in as push) when the connection declares no ``speaker`` and the
extra is installed; a connection that declares its speaker is one person (Symbl's socket per
speaker, SIP legs). Imports nothing of the extra.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import structlog

from symblctl import protocol
from symbld import diarization
from symbld.errors import ControlError

log = structlog.get_logger(__name__)

Cosine = Annotated[float, msgspec.Meta(ge=-1, le=1)]


class DiarizationTable(msgspec.Struct, kw_only=True):
    """The [diarization] table, declared (the config check decodes it, naming a wrong key and its line)."""

    enabled: bool = True  # the default for mixed-channel sources
    max_speakers: Annotated[int, msgspec.Meta(ge=1, le=32)] = 8  # as start's maxSpeakers
    threshold: Cosine = 0.5  # a print joins a speaker whose centroid it resembles at least this much
    merge_threshold: Cosine = 0.6  # two speakers this close are one person
    # The voice-print thread's nice value: finals' decodes go first when the cores are short (0: the same priority)
    print_nice: Annotated[int, msgspec.Meta(ge=0, le=19)] = 10


MIXED_SOURCES = ("mic", "file", "push")


def _asked(args: protocol.Start) -> tuple[bool | None, int | None, int | None]:
    """(on/off or None when not asked, minSpeakers, maxSpeakers) from the decoded request (each a bool or
    an int from 1 to 32 by its declaration; what is checked here is how they go together)."""
    cfg = args.config or protocol.StartConfig()
    value = args.diarization
    if value is None:
        value = cfg.enable_speaker_diarization
    lo = hi = cfg.diarization_speaker_count
    if lo is not None and value is None:
        value = True
    if isinstance(value, protocol.Diarization):
        lo = value.min_speakers if value.min_speakers is not None else lo
        hi = value.max_speakers if value.max_speakers is not None else hi
        value = True
    if lo is not None and hi is not None and hi < lo:
        raise ControlError("bad_request", f"diarization.maxSpeakers ({hi}) is less than minSpeakers ({lo})",
                           {"argument": "diarization.maxSpeakers"})
    return value, lo, hi


def _model_problem() -> str | None:
    """Why the speaker model cannot load (loads it once per process: the first final need not wait)."""
    from symbld.diarization import model

    try:
        model.embedding_session()
    except Exception as e:  # noqa: BLE001 - a wrong moonshine-voice, a broken onnxruntime: one line, not a traceback per final
        log.warning("diarization_unavailable", error=str(e))
        return str(e)
    return None


def ready(settings: dict[str, Any] | None) -> dict[str, Any] | None:
    """``settings`` once the speaker model is loaded (after the request's cheaper checks: the first
    diarizing connection pays the load, about a second). A broken model: a bad_request when
    diarization was asked for, no labels (and a warning) when it was only the default."""
    if not settings:
        return None
    problem = _model_problem()
    if problem is None:
        return settings
    if not settings.get("requested"):
        return None
    raise ControlError("bad_request", f"diarization: {problem}", {"argument": "diarization"})


def resolve(args: protocol.Start, source_kind: str, daemon_config: dict[str, Any]) -> dict[str, Any] | None:
    """The diarization settings of a new connection (``StreamConfig.extra["diarization"]``), or None."""
    # the table as the config check decoded it at load (so this cannot fail here)
    table = msgspec.convert(daemon_config.get("diarization") or {}, DiarizationTable, strict=True)
    asked, lo, hi = _asked(args)
    if asked is False:
        return None
    if asked is None:
        if not table.enabled or args.speaker not in (None, protocol.Speaker()) or source_kind not in MIXED_SOURCES \
                or not diarization.available():
            return None
    elif not diarization.available():
        raise ControlError("bad_request", f"diarization needs the [{diarization.EXTRA}] extra: "
                           f"pip install 'symbld[{diarization.EXTRA}]' (missing: {', '.join(diarization.missing())})",
                           {"argument": "diarization", "extra": diarization.EXTRA})
    return {"requested": asked is True, "minSpeakers": lo or 1, "maxSpeakers": hi or table.max_speakers,
            "threshold": table.threshold, "mergeThreshold": table.merge_threshold, "printNice": table.print_nice}
