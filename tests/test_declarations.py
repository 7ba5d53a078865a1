"""Each command declared once (symblctl.protocol): the daemon, the client library and the CLI all follow it."""

from __future__ import annotations

import json

import msgspec
import pytest
from cli_helpers import symblctl
from conftest import DaemonProc, events_until_complete
from speechgen import SENTENCES, pcm16, synth

from symblctl import Client, protocol
from symblctl.cli import build_parser
from symblctl.cli_declared import WRITTEN_OUT
from symblctl.client import DaemonError


def test_every_declared_command_has_a_client_method_and_a_cli_subcommand() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "cmd")
    for name, decl in protocol.COMMANDS.items():
        assert callable(getattr(Client, name, None)), f"Client.{name} missing"
        if not decl.payload:
            command = WRITTEN_OUT.get(name, name)
            assert command in sub.choices or command.replace("_", "-") in sub.choices, f"symblctl {name} missing"
    generated = [n for n, d in protocol.COMMANDS.items() if n not in WRITTEN_OUT and not d.payload]
    assert {"find_conversation", "delete_connection", "summary", "attach_mic"} <= set(generated)


def test_daemon_serves_exactly_the_declared_commands(client: Client) -> None:
    # describe's list is built from the declarations, so comparing the two would prove nothing; what
    # can go wrong is a declaration without a handler (or a handler without a declaration), so the
    # handlers the daemon registers are compared with the declarations.
    import symbld.control.commands  # noqa: F401  (registers every handler)
    from symbld.control import registry

    assert set(registry.COMMANDS) == set(protocol.COMMANDS)
    assert [c["name"] for c in client.describe()["commands"]] == list(protocol.COMMANDS)
    # And the running daemon routes by that registry: an undeclared name is refused as unknown.
    with pytest.raises(DaemonError) as e:
        client.request("no_such_command")
    assert e.value.code == "unknown_command" and "describe" in e.value.details["commands"]


def test_generated_client_methods_take_the_declared_parameters(client: Client) -> None:
    with pytest.raises(TypeError):
        client.history()  # connection_id is required by the declaration
    with pytest.raises(TypeError):
        client.history("x", nonsense=1)  # not a field of History


@pytest.mark.speech
def test_a_conversation_through_generated_methods_and_subcommands(daemon: DaemonProc, client: Client) -> None:
    conn = client.start(source={"type": "push", "sampleRate": 16000})
    cid, conv = conn["connectionId"], conn["conversationId"]
    client.send_audio(cid, pcm16(synth(SENTENCES[2])), end=True)
    events = events_until_complete(client, cid, timeout=120)
    said = " ".join(m["payload"]["content"] for e in events if e["type"] == "message_response"
                    for m in e["data"]["messages"]).lower()
    assert "budget" in said, said  # SENTENCES[2] is about the budget

    assert client.find_conversation(conv) == {"connections": [cid]}
    page = client.history(cid, 0, 2)  # positional, in declared order: connection_id, after_seq, limit
    assert [e["seq"] for e in page["events"]] == [1, 2] and page["more"]
    assert msgspec.convert(page, protocol.Events).last_seq >= len(events)

    r = symblctl(daemon, "find-conversation", conv, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"connections": [cid]}
    r = symblctl(daemon, "summary", conv, "--limit", "1", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["connectionId"] == cid and len(summary["summary"]) == 1
    assert "budget" in summary["summary"][0]["text"].lower()

    r = symblctl(daemon, "summary", cid, "--limit", "many")
    assert r.returncode == 2 and "invalid int value" in r.stderr  # typed from the declaration, refused locally
    r = symblctl(daemon, "summary", cid, "--limit", "0")
    assert r.returncode == 1 and "limit" in r.stderr and "bad_request" in r.stderr  # the daemon's check, named

    r = symblctl(daemon, "delete-connection", cid, "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == {"connectionId": cid, "deleted": True}
    r = symblctl(daemon, "get", cid)
    assert r.returncode == 1 and "unknown_connection" in r.stderr
