"""msgspec vs pydantic v2 for the control protocol's declarations: decode speed and error messages.

The same `start` request shape (nested source, config, speaker, trackers, actions) is declared in
both; each decodes the same JSON frame many times (the daemon's path: bytes -> validated object).
Prints each library's time per decode and the ratio against pydantic (the baseline, measured in the
same run), then the error message each gives for the same malformed requests.

    PYTHONPATH=. python bench/bench_schema.py [--n 20000]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Annotated, Literal

import msgspec
import pydantic

REQUEST = {
    "source": {"type": "file", "path": "/tmp/a.wav", "realtime": False},
    "engine": "local",
    "insightTypes": ["question", "action_item"],
    "config": {"meetingTitle": "Standup", "confidenceThreshold": 0.6, "timezoneOffset": 480},
    "speaker": {"userId": "ada@example.com", "name": "Ada"},
    "trackers": [{"name": "budget", "vocabulary": ["budget", "cost", "price"]}],
    "actions": [{"invokeOn": "stop", "name": "sendSummaryEmail", "parameters": {"emails": ["a@example.com"]}}],
}
BAD = {
    "wrong type, nested": {**REQUEST, "config": {"confidenceThreshold": "high"}},
    "out of range": {**REQUEST, "config": {"confidenceThreshold": 1.5}},
    "bad choice in a list": {**REQUEST, "insightTypes": ["question", "gossip"]},
    "missing field, deep": {**REQUEST, "trackers": [{"name": "budget"}]},
}


# -- msgspec -----------------------------------------------------------------------------------------
class MSource(msgspec.Struct, rename="camel"):
    type: Literal["file", "push", "mic", "sip", "pstn"]
    path: str | None = None
    realtime: bool = True


class MConfig(msgspec.Struct, rename="camel"):
    meeting_title: str | None = None
    confidence_threshold: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.5
    timezone_offset: Annotated[int, msgspec.Meta(ge=-840, le=840)] | None = None


class MSpeaker(msgspec.Struct, rename="camel"):
    user_id: str | None = None
    name: str | None = None


class MTracker(msgspec.Struct):
    name: str
    vocabulary: list[str]


class MParams(msgspec.Struct):
    emails: list[str]


class MAction(msgspec.Struct, rename="camel"):
    invoke_on: Literal["stop"]
    name: Literal["sendSummaryEmail"]
    parameters: MParams


class MStart(msgspec.Struct, rename="camel"):
    source: MSource | None = None
    engine: str | None = None
    insight_types: list[Literal["question", "action_item", "follow_up"]] | None = None
    config: MConfig = msgspec.field(default_factory=MConfig)
    speaker: MSpeaker | None = None
    trackers: list[MTracker] = []
    actions: list[MAction] = []


# -- pydantic ----------------------------------------------------------------------------------------
class PSource(pydantic.BaseModel):
    type: Literal["file", "push", "mic", "sip", "pstn"]
    path: str | None = None
    realtime: bool = True


class PConfig(pydantic.BaseModel):
    meetingTitle: str | None = None
    confidenceThreshold: Annotated[float, pydantic.Field(ge=0, le=1)] = 0.5
    timezoneOffset: Annotated[int, pydantic.Field(ge=-840, le=840)] | None = None


class PSpeaker(pydantic.BaseModel):
    userId: str | None = None
    name: str | None = None


class PTracker(pydantic.BaseModel):
    name: str
    vocabulary: list[str]


class PParams(pydantic.BaseModel):
    emails: list[str]


class PAction(pydantic.BaseModel):
    invokeOn: Literal["stop"]
    name: Literal["sendSummaryEmail"]
    parameters: PParams


class PStart(pydantic.BaseModel):
    source: PSource | None = None
    engine: str | None = None
    insightTypes: list[Literal["question", "action_item", "follow_up"]] | None = None
    config: PConfig = PConfig()
    speaker: PSpeaker | None = None
    trackers: list[PTracker] = []
    actions: list[PAction] = []


def _time(fn, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    n = ap.parse_args().n
    raw = json.dumps(REQUEST).encode()
    decoder = msgspec.json.Decoder(MStart)
    adapter = pydantic.TypeAdapter(PStart)
    assert decoder.decode(raw).config.confidence_threshold == 0.6
    assert adapter.validate_json(raw).config.confidenceThreshold == 0.6
    # Both libraries, two paths each: straight from the frame's bytes, and from an already parsed dict.
    obj = json.loads(raw)
    runs = {
        "pydantic validate_json": _time(lambda: adapter.validate_json(raw), n),
        "pydantic validate_python": _time(lambda: adapter.validate_python(obj), n),
        "msgspec json decode": _time(lambda: decoder.decode(raw), n),
        "msgspec convert (dict)": _time(lambda: msgspec.convert(obj, MStart), n),
    }
    base = runs["pydantic validate_json"]
    print(f"decode of one `start` request ({len(raw)} bytes), {n} runs each; baseline: pydantic validate_json")
    for name, secs in runs.items():
        print(f"  {name:<26} {secs * 1e6:8.2f} µs   ratio {base / secs:5.1f}x")
    print("\nerror messages for the same malformed requests:")
    for label, bad in BAD.items():
        frame = json.dumps(bad).encode()
        try:
            decoder.decode(frame)
            m = "(accepted)"
        except msgspec.ValidationError as e:
            m = str(e)
        try:
            adapter.validate_json(frame)
            p = "(accepted)"
        except pydantic.ValidationError as e:
            p = " | ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
        print(f"  {label}\n    msgspec : {m}\n    pydantic: {p}")


if __name__ == "__main__":
    main()
