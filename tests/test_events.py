"""Events declared once (symblctl/events.py), checked everywhere.

- every event type the daemon's code can publish has a declaration (the code is read with ``ast``);
- the bus refuses an undeclared type and a ``data`` that does not fit, and encodes declarations;
- ``describe`` lists each type once, with a JSON Schema that real events of a real daemon satisfy;
- docs/events.md's reference and docs/protocol.md's event index are what scripts/gen_events_doc.py makes now.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import msgspec
import pytest
from conftest import DaemonProc, events_until_complete
from speechgen import SENTENCES, pcm16, synth

from symblctl import events
from symblctl.client import Client
from symbld.core.bus import EventBus
from symbld.gateways.symbl.wire import RESULT_TYPES

ROOT = Path(__file__).resolve().parents[1]
GENERATOR = ROOT / "scripts" / "gen_events_doc.py"
# Calls whose string argument is an event type: every way the daemon's code hands an event to the bus.
PUBLISHERS = {"emit", "_emit", "publish", "publish_daemon", "_send", "_event", "_announce", "_emit_locked"}
EVENT_NAME = re.compile(r"^[a-z]+(_[a-z]+)+$")


def published_types() -> set[str]:
    """Event type literals handed to a publishing call, or paired with data in a (type, data) tuple."""
    found: set[str] = set()
    for path in (ROOT / "symbld").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            for arg in _type_arguments(node):
                for value in ([arg.body, arg.orelse] if isinstance(arg, ast.IfExp) else [arg]):
                    if isinstance(value, ast.Constant) and isinstance(value.value, str):
                        found.add(value.value)
    return {name for name in found if EVENT_NAME.match(name)}


def _type_arguments(node: ast.AST) -> list[ast.expr]:
    if isinstance(node, ast.Call):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        return list(node.args) if name in PUBLISHERS else []
    if isinstance(node, ast.Tuple) and len(node.elts) == 2 and isinstance(node.elts[1], ast.Name | ast.Dict):
        return [node.elts[0]]  # ("transcript_response", data): the Symbl engine's mapped events
    return []


def test_every_event_type_the_daemon_publishes_is_declared() -> None:
    found = published_types()
    # The scan sees the publishers of each part (so an empty or partial scan cannot pass unnoticed).
    assert {"connection_started", "conversation_completed", "call_dialling", "device_lost", "engine_backlog",
            "insight_response", "action_completed", "speaker_event", "engine_failover", "transcript_response",
            "audio_spooled"} <= found
    assert found - set(events.EVENTS) == set(), "declare them in symblctl/events.py"
    assert set(RESULT_TYPES) <= set(events.EVENTS)  # what the Symbl engine passes through from the cloud


class ListSink:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bytes]] = []

    def send(self, topic: bytes, body: bytes) -> bool:
        self.sent.append((topic, body))
        return True

    def close(self) -> None:
        pass


@pytest.fixture
def checking_bus() -> Any:
    bus = EventBus(ListSink(), None, check=True)
    yield bus
    bus.close()


def test_the_checking_bus_refuses_undeclared_types_and_misfits(checking_bus: EventBus) -> None:
    with pytest.raises(events.EventShapeError, match="'call_exploded' is not declared"):
        checking_bus.publish("c1", "v1", "call_exploded", {})
    with pytest.raises(events.EventShapeError, match=r"Expected `int \| null`, got `str` - at `\$.sipCode`"):
        checking_bus.publish("c1", "v1", "call_ended", {"sipCode": "486", "reason": "Busy", "by": "remote"})
    with pytest.raises(events.EventShapeError, match="is not the declaration of 'call_ended'"):
        checking_bus.publish("c1", "v1", "call_ended", events.CallHeld(held=True))
    assert checking_bus.last_seq("c1") == 0  # nothing refused was numbered


def test_the_bus_encodes_declarations_and_keeps_unknown_fields(checking_bus: EventBus) -> None:
    sink = checking_bus.sink
    assert isinstance(sink, ListSink)
    checking_bus.publish("c1", "v1", "call_ended", events.CallEnded(sip_code=None, reason="", by="local"))
    checking_bus.publish("c1", "v1", "conversation_completed",
                         {"conversationId": "v1", "connectionId": "c1", "newerField": [1]})
    checking_bus.close()
    (t1, b1), (_, b2) = sink.sent
    assert t1 == b"connection.c1.call_ended"
    assert json.loads(b1)["data"] == {"sipCode": None, "reason": "", "by": "local"}  # null kept, not left out
    assert json.loads(b2)["data"]["newerField"] == [1]  # consumers ignore fields they do not know; we keep them
    assert [e["seq"] for e in checking_bus.history("c1")] == [1, 2]


def test_an_unchecked_bus_publishes_an_undeclared_type_and_a_numpy_number() -> None:
    np = pytest.importorskip("numpy")
    sink = ListSink()
    bus = EventBus(sink, None)
    bus.publish("c1", "v1", "call_exploded", {"at": np.float64(1.25), "n": np.int64(3)})  # never lost
    bus.close()
    assert json.loads(sink.sent[0][1])["data"] == {"at": 1.25, "n": 3}


@pytest.mark.speech
def test_describe_publishes_each_event_once_and_real_events_fit_it(daemon: DaemonProc, client: Client) -> None:
    d = client.describe()
    assert d["eventTypes"] == list(events.EVENTS)
    assert len(d["eventTypes"]) == len(set(d["eventTypes"]))
    assert set(d["events"]) == set(d["eventTypes"])
    assert d["events"]["journal_degraded"]["scope"] == "daemon"
    assert d["events"]["call_ended"]["scope"] == "connection"
    schemas = json.loads(json.dumps(d["schemas"]).replace("#/schemas/", "#/$defs/"))
    jsonschema.Draft202012Validator.check_schema({"$defs": schemas})  # once: checking it per event cost 20 CPU-s
    validators = {}
    for name, entry in d["events"].items():
        ref = entry["data"]["$ref"].replace("#/schemas/", "#/$defs/")
        assert ref.rpartition("/")[2] in schemas, name
        validators[name] = jsonschema.Draft202012Validator({"$ref": ref, "$defs": schemas})

    pcm = pcm16(synth(SENTENCES[0]))
    cid = client.start(source={"type": "push", "sampleRate": 16000})["connectionId"]
    for i in range(0, len(pcm), 32000):
        client.send_audio(cid, pcm[i:i + 32000])
    client.end_audio(cid)
    seen = events_until_complete(client, cid)
    types = [e["type"] for e in seen]
    assert types[0] == "connection_started" and types[-1] == "conversation_completed"
    assert "message_response" in types and "transcript_response" in types
    for event in seen:
        validators[event["type"]].validate(event["data"])
        events.decode(event["type"], event["data"])  # and the typed form symblctl offers


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_events_doc", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_event_reference_is_generated_from_the_declarations() -> None:
    gen = load_generator()
    events_doc = (ROOT / "docs" / "events.md").read_text()
    protocol_doc = (ROOT / "docs" / "protocol.md").read_text()
    assert gen.current_section(events_doc) == gen.render_reference(), "stale: run python scripts/gen_events_doc.py"
    assert gen.current_section(protocol_doc) == gen.render_index(), "stale: run python scripts/gen_events_doc.py"
    for name in events.EVENTS:  # every type has its section, and its row links to it
        assert f'<a id="event-{name}"></a>' in events_doc
        assert f"(events.md#event-{name})" in protocol_doc


def test_the_generator_check_fails_on_a_stale_document(tmp_path: Path) -> None:
    stale = tmp_path / "events.md"
    stale.write_text((ROOT / "docs" / "events.md").read_text().replace("### `call_held`", "### `call_hold`"))
    protocol_copy = tmp_path / "protocol.md"
    protocol_copy.write_text((ROOT / "docs" / "protocol.md").read_text())
    run = [sys.executable, str(GENERATOR), "--events-doc", str(stale), "--protocol-doc", str(protocol_copy)]
    checked = subprocess.run([*run, "--check"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert checked.returncode == 1 and "call_hold" in checked.stdout
    subprocess.run(run, check=True, timeout=120, cwd=ROOT, capture_output=True)
    assert subprocess.run([*run, "--check"], capture_output=True, timeout=120, cwd=ROOT).returncode == 0


def test_declarations_round_trip_through_msgspec() -> None:
    data = {"type": "message_response", "sequenceNumber": 0, "messages": [
        {"id": "m1", "from": {}, "payload": {"content": "Hi.", "contentType": "text/plain"}}]}
    decoded = events.decode("message_response", data)
    assert isinstance(decoded, events.MessageResponse)
    assert msgspec.to_builtins(decoded) == data
