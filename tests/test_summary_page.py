"""The summary page at ``summaryUrl``: a spoken meeting through the real daemon, the page read as a
person would (real headless Chromium over the DevTools protocol, ``--dump-dom``, and plain HTTP with
no JavaScript), a live update while the connection still runs, the signed links, ``symblctl open``,
and the Symbl-compatible server's ``summaryUrl`` / ``summaryInfo``."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import voices
from chromium import Browser, dump_dom
from conftest import DaemonProc, events_until_complete, messages, wait_for_events, wait_until
from feeding import speak
from speechgen import PHONE_KEY_WORDS, in_order
from test_diarization import amateur, labelled, reader, turn_at
from test_redaction_daemon import RAW, SPOKEN
from test_telephony import sipp, speech  # noqa: F401 - the sipp callee fixtures

from symblctl.client import Client, DaemonError
from symbld.core import speakers
from symbld.web.links import SECRET_FILE, PageLinks
from symbld.web.render import clock

pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parent.parent
TITLE = 'Q4 planning: "budget" & <pricing>'  # shown as text, never as markup
MEETING = ["Can you send me the quarterly report before Friday?",
           "John will read the contract and get back to us on Monday.",
           "We should schedule a meeting next week to discuss the budget.",
           "I think the new pricing model is great."]
SAID = ["quarterly report", "friday", "contract", "monday", "meeting next week", "budget", "pricing model", "great"]


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def visible_text(page: str) -> str:
    """What a browser without JavaScript shows: tags and scripts out, entities decoded."""
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S | re.I)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body))).strip()


def page_url(client: Client, connection_id: str) -> str:
    return client.request("summary_page", connectionId=connection_id)["url"]


@pytest.fixture(scope="module")
def meeting(daemon: DaemonProc) -> dict[str, Any]:
    """One spoken meeting, run to the end: its events and its page's URL."""
    with daemon.client() as c:
        cid = c.start(source={"type": "push"}, speaker={"userId": "jane@example.com", "name": "Jane"},
                      sentiment=True, detectEntities=True, config={"meetingTitle": TITLE},
                      trackers=[{"name": "Budget", "vocabulary": ["budget", "pricing"]}])["connectionId"]
        speak(c, cid, MEETING, speed=150)
        events = events_until_complete(c, cid, timeout=240)
        return {"cid": cid, "events": events, "url": page_url(c, cid),
                "conversationId": events[-1]["conversationId"]}


def _of(events: list[dict], etype: str, key: str) -> list[dict]:
    return [x for e in events if e["type"] == etype for x in e["data"].get(key) or []]


def expected_insights(events: list[dict]) -> list[dict]:
    return _of(events, "insight_response", "insights")


# ---------------------------------------------------------------- the page without JavaScript


@pytest.mark.speech
def test_summary_url_of_conversation_completed_serves_the_whole_conversation_as_html(meeting: dict) -> None:
    completed = meeting["events"][-1]
    assert completed["type"] == "conversation_completed"
    assert completed["data"]["summaryUrl"] == meeting["url"]
    assert urllib.parse.urlsplit(meeting["url"]).hostname == "127.0.0.1"
    status, page = fetch(meeting["url"])
    assert status == 200, page
    text = visible_text(page).lower()
    for words in SAID:  # what was said, from the audio, through the engine
        assert words in text, (words, text[:2000])
    spoken = " ".join(messages(meeting["events"])).lower()
    assert all(w in spoken for w in ("quarterly", "contract", "budget"))
    insights = expected_insights(meeting["events"])
    kinds = {i["type"] for i in insights}
    assert {"question", "action_item", "follow_up"} <= kinds, kinds
    for i in insights:
        assert html.escape(i["text"], quote=True) in page
        if i.get("assignee"):
            assert f'<span class="assignee">{html.escape(i["assignee"]["name"])}</span>' in page
        if i.get("dueBy"):
            assert f"due {i['dueBy']['value'][:10]}" in page
    summary = _of(meeting["events"], "summary_response", "summary")
    assert summary and all(html.escape(s["text"], quote=True) in page for s in summary)
    topics = _of(meeting["events"], "topic_response", "topics")
    assert topics and html.escape(topics[-1]["phrases"]) in page
    assert "Budget" in visible_text(page) and "positive" in text  # tracker, sentiment of "... is great."
    # The title is text: escaped in the source, never markup.
    assert html.escape(TITLE, quote=True) in page and TITLE not in page and "<pricing>" not in page
    assert TITLE in visible_text(page)


@pytest.mark.speech
def test_the_page_of_a_redacted_conversation_shows_only_masked_text(client: Client) -> None:
    cid = client.start(source={"type": "push"}, redaction=True)["connectionId"]
    speak(client, cid, SPOKEN[:2])
    events = events_until_complete(client, cid, timeout=180)
    status, page = fetch(events[-1]["data"]["summaryUrl"])
    assert status == 200
    cols = page[page.index('class="cols"'):page.index("<footer")]  # ids and dates aside, and talk times:
    shown = visible_text(re.sub(r'<section class="card speakers">.*?</section>', "", cols))  # numbers, not words
    assert "[PHONE]" in shown and "phone number" in shown.lower(), shown
    assert not [raw.pattern for raw in RAW if raw.search(shown)], shown


def test_links_are_signed_per_conversation(daemon: DaemonProc, meeting: dict) -> None:
    url = meeting["url"]
    base, _, query = url.partition("?")
    assert fetch(base)[0] == 403  # no signature
    assert fetch(base + "?s=" + "0" * 64)[0] == 403  # a wrong one
    assert fetch(base + "?s=%C3%A9")[0] == 403  # not even hex
    secret_file = daemon.run_dir / SECRET_FILE
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    links = PageLinks(bytes.fromhex(secret_file.read_text().strip()), url.split("/meeting/")[0])
    assert links.url(meeting["conversationId"]) == url
    other = "1234567890123456"
    assert fetch(f"{base.rsplit('/', 1)[0]}/{other}?{query}")[0] == 403  # this signature is for another id
    assert fetch(links.url(other))[0] == 404  # signed, but no such conversation
    assert fetch(url.split("/meeting/")[0] + "/static/secret")[0] == 404
    events = url.replace("?", "/events?")  # a completed conversation: the whole page, then "end"
    status, stream = fetch(events)
    assert status == 200 and "event: page" in stream and stream.rstrip().endswith("data: complete")
    assert fetch(base + "/events?s=bad")[0] == 403


# ---------------------------------------------------------------- in Chromium


@pytest.mark.speech
def test_chromium_shows_transcript_insights_and_summary(meeting: dict, tmp_path: Path) -> None:
    dom = dump_dom(meeting["url"])
    assert all(w in visible_text(dom).lower() for w in SAID)
    with Browser(tmp_path) as b:
        b.open(meeting["url"])
        section = "(document.querySelector({!r}) || {{innerText: ''}}).innerText"
        assert b.evaluate("document.querySelector('h1').innerText") == TITLE
        assert b.evaluate("document.querySelector('h1').children.length") == 0
        transcript = b.evaluate(section.format(".transcript")).lower()
        for said in messages(meeting["events"]):
            assert said.lower() in transcript
        assert "jane" in transcript and "0:00" in transcript  # speaker and time of each message
        actions = b.evaluate(section.format(".action-item")) + b.evaluate(section.format(".follow-up"))
        assert "John" in actions and "quarterly report" in actions.lower()
        assert re.search(r"due \d{4}-\d\d-\d\d", actions)
        assert "quarterly report" in b.evaluate(section.format(".question")).lower()
        summary = _of(meeting["events"], "summary_response", "summary")
        assert all(s["text"] in b.evaluate(section.format(".summary")) for s in summary)
        assert "Budget" in b.evaluate(section.format(".trackers"))
        assert b.evaluate(section.format(".topics")).strip()
        assert b.evaluate("document.querySelector('.state').dataset.state") == "ended"
        shot = tmp_path / "summary-page.png"
        b.screenshot(shot)
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(png[16:20], "big") == 1280
    if os.environ.get("SYMBLD_UPDATE_SCREENSHOT"):  # docs/summary-page.png is refreshed by hand, on purpose
        shutil.copy(shot, REPO / "docs" / "summary-page.png")


@pytest.mark.speech
def test_chromium_page_updates_live_while_the_connection_runs(daemon: DaemonProc, client: Client,
                                                              tmp_path: Path) -> None:
    cid = client.start(source={"type": "push"}, speaker={"name": "Sam"})["connectionId"]
    speak(client, cid, [MEETING[0]], speed=150, end=False)
    wait_for_events(client, cid, lambda ev: len(messages(ev)) >= 1, timeout=120, what="the first message")
    with Browser(tmp_path) as b:
        b.open(page_url(client, cid))
        b.wait_for("document.body.innerText.toLowerCase().includes('quarterly')", 30, "the first words")
        assert b.evaluate("document.querySelector('.state').dataset.state") == "live"
        assert "contract" not in b.text().lower()
        speak(client, cid, [MEETING[1]], speed=150, end=False)  # more audio while the page is open
        b.wait_for("document.querySelector('.transcript').innerText.toLowerCase().includes('contract')", 120,
                   "the new words in the open page")
        assert client.request("get", connectionId=cid)["state"] == "live"  # updated while still running
        assert b.evaluate("document.querySelector('.state').dataset.state") == "live"
        client.end_audio(cid)
        b.wait_for("document.querySelector('.state').dataset.state === 'ended'", 120, "the page to show the end")
        assert "john" in b.evaluate("document.querySelector('.follow-up').innerText").lower()


@pytest.mark.speech
@pytest.mark.skipif(not voices.available(), reason="pocketsphinx-testdata and codec2-examples (install-deps.sh)")
def test_chromium_shows_who_said_what_with_talk_times(client: Client, tmp_path: Path) -> None:
    """One file, two real people (a LibriVox reader, a radio amateur; tests/voices.py), diarized by the
    daemon: the page names both labels, gives each the talk time of its messages and a colour of its
    own, and shows each line under the label of the person who said it."""
    audio, turns = voices.join([("reader", reader("0870")), ("amateur", amateur(0.0)),
                                ("reader", reader("0920")), ("amateur", amateur(6.5))])
    wav = voices.write_wav(tmp_path / "two.wav", audio)
    cid = client.start(source={"type": "file", "path": str(wav), "realtime": False})["connectionId"]
    events = speakers.attribute_history(events_until_complete(client, cid, timeout=300))
    said = labelled(events)
    person = {who["id"]: turn_at(turns, t) for t, who, _ in said}
    assert sorted(person.values()) == ["amateur", "reader"], said  # two labels, one per person
    name = {who["id"]: who["name"] for _, who, _ in said}
    talk = {label: sum(m["duration"]["duration"] for e in events if e["type"] == "message_response"
                       for m in e["data"]["messages"] if m["from"]["id"] == label) for label in person}
    for label, seconds in talk.items():  # the messages' audio lies within that person's turns
        spoken = sum(u.end - u.start for u in turns if u.speaker == person[label])
        assert 0.5 * spoken < seconds <= spoken + 1.0, (person[label], seconds, spoken)

    with Browser(tmp_path) as b:
        b.open(page_url(client, cid))
        rows = b.evaluate("JSON.stringify([...document.querySelectorAll('.speakers li')].map(li => ["
                          "li.querySelector('.name').innerText, li.querySelector('.talk').innerText, "
                          "li.querySelector('.share').innerText, getComputedStyle(li.querySelector('.name')).color]))")
        lines = b.evaluate("JSON.stringify([...document.querySelectorAll('.transcript .line')].map(li => ["
                           "li.querySelector('.who').innerText, li.querySelector('.said').innerText, "
                           "getComputedStyle(li.querySelector('.who')).color]))")
    rows, lines = json.loads(rows), json.loads(lines)
    order = list(dict.fromkeys(who["id"] for _, who, _ in said))  # in the order they were first heard
    assert [(n, t) for n, t, _, _ in rows] == [(name[label], clock(talk[label])) for label in order], rows
    assert sum(int(s.rstrip(" %")) for _, _, s, _ in rows) in (99, 100, 101)
    colour = {n: c for n, _, _, c in rows}
    assert len(set(colour.values())) == 2, rows  # a colour per speaker
    assert lines and all(colour[who] == c for who, _, c in lines), (lines, rows)  # each line in its speaker's
    by_person = {person[label]: name[label] for label in person}
    for words, who in (("dashwood", "reader"), ("testing", "amateur")):  # decoded with margin on these clips
        assert any(words in text.lower() and shown == by_person[who] for shown, text, _ in lines), (words, lines)


def test_speakers_on_their_own_connections_share_one_page(client: Client) -> None:
    """Two speakers of one conversation, each on their own connection (what the Symbl server makes of
    a socket per speaker): one page, either link, both people's words under their names, live until
    the last of them ends."""
    jane = client.start(source={"type": "push"}, speaker={"name": "Jane"})
    conv = jane["conversationId"]
    bob = client.start(source={"type": "push"}, speaker={"name": "Bob"}, conversationId=conv)
    assert bob["conversationId"] == conv
    speak(client, jane["connectionId"], [MEETING[0]], speed=150)
    events_until_complete(client, jane["connectionId"], timeout=120)
    speak(client, bob["connectionId"], [MEETING[1]], speed=150, end=False)
    wait_for_events(client, bob["connectionId"], lambda ev: len(messages(ev)) >= 1, timeout=120,
                    what="Bob's first message")
    url = page_url(client, jane["connectionId"])
    status, page = fetch(url)
    assert status == 200
    text = visible_text(page).lower()
    assert "quarterly report" in text and "contract" in text, text  # Jane's words and Bob's
    said = {(who, words.lower()) for who, words in
            re.findall(r'<span class="who"[^>]*>([^<]*)</span><span class="said"[^>]*>([^<]*)</span>', page)}
    assert any(who == "Jane" and "quarterly" in words for who, words in said), said
    assert any(who == "Bob" and "contract" in words for who, words in said), said
    assert 'data-state="live"' in page  # Jane ended; Bob is still talking
    client.end_audio(bob["connectionId"])
    events_until_complete(client, bob["connectionId"], timeout=120)
    status, page = fetch(url)
    assert status == 200 and 'data-state="ended"' in page
    assert "2 connections" in visible_text(page)
    assert fetch(page_url(client, bob["connectionId"]))[1] == page  # Bob's link: the same page


# ---------------------------------------------------------------- symblctl open


def test_symblctl_open_prints_and_opens_the_url(daemon: DaemonProc, meeting: dict, tmp_path: Path) -> None:
    base = [sys.executable, "-m", "symblctl.cli", "--control", daemon.control, "--events", daemon.events]
    out = subprocess.run([*base, "open", meeting["conversationId"]], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == meeting["url"], out.stderr
    opened = tmp_path / "opened.txt"
    env = {**os.environ, "BROWSER": f"sh -c 'echo \"$0\" > {opened}' %s"}
    out = subprocess.run([*base, "open", meeting["cid"], "--browser"], capture_output=True, text=True, timeout=60,
                         env=env)
    assert out.returncode == 0, out.stderr
    assert opened.read_text().strip() == meeting["url"]
    out = subprocess.run([*base, "open", "no-such-conversation"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "no connection" in out.stderr


# ---------------------------------------------------------------- config: off, and a port in use


def _ended_silently(c: Client) -> dict:
    cid = c.start(source={"type": "push"})["connectionId"]
    c.end_audio(cid)
    return events_until_complete(c, cid, timeout=120)[-1]


def test_page_off_with_port_0_and_a_busy_port_falls_back(tmp_path: Path, meeting: dict) -> None:
    off = DaemonProc(tmp_path / "off", args=["--no-preload"], config="[page]\nport = 0\n").start()
    try:
        with off.client() as c:
            completed = _ended_silently(c)
            assert "summaryUrl" not in completed["data"]
            with pytest.raises(DaemonError) as e:
                c.request("summary_page", connectionId=completed["connectionId"])
            assert e.value.code == "invalid_state" and "[page]" in e.value.message
    finally:
        off.stop()
    taken = urllib.parse.urlsplit(meeting["url"]).port  # the module daemon holds it
    busy = DaemonProc(tmp_path / "busy", args=["--no-preload"], config=f"[page]\nport = {taken}\n").start()
    try:
        with busy.client() as c:
            completed = _ended_silently(c)
            url = completed["data"]["summaryUrl"]
            assert urllib.parse.urlsplit(url).port != taken and fetch(url)[0] == 200
        assert "page_port_in_use" in busy.log()
    finally:
        busy.stop()


def test_links_outlive_a_restart_and_pages_come_from_the_journal(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody holds now, so both runs get the same one
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = f"[page]\nport = {port}\n"
    first = DaemonProc(tmp_path / "d", args=["--no-preload"], config=config).start()
    try:
        with first.client() as c:
            completed = _ended_silently(c)
    finally:
        first.stop()
    url = completed["data"]["summaryUrl"]
    second = DaemonProc(tmp_path / "d", args=["--no-preload"], config=config).start()  # same dirs, same secret
    try:
        status, page = fetch(url)
        assert status == 200 and completed["conversationId"] in page and "Nothing said yet." in page
        with second.client() as c:
            assert page_url(c, completed["conversationId"]) == url
    finally:
        second.stop()


# ---------------------------------------------------------------- the Symbl-compatible server


@pytest.fixture(scope="module")
def symbl(daemon_endpoints: tuple[str, str]) -> Iterator[Any]:
    from symbld.gateways.symbl.server import serve_symbl

    handle = serve_symbl("127.0.0.1", 0, lambda: Client(*daemon_endpoints),
                         {"app_id": "0123456789abcdef" * 4, "app_secret": "fedcba9876543210" * 8,
                          "first_frame_delay": 0.1})
    try:
        yield handle
    finally:
        handle.close()


def _token(port: int) -> str:
    body = json.dumps({"type": "application", "appId": "0123456789abcdef" * 4,
                       "appSecret": "fedcba9876543210" * 8}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/oauth2/token:generate", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)["accessToken"]


def test_symbl_streaming_summary_url_is_the_daemons_page(symbl: Any, daemon_endpoints: tuple[str, str]) -> None:
    import websocket

    ws = websocket.create_connection(f"ws://127.0.0.1:{symbl.port}/v1/streaming/cGFnZXRlc3Qx",
                                     header=[f"x-api-key: {_token(symbl.port)}"], timeout=60)
    ws.send(json.dumps({"type": "start_request", "config": {"speechRecognition": {"sampleRateHertz": 16000}}}))
    ws.send(json.dumps({"type": "stop_request"}))
    completed = None
    while completed is None:
        frame = json.loads(ws.recv())
        if frame.get("type") == "message" and frame["message"]["type"] == "conversation_completed":
            completed = frame["message"]
    ws.close()
    with Client(*daemon_endpoints) as c:
        assert completed["summaryUrl"] == page_url(c, completed["conversationId"])
    assert fetch(completed["summaryUrl"])[0] == 200


@pytest.mark.speech
@pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp missing: apt-get install sip-tester")
def test_telephony_stop_reply_carries_the_summary(symbl: Any, daemon_endpoints: tuple[str, str], sipp) -> None:  # noqa: F811
    callee = sipp("uas_speak_pcmu.xml")  # answers, says "Can you send me the quarterly report by Friday?", hangs up
    headers = {"Content-Type": "application/json", "x-api-key": _token(symbl.port)}

    def post(body: dict) -> dict:
        req = urllib.request.Request(f"http://127.0.0.1:{symbl.port}/v1/endpoint:connect", method="POST",
                                     data=json.dumps(body).encode(), headers=headers)
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.load(r)

    started = post({"operation": "start", "endpoint": {"type": "sip", "uri": callee.uri}})
    with Client(*daemon_endpoints) as c:
        wait_until("the call to end",
                   lambda: c.request("get", connectionId=started["conversationId"])["state"] != "live", 120)
        stopped = post({"operation": "stop", "connectionId": started["connectionId"]})
        assert stopped["conversationId"] == started["conversationId"]
        info = stopped["summaryInfo"]
        assert len(info) == 1 and info[0]["url"] == page_url(c, started["conversationId"])
    text = " ".join(s["text"] for s in info[0]["summary"]).lower()
    assert in_order(PHONE_KEY_WORDS, text), info  # the words of the call G.711 keeps with margin
    assert all(s["messageRefs"][0]["id"] for s in info[0]["summary"])



def test_speaker_colours_are_stable_and_distinct() -> None:
    from symbld.web.render import PALETTE, speaker_colours

    ada = "voice-ada"  # an enrolled voice's id is the same in every conversation
    one = speaker_colours(["s1", ada, "s2"])
    assert len(set(one.values())) == 3 and set(one.values()) <= set(PALETTE)
    assert speaker_colours(["s1", ada, "s2"]) == one  # every render of the page
    assert speaker_colours(["other", ada])[ada] == speaker_colours([ada])[ada]  # and in another conversation
    many = speaker_colours([f"s{i}" for i in range(len(PALETTE))])
    assert sorted(many.values()) == sorted(PALETTE)  # ten speakers, ten colours
