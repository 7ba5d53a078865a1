"""symblctl: drive symbld from a terminal or a script.

Human output by default (a live view: interim text rewritten in place, finals kept); ``--json``
prints one JSON object per line. Global options (``--json``, ``--timeout``, ``--control``,
``--events``) go before or after the subcommand. Exit codes are in ``EXIT_HELP``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TextIO

from symblctl import commands, completion, fleet_cli, open_page, voices_cli
from symblctl.client import Client, DaemonError, DaemonUnavailable
from symblctl.start_request import start_request

if TYPE_CHECKING:  # imported where used: symblctl status needs neither (nor their datetime, shutil, dataclasses)
    from symblctl.render import EventPrinter

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
EXIT_HELP = """exit status:
  0    success; for start --follow (and --stdin, --mic): the connection completed
  1    the daemon refused the request (bad argument, unknown connection, limit reached)
  2    bad usage (unknown option, missing argument)
  3    symbld is not running, or not answering within --timeout
  4    the connection failed (unreadable audio, call not answered or rejected, engine error)
  130  interrupted (Ctrl-C); a followed connection is stopped first"""
_PUSH_CHUNK = 3200  # 100 ms of 16 kHz audio per send_audio
_PROGRESS_EVERY = 0.5  # seconds between progress updates of a followed file


def _version() -> str:
    from symblctl import __version__

    return __version__


def _print_json(obj: Any, out: TextIO = sys.stdout) -> None:
    out.write(json.dumps(obj, ensure_ascii=False) + "\n")
    out.flush()


def _parse_tracker(text: str) -> dict[str, Any]:
    name, sep, terms = text.partition("=")
    if not sep or not name.strip() or not terms.strip():
        raise argparse.ArgumentTypeError(f"tracker must look like NAME=term one,term two (got {text!r})")
    return {"name": name.strip(), "vocabulary": [t.strip() for t in terms.split(",") if t.strip()]}


# ---------------------------------------------------------------- the parser


def _global_options(*, suppress: bool, events: bool = True) -> argparse.ArgumentParser:
    """The options every command takes, before or after its name. On subcommands the defaults are
    SUPPRESS, so an option given before the subcommand is not overwritten by the subparser."""
    g = argparse.ArgumentParser(add_help=False)

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    g.add_argument("--control", metavar="ENDPOINT", default=default(None),
                   help="control endpoint (default: $SYMBLD_CONTROL or the runtime dir's)")
    if events:
        g.add_argument("--events", dest="events_endpoint", metavar="ENDPOINT", default=default(None),
                       help="events endpoint (default: $SYMBLD_EVENTS or the runtime dir's)")
    g.add_argument("--timeout", type=float, default=default(5.0),
                   help="seconds the daemon may take to answer (default 5); a dead daemon fails within it")
    g.add_argument("--json", action="store_true", default=default(False),
                   help="machine output: one JSON object per line")
    return g


class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


class _Unbuilt:
    """Stands in for the sub-parser of a command this run does not name: its options are not built.

    Building all ~30 sub-parsers (each with its copy of the global options, and the declared ones typed
    from their declarations) was most of what ``symblctl status`` cost; only the named one is needed to
    parse, and the top-level ``--help`` lists each command by its summary alone."""

    def add_argument(self, *args: Any, **kwargs: Any) -> None:
        return None

    def add_mutually_exclusive_group(self, *args: Any, **kwargs: Any) -> _Unbuilt:
        return self

    add_argument_group = add_mutually_exclusive_group


_UNBUILT: Any = _Unbuilt()
_BUILD_ONLY: set[str] | None = None  # the words of this run's command line; None: build every sub-parser


def _sub(sub: Any, name: str, summary: str, description: str = "", examples: str = "", *,
         events_option: bool = True, aliases: tuple[str, ...] = ()) -> argparse.ArgumentParser:
    if _BUILD_ONLY is not None and _BUILD_ONLY.isdisjoint((name, *aliases)):
        sub.add_parser(name, help=summary, aliases=list(aliases), add_help=False)
        return _UNBUILT  # type: ignore[no-any-return]
    epilog = (f"examples:\n{examples.rstrip()}\n\n" if examples else "") + EXIT_HELP
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=summary, description=f"{summary}.\n\n{description}".rstrip(), epilog=epilog,
        formatter_class=_Formatter, aliases=list(aliases),
        parents=[_global_options(suppress=True, events=events_option)])
    return parser


def _formats(parser: Any) -> tuple[str, ...]:
    """The transcript formats, from symblctl.export (dataclasses and all) only when that parser is built."""
    if parser is _UNBUILT:
        return ()
    from symblctl.export import FORMATS

    return FORMATS


def _since_parser(parser: Any) -> Callable[[str], Any]:
    if parser is _UNBUILT:
        return str
    from symblctl.when import parse_since

    return parse_since


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The whole parser; given the command line, only the sub-parser of the command it names is built."""
    global _BUILD_ONLY
    _BUILD_ONLY = None if argv is None else set(argv)
    try:
        return _build_parser()
    finally:
        _BUILD_ONLY = None


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="symblctl", description="Control the symbld conversation-intelligence daemon.",
        epilog=EXIT_HELP + "\n\nsymblctl COMMAND --help shows a command's options and examples.",
        formatter_class=_Formatter, parents=[_global_options(suppress=False)])
    p.add_argument("--version", action="version", version=f"symblctl {_version()}")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    for name in commands.CLI_DECLARED:  # one subcommand per declared command, options from its fields
        shown = PRESENTATION.get(name, Presentation())
        dashed = name.replace("_", "-")  # attach-mic, like the other subcommands; attach_mic works too
        parser = _sub(sub, dashed, shown.summary or commands.SUMMARIES[name], shown.description,
                      shown.examples, aliases=(name,) if dashed != name else ())
        if parser is not _UNBUILT and name in commands.WITH_FIELDS:
            from symblctl import cli_declared, protocol  # the declarations: only for a command with options

            cli_declared.add_arguments(parser, protocol.COMMANDS[name])
    s = _sub(sub, "stop", "stop a connection (flushes finals) and print its final object",
             "ID is a connectionId or a conversationId. Stopping a connection that already ended prints its "
             "final object too (exit 0), as the Python API does.", "  symblctl stop 7909733735465972")
    s.add_argument("id")
    h = _sub(sub, "history", "events of a connection", "ID is a connectionId or a conversationId.",
             "  symblctl history ID --after 10 --json")
    h.add_argument("id")
    h.add_argument("--after", type=int, default=0, help="only events with seq > AFTER")
    t = _sub(sub, "transcript", "a conversation's transcript as text, Markdown, SRT, WebVTT or JSON",
             "Times are offsets from the start of the conversation; speakers are shown where known. "
             "ID is a connectionId or a conversationId (the last line of the live view gives both).",
             "  symblctl transcript ID\n  symblctl transcript ID --format srt -o meeting.srt\n"
             "  symblctl transcript ID --format md > notes.md")
    t.add_argument("id")
    t.add_argument("--format", "-f", choices=_formats(t), help="txt (default), md, srt, vtt or json (the default "
                   "with --json)")
    t.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")
    ls = _sub(sub, "conversations", "past and live conversations, newest first, from the journals",
              "Journals are kept journal_retention_days (30) days. --since takes an ISO date or time "
              "(2026-12-01, 2026-12-01T09:00) or an age (30m, 2h, 3d, 1w), or today / yesterday.",
              "  symblctl conversations\n  symblctl ls --since 2d --source file\n  symblctl ls --json",
              aliases=("ls",))
    ls.add_argument("--since", type=_since_parser(ls), help="only conversations started since then")
    ls.add_argument("--source", choices=("file", "push", "mic", "sip", "pstn"), help="only this source kind")
    ls.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    sb = _sub(sub, "subscribe", "tail events live (all connections, or one)",
              "Here --events names event types; the events endpoint is the global --events given before "
              "'subscribe' (or $SYMBLD_EVENTS).",
              "  symblctl subscribe\n  symblctl subscribe --events message_response,insight_response\n"
              "  symblctl subscribe ID --json", events_option=False)
    sb.add_argument("id", nargs="?")
    sb.add_argument("--events", dest="types", help="comma-separated event types (default: all)")
    _sub(sub, "devices", "audio input devices the daemon can capture from",
         "With none, says why (no audio server, no sound card).", "  symblctl devices")
    mu = _sub(sub, "mute", "mute a microphone connection (or --off to unmute)")
    mu.add_argument("id")
    mu.add_argument("--off", action="store_true")
    kg = _sub(sub, "keygen", "make a CURVE key pair for tcp:// endpoints (NAME.secret 0600, NAME.public)")
    kg.add_argument("--name", default="client", help="key name: client (default) or server")
    kg.add_argument("--dir", help="where to write (default: $SYMBLD_KEYS_DIR or ~/.config/symbld/keys)")
    kg.add_argument("--force", action="store_true", help="replace existing key files")
    inst = _sub(sub, "install-service", "install the systemd unit for this symbld (user or system)",
                examples="  symblctl install-service --user\n  sudo symblctl install-service --system")
    scope = inst.add_mutually_exclusive_group()
    scope.add_argument("--user", dest="system", action="store_false", default=False,
                       help="the user unit, ~/.config/systemd/user/symbld.service (the default)")
    scope.add_argument("--system", dest="system", action="store_true",
                       help="the system unit (needs root) instead of the user unit")
    inst.add_argument("--dest", help="unit directory (default: the scope's standard one)")
    comp = _sub(sub, "completion", "shell completion for symblctl (bash, zsh, fish)",
                "Prints the script, or with --install writes it where the shell looks for it.",
                "  symblctl completion bash --install\n  eval \"$(symblctl completion zsh)\"\n"
                "  symblctl completion fish > ~/.config/fish/completions/symblctl.fish")
    comp.add_argument("shell", choices=completion.SHELLS)
    comp.add_argument("--install", action="store_true", help="write it to the shell's completion directory")

    st = _sub(sub, "start", "start a connection",
              "One source: FILE (or --file), --stdin, --push, --mic, --sip or --pstn. A relative FILE is "
              "taken from the current directory. --follow prints the conversation live (and call "
              "progress); its last line gives the connectionId and conversationId.",
              "  symblctl start meeting.flac --follow\n  symblctl start --mic\n"
              "  arecord -f S16_LE -r 16000 -c 1 | symblctl start --stdin\n"
              "  symblctl start --sip sip:8002@pbx.example.com --follow")
    st.add_argument("path", nargs="?", metavar="FILE", help="audio file (same as --file)")
    src = st.add_mutually_exclusive_group()
    src.add_argument("--file", help="audio file (WAV, FLAC, OGG, MP3; any rate or channels)")
    src.add_argument("--stdin", action="store_true", help="raw 16-bit little-endian mono PCM on standard input")
    src.add_argument("--push", action="store_true", help="audio pushed later by another process (send_audio)")
    src.add_argument("--mic", action="store_true", help="the daemon's microphone")
    src.add_argument("--sip", metavar="URI", help="dial a SIP URI and transcribe the call")
    src.add_argument("--pstn", metavar="NUMBER", help="dial a phone number through the configured gateway")
    st.add_argument("--device", help="microphone device name or index (with --mic)")
    st.add_argument("--rate", type=int, default=16000, help="sample rate of --stdin/--push audio (default 16000)")
    st.add_argument("--fast", action="store_true", help="read the file as fast as possible, not in real time")
    st.add_argument("--dtmf", help="digits to send after the call is answered (with --sip/--pstn)")
    st.add_argument("--engine", help="engine (default: the daemon's)")
    st.add_argument("--end-of-turn", choices=("fixed", "semantic", "auto"),
                    help="the local engine's end of turn: fixed silence, or the turn model (symbld[turn]); "
                         "default: the daemon's end_of_turn")
    st.add_argument("--insight-types", help="comma-separated: question,action_item,follow_up (default: all)")
    st.add_argument("--title", help="meeting title")
    st.add_argument("--language", help="languageCode: BCP-47 (es-ES, fr-FR, ...) or auto (default: the daemon's)")
    st.add_argument("--translate", action="store_true", help="English text whatever language is spoken")
    st.add_argument("--speaker", help="speaker name")
    diarize = st.add_mutually_exclusive_group()
    diarize.add_argument("--diarize", dest="diarize", action="store_true", default=None,
                         help="label who speaks (Speaker 1, 2, ...; default on for one mixed channel)")
    diarize.add_argument("--no-diarize", dest="diarize", action="store_false")
    st.add_argument("--speakers", type=int, metavar="N", help="at most N speakers (with diarization)")
    st.add_argument("--tracker", action="append", type=_parse_tracker, default=[],
                    help="NAME=term,term (repeatable)")
    st.add_argument("--vocab", action="append", default=[], help="custom vocabulary word (repeatable)")
    st.add_argument("--email", action="append", default=[], help="send a summary email to this address on stop")
    follow = st.add_mutually_exclusive_group()
    follow.add_argument("--follow", dest="follow", action="store_true", default=None,
                        help="print events live until the connection ends (default with --mic and --stdin)")
    follow.add_argument("--no-follow", dest="follow", action="store_false")
    st.add_argument("--no-progress", dest="progress", action="store_false", default=True,
                    help="no progress line for a followed file on a terminal")
    open_page.add_parser(sub, _sub)  # symblctl open ID (symblctl/open_page.py)
    voices_cli.add_parser(sub, _sub)  # symblctl voices add/list/remove (symblctl/voices_cli.py)
    fleet_cli.add_arguments(p, {"start": st, "subscribe": sb})  # --nats URL, --node N (symblctl/fleet_cli.py)
    return p


def _check_start_source(parser: argparse.ArgumentParser, ns: argparse.Namespace) -> None:
    if ns.path is not None:
        if ns.file is not None:
            parser.error("give the audio file once: FILE or --file FILE")
        ns.file = ns.path
    given = [ns.file is not None, ns.stdin, ns.push, ns.mic, ns.sip is not None, ns.pstn is not None]
    if sum(given) != 1:
        parser.error("start needs one source: FILE, --file, --stdin, --push, --mic, --sip or --pstn")


# ---------------------------------------------------------------- following a connection


class _Progress:
    """Position / duration and real-time factor of a followed file, from the connection object."""

    def __init__(self, client: Client, connection_id: str, printer: EventPrinter) -> None:
        self.client, self.connection_id, self.printer = client, connection_id, printer
        self.t0 = time.monotonic()
        self.next_at = self.t0

    def tick(self) -> None:
        now = time.monotonic()
        if now < self.next_at:
            return
        self.next_at = now + _PROGRESS_EVERY
        try:
            source = self.client.get(self.connection_id).get("source") or {}
        except DaemonError:
            return
        from symblctl.render import progress_line

        self.printer.set_status(progress_line(float(source.get("sent") or 0.0), source.get("seconds"),
                                              now - self.t0))


class _Heartbeat:
    """While no event arrives, ping the daemon every ``timeout`` s: a daemon that died or hangs under a
    followed connection ends the command (DaemonUnavailable, exit 3) instead of an endless wait."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.quiet_since = time.monotonic()

    def event(self) -> None:
        self.quiet_since = time.monotonic()

    def quiet(self) -> None:
        if time.monotonic() - self.quiet_since >= self.client.timeout:
            self.client.ping()
            self.quiet_since = time.monotonic()


def _ended_status(printer: EventPrinter) -> int:
    end = printer.end_event
    if end is not None and end.get("type") == "connection_failed":
        data = end.get("data") or {}
        why = (data.get("error") or {}).get("message") or data.get("reason") or "failed"
        print(f"symblctl: connection failed: {why}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _follow(client: Client, conn: dict[str, Any], as_json: bool, feeder: Callable[[], bool] | None = None,
            progress: bool = False, banner: str | None = None) -> int:
    """Print a connection's events until it completes; Ctrl-C stops the connection, then exits 130.

    ``banner`` (the ids and "Ctrl-C stops") is printed only once a Ctrl-C is sure to stop the connection.
    """
    connection_id = conn["connectionId"]
    from symblctl.render import EventPrinter

    printer = EventPrinter(sys.stdout, as_json=as_json)
    ticker = _Progress(client, connection_id, printer) if progress and printer.live else None
    stream = None
    heartbeat = _Heartbeat(client)
    try:
        if banner:
            print(banner, file=sys.stderr, flush=True)
        stream = client.events(connection_id)
        feeding = feeder is not None
        while True:
            if feeding:
                feeding = feeder()  # type: ignore[misc]
            if ticker is not None:
                ticker.tick()
            event = stream.get(timeout=0.0 if feeding else (0.1 if ticker else 0.5))
            if event is None:
                if stream.completed:
                    break
                heartbeat.quiet()
                continue
            heartbeat.event()
            printer.show(event)
    except KeyboardInterrupt:  # at any point, even while the subscription is being set up
        return _interrupted(client, connection_id, stream, printer)
    finally:
        if stream is not None:
            stream.close()
    printer.done(None, conn)
    return _ended_status(printer)


def _interrupted(client: Client, connection_id: str, stream: Any, printer: EventPrinter) -> int:
    """First Ctrl-C: say so at once, stop the connection (its last finals are printed); a second one leaves."""
    printer.interrupt()
    print("symblctl: stopping the connection (flushing its last words; Ctrl-C again to leave now)",
          file=sys.stderr, flush=True)
    try:
        final = client.stop(connection_id)
        while stream is not None and (event := stream.get(timeout=2.0)) is not None:  # what the stop flushed
            printer.show(event)
        printer.done(final, final)
    except DaemonError as e:
        if e.code != "invalid_state":  # it ended on its own meanwhile
            print(f"symblctl: {e.message}", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    return EXIT_INTERRUPTED


def _stdin_feeder(client: Client, connection_id: str, rate: int) -> Callable[[], bool]:
    """Push stdin in 100 ms chunks; returns False once stdin is exhausted and the end was sent."""
    stream = sys.stdin.buffer
    pending = b""

    def feed() -> bool:
        nonlocal pending
        chunk = pending or stream.read(_PUSH_CHUNK)
        if not chunk:
            client.end_audio(connection_id)
            return False
        if len(chunk) % 2:
            chunk += stream.read(1)
        try:
            client.send_audio(connection_id, chunk, sample_rate=rate)
            pending = b""
        except DaemonError as e:
            if e.code != "busy":
                raise
            pending = chunk  # the engine is behind: keep the chunk and retry shortly
            time.sleep(0.05)
        return True

    return feed


# ---------------------------------------------------------------- commands


def _start(client: Client, ns: argparse.Namespace) -> int:
    conn = client.start(**start_request(ns))
    cid = conn["connectionId"]
    follow = ns.follow if ns.follow is not None else (ns.mic or ns.stdin)
    feeder = _stdin_feeder(client, cid, ns.rate) if ns.stdin else None
    if not follow and feeder is None:
        if ns.json:
            _print_json(conn)
        else:
            print(f"connectionId {cid}\nconversationId {conn['conversationId']}\nstate {conn['state']}")
        return EXIT_OK
    banner = None if ns.json else f"connectionId {cid}  conversationId {conn['conversationId']}  (Ctrl-C stops)"
    if not follow:
        if banner:
            print(banner, file=sys.stderr)
        while feeder():  # type: ignore[misc]
            pass
        _print_json(conn) if ns.json else print(cid)
        return EXIT_OK
    return _follow(client, conn, ns.json, feeder, progress=bool(ns.file) and ns.progress, banner=banner)


def _subscribe(client: Client, ns: argparse.Namespace) -> int:
    types = [t.strip() for t in ns.types.split(",") if t.strip()] if ns.types else None
    if types:
        known = set(client.describe().get("eventTypes", []))
        unknown = [t for t in types if t not in known]
        if unknown:
            print(f"symblctl: unknown event type {', '.join(unknown)}; known: {', '.join(sorted(known))}",
                  file=sys.stderr)
            return EXIT_USAGE
    connection_id = ns.id
    if connection_id is not None:  # a conversationId names its connection: subscribe to that one's topic
        try:
            connection_id = client.get(connection_id)["connectionId"]
        except DaemonError as e:
            if e.code != "unknown_connection":
                raise  # unknown here may still be a remote (Symbl) connection: subscribe decides
    from symblctl.render import EventPrinter

    printer = EventPrinter(sys.stdout, as_json=ns.json, show_ids=ns.id is None)
    heartbeat = _Heartbeat(client)
    with client.events(connection_id, types) as stream:
        try:
            while True:
                event = stream.get(timeout=0.5)
                if event is None:
                    if stream.completed:
                        return EXIT_OK
                    heartbeat.quiet()
                    continue
                heartbeat.event()
                printer.show(event)
        except KeyboardInterrupt:
            printer.interrupt()
            return EXIT_INTERRUPTED


def _transcript(client: Client, ns: argparse.Namespace) -> int:
    fmt = ns.format or ("json" if ns.json else "txt")
    from symblctl.export import render

    text = render(client.all_history(ns.id), fmt)
    if ns.output:
        with open(ns.output, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"wrote {ns.output} ({fmt})", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _conversations(client: Client, ns: argparse.Namespace) -> int:
    rows = client.request("conversations", since=ns.since, source=ns.source, limit=ns.limit)["conversations"]
    if ns.json:
        for row in rows:
            _print_json(row)
    else:
        from symblctl.render import conversations_table

        for line in conversations_table(rows):
            print(line)
    return EXIT_OK


def _stop(client: Client, ns: argparse.Namespace) -> int:
    try:
        result = client.stop(ns.id)
    except DaemonError as e:
        if e.code != "invalid_state":
            raise
        result = client.get(ns.id)  # already ended: its final object, as the Python API returns
        if not ns.json:
            print(f"symblctl: {e.message}", file=sys.stderr)
    print(json.dumps(result, indent=None if ns.json else 2, ensure_ascii=False))
    return EXIT_OK


def _devices(client: Client, ns: argparse.Namespace) -> int:
    result = client.request("devices")
    if ns.json:
        _print_json(result)
        return EXIT_OK
    if not result["devices"]:
        mic = (client.describe().get("audioSources") or {}).get("mic") or {}
        print(f"no audio input devices: {mic.get('reason') or 'the daemon found none'}", file=sys.stderr)
        return EXIT_OK
    for dev in result["devices"]:
        mark = "*" if dev.get("default") else " "
        print(f"{mark} {dev['index']:>3}  {dev['name']}  ({dev.get('channels')} ch, {dev.get('samplerate', 0):.0f} Hz)")
    return EXIT_OK


Printer = Callable[[dict[str, Any]], None]


def _print_indented(result: dict[str, Any]) -> None:
    print(json.dumps(result, indent=2, ensure_ascii=False))


def _print_state(result: dict[str, Any]) -> None:
    print(result["state"])


def _print_finalized(result: dict[str, Any]) -> None:
    closed = result.get("utteranceClosed")
    print("final follows" if closed else "nothing to finalize (silence since the last final)" if closed is False
          else "queued behind the audio not yet read; finalized when it is")


class Presentation(NamedTuple):
    """How a declared command looks on the command line, where the declaration's own text is not enough."""

    summary: str = ""
    description: str = ""
    examples: str = ""
    printer: Printer = _print_indented


PRESENTATION = {
    "ping": Presentation("check that symbld answers", examples="  symblctl ping\n  symblctl ping --timeout 1",
                         printer=lambda r: print(f"pong from symbld {r['version']} (pid {r['pid']}, "
                                                 f"up {r['uptime']:.0f} s)")),
    "describe": Presentation("version, engines, sources, event types, commands", examples="  symblctl describe --json"),
    "status": Presentation("all connections of this daemon run", "Past runs' conversations: symblctl conversations.",
                           "  symblctl status\n  symblctl status --json", printer=lambda r: _print_status(r)),
    "get": Presentation("one connection's object", "ID is a connectionId or a conversationId.",
                        "  symblctl get 7909733735465972"),
    "shutdown": Presentation("stop every connection and the daemon", printer=lambda r: None),
    "finalize": Presentation("make what a connection heard so far final, without ending it",
                             "ID is a connectionId or a conversationId. The final (transcript_response isFinal "
                             "and message_response) follows on the events socket; audio sent afterwards opens a "
                             "new utterance.", "  symblctl finalize 7909733735465972", printer=_print_finalized),
    "pause": Presentation("pause a microphone connection (silence is sent meanwhile)", printer=_print_state),
    "resume": Presentation("resume a paused or muted microphone connection", printer=_print_state),
}


def _mute(client: Client, ns: argparse.Namespace) -> int:
    result = client.mute(ns.id, on=not ns.off)
    print(json.dumps(result) if ns.json else result["state"])
    return EXIT_OK


def _declared(client: Client, ns: argparse.Namespace) -> int:
    """A subcommand made from its declaration: the request from the options, the result printed."""
    name = ns.cmd.replace("-", "_")
    if name in commands.WITH_FIELDS:
        from symblctl import cli_declared, protocol

        result = client.call(cli_declared.request_from(protocol.COMMANDS[name], ns))
    else:
        result = client.request(name)
    if ns.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        PRESENTATION.get(name, Presentation()).printer(result)
    return EXIT_OK


_COMMANDS: dict[str, Callable[[Client, argparse.Namespace], int]] = {
    "start": _start, "subscribe": _subscribe, "transcript": _transcript, "conversations": _conversations,
    "ls": _conversations, "stop": _stop, "devices": _devices, "mute": _mute, "open": open_page.run,
    "voices": voices_cli.run,
}


def run(ns: argparse.Namespace) -> int:
    if ns.cmd == "install-service":
        return _install_service(ns)
    if ns.cmd == "keygen":
        return _keygen(ns)
    if ns.cmd == "completion":
        return completion.run(ns.shell, ns.install)
    if ns.nats:
        return fleet_cli.run(ns)
    client = Client(ns.control, ns.events_endpoint, timeout=ns.timeout)
    try:
        if ns.cmd == "history":
            from symblctl.render import EventPrinter

            printer = EventPrinter(sys.stdout, as_json=ns.json, live=False)
            for e in client.all_history(ns.id, ns.after):
                printer.show(e)
            return EXIT_OK
        return _COMMANDS.get(ns.cmd, _declared)(client, ns)
    except DaemonUnavailable as e:
        print(f"symblctl: {e.message}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except DaemonError as e:
        print(f"symblctl: {e.message} [{e.code}]", file=sys.stderr)
        return EXIT_REFUSED
    except OSError as e:  # -o FILE not writable
        print(f"symblctl: {e}", file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        client.close()


def _keygen(ns: argparse.Namespace) -> int:
    from pathlib import Path

    from symblctl.keys import SecurityError, generate_keys, keys_dir

    try:
        secret, public, pair = generate_keys(Path(ns.dir) if ns.dir else keys_dir(), ns.name, ns.force)
    except (SecurityError, OSError) as e:
        print(f"symblctl: {e}", file=sys.stderr)
        return EXIT_REFUSED
    if ns.json:
        _print_json({"name": ns.name, "secretKeyFile": str(secret), "publicKeyFile": str(public),
                     "publicKey": pair.public.decode()})
    else:
        print(f"wrote {secret} (secret, keep it private)\nwrote {public}\npublic key: {pair.public.decode()}")
    return EXIT_OK


def _install_service(ns: argparse.Namespace) -> int:
    import shutil
    from pathlib import Path

    from symblctl.units import install_units, system_commands, user_commands

    exe = shutil.which("symbld") or str(Path(sys.executable).with_name("symbld"))
    if not Path(exe).exists():
        print("symblctl: install-service needs the daemon installed (pip install symbld): no symbld executable "
              "found next to this Python", file=sys.stderr)
        return EXIT_REFUSED
    scope: Literal["user", "system"] = "system" if ns.system else "user"
    try:
        written = install_units(scope, exe, Path(ns.dest) if ns.dest else None)
    except OSError as e:
        print(f"symblctl: cannot install the {scope} unit: {e}", file=sys.stderr)
        return EXIT_REFUSED
    for path in written:
        print(f"wrote {path}")
    print("then run:")
    for cmd in system_commands() if ns.system else user_commands():
        print("  " + " ".join(cmd))
    return EXIT_OK


def _print_status(result: dict[str, Any]) -> None:
    conns = result["connections"]
    print(f"{result['live']} live, {len(conns)} in this run, up {result['uptime']:.0f} s")
    for c in conns:
        src = c["source"].get("kind", "?")
        print(f"  {c['connectionId']}  {c['state']:<8} {src:<5} {c['engine']:<6} conv {c['conversationId']}  "
              f"{c['audioSeconds']:.1f} s audio, {c['lastSeq']} events")
    for c in result.get("cut", []):
        print(f"  {c['connectionId']}  cut by a daemon restart (journal kept, {c['lastSeq']} events)")


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    parser = build_parser(None if completion.requested() else words)  # completion walks every sub-parser
    completion.autocomplete(parser)
    try:
        ns = parser.parse_args(argv)
    except SystemExit as e:  # argparse: 2 for bad usage, 0 for --help / --version
        return int(e.code or 0)
    if ns.cmd == "start":
        try:
            _check_start_source(parser, ns)
        except SystemExit as e:
            return int(e.code or 0)
    return run(ns)


if __name__ == "__main__":
    sys.exit(main())
