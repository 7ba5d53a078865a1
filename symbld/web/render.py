"""The summary page as HTML: every text escaped, readable without JavaScript.

``main_html`` is the part that changes while a conversation runs: the server sends it again on
each update (server-sent events) and ``page.js`` swaps it in, so the page is rendered in one place.
"""

from __future__ import annotations

import hashlib
import html
from importlib import resources
from string import Template

from symbld.insights.talk_time import share
from symbld.web.view import Item, Line, Page

_KINDS = (("action_item", "Action items"), ("follow_up", "Follow-ups"), ("question", "Questions"))


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def clock(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


# Speaker colours: distinct hues, each readable as text on white (contrast 4.5:1 or more).
PALETTE = ("#1864ab", "#c2255c", "#2b8a3e", "#d9480f", "#6741d9", "#0b7285", "#c92a2a", "#5c940d", "#9c36b5",
           "#495057")


def speaker_colours(keys: list[str]) -> dict[str, str]:
    """A colour per speaker key, stable: a key's colour comes from its hash (so an enrolled voice, whose
    id is the same in every conversation, keeps its colour), moved on to the next free one only when a
    speaker heard earlier in the conversation has it."""
    out: dict[str, str] = {}
    for key in keys:
        if key in out:
            continue
        first = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") % len(PALETTE)
        taken = set(out.values())
        free = [PALETTE[(first + i) % len(PALETTE)] for i in range(len(PALETTE))
                if PALETTE[(first + i) % len(PALETTE)] not in taken]
        out[key] = free[0] if free else PALETTE[first]
    return out


def _who(name: str, key: str, colours: dict[str, str]) -> str:
    colour = colours.get(key)
    style = f' style="color:{colour}"' if colour else ""
    return f'<span class="who"{style}>{_e(name or "Speaker")}</span>'


def _badge(sentiment: str | None) -> str:
    return f'<span class="sent sent-{_e(sentiment)}">{_e(sentiment)}</span>' if sentiment else ""


def _line(line: Line, colours: dict[str, str]) -> str:
    return (f'<li class="line" id="m-{_e(line.id)}"><span class="at">{_e(clock(line.offset))}</span>'
            + _who(line.speaker, line.speaker_key, colours) +
            f'<span class="said"{_lang(line.language)}>{_e(line.text)}</span>{_badge(line.sentiment)}</li>')


def _lang(language: str | None) -> str:
    """A line's language for the browser (fonts, hyphenation, screen readers); ``dir="auto"`` sets
    right to left for Arabic, Hebrew, Persian or Urdu text from its own letters."""
    return f' lang="{_e(language)}" dir="auto"' if language else ""


def _item(item: Item) -> str:
    meta = []
    if item.assignee:
        meta.append(f'<span class="assignee">{_e(item.assignee)}</span>')
    if item.due:
        meta.append(f'<span class="due">due {_e(item.due)}</span>')
    if item.offset is not None:
        meta.append(f'<span class="at">{_e(clock(item.offset))}</span>')
    return f'<li class="item {_e(item.kind)}"><p>{_e(item.text)}</p><div class="meta">{"".join(meta)}</div></li>'


def _card(title: str, body: str, cls: str, count: int | None = None) -> str:
    n = f'<span class="count">{count}</span>' if count is not None else ""
    return f'<section class="card {cls}"><h2>{_e(title)}{n}</h2>{body}</section>'


def _empty(text: str) -> str:
    return f'<p class="empty">{_e(text)}</p>'


def _header(p: Page) -> str:
    live = not p.ended and p.state == "live"
    state = "Live" if live else {"failed": "Failed"}.get(p.state, "Ended")
    facts = [f"<span>{_e(p.started_at[:16].replace('T', ' '))} UTC</span>"] if p.started_at else []
    if p.lines:
        end = p.lines[-1].offset
        facts.append(f"<span>{len(p.lines)} messages{f' · {clock(end)}' if end is not None else ''}</span>")
    if p.speakers:
        facts.append(f"<span>{_e(', '.join(p.speakers))}</span>")
    if p.sentiment:
        facts.append(f"<span>overall {_badge(p.sentiment[0])}</span>")
    return (f'<header class="top"><div><p class="brand">symbld · conversation summary</p>'
            f'<h1>{_e(p.title)}</h1><p class="facts">{"".join(facts)}</p></div>'
            f'<span class="state state-{"live" if live else "ended"}" data-state="{_e(state.lower())}">'
            f'{_e(state)}</span></header>')


def _summary(p: Page) -> str:
    if not p.summary:
        return _card("Summary", _empty("Nothing said yet."), "summary")
    note = "" if p.summary_final else '<p class="note">So far — the summary is final when the conversation ends.</p>'
    return _card("Summary", "<ul>" + "".join(f"<li>{_e(s)}</li>" for s in p.summary) + "</ul>" + note, "summary")


def _colours(p: Page) -> dict[str, str]:
    return speaker_colours([t.key for t in p.talk] + [p.interim_key] * bool(p.interim_key))


def _speakers(p: Page, colours: dict[str, str]) -> str:
    """Who said how much: each speaker's colour, name, talk time and share of it."""
    if not p.talk:
        return ""
    rows = "".join(
        f'<li class="speaker" data-speaker="{_e(t.key)}" style="--c:{colours[t.key]}">'
        f'<span class="swatch"></span><span class="name">{_e(t.name)}</span>'
        f'<span class="talk" title="talk time">{_e(clock(t.seconds))}</span>'
        f'<span class="share">{share(p.talk, t)} %</span>'
        f'<span class="bar" style="--w:{max(2, share(p.talk, t))}%"></span></li>' for t in p.talk)
    return _card("Speakers and talk time", f'<ul class="speakers">{rows}</ul>', "speakers", len(p.talk))


def _transcript(p: Page, colours: dict[str, str]) -> str:
    body = "".join(_line(line, colours) for line in p.lines)
    if p.interim:
        body += (f'<li class="line interim"><span class="at"></span>{_who(p.interim_speaker, p.interim_key, colours)}'
                 f'<span class="said">{_e(p.interim)}</span></li>')
    return _card("Transcript", f'<ol class="lines">{body}</ol>' if body else _empty("Nothing said yet."),
                 "transcript", len(p.lines))


def _side(p: Page) -> str:
    out = []
    for kind, title in _KINDS:
        items = p.of_kind(kind)
        body = "<ul>" + "".join(_item(i) for i in items) + "</ul>" if items else _empty("None yet.")
        out.append(_card(title, body, kind.replace("_", "-"), len(items)))
    topics = "".join(f'<li><span class="phrase">{_e(t.phrase)}</span>{_badge(t.sentiment)}'
                     f'<span class="bar" style="--w:{max(8, int(t.score * 100))}%"></span></li>' for t in p.topics)
    out.append(_card("Topics", f'<ul class="topics">{topics}</ul>' if topics else _empty("None yet."), "topics"))
    trackers = "".join(
        f'<li><span class="phrase">{_e(t.name)}</span><span class="terms">'
        + ", ".join(f"{_e(v)} ×{n}" for v, n in t.values.items()) + "</span></li>" for t in p.trackers)
    out.append(_card("Trackers", f'<ul class="trackers">{trackers}</ul>' if trackers else _empty("No tracker hits."),
                     "trackers"))
    if p.entities:
        rows = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td><td>{_e(s)}</td></tr>" for k, v, s in p.entities)
        out.append(_card("Entities", f'<table><tr><th>kind</th><th>value</th><th>said</th></tr>{rows}</table>',
                         "entities", len(p.entities)))
    return "".join(out)


def _connections(p: Page) -> str:
    if p.connections == 1:
        return f"connection {_e(p.connection_id)}"
    return f"{p.connections} connections (one per speaker)"


def main_html(p: Page) -> str:
    colours = _colours(p)
    return (_header(p) + '<div class="cols"><div class="col-main">' + _summary(p) + _speakers(p, colours)
            + _transcript(p, colours)
            + '</div><aside class="col-side">' + _side(p) + "</aside></div>"
            + f'<footer>conversation {_e(p.conversation_id)} · {_connections(p)} · '
            f'{"updating live" if not p.ended else "complete"}</footer>')


def _template() -> Template:
    return Template(resources.files("symbld.web").joinpath("static/page.html").read_text(encoding="utf-8"))


def document(p: Page, events_url: str) -> str:
    """The whole page; ``events_url`` (already signed) is where page.js listens for updates."""
    return _template().substitute(title=_e(p.title), main=main_html(p), events_url=_e(events_url),
                                  ended="true" if p.ended else "false")
