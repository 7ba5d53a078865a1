"""``symblctl --nats URL ...``: the CLI's commands across a fleet (symblctl.fleet), hooked into cli.py.

status/ping ask every node (a node column); get/stop/history/transcript find the node that owns the
connection (a live node, else the stream); start needs ``--node``; subscribe follows one node's or
every node's events from the stream (``--durable NAME`` resumes where NAME stopped).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from symblctl.client import DaemonError, DaemonUnavailable
from symblctl.start_request import start_request

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
_ROUTED = ("describe", "devices", "shutdown")  # need --node
_BY_CONNECTION = ("get", "pause", "resume", "mute", "finalize")


def add_arguments(parser: argparse.ArgumentParser, subparsers: dict[str, argparse.ArgumentParser]) -> None:
    g = parser.add_argument_group("fleet (NATS)")
    g.add_argument("--nats", default=os.environ.get("SYMBLD_NATS"), metavar="URL",
                   help="talk to every symbld on this NATS server instead of the local one (env SYMBLD_NATS)")
    g.add_argument("--nats-token", default=os.environ.get("SYMBLD_NATS_TOKEN"), help="NATS token")
    g.add_argument("--nats-creds", default=os.environ.get("SYMBLD_NATS_CREDS"), help="NATS credentials file")
    g.add_argument("--nats-ca", default=os.environ.get("SYMBLD_NATS_CA"), help="CA file for a TLS NATS server")
    g.add_argument("--node", help="with --nats: the node to run the command on (start, describe, shutdown...)")
    sb = subparsers["subscribe"]
    sb.add_argument("--durable", help="with --nats: a named consumer that resumes where it stopped")


def run(ns: argparse.Namespace) -> int:
    from symblctl.fleet import Fleet

    try:
        fleet = Fleet(ns.nats, token=ns.nats_token, credentials=ns.nats_creds, tls_ca=ns.nats_ca, timeout=ns.timeout)
    except DaemonUnavailable as e:
        return _failure(e)
    try:
        handler = _HANDLERS.get(ns.cmd) or (_by_connection if ns.cmd in _BY_CONNECTION else
                                            _routed if ns.cmd in _ROUTED else None)
        if handler is None:
            print(f"symblctl: {ns.cmd} does not work with --nats", file=sys.stderr)
            return EXIT_USAGE
        return handler(fleet, ns)
    except (DaemonError, KeyboardInterrupt) as e:
        return _failure(e)
    finally:
        fleet.close()


def _start(fleet: Any, ns: argparse.Namespace) -> int:
    if not ns.node:
        print("symblctl: with --nats, start needs --node NODE (see symblctl --nats URL ping)", file=sys.stderr)
        return EXIT_USAGE
    if ns.stdin or ns.follow:
        print("symblctl: with --nats, start --stdin/--follow is not supported; follow with subscribe ID",
              file=sys.stderr)
        return EXIT_USAGE
    conn = fleet.start(ns.node, **start_request(ns))
    _show(conn, ns.json, f"connectionId {conn['connectionId']}\nconversationId {conn['conversationId']}\n"
          f"node {ns.node}\nstate {conn['state']}")
    return EXIT_OK


def _gather(fleet: Any, ns: argparse.Namespace) -> int:
    results = fleet.gather(ns.cmd)
    if ns.json:
        for r in results:
            _print_json(r)
    elif ns.cmd == "ping":
        for r in results:
            print(f"{r['node']:<16} symbld {r['version']} (pid {r['pid']}, up {r['uptime']:.0f} s)")
    else:
        _print_fleet_status(results)
    return EXIT_OK


def _subscribe(fleet: Any, ns: argparse.Namespace) -> int:
    from symblctl.render import EventPrinter

    out = sys.stdout
    types = [t.strip() for t in ns.types.split(",")] if ns.types else None
    printer = EventPrinter(out, as_json=ns.json, show_ids=ns.id is None)
    with fleet.events(ns.node, ns.id, ns.durable, types) as stream:
        try:
            for event in stream:
                if not ns.json and ns.id is None:
                    out.write(f"[{event['node']}] ")
                printer.show(event)
        except KeyboardInterrupt:
            printer.interrupt()
    return EXIT_OK


def _history(fleet: Any, ns: argparse.Namespace) -> int:
    from symblctl.export import render
    from symblctl.render import EventPrinter

    events = fleet.history(ns.id, getattr(ns, "after", 0))
    if not events:
        raise DaemonError("unknown_connection", f"no events of {ns.id!r} on the stream", {"connectionId": ns.id})
    if ns.cmd == "transcript" and ns.json:
        _print_json({"connectionId": ns.id, "node": events[0]["node"], "events": events})
    elif ns.cmd == "transcript":
        sys.stdout.write(render(events, getattr(ns, "format", None) or "txt"))
    else:
        printer = EventPrinter(sys.stdout, as_json=ns.json, live=False)
        for e in events:
            printer.show(e)
    return EXIT_OK


def _stop(fleet: Any, ns: argparse.Namespace) -> int:
    _show(fleet.stop(ns.id, ns.node), True if ns.json else None)
    return EXIT_OK


def _by_connection(fleet: Any, ns: argparse.Namespace) -> int:
    node = ns.node or fleet.owner(ns.id)
    args: dict[str, Any] = {"connectionId": ns.id}
    if ns.cmd == "mute":
        args["on"] = not ns.off
    _show({**fleet.request(node, ns.cmd, **args), "node": node}, True if ns.json else None)
    return EXIT_OK


def _routed(fleet: Any, ns: argparse.Namespace) -> int:
    if not ns.node:
        print(f"symblctl: with --nats, {ns.cmd} needs --node NODE", file=sys.stderr)
        return EXIT_USAGE
    _show({**fleet.request(ns.node, ns.cmd), "node": ns.node}, True if ns.json else None)
    return EXIT_OK


_HANDLERS = {"start": _start, "status": _gather, "ping": _gather, "subscribe": _subscribe, "history": _history,
             "transcript": _history, "stop": _stop}


def _failure(e: BaseException) -> int:
    """The CLI's exit codes: 3 no node / no NATS, 1 the daemon refused (its code in brackets), 130 Ctrl-C."""
    if isinstance(e, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    assert isinstance(e, DaemonError)
    unavailable = isinstance(e, DaemonUnavailable)
    print(f"symblctl: {e.message}" + ("" if unavailable else f" [{e.code}]"), file=sys.stderr)
    return EXIT_UNAVAILABLE if unavailable else EXIT_REFUSED


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _show(obj: dict[str, Any], as_json: bool | None, text: str | None = None) -> None:
    if as_json or text is None:
        print(json.dumps(obj, indent=None if as_json else 2, ensure_ascii=False))
    else:
        print(text)


def _print_fleet_status(results: list[dict[str, Any]]) -> None:
    live = sum(r.get("live", 0) for r in results)
    print(f"{len(results)} node{'s' if len(results) != 1 else ''}, {live} live")
    print(f"  {'NODE':<12} {'CONNECTION':<36}  {'STATE':<8} {'SOURCE':<5} {'ENGINE':<6} EVENTS")
    for r in results:
        if not r.get("connections"):
            print(f"  {r['node']:<12} (no connections, up {r.get('uptime', 0):.0f} s)")
        for c in r.get("connections", []):
            print(f"  {r['node']:<12} {c['connectionId']:<36}  {c['state']:<8} {c['source'].get('kind', '?'):<5} "
                  f"{c['engine']:<6} {c['lastSeq']}")
