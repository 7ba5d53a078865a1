"""The arguments of a `start` request, built from `symblctl start`'s command-line options."""

from __future__ import annotations

import argparse
from typing import Any


def start_request(ns: argparse.Namespace) -> dict[str, Any]:
    """The `start` request's args from the parsed `symblctl start` options (local and --nats alike)."""
    if ns.file:
        source: dict[str, Any] = {"type": "file", "path": ns.file, "realtime": not ns.fast}
    elif ns.stdin or ns.push:
        source = {"type": "push", "sampleRate": ns.rate}
    elif ns.mic:
        source = {"type": "mic", "device": int(ns.device) if ns.device and ns.device.isdigit() else ns.device}
    elif ns.sip:
        source = {"type": "sip", "uri": ns.sip}
    else:
        source = {"type": "pstn", "phoneNumber": ns.pstn}
    if ns.dtmf:
        source["dtmf"] = ns.dtmf
    config: dict[str, Any] = {}
    if ns.title:
        config["meetingTitle"] = ns.title
    if getattr(ns, "language", None):
        config["languageCode"] = ns.language
    if getattr(ns, "translate", False):
        config["translate"] = True
    args: dict[str, Any] = {"source": source, "engine": ns.engine, "config": config,
                            "trackers": ns.tracker or None, "customVocabulary": ns.vocab or None}
    if getattr(ns, "end_of_turn", None):
        args["endOfTurn"] = ns.end_of_turn
    if ns.insight_types is not None:
        args["insightTypes"] = [t.strip() for t in ns.insight_types.split(",") if t.strip()]
    if ns.speaker:
        args["speaker"] = {"name": ns.speaker, "userId": ns.speaker}
    if getattr(ns, "diarize", None) is not None or getattr(ns, "speakers", None):
        args["diarization"] = (False if ns.diarize is False
                               else {"maxSpeakers": ns.speakers} if ns.speakers else True)
    if ns.email:
        args["actions"] = [{"invokeOn": "stop", "name": "sendSummaryEmail", "parameters": {"emails": ns.email}}]
    return args
