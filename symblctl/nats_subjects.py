"""The NATS wire names (docs/fleet.md): every subject and header symbld and symblctl use, built and parsed here.

In the client package so that ``symblctl.fleet`` needs nothing of the daemon; the daemon imports it."""

from __future__ import annotations

EVENTS_PREFIX = "symbld.events"
CONTROL_PREFIX = "symbld.control"
ALL = "all"  # symbld.control.all.<cmd>: scatter-gather to every node
DAEMON_TOKEN = "_daemon"  # the connection token of daemon-wide events (ready, stopping)
SCATTER_COMMANDS = ("ping", "status")
FRAME_SPLIT = "Symbld-Frame-Split"  # header: bytes of the JSON frame when a binary frame follows in the payload
CLIENT_HEADER = "Symbld-Client"  # header: who sent a control request (logged for state-changing commands)


def event_subject(node: str, connection_id: str, event_type: str) -> str:
    return f"{EVENTS_PREFIX}.{node}.{connection_id}.{event_type}"


def events_filter(node: str | None = None, connection_id: str | None = None) -> str:
    """A filter subject: one node's or every node's events, one connection's or all of them."""
    return f"{EVENTS_PREFIX}.{node or '*'}.{connection_id or '*'}.*"


def control_subject(node: str) -> str:
    return f"{CONTROL_PREFIX}.{node}"


def scatter_subject(cmd: str) -> str:
    return f"{CONTROL_PREFIX}.{ALL}.{cmd}"


def node_of(subject: str) -> str:
    """The node token of an event subject."""
    return subject.split(".")[2]


def check_token(value: str, what: str) -> str:
    """Node names and connection ids become subject tokens: no dots, spaces or wildcards."""
    if not value or any(c in value for c in ". *>\t\r\n") or value == ALL:
        raise ValueError(f"{what} {value!r} cannot be a NATS subject token (no '.', '*', '>', spaces; not 'all')")
    return value
