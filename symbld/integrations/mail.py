"""Actions on stop: ``sendSummaryEmail`` (Symbl's ``actions`` argument of a connection).

    actions = validate_actions(args.get("actions"))        # at start: ActionError -> bad_request
    runner = ActionRunner(config["smtp"], state_dir, bus.publish)
    runner.on_connection_ended(connection, events, actions)  # at stop: returns at once
    runner.close()                                           # at shutdown

For each address the runner renders a summary email (title, participants, duration, a link to
the conversation's summary page, who said what (each speaker's talk time and share), the
transcript under its speakers' names, questions, action items with assignee and due date,
follow-ups, topics; text and HTML; diarization's speaker revisions applied) and writes it to
``<state_dir>/outbox/<id>.json`` (fsync'ed) *before* any attempt to send, so a summary survives
an SMTP outage and a daemon restart: a new ActionRunner re-sends what is pending. A background
thread sends with exponential backoff and reports each step on the connection as
``action_failed`` / ``action_retrying`` / ``action_completed`` events.
A recipient the server refuses permanently (5xx) is moved to ``outbox/failed/``.

Secrets (the SMTP password) and the summary's text are never logged.
"""

from __future__ import annotations

import contextlib
import email.policy
import html
import json
import os
import re
import smtplib
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Annotated, Any

import msgspec
import structlog

from symblctl import protocol
from symbld.core.actions import normalised_actions
from symbld.core.speakers import attribute_history
from symbld.insights.talk_time import share, talk_times

log = structlog.get_logger(__name__)

Publish = Callable[[str, str, str, dict[str, Any]], None]



class ActionError(ValueError):
    """An ``actions`` argument that cannot be run; the message says what is wrong."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# -- validation ---------------------------------------------------------------------------------
def validate_actions(actions: object) -> list[dict[str, Any]]:
    """Check ``actions`` against the declaration (``symblctl.protocol.Action``) and normalise the addresses
    (trimmed, each once, case-insensitively); raise ActionError naming the first problem by its path.

    ``None`` and ``{}`` (what the Symbl SDK sends when given no actions) mean no actions.
    """
    if actions is None or actions == {}:
        return []
    try:
        declared = msgspec.convert(actions, list[protocol.Action], strict=True)
    except msgspec.ValidationError as e:
        raise ActionError(f"actions: {e}") from None
    return normalised_actions(declared)


# -- the summary --------------------------------------------------------------------------------
def _content(item: dict[str, Any]) -> str:
    """Insight/message text: ``payload.content``, falling back to Symbl's older ``text``."""
    return str((item.get("payload") or {}).get("content") or item.get("text") or "").strip()


def _person(p: dict[str, Any] | None) -> str:
    p = p or {}
    return str(p.get("name") or p.get("userId") or "").strip()


def _clock(seconds: float | None) -> str:
    s = int(seconds or 0)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


def _duration(seconds: float | None) -> str:
    s = round(seconds or 0)
    if s < 60:
        return f"{s} s"
    return f"{s // 60} min {s % 60} s" if s < 3600 else f"{s // 3600} h {s // 60 % 60} min"


def _when(iso: str | None) -> str | None:
    """``2026-11-24T08:10:00.362Z`` → ``2026-11-24 08:10 UTC`` (unparseable text is kept)."""
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return iso


def _due(insight: dict[str, Any]) -> str:
    value = str((insight.get("dueBy") or {}).get("value") or "")
    return value[:10] if re.match(r"^\d{4}-\d{2}-\d{2}", value) else value


def _page_url(connection: dict[str, Any], events: list[dict[str, Any]]) -> str | None:
    """The summary page's link: ``conversation_completed``'s ``summaryUrl``, else the page server's."""
    for event in reversed(events):
        url = (event.get("data") or {}).get("summaryUrl") if event.get("type") == "conversation_completed" else None
        if isinstance(url, str) and url:
            return url
    from symbld.web.links import summary_url  # no page server (port 0, or none in this process): None

    return summary_url(str(connection.get("conversationId") or ""))


def build_summary(connection: dict[str, Any], events: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The facts of one conversation, from its connection object and its published events (speaker
    revisions applied, as the Conversation API and the summary page read them)."""
    events = attribute_history(events)
    messages: list[dict[str, Any]] = []
    insights: dict[str, list[dict[str, Any]]] = {"question": [], "action_item": [], "follow_up": []}
    topics: dict[str, float] = {}
    summary: list[str] = []  # the analyser's summary_response (symbld.insights.summary)
    seen: set[str] = set()
    for event in events:
        etype, data = event.get("type"), event.get("data") or {}
        if etype == "message_response":
            messages.extend(m for m in data.get("messages", []) if not m.get("dismissed"))
        elif etype == "insight_response":
            for ins in data.get("insights", []):
                key = ins.get("id") or _content(ins)
                if ins.get("type") in insights and key not in seen and not ins.get("dismissed"):
                    seen.add(key)
                    insights[ins["type"]].append(ins)
        elif etype == "summary_response":
            summary = [str(x.get("text", "")) for x in data.get("summary", []) if x.get("text")]
        elif etype == "topic_response":
            for t in data.get("topics", []):
                phrase = str(t.get("phrases") or "").strip()
                if phrase:
                    topics[phrase] = max(topics.get(phrase, 0.0), float(t.get("score") or 0.0))
    participants: list[str] = []
    for who in [connection.get("speaker")] + [m.get("from") for m in messages]:
        name = _person(who)
        if name and name not in participants:
            participants.append(name)
    talks = talk_times(messages)
    title = connection.get("meetingTitle") or f"Conversation {connection.get('conversationId', '')}".strip()
    return {
        "title": " ".join(str(title).split()),  # one line: it goes into the Subject header
        "conversationId": connection.get("conversationId"),
        "connectionId": connection.get("connectionId"),
        "startedAt": _when(connection.get("startedAt")),
        "endedAt": connection.get("endedAt"),
        # Pushed audio can run faster than the clock: the meeting lasted as long as its audio.
        "duration": _duration(max(float(connection.get("durationSeconds") or 0),
                                  float(connection.get("audioSeconds") or 0))),
        "participants": participants,
        "summaryUrl": _page_url(connection, events),
        "speakers": [{"name": t.name, "talkTime": _clock(t.seconds), "share": share(talks, t), "messages": t.messages}
                     for t in talks],
        "transcript": [{"at": _clock((m.get("duration") or {}).get("timeOffset")), "speaker": _person(m.get("from")),
                        "text": _content(m)} for m in messages if _content(m)],
        "questions": [{"text": _content(i)} for i in insights["question"]],
        "actionItems": [{"text": _content(i), "assignee": _person(i.get("assignee")), "dueBy": _due(i)}
                        for i in insights["action_item"]],
        "followUps": [{"text": _content(i), "assignee": _person(i.get("assignee")), "dueBy": _due(i)}
                      for i in insights["follow_up"]],
        "topics": [p for p, _ in sorted(topics.items(), key=lambda kv: -kv[1])],
        "summary": summary,
    }


def _task_line(item: dict[str, Any]) -> str:
    extra = [x for x in (f"assignee: {item['assignee']}" if item["assignee"] else "",
                         f"due: {item['dueBy']}" if item["dueBy"] else "") if x]
    text: str = item["text"]
    return text + (f" ({'; '.join(extra)})" if extra else "")


def _talk(speaker: dict[str, Any]) -> str:
    n = speaker["messages"]
    return f"{speaker['talkTime']} talk time ({speaker['share']} %), {n} message{'s' if n != 1 else ''}"


def _speaker_line(speaker: dict[str, Any]) -> str:
    return f"{speaker['name']}: {_talk(speaker)}"


def render_text(s: dict[str, Any]) -> str:
    lines = [s["title"], "=" * len(s["title"]), "",
             f"Date: {s['startedAt'] or '-'}", f"Duration: {s['duration']}",
             f"Participants: {', '.join(s['participants']) or 'unknown'}",
             f"Conversation: {s['conversationId']}"]
    if s.get("summaryUrl"):
        lines.append(f"Summary page: {s['summaryUrl']}")
    lines.append("")

    def section(name: str, items: list[str]) -> None:
        lines.append(f"{name} ({len(items)})")
        lines.extend(f"  - {x}" for x in items) if items else lines.append("  (none)")
        lines.append("")

    section("Summary", s.get("summary", []))
    section("Who said what", [_speaker_line(x) for x in s.get("speakers", [])])
    section("Action items", [_task_line(a) for a in s["actionItems"]])
    section("Questions", [q["text"] for q in s["questions"]])
    section("Follow-ups", [_task_line(f) for f in s["followUps"]])
    section("Topics", s["topics"])
    lines.append("Transcript")
    for t in s["transcript"]:
        lines.append(f"  [{t['at']}] {t['speaker'] + ': ' if t['speaker'] else ''}{t['text']}")
    if not s["transcript"]:
        lines.append("  (nothing was said)")
    lines += ["", "-- ", "Sent by symbld"]
    return "\n".join(lines) + "\n"


def render_html(s: dict[str, Any]) -> str:
    e = html.escape

    def task(item: dict[str, Any]) -> str:
        bits = [f"<b>{e(item['assignee'])}</b>" if item["assignee"] else "",
                f"due {e(item['dueBy'])}" if item["dueBy"] else ""]
        meta = " · ".join(b for b in bits if b)
        return e(item["text"]) + (f' <span style="color:#666">({meta})</span>' if meta else "")

    def section(name: str, items: list[str]) -> str:
        body = "".join(f"<li>{x}</li>" for x in items) if items else "<li><i>none</i></li>"
        return f"<h2>{e(name)}</h2><ul>{body}</ul>"

    transcript = "".join(
        f'<tr><td style="color:#666;padding-right:8px">{e(t["at"])}</td>'
        f'<td style="padding-right:8px"><b>{e(t["speaker"])}</b></td><td>{e(t["text"])}</td></tr>'
        for t in s["transcript"]) or "<tr><td><i>nothing was said</i></td></tr>"
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"></head>'
        '<body style="font-family:sans-serif">'
        f"<h1>{e(s['title'])}</h1>"
        f"<p>Date: {e(s['startedAt'] or '-')}<br>Duration: {e(s['duration'])}<br>"
        f"Participants: {e(', '.join(s['participants']) or 'unknown')}<br>"
        f"Conversation: {e(str(s['conversationId']))}"
        + (f'<br><a href="{e(s["summaryUrl"])}">Open the summary page</a>' if s.get("summaryUrl") else "")
        + "</p>"
        + section("Summary", [e(x) for x in s.get("summary", [])])
        + section("Who said what", [f"<b>{e(x['name'])}</b>: {e(_talk(x))}"
                                    for x in s.get("speakers", [])])
        + section("Action items", [task(a) for a in s["actionItems"]])
        + section("Questions", [e(q["text"]) for q in s["questions"]])
        + section("Follow-ups", [task(f) for f in s["followUps"]])
        + section("Topics", [e(t) for t in s["topics"]])
        + f"<h2>Transcript</h2><table>{transcript}</table>"
        + '<p style="color:#666">Sent by symbld</p></body></html>'
    )


def build_email(summary: dict[str, Any], sender: str, to: str) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = f"Summary: {summary['title']}"
    msg["From"] = sender
    msg["To"] = to
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    if summary.get("conversationId"):
        msg["X-Symbl-Conversation-Id"] = str(summary["conversationId"])
    msg.set_content(render_text(summary))
    msg.add_alternative(render_html(summary), subtype="html")
    return msg


# -- SMTP settings ------------------------------------------------------------------------------
# The [smtp] keys SmtpSettings reads (None: derived, see SmtpSettings); symbld.config validates against them.
class SmtpTable(msgspec.Struct, kw_only=True):
    """The ``[smtp]`` table, declared: the config check decodes it into this, so a value out of range stops
    the daemon naming the key and its line (it used to be clamped silently)."""

    host: str | None = None  # default: localhost
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] | None = None  # default: 465 with ssl, 587 starttls, 25
    ssl: bool = False
    starttls: bool = False  # ignored with ssl
    username: str | None = None
    password: str | None = None
    password_file: str | None = None
    sender: str | None = None  # default: symbld@<this host's name>
    retry_initial: Annotated[float, msgspec.Meta(ge=0.05)] = 5.0  # seconds before the first retry, doubling
    retry_max: Annotated[float, msgspec.Meta(ge=0.05)] = 600.0  # at most this long between retries
    timeout: Annotated[float, msgspec.Meta(gt=0)] = 30.0

    def __post_init__(self) -> None:
        if self.retry_max < self.retry_initial:
            raise ValueError(f"retry_max ({self.retry_max}) is less than retry_initial ({self.retry_initial})")


class SmtpSettings:
    """The ``[smtp]`` table. The password is read at each send (so fixing a credentials file
    needs no restart) and never kept in a repr or a log line."""

    def __init__(self, config: dict[str, Any] | SmtpTable | None) -> None:
        # A dict is the [smtp] section, decoded here as the config check did (ranges hold, no clamping).
        c = config if isinstance(config, SmtpTable) else msgspec.convert(config or {}, SmtpTable, strict=True)
        self.ssl = c.ssl
        self.starttls = c.starttls and not self.ssl
        self.host = c.host or "localhost"
        self.port = c.port or (465 if self.ssl else 587 if self.starttls else 25)
        self.username = c.username or None
        self._password = c.password
        self._password_file = c.password_file
        self.sender = c.sender or f"symbld@{socket.getfqdn() or 'localhost'}"
        self.retry_initial = c.retry_initial
        self.retry_max = c.retry_max
        self.timeout = c.timeout

    def password(self) -> str | None:
        if self._password:
            return str(self._password)
        candidates = [self._password_file] if self._password_file else []
        if os.environ.get("CREDENTIALS_DIRECTORY"):
            candidates.append(str(Path(os.environ["CREDENTIALS_DIRECTORY"]) / "smtp-password"))
        for path in candidates:
            try:
                text = Path(path).read_text().strip()
            except OSError:
                continue
            return text or None  # an empty file means "no password"
        return None

    def __repr__(self) -> str:
        return f"SmtpSettings(host={self.host!r}, port={self.port}, ssl={self.ssl}, starttls={self.starttls})"

    def send(self, sender: str, to: list[str], message: bytes) -> None:
        """One delivery attempt; smtplib exceptions and OSError propagate."""
        klass = smtplib.SMTP_SSL if self.ssl else smtplib.SMTP
        kwargs: dict[str, Any] = {"timeout": self.timeout}
        if self.ssl:
            kwargs["context"] = ssl.create_default_context()
        with klass(self.host, self.port, **kwargs) as smtp:
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
            password = self.password()
            if self.username and password:
                smtp.login(self.username, password)
            smtp.sendmail(sender, to, message)


def _permanent(error: Exception) -> bool:
    """5xx refusals will not get better by retrying; everything else (down, 4xx, timeouts) may."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in error.recipients.values())
    if isinstance(error, smtplib.SMTPSenderRefused | smtplib.SMTPDataError):
        return error.smtp_code >= 500 and error.smtp_code != 530  # 530: auth required = config, retry
    return False


def _describe(error: Exception) -> str:
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return "recipients refused: " + ", ".join(f"{code} {msg.decode(errors='replace')}"
                                                   for code, msg in error.recipients.values())
    if isinstance(error, smtplib.SMTPResponseException):
        msg = error.smtp_error.decode(errors="replace") if isinstance(error.smtp_error, bytes) else error.smtp_error
        return f"{type(error).__name__}: {error.smtp_code} {msg}"
    return f"{type(error).__name__}: {error}"


# -- the runner ---------------------------------------------------------------------------------
class ActionRunner:
    """Runs connections' actions when they end; owns the outbox and one sender thread."""

    def __init__(self, config: dict[str, Any], state_dir: Path, publish: Publish) -> None:
        self.settings = SmtpSettings(config)
        self.outbox = Path(state_dir) / "outbox"
        self.failed_dir = self.outbox / "failed"
        self.outbox.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.failed_dir.mkdir(exist_ok=True, mode=0o700)
        self._publish = publish
        self._cond = threading.Condition()
        self._due: dict[str, float] = {}  # outbox id -> monotonic time of its next attempt
        self._closed = False
        for path in sorted(self.outbox.glob("*.json")):  # pending from an earlier run: send again now
            self._due[path.stem] = time.monotonic()
        if self._due:
            log.info("outbox_pending", count=len(self._due))
        self._thread = threading.Thread(target=self._run, name="action-runner", daemon=True)
        self._thread.start()

    # -- called by the daemon ------------------------------------------------------------------
    def on_connection_ended(self, connection: dict[str, Any], events: list[dict[str, Any]],
                            actions: list[dict[str, Any]]) -> None:
        """Render and store each summary email, then let the sender thread deliver it. Returns at once."""
        try:
            mail_actions = [a for a in actions if a.get("name") == "sendSummaryEmail"
                            and a.get("invokeOn", "stop") == "stop"]
            if not mail_actions:
                return
            summary = build_summary(connection, events)
            for action in mail_actions:
                for address in action["parameters"]["emails"]:
                    self._enqueue(connection, summary, address)
        except Exception:  # never let a summary bug break the daemon's stop path
            log.exception("action_prepare_failed", connection_id=connection.get("connectionId"))

    def close(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def pending(self) -> list[str]:
        """Outbox ids not yet delivered (for status and tests)."""
        return sorted(p.stem for p in self.outbox.glob("*.json"))

    # -- the outbox -----------------------------------------------------------------------------
    def _enqueue(self, connection: dict[str, Any], summary: dict[str, Any], address: str) -> None:
        msg = build_email(summary, self.settings.sender, address)
        entry = {
            "id": uuid.uuid4().hex,
            "action": "sendSummaryEmail",
            "connectionId": connection.get("connectionId", ""),
            "conversationId": connection.get("conversationId", ""),
            "sender": self.settings.sender,
            "to": [address],
            "subject": msg["Subject"],
            # CRLF line ends: smtplib sends bytes as they are, and SMTP needs CRLF.
            "message": msg.as_bytes(policy=email.policy.SMTP).decode("utf-8", errors="surrogateescape"),
            "createdAt": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "attempts": 0,
            "lastError": None,
        }
        self._write(entry)
        log.info("summary_email_queued", connection_id=entry["connectionId"], outbox_id=entry["id"])
        with self._cond:
            self._due[entry["id"]] = time.monotonic()
            self._cond.notify_all()

    def _path(self, entry_id: str) -> Path:
        return self.outbox / f"{entry_id}.json"

    def _write(self, entry: dict[str, Any]) -> None:
        """Atomically replace the entry's file (write, fsync, rename, fsync the directory)."""
        path = self._path(entry["id"])
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps(entry, ensure_ascii=False).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dfd = os.open(self.outbox, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def _read(self, entry_id: str) -> dict[str, Any] | None:
        try:
            entry: dict[str, Any] = json.loads(self._path(entry_id).read_text())
            return entry
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            log.exception("outbox_entry_unreadable", outbox_id=entry_id)
            return None

    # -- the sender thread ---------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    now = time.monotonic()
                    ready = [k for k, t in self._due.items() if t <= now]
                    if ready:
                        break
                    wait = min(self._due.values()) - now if self._due else None
                    self._cond.wait(wait)
                if self._closed:
                    return
                entry_id = min(ready, key=lambda k: self._due[k])
                del self._due[entry_id]
            try:
                self._attempt(entry_id)
            except Exception:
                log.exception("action_attempt_crashed", outbox_id=entry_id)

    def _attempt(self, entry_id: str) -> None:
        entry = self._read(entry_id)
        if entry is None:
            return
        entry["attempts"] = int(entry.get("attempts", 0)) + 1
        attempt = entry["attempts"]
        info = {"action": entry["action"], "invokeOn": "stop", "to": entry["to"], "outboxId": entry_id,
                "attempt": attempt}
        if attempt > 1:
            self._event(entry, "action_retrying", info)
        try:
            self.settings.send(entry["sender"], entry["to"],
                               entry["message"].encode("utf-8", errors="surrogateescape"))
        except (smtplib.SMTPException, OSError) as e:
            error = _describe(e)
            permanent = _permanent(e)
            entry["lastError"] = error
            delay = min(self.settings.retry_max, self.settings.retry_initial * 2 ** (attempt - 1))
            self._event(entry, "action_failed", {**info, "error": error, "permanent": permanent,
                                                 **({} if permanent else {"retryInSeconds": round(delay, 3)})})
            log.warning("summary_email_failed", connection_id=entry["connectionId"], outbox_id=entry_id,
                        attempt=attempt, error=error, permanent=permanent)
            if permanent:
                self._write(entry)
                os.replace(self._path(entry_id), self.failed_dir / f"{entry_id}.json")
                return
            self._write(entry)
            with self._cond:
                self._due[entry_id] = time.monotonic() + delay
                self._cond.notify_all()
            return
        with contextlib.suppress(FileNotFoundError):
            self._path(entry_id).unlink()
        self._event(entry, "action_completed", info)
        log.info("summary_email_sent", connection_id=entry["connectionId"], outbox_id=entry_id, attempt=attempt)

    def _event(self, entry: dict[str, Any], event_type: str, data: dict[str, Any]) -> None:
        try:
            self._publish(entry["connectionId"], entry["conversationId"], event_type, data)
        except Exception:
            log.exception("action_event_publish_failed", event_type=event_type)
