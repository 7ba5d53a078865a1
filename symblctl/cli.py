"""symblctl: drive symbld from a terminal or a script.

Human output by default (a live view: interim text rewritten in place, finals kept); ``--json``
prints one JSON object per line. Exit codes: 0 success, 1 the daemon refused (reason on
stderr), 2 bad usage, 3 symbld not running, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from symblctl.client import Client, DaemonError, DaemonUnavailable
from symblctl.render import EventPrinter, transcript_lines

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
_PUSH_CHUNK = 3200  # 100 ms of 16 kHz audio per send_audio


def _print_json(obj: Any, out: TextIO = sys.stdout) -> None:
    out.write(json.dumps(obj, ensure_ascii=False) + "\n")
    out.flush()


def _parse_tracker(text: str) -> dict[str, Any]:
    name, sep, terms = text.partition("=")
    if not sep or not name.strip() or not terms.strip():
        raise argparse.ArgumentTypeError(f"tracker must look like NAME=term one,term two (got {text!r})")
    return {"name": name.strip(), "vocabulary": [t.strip() for t in terms.split(",") if t.strip()]}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="symblctl", description="Control the symbld conversation-intelligence daemon.")
    p.add_argument("--control", help="control endpoint (default: $SYMBLD_CONTROL or the runtime dir's)")
    p.add_argument("--events", help="events endpoint (default: $SYMBLD_EVENTS or the runtime dir's)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for a reply (default 5)")
    p.add_argument("--json", action="store_true", help="machine output: one JSON object per line")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    sub.add_parser("ping", help="check that symbld answers")
    sub.add_parser("describe", help="version, engines, sources, event types, commands")
    sub.add_parser("status", help="all connections")
    g = sub.add_parser("get", help="one connection")
    g.add_argument("id")
    s = sub.add_parser("stop", help="stop a connection (flushes finals) and print its final object")
    s.add_argument("id")
    h = sub.add_parser("history", help="events of a connection")
    h.add_argument("id")
    h.add_argument("--after", type=int, default=0, help="only events with seq > AFTER")
    t = sub.add_parser("transcript", help="a connection's conversation as readable text")
    t.add_argument("id")
    sb = sub.add_parser("subscribe", help="tail events live (all connections, or one)")
    sb.add_argument("id", nargs="?")
    sb.add_argument("--events", dest="types", help="comma-separated event types (default: all)")
    sub.add_parser("shutdown", help="stop every connection and the daemon")
    sub.add_parser("devices", help="audio input devices the daemon can capture from")
    for name, text in (("pause", "pause a microphone connection (silence is sent meanwhile)"),
                       ("resume", "resume a paused or muted microphone connection")):
        sub.add_parser(name, help=text).add_argument("id")
    mu = sub.add_parser("mute", help="mute a microphone connection (or --off to unmute)")
    mu.add_argument("id")
    mu.add_argument("--off", action="store_true")
    kg = sub.add_parser("keygen", help="make a CURVE key pair for tcp:// endpoints (NAME.secret 0600, NAME.public)")
    kg.add_argument("--name", default="client", help="key name: client (default) or server")
    kg.add_argument("--dir", help="where to write (default: $SYMBLD_KEYS_DIR or ~/.config/symbld/keys)")
    kg.add_argument("--force", action="store_true", help="replace existing key files")
    inst = sub.add_parser("install-service", help="install the systemd unit for this symbld (user or system)")
    inst.add_argument("--system", action="store_true", help="the system unit (needs root) instead of the user unit")
    inst.add_argument("--dest", help="unit directory (default: the scope's standard one)")

    st = sub.add_parser("start", help="start a connection")
    src = st.add_mutually_exclusive_group(required=True)
    src.add_argument("--file", help="audio file (WAV, FLAC, OGG, MP3; any rate or channels)")
    src.add_argument("--stdin", action="store_true", help="raw 16-bit little-endian mono PCM on standard input")
    src.add_argument("--push", action="store_true", help="audio pushed later by another process (send_audio)")
    src.add_argument("--mic", action="store_true", help="the daemon's microphone")
    src.add_argument("--sip", metavar="URI", help="dial a SIP URI and transcribe the call")
    src.add_argument("--pstn", metavar="NUMBER", help="dial a phone number through the configured gateway")
    st.add_argument("--device", help="microphone device name or index (with --mic)")
    st.add_argument("--rate", type=int, default=16000, help="sample rate of --stdin/--push audio (default 16000)")
    st.add_argument("--fast", action="store_true", help="read --file as fast as possible, not in real time")
    st.add_argument("--dtmf", help="digits to send after the call is answered (with --sip/--pstn)")
    st.add_argument("--engine", help="engine (default: the daemon's)")
    st.add_argument("--insight-types", help="comma-separated: question,action_item,follow_up (default: all)")
    st.add_argument("--title", help="meeting title")
    st.add_argument("--speaker", help="speaker name")
    st.add_argument("--tracker", action="append", type=_parse_tracker, default=[],
                    help="NAME=term,term (repeatable)")
    st.add_argument("--vocab", action="append", default=[], help="custom vocabulary word (repeatable)")
    st.add_argument("--email", action="append", default=[], help="send a summary email to this address on stop")
    follow = st.add_mutually_exclusive_group()
    follow.add_argument("--follow", dest="follow", action="store_true", default=None,
                        help="print events live until the connection ends (default with --mic and --stdin)")
    follow.add_argument("--no-follow", dest="follow", action="store_false")
    return p


def _start_args(ns: argparse.Namespace) -> dict[str, Any]:
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
    args: dict[str, Any] = {"source": source, "engine": ns.engine, "config": config,
                            "trackers": ns.tracker or None, "customVocabulary": ns.vocab or None}
    if ns.insight_types is not None:
        args["insightTypes"] = [t.strip() for t in ns.insight_types.split(",") if t.strip()]
    if ns.speaker:
        args["speaker"] = {"name": ns.speaker, "userId": ns.speaker}
    if ns.email:
        args["actions"] = [{"invokeOn": "stop", "name": "sendSummaryEmail", "parameters": {"emails": ns.email}}]
    return args


def _follow(client: Client, connection_id: str, as_json: bool, feeder: Callable[[], bool] | None = None,
            after_seq: int = 0) -> int:
    """Print a connection's events until it completes; Ctrl-C stops the connection cleanly."""
    printer = EventPrinter(sys.stdout, as_json=as_json)
    with client.events(connection_id, after_seq=after_seq) as stream:
        try:
            feeding = feeder is not None
            while True:
                if feeding:
                    feeding = feeder()  # type: ignore[misc]
                event = stream.get(timeout=0.0 if feeding else 0.5)
                if event is None:
                    if stream.completed:
                        break
                    continue
                printer.show(event)
        except KeyboardInterrupt:
            printer.interrupt()
            try:
                final = client.stop(connection_id)
            except DaemonError as e:
                print(f"symblctl: {e.message}", file=sys.stderr)
                return EXIT_INTERRUPTED
            # Drain what the stop flushed, so the last finals are printed too.
            while (event := stream.get(timeout=2.0)) is not None:
                printer.show(event)
            printer.done(final)
            return EXIT_OK
    printer.done(None)
    return EXIT_OK


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


def run(ns: argparse.Namespace) -> int:
    if ns.cmd == "install-service":
        return _install_service(ns)
    if ns.cmd == "keygen":
        return _keygen(ns)
    client = Client(ns.control, ns.events, timeout=ns.timeout)
    out = sys.stdout
    try:
        if ns.cmd == "start":
            conn = client.start(**_start_args(ns))
            cid = conn["connectionId"]
            follow = ns.follow if ns.follow is not None else (ns.mic or ns.stdin)
            feeder = _stdin_feeder(client, cid, ns.rate) if ns.stdin else None
            if not follow and feeder is None:
                if ns.json:
                    _print_json(conn)
                else:
                    print(f"connectionId {cid}\nconversationId {conn['conversationId']}\nstate {conn['state']}")
                return EXIT_OK
            if not ns.json:
                print(f"connectionId {cid}  conversationId {conn['conversationId']}  (Ctrl-C stops)", file=sys.stderr)
            if not follow:
                while feeder():  # type: ignore[misc]
                    pass
                _print_json(conn) if ns.json else print(cid)
                return EXIT_OK
            return _follow(client, cid, ns.json, feeder)
        if ns.cmd == "subscribe":
            types = [t.strip() for t in ns.types.split(",")] if ns.types else None
            printer = EventPrinter(out, as_json=ns.json, show_ids=ns.id is None)
            with client.events(ns.id, types) as stream:
                try:
                    for event in stream:
                        printer.show(event)
                except KeyboardInterrupt:
                    printer.interrupt()
                    return EXIT_OK
            return EXIT_OK
        if ns.cmd == "history":
            events = client.all_history(ns.id, ns.after)
            printer = EventPrinter(out, as_json=ns.json, live=False)
            for e in events:
                printer.show(e)
            return EXIT_OK
        if ns.cmd == "transcript":
            events = client.all_history(ns.id)
            if ns.json:
                _print_json({"connectionId": ns.id, "events": events})
            else:
                for line in transcript_lines(events):
                    print(line)
            return EXIT_OK
        result = {
            "ping": lambda: client.ping(),
            "describe": lambda: client.describe(),
            "status": lambda: client.status(),
            "get": lambda: client.get(ns.id),
            "stop": lambda: client.stop(ns.id),
            "shutdown": lambda: client.request("shutdown"),
            "devices": lambda: client.request("devices"),
            "pause": lambda: client.request("pause", connectionId=ns.id),
            "resume": lambda: client.request("resume", connectionId=ns.id),
            "mute": lambda: client.request("mute", connectionId=ns.id, on=not ns.off),
        }[ns.cmd]()
        if ns.json or ns.cmd in ("describe", "get", "stop"):
            print(json.dumps(result, indent=None if ns.json else 2, ensure_ascii=False))
        elif ns.cmd == "ping":
            print(f"pong from symbld {result['version']} (pid {result['pid']}, up {result['uptime']:.0f} s)")
        elif ns.cmd == "status":
            _print_status(result)
        elif ns.cmd == "devices":
            for dev in result["devices"]:
                mark = "*" if dev.get("default") else " "
                print(f"{mark} {dev['index']:>3}  {dev['name']}  ({dev.get('channels')} ch, "
                      f"{dev.get('samplerate', 0):.0f} Hz)")
        elif ns.cmd in ("pause", "resume", "mute"):
            print(result["state"])
        else:
            print(json.dumps(result))
        return EXIT_OK
    except DaemonUnavailable as e:
        print(f"symblctl: {e.message}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except DaemonError as e:
        print(f"symblctl: {e.message} [{e.code}]", file=sys.stderr)
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
        print("symblctl: cannot find the symbld executable next to this Python", file=sys.stderr)
        return EXIT_REFUSED
    scope = "system" if ns.system else "user"
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
    ns = build_parser().parse_args(argv)
    return run(ns)


if __name__ == "__main__":
    sys.exit(main())
