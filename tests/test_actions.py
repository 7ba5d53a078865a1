"""Actions on stop (sendSummaryEmail): validation, the summary email, retries, the outbox.

Real parts only: a real SMTP server on loopback (aiosmtpd in this process), real symbld
daemons fed spoken audio (espeak-ng) through the real client library.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import voices
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from conftest import DaemonProc, events_until_complete, free_port, wait_for_events, wait_for_type, wait_while
from speechgen import SENTENCES, pcm16, synth
from test_diarization import amateur, labelled, reader, turn_at

import symblctl
from symbld.core.speakers import attribute_history
from symbld.integrations.mail import ActionError, ActionRunner, build_summary, validate_actions

ACTION_SENTENCE = "Mark will share the budget report with the finance team by Friday."
QUESTION_SENTENCE = SENTENCES[0]  # "Can you send me the quarterly report before Friday?"
TITLE = "Budget sync"


def mail_action(*emails: str) -> list[dict[str, Any]]:
    return [{"invokeOn": "stop", "name": "sendSummaryEmail", "parameters": {"emails": list(emails)}}]


# -- a real SMTP server -----------------------------------------------------------------------
class Inbox:
    """aiosmtpd handler that keeps every delivered message; optionally refuses recipients."""

    def __init__(self, refuse: str | None = None) -> None:
        self.messages: list[tuple[str, list[str], email.message.EmailMessage]] = []
        self.refuse = refuse
        self.arrived = threading.Condition()
        self.hold = threading.Event()  # cleared: DATA waits for it (a server slow to accept)
        self.hold.set()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        if self.refuse and address == self.refuse:
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.to_thread(self.hold.wait, 60)
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.arrived:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
            self.arrived.notify_all()
        return "250 Message accepted for delivery"

    def wait_for(self, n: int, timeout: float) -> list[tuple[str, list[str], email.message.EmailMessage]]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.messages) >= n, timeout)
            assert len(self.messages) >= n, f"{len(self.messages)} of {n} messages arrived within {timeout} s"
            return list(self.messages)


def smtp_server(inbox: Inbox, port: int, **kwargs: Any) -> Controller:
    c = Controller(inbox, hostname="127.0.0.1", port=port, **kwargs)
    c.start()
    return c


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    box, port = Inbox(), free_port()
    server = smtp_server(box, port)
    try:
        yield box, port
    finally:
        server.stop()


class Events:
    """The ``publish`` callback: collects action events (thread-safe) and waits for them."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str, str, dict[str, Any]]] = []
        self.cond = threading.Condition()

    def __call__(self, connection_id: str, conversation_id: str, event_type: str, data: dict[str, Any]) -> None:
        with self.cond:
            self.items.append((connection_id, conversation_id, event_type, data))
            self.cond.notify_all()

    def types(self) -> list[str]:
        with self.cond:
            return [t for _, _, t, _ in self.items]

    def wait_for(self, event_type: str, count: int = 1, timeout: float = 20.0) -> None:
        with self.cond:
            ok = self.cond.wait_for(lambda: sum(t == event_type for _, _, t, _ in self.items) >= count, timeout)
        assert ok, f"no {count}× {event_type} within {timeout} s; got {self.types()}"


def smtp_config(port: int, **extra: Any) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": port, "sender": "symbld@example.org", "retry_initial": 0.3,
            "retry_max": 1.0, "timeout": 5.0, **extra}


def smtp_toml(port: int) -> str:
    """:func:`smtp_config` as the ``[smtp]`` table of a daemon's config file."""
    return "[smtp]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in smtp_config(port).items())


# -- a real conversation ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def conversation(daemon: DaemonProc) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A spoken meeting through the real daemon: (final connection object, every event)."""
    api = symblctl.StreamingApi(control=daemon.control, events=daemon.events)
    conn = api.start_connection(config={"meetingTitle": TITLE}, speaker={"userId": "jane@example.com",
                                                                         "name": "Jane"})
    try:
        for sentence in (ACTION_SENTENCE, QUESTION_SENTENCE):
            conn.send_audio(pcm16(synth(sentence)))
        conn.stop()
        with daemon.client() as c:
            events = events_until_complete(c, conn.connectionId)
    finally:
        conn.close()
    return conn.info, events


# -- validation ---------------------------------------------------------------------------------
def test_validate_actions_accepts_and_normalises() -> None:
    assert validate_actions(None) == []
    assert validate_actions({}) == []  # the Symbl SDK's default
    out = validate_actions(mail_action(" a@example.com", "b@example.org", "A@example.com"))
    assert out == mail_action("a@example.com", "b@example.org")


@pytest.mark.parametrize(("actions", "says"), [
    ("sendSummaryEmail", r"Expected `array`, got `str`$"),
    ([{"invokeOn": "stop", "name": "sendSMS", "parameters": {"emails": ["a@b.c"]}}],
     r"Invalid enum value 'sendSMS' - at `\$\[0\]\.name`"),
    ([{"invokeOn": "start", "name": "sendSummaryEmail", "parameters": {"emails": ["a@b.c"]}}],
     r"at `\$\[0\]\.invokeOn`"),
    ([{"name": "sendSummaryEmail", "parameters": {"emails": ["a@b.c"]}}], r"missing required field `invokeOn`"),
    ([{"invokeOn": "stop", "name": "sendSummaryEmail"}], r"missing required field `parameters`"),
    ([{"invokeOn": "stop", "name": "sendSummaryEmail", "parameters": {"emails": []}}],
     r"length >= 1 - at `\$\[0\]\.parameters\.emails`"),
    (mail_action("not-an-address"), r"matching regex .* - at `\$\[0\]\.parameters\.emails\[0\]`"),
    (mail_action("a@b.c\r\nBcc: x@evil.example"), r"at `\$\[0\]\.parameters\.emails\[0\]`"),
    (mail_action(*[f"u{i}@example.com" for i in range(51)]), r"length <= 50"),
])
def test_validate_actions_refuses_clearly(actions: object, says: str) -> None:
    with pytest.raises(ActionError, match=says):
        validate_actions(actions)


# -- the summary email ----------------------------------------------------------------------------
def test_summary_has_the_spoken_meeting(conversation: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    info, events = conversation
    s = build_summary(info, events)
    assert s["title"] == TITLE
    assert s["participants"] == ["Jane"]
    said = " ".join(t["text"] for t in s["transcript"]).lower()
    assert "budget report" in said and "quarterly report" in said
    assert any("budget report" in a["text"].lower() for a in s["actionItems"]), s["actionItems"]
    item = next(a for a in s["actionItems"] if "budget report" in a["text"].lower())
    assert item["assignee"] == "Mark" and item["dueBy"], item
    assert any("quarterly report" in q["text"].lower() for q in s["questions"]), s["questions"]
    assert s["summary"] and all(x.lower() in said for x in s["summary"]), s["summary"]  # extractive: said words


def test_summary_email_is_delivered_to_each_address(conversation: tuple[dict[str, Any], list[dict[str, Any]]],
                                                    inbox: tuple[Inbox, int], tmp_path: Path) -> None:
    info, events = conversation
    box, port = inbox
    published = Events()
    runner = ActionRunner(smtp_config(port), tmp_path, published)
    try:
        box.hold.clear()  # the server takes no message until told
        runner.on_connection_ended(info, events, validate_actions(mail_action("ann@example.com",
                                                                              "bob@example.org")))
        # It returned with nothing accepted yet: sending is on the runner's thread, not the caller's.
        assert box.messages == [] and "action_completed" not in published.types()
        box.hold.set()
        messages = box.wait_for(2, timeout=20)
        published.wait_for("action_completed", 2)
    finally:
        runner.close()
    assert sorted(r for _, rcpts, _ in messages for r in rcpts) == ["ann@example.com", "bob@example.org"]
    for sender, _, msg in messages:
        assert sender == "symbld@example.org"
        assert msg["Subject"] == f"Summary: {TITLE}"
        assert msg["X-Symbl-Conversation-Id"] == info["conversationId"]
        text = msg.get_body(("plain",)).get_content()
        html = msg.get_body(("html",)).get_content()
        assert "budget report" in text.lower() and "budget report" in html.lower()
        assert "assignee: Mark" in text
        assert "Jane" in text and "Action items (" in text and "Transcript" in text
    assert runner.pending() == []
    cid = {c for c, _, _, _ in published.items}
    assert cid == {info["connectionId"]}


def test_smtp_down_at_stop_is_retried_until_it_is_up(conversation: tuple[dict[str, Any], list[dict[str, Any]]],
                                                      tmp_path: Path) -> None:
    info, events = conversation
    box, port = Inbox(), free_port()  # nothing listens on port yet
    published = Events()
    runner = ActionRunner(smtp_config(port), tmp_path, published)
    server = None
    try:
        runner.on_connection_ended(info, events, mail_action("ann@example.com"))
        published.wait_for("action_failed", 2)
        pending = runner.pending()
        assert len(pending) == 1  # the summary waits in the outbox, on disk
        stored = json.loads((tmp_path / "outbox" / f"{pending[0]}.json").read_text())
        assert "budget report" in stored["message"].lower() and stored["lastError"]
        server = smtp_server(box, port)
        messages = box.wait_for(1, timeout=20)
        published.wait_for("action_completed")
    finally:
        runner.close()
        if server is not None:
            server.stop()
    assert len(messages) == 1 and messages[0][1] == ["ann@example.com"]
    types = published.types()
    assert types[0] == "action_failed" and types[-1] == "action_completed" and "action_retrying" in types
    failed = next(d for _, _, t, d in published.items if t == "action_failed")
    assert "Connection refused" in failed["error"] or "ConnectionRefused" in failed["error"], failed
    assert failed["permanent"] is False and failed["retryInSeconds"] > 0
    assert runner.pending() == []


def test_outbox_survives_a_restart(conversation: tuple[dict[str, Any], list[dict[str, Any]]], tmp_path: Path) -> None:
    info, events = conversation
    box, port = Inbox(), free_port()
    first = Events()
    runner = ActionRunner(smtp_config(port), tmp_path, first)
    runner.on_connection_ended(info, events, mail_action("ann@example.com"))
    first.wait_for("action_failed")
    runner.close()  # the daemon goes away with the email unsent
    assert len(list((tmp_path / "outbox").glob("*.json"))) == 1
    server = smtp_server(box, port)
    second = Events()
    runner = ActionRunner(smtp_config(port), tmp_path, second)  # a new daemon run
    try:
        messages = box.wait_for(1, timeout=20)
        second.wait_for("action_completed")
        wait_while("a second delivery of the same email", lambda: len(box.messages) > 1, 0.5)
    finally:
        runner.close()
        server.stop()
    assert len(box.messages) == 1 and "budget report" in messages[0][2].get_body(("plain",)).get_content().lower()
    assert list((tmp_path / "outbox").glob("*.json")) == []


def test_refused_recipient_fails_permanently(conversation: tuple[dict[str, Any], list[dict[str, Any]]],
                                             tmp_path: Path) -> None:
    info, events = conversation
    box, port = Inbox(refuse="nobody@example.com"), free_port()
    server = smtp_server(box, port)
    published = Events()
    runner = ActionRunner(smtp_config(port), tmp_path, published)
    try:
        runner.on_connection_ended(info, events, mail_action("nobody@example.com", "ann@example.com"))
        box.wait_for(1, timeout=20)
        published.wait_for("action_failed")
        published.wait_for("action_completed")
    finally:
        runner.close()
        server.stop()
    failed = next(d for _, _, t, d in published.items if t == "action_failed")
    assert failed["permanent"] is True and "550" in failed["error"] and failed["to"] == ["nobody@example.com"]
    assert "action_retrying" not in published.types()
    assert len(list((tmp_path / "outbox" / "failed").glob("*.json"))) == 1
    assert runner.pending() == []


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_login_with_a_credentials_file(conversation: tuple[dict[str, Any], list[dict[str, Any]]], tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The password comes from $CREDENTIALS_DIRECTORY/smtp-password (systemd LoadCredential=)."""
    info, events = conversation
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "smtp-password").write_text("s3cret-pw\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    logins: list[tuple[bytes, bytes]] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth: Any) -> AuthResult:
        ok = isinstance(auth, LoginPassword) and (auth.login, auth.password) == (b"symbld", b"s3cret-pw")
        logins.append((auth.login, auth.password))
        return AuthResult(success=ok)

    box, port = Inbox(), free_port()
    server = smtp_server(box, port, authenticator=authenticator, auth_required=True, auth_require_tls=False)
    published = Events()
    runner = ActionRunner(smtp_config(port, username="symbld"), tmp_path / "state", published)
    try:
        runner.on_connection_ended(info, events, mail_action("ann@example.com"))
        box.wait_for(1, timeout=20)
        published.wait_for("action_completed")
    finally:
        runner.close()
        server.stop()
    assert logins and logins[-1] == (b"symbld", b"s3cret-pw")
    assert "s3cret-pw" not in repr(runner.settings)


# -- the daemon runs the actions itself ------------------------------------------------------------
def test_daemon_sends_the_summary_on_stop(tmp_path: Path) -> None:
    """start with actions → stop → the email arrives (needs ActionRunner wired into symbld)."""
    box, port = Inbox(), free_port()
    server = smtp_server(box, port)
    d = DaemonProc(tmp_path / "d", config=smtp_toml(port))
    try:
        d.start()
        with d.client() as c:
            with pytest.raises(symblctl.DaemonError) as refused:
                c.start(source={"type": "push"}, actions=mail_action("not-an-address"))
            assert refused.value.code == "bad_request"
            assert "at `$.actions[0].parameters.emails[0]`" in refused.value.message
        api = symblctl.StreamingApi(control=d.control, events=d.events)
        conn = api.start_connection(config={"meetingTitle": TITLE}, actions=mail_action("ann@example.com"))
        seen: list[dict[str, Any]] = []
        conn.subscribe({"*": seen.append})
        conn.send_audio(pcm16(synth(ACTION_SENTENCE)))
        conn.stop()
        messages = box.wait_for(1, timeout=30)
        assert messages[0][1] == ["ann@example.com"] and messages[0][2]["Subject"] == f"Summary: {TITLE}"
        assert "budget report" in messages[0][2].get_body(("plain",)).get_content().lower()
        assert "Summary (1)" in messages[0][2].get_body(("plain",)).get_content()
        with d.client() as c:
            wait_for_type(c, conn.connectionId, "action_completed", 10)
        conn.close()
    finally:
        d.stop()
        server.stop()


@pytest.mark.speech
@pytest.mark.skipif(not voices.available(), reason="pocketsphinx-testdata and codec2-examples (install-deps.sh)")
def test_summary_email_of_a_diarized_conversation_says_who_said_what(tmp_path: Path) -> None:
    """Two real people on one file (tests/voices.py), diarized by the daemon: the e-mail lists both
    labels as participants, each one's talk time, every transcript line under the label of the person
    who said it, and links to the conversation's summary page."""
    audio, turns = voices.join([("reader", reader("0870")), ("amateur", amateur(0.0)),
                                ("reader", reader("0920")), ("amateur", amateur(6.5))])
    wav = voices.write_wav(tmp_path / "two.wav", audio)
    box, port = Inbox(), free_port()
    server = smtp_server(box, port)
    d = DaemonProc(tmp_path / "d", config=smtp_toml(port))
    try:
        d.start()
        with d.client() as c:
            cid = c.start(source={"type": "file", "path": str(wav), "realtime": False},
                          actions=mail_action("ann@example.com"))["connectionId"]
            events = attribute_history(wait_for_events(  # action events may follow conversation_completed
                c, cid, lambda ev: any(e["type"] == "conversation_completed" for e in ev), 300, "the end"))
            url = c.request("summary_page", connectionId=cid)["url"]
        mail = box.wait_for(1, timeout=60)[0][2]
    finally:
        d.stop()
        server.stop()
    said = labelled(events)
    person = {who["id"]: turn_at(turns, t) for t, who, _ in said}
    assert sorted(person.values()) == ["amateur", "reader"], said  # two labels, one per person
    name = {who["id"]: who["name"] for _, who, _ in said}
    order = [name[label] for label in dict.fromkeys(who["id"] for _, who, _ in said)]
    text = mail.get_body(("plain",)).get_content()
    assert f"Participants: {', '.join(order)}" in text, text
    assert f"Summary page: {url}" in text
    assert f'<a href="{url.replace("&", "&amp;")}">' in mail.get_body(("html",)).get_content()
    for label, who in name.items():
        seconds = sum(m["duration"]["duration"] for e in events if e["type"] == "message_response"
                      for m in e["data"]["messages"] if m["from"]["id"] == label)
        found = re.search(rf"- {re.escape(who)}: (\d+):(\d\d) talk time \(\d+ %\), (\d+) messages?", text)
        assert found, (who, text)
        assert int(found[1]) * 60 + int(found[2]) == int(seconds)
        assert int(found[3]) == sum(1 for _, w, _ in said if w["id"] == label)
    lines = re.findall(r"^  \[\d\d:\d\d\] ([^:]+): (.*)$", text, flags=re.M)
    assert len(lines) == len(said), (lines, said)
    by_person = {person[label]: name[label] for label in person}
    for words, who in (("dashwood", "reader"), ("testing", "amateur")):  # decoded with margin on these clips
        assert any(words in line.lower() and shown == by_person[who] for shown, line in lines), (words, lines)


def test_daemon_retries_across_a_restart(tmp_path: Path) -> None:
    """SMTP down at stop → action_failed; the daemon restarts; the server comes up → delivered once."""
    box, port = Inbox(), free_port()
    config = smtp_toml(port)
    d = DaemonProc(tmp_path / "d", config=config)
    server = None
    try:
        d.start()
        api = symblctl.StreamingApi(control=d.control, events=d.events)
        conn = api.start_connection(config={"meetingTitle": TITLE}, actions=mail_action("ann@example.com"))
        conn.send_audio(pcm16(synth(ACTION_SENTENCE)))
        conn.stop()
        cid = conn.connectionId
        conn.close()
        with d.client() as c:
            wait_for_type(c, cid, "action_failed", 10)  # the SMTP server is down
        assert d.stop() == 0
        assert len(list((d.state_dir / "outbox").glob("*.json"))) == 1
        server = smtp_server(box, port)
        d.start()  # same state dir: the new run re-sends the outbox
        messages = box.wait_for(1, timeout=30)
        assert messages[0][1] == ["ann@example.com"]
        assert "budget report" in messages[0][2].get_body(("plain",)).get_content().lower()
        with d.client() as c:
            events = wait_for_events(c, cid, lambda ev: ev[-1]["type"] == "action_completed", 10, "action_completed")
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))  # numbering continued
        wait_while("a second delivery of the same email", lambda: len(box.messages) > 1, 0.5)
    finally:
        d.stop()
        if server is not None:
            server.stop()
