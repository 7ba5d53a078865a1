"""docs/protocol.md's command reference, the declarations it is made from, and the real daemon agree.

- the document's generated section is what scripts/gen_protocol_doc.py makes now;
- the daemon's ``describe`` publishes a valid JSON Schema for every command's request and reply,
  and the doc's wire examples are valid requests;
- real replies of a real daemon fit their declared reply types and send no field the declaration
  (and so the doc) leaves out;
- bad requests are refused ``bad_request`` naming the argument; unknown fields are ignored.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import msgspec
import pytest
import zmq
from conftest import DaemonProc, wait_for_type
from speechgen import SENTENCES, pcm16, synth
from virtmic import VirtMic

from symblctl import protocol
from symblctl.client import Client, DaemonError

ROOT = Path(__file__).resolve().parents[1]
GENERATOR = ROOT / "scripts" / "gen_protocol_doc.py"
DOC = ROOT / "docs" / "protocol.md"


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_protocol_doc", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


gen = load_generator()


# -- (a) the document is what the generator makes now -----------------------------------------------
def test_doc_section_is_what_the_declarations_generate() -> None:
    text = DOC.read_text()
    assert text.count(gen.BEGIN) == 1 and text.count(gen.END) == 1
    assert gen.current_section(text) == gen.render(), "stale: run python scripts/gen_protocol_doc.py"


def test_every_declared_command_and_argument_is_in_the_doc() -> None:
    section = gen.current_section(DOC.read_text())
    for name, decl in protocol.COMMANDS.items():
        assert f"#### `{name}`" in section
        part = section.split(f'<a id="cmd-{name}"></a>', 1)[1].split('<a id="cmd-', 1)[0]
        for field in msgspec.structs.fields(decl):
            assert f"| `{field.encode_name}` |" in part, f"{name}: argument {field.encode_name} missing from the doc"


def test_check_mode_passes_on_the_doc_and_fails_with_a_diff_on_a_stale_copy(tmp_path: Path) -> None:
    run = [sys.executable, str(GENERATOR), "--check"]
    fresh = subprocess.run(run, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    stale = tmp_path / "protocol.md"
    stale.write_text(DOC.read_text().replace("| `afterSeq` |", "| `afterSequence` |"))
    checked = subprocess.run([*run, "--doc", str(stale)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert checked.returncode == 1
    assert "-| `afterSequence` |" in checked.stdout and "+| `afterSeq` |" in checked.stdout
    # Without --check the generator rewrites the section, after which the copy is current.
    subprocess.run([sys.executable, str(GENERATOR), "--doc", str(stale)], check=True, timeout=120, cwd=ROOT)
    assert stale.read_text() == DOC.read_text()


def doc_examples() -> dict[str, dict[str, Any]]:
    """The request (→) of each command's example in the doc's reference, parsed."""
    section = gen.current_section(DOC.read_text())
    found: dict[str, dict[str, Any]] = {}
    for part in section.split('<a id="cmd-')[1:]:
        name = part.split('"', 1)[0]
        lines = part.split("```\n", 2)[1].splitlines() if "```\n" in part else []
        request = " ".join(line.strip() for line in _example_block(lines, "→"))
        if request:
            obj, _ = json.JSONDecoder().raw_decode(request[request.index("{"):])  # send_audio's is [json, <pcm>]
            found[name] = obj
    return found


def _example_block(lines: list[str], arrow: str) -> list[str]:
    out: list[str] = []
    for line in lines:
        if line.startswith(arrow):
            out.append(line[1:])
        elif out and line.startswith(" "):
            out.append(line)
        elif out:
            break
    return out


def test_every_command_has_a_wire_example() -> None:
    examples = doc_examples()
    assert set(examples) == set(protocol.COMMANDS)
    for name, request in examples.items():
        assert request["cmd"] == name and request["v"] == 1 and isinstance(request["id"], str)


# -- (b) describe publishes valid JSON Schema; the doc's examples fit it -------------------------------
@pytest.fixture(scope="module")
def described(daemon: DaemonProc) -> dict[str, Any]:
    with daemon.client(timeout=30) as c:
        return c.request("describe")


def validator(described: dict[str, Any], ref: dict[str, str]) -> jsonschema.Draft202012Validator:
    """A validator for one ``{"$ref": "#/schemas/X"}``, resolved inside describe's ``schemas`` (each of which
    test_describe_lists_every_declared_command_with_resolvable_valid_schemas checks: not again per command)."""
    return jsonschema.Draft202012Validator({"$ref": ref["$ref"], "schemas": described["schemas"]})


def all_refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        here = [value["$ref"]] if isinstance(value.get("$ref"), str) else []
        return here + [r for v in value.values() for r in all_refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in all_refs(v)]
    return []


def test_describe_lists_every_declared_command_with_resolvable_valid_schemas(described: dict[str, Any]) -> None:
    schemas = described["schemas"]
    listed = {c["name"]: c for c in described["commands"]}
    assert set(listed) == set(protocol.COMMANDS)
    for name, entry in listed.items():
        decl = protocol.COMMANDS[name]
        assert (entry["slow"], entry["mutating"], entry["payload"]) == (decl.slow, decl.mutating, decl.payload)
        for side in ("request", "reply"):
            ref = entry[side]["$ref"]
            assert ref.startswith("#/schemas/") and ref.removeprefix("#/schemas/") in schemas, (name, side, ref)
        assert schemas[entry["request"]["$ref"].removeprefix("#/schemas/")]["title"] == decl.__name__
    for name, schema in schemas.items():
        jsonschema.Draft202012Validator.check_schema(schema)
        for ref in all_refs(schema):
            assert ref.removeprefix("#/schemas/") in schemas, f"{name} names {ref}, which describe does not publish"


def test_doc_examples_validate_against_the_published_request_schemas(described: dict[str, Any]) -> None:
    listed = {c["name"]: c for c in described["commands"]}
    for name, request in doc_examples().items():
        validator(described, listed[name]["request"]).validate(request.get("args", {}))


def test_schemas_refuse_what_the_daemon_refuses(described: dict[str, Any]) -> None:
    listed = {c["name"]: c for c in described["commands"]}
    start = validator(described, listed["start"]["request"])
    assert start.is_valid({"source": {"type": "push", "sampleRate": 16000}})
    assert not start.is_valid({"source": {"type": "push", "sampleRate": 4000}})
    assert not start.is_valid({"source": {"type": "carrier-pigeon"}})
    assert not start.is_valid({"source": {"type": "file"}})  # path is required
    history = validator(described, listed["history"]["request"])
    assert not history.is_valid({"afterSeq": 3})  # connectionId is required
    assert not history.is_valid({"connectionId": "x", "limit": 10_001})


def test_the_docs_start_example_with_a_real_file_starts_a_connection(daemon: DaemonProc,
                                                                     described: dict[str, Any]) -> None:
    request = doc_examples()["start"]
    request["args"]["source"]["path"] = str(synth(SENTENCES[0]))
    listed = {c["name"]: c for c in described["commands"]}
    validator(described, listed["start"]["request"]).validate(request["args"])
    with daemon.client(timeout=60) as c:
        conn = c.request("start", **request["args"])
        assert conn["state"] in ("starting", "live")
        assert conn["meetingTitle"] == request["args"]["config"]["meetingTitle"]
        assert conn["insightTypes"] == request["args"]["insightTypes"]
        final = c.request("stop", connectionId=conn["connectionId"])
        assert final["state"] == "stopped"


# -- (c) real replies fit their declared types -----------------------------------------------------------
def undeclared(value: Any, t: Any, where: str = "$") -> list[str]:
    """Fields the daemon sent that the declared type (and so the doc) does not list."""
    info = msgspec.inspect.type_info(t) if not isinstance(t, msgspec.inspect.Type) else t
    if isinstance(info, msgspec.inspect.StructType) and isinstance(value, dict):
        fields = {f.encode_name: f for f in info.fields}
        out = [f"{where}.{k}" for k in value if k not in fields]
        for k, v in value.items():
            if k in fields:
                out += undeclared(v, fields[k].type, f"{where}.{k}")
        return out
    if isinstance(info, msgspec.inspect.ListType) and isinstance(value, list):
        return [u for i, v in enumerate(value) for u in undeclared(v, info.item_type, f"{where}[{i}]")]
    if isinstance(info, msgspec.inspect.UnionType) and value is not None:
        structs = [o for o in info.types if isinstance(o, msgspec.inspect.StructType)]
        return undeclared(value, structs[0], where) if len(structs) == 1 else []
    if isinstance(info, msgspec.inspect.Metadata):
        return undeclared(value, info.type, where)
    return []


def conforms(name: str, result: dict[str, Any]) -> Any:
    """The reply as its declared type (a wrong declaration fails here), with no undeclared field."""
    decl = protocol.COMMANDS[name]
    assert decl.reply is not None, f"{name} declares no reply type"
    try:
        typed = msgspec.convert(result, decl.reply, strict=False)
    except msgspec.ValidationError as e:
        raise AssertionError(f"{name}'s real reply does not fit {decl.reply.__name__}: {e}\n{result}") from None
    extra = undeclared(result, decl.reply)
    assert not extra, f"{name} sends fields {decl.reply.__name__} does not declare: {extra}"
    return typed


@pytest.mark.speech
def test_real_replies_conform_to_their_declared_types(fresh_daemon: DaemonProc) -> None:
    d = fresh_daemon
    with d.client(timeout=60) as c:
        assert conforms("ping", c.request("ping")).pong is True
        about = conforms("describe", c.request("describe"))
        assert {e.name for e in about.commands} == set(protocol.COMMANDS)
        conforms("status", c.request("status"))
        conforms("nats", c.request("nats"))
        conforms("devices", c.request("devices"))

        conn = conforms("start", c.request("start", source={"type": "push", "sampleRate": 16000},
                                           config={"meetingTitle": "Reference"}, speaker={"name": "Ann"}))
        cid = conn.connection_id
        pcm = pcm16(synth(SENTENCES[0]))
        for i in range(0, len(pcm), 32000):
            assert conforms("send_audio", c.request("send_audio", pcm[i:i + 32000], connectionId=cid)).accepted > 0
        wait_for_type(c, cid, "message_response", timeout=90)

        page = conforms("history", c.request("history", connectionId=cid, limit=2))
        assert page.more is True and [e.seq for e in page.events] == [1, 2]
        assert conforms("get", c.request("get", connectionId=cid)).state == "live"
        # The sentence's final is out (its trailing silence closed it): nothing is open to finalize.
        assert conforms("finalize", c.request("finalize", connectionId=cid)).utterance_closed is False
        sub = conforms("subscribe", c.request("subscribe", connectionId=cid, token="ref"))
        assert [x.connection_id for x in sub.connections] == [cid]
        live_status = conforms("status", c.request("status"))
        assert live_status.live == 1 and live_status.connections[0].flow is not None
        summary = conforms("summary", c.request("summary", connectionId=cid))
        assert summary.live is True and summary.summary and summary.summary[0].message_refs

        final = conforms("stop", c.request("stop", connectionId=cid))
        assert final.state == "stopped" and final.ended_at is not None
        listed = conforms("conversations", c.request("conversations"))
        assert [x.connection_id for x in listed.conversations] == [cid]
        assert listed.conversations[0].title == "Reference" and listed.conversations[0].words > 0
        found = conforms("find_conversation", c.request("find_conversation", conversationId=conn.conversation_id))
        assert found.connections == [cid]
        conforms("history", c.request("history", connectionId=cid))
        assert conforms("delete_connection", c.request("delete_connection", connectionId=cid)).deleted is True

        stopping = conforms("shutdown", c.request("shutdown"))
        assert stopping.stopping is True and stopping.live == 0
    assert d.proc is not None and d.proc.wait(60) == 0, d.log()


# -- (d) bad requests: one clear typed error naming the argument; unknown fields ignored -----------------
BAD = [
    # (command, args, the argument named, a piece of the message)
    ("history", {"connectionId": 42}, "connectionId", "Expected `str`, got `int`"),
    ("history", {"connectionId": "abc", "limit": "10"}, "limit", "$.limit"),
    ("history", {"afterSeq": 1}, "connectionId", "missing required field `connectionId`"),
    ("find_conversation", {}, "conversationId", "missing required field `conversationId`"),
    ("history", {"connectionId": "abc", "limit": 0}, "limit", ">= 1"),
    ("history", {"connectionId": "abc", "limit": 10_001}, "limit", "<= 10000"),
    ("summary", {"connectionId": "abc", "limit": 51}, "limit", "<= 50"),
    ("conversations", {"source": "carrier-pigeon"}, "source", "$.source"),
    ("start", {"source": {"type": "carrier-pigeon"}}, "source", "$.source.type"),
    ("start", {"source": {"type": "push", "sampleRate": 4000}}, "source", "$.source.sampleRate"),
    ("start", {"source": {"type": "push", "sampleRate": "fast"}}, "source", "$.source.sampleRate"),
    ("start", {"source": {"type": "file"}}, "source", "missing required field `path`"),
    ("start", {"source": {"type": "push"}, "speaker": {"userId": 5}}, "speaker", "$.speaker.userId"),
    ("start", {"source": {"type": "push"}, "insightTypes": ["gossip"]}, "insightTypes", "$.insightTypes[0]"),
    ("start", {"source": {"type": "push"}, "connectionId": "a b"}, "connectionId", "$.connectionId"),
    ("subscribe", {"types": "message_response"}, "types", "got `str` - at `$.types`"),
]


@pytest.mark.parametrize(("cmd", "args", "argument", "said"), BAD,
                         ids=[f"{b[0]}-{b[2]}-{i}" for i, b in enumerate(BAD)])
def test_bad_request_names_the_argument(client: Client, cmd: str, args: dict[str, Any], argument: str,
                                        said: str) -> None:
    with pytest.raises(DaemonError) as e:
        client.request(cmd, **args)
    assert e.value.code == "bad_request", e.value
    assert (e.value.details or {}).get("argument") == argument, e.value.details
    assert said in e.value.message and e.value.message.startswith(f"{cmd}: "), e.value.message
    assert client.request("ping")["pong"] is True  # the daemon goes on


def raw_call(daemon: DaemonProc, cmd: str, args: dict[str, Any]) -> dict[str, Any]:
    """One request as bare JSON over a REQ socket (symblctl.Client drops null arguments)."""
    ctx = zmq.Context.instance()
    req = ctx.socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    try:
        req.connect(daemon.control)
        req.send(json.dumps({"v": 1, "id": uuid.uuid4().hex, "cmd": cmd, "args": args}).encode())
        assert req.poll(60_000), f"no reply to {cmd}"
        return json.loads(req.recv())
    finally:
        req.close()


def test_unknown_fields_are_ignored_and_null_means_not_given(daemon: DaemonProc) -> None:
    assert raw_call(daemon, "ping", {"fromTheFuture": True})["result"]["pong"] is True
    started = raw_call(daemon, "start", {"source": {"type": "push", "sampleRate": 16000, "newKnob": 3},
                                         "newArgument": [1], "engine": None, "speaker": None,
                                         "config": {"meetingTitle": "Ignored extras"}})
    assert started["ok"], started
    conn = started["result"]
    cid = conn["connectionId"]
    try:
        assert conn["source"]["kind"] == "push" and conn["engine"] == "local"
        assert conn["meetingTitle"] == "Ignored extras" and conn["speaker"] is None
        page = raw_call(daemon, "history", {"connectionId": cid, "limit": None, "afterSeq": None, "colour": "blue"})
        assert page["ok"], page
        assert page["result"]["events"][0]["type"] == "connection_started"  # afterSeq and limit took their defaults
    finally:
        assert raw_call(daemon, "stop", {"connectionId": cid})["result"]["state"] == "stopped"


def test_microphone_replies_conform_to_their_declared_types(tmp_path: Path) -> None:
    """devices, pause, resume, mute and attach_mic against a private PulseAudio server's virtual microphone."""
    mic = VirtMic(tmp_path / "pulse")
    mic.start()
    env = {k: v for k, v in mic.env.items() if k in ("XDG_RUNTIME_DIR", "PULSE_RUNTIME_PATH", "PULSE_SERVER",
                                                    "XDG_CONFIG_HOME")}
    d = DaemonProc(tmp_path / "d", env=env)
    try:
        d.start()
        with d.client(timeout=60) as c:
            listed = conforms("devices", c.request("devices"))
            assert listed.devices and any(dev.default for dev in listed.devices)
            conn = conforms("start", c.request("start", source={"type": "mic"}))
            cid = conn.connection_id
            assert conforms("pause", c.request("pause", connectionId=cid)).state == "paused"
            assert conforms("resume", c.request("resume", connectionId=cid)).state == "capturing"
            assert conforms("mute", c.request("mute", connectionId=cid)).state == "muted"
            assert conforms("mute", c.request("mute", connectionId=cid, on=False)).state == "capturing"
            assert conforms("stop", c.request("stop", connectionId=cid)).state == "stopped"

            pushed = conforms("start", c.request("start", source={"type": "push"}))
            attached = conforms("attach_mic", c.request("attach_mic", connectionId=pushed.connection_id))
            assert attached.connection_id == pushed.connection_id and attached.source["kind"] == "push"
            assert conforms("stop", c.request("stop", connectionId=pushed.connection_id)).state == "stopped"
        assert d.stop() == 0, d.log()
    finally:
        d.kill()
        mic.stop()
