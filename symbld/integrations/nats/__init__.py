"""Past one machine: the daemon's events on a NATS JetStream stream and its control over NATS request-reply.

``symblctl.nats_settings`` reads the ``[nats]`` table and opens connections, ``symblctl.nats_subjects``
names everything on the wire (both in the client package, which needs nothing of the daemon);
``bridge`` copies every bus event to the stream, ``control`` serves the control protocol on
``symbld.control.<node>``, ``service`` runs them on one asyncio thread. See docs/fleet.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from symbld.config import section

if TYPE_CHECKING:
    from symbld.core.ports import NatsHost


def start(daemon: NatsHost) -> Any:
    """The daemon's one call: when ``[nats] url`` is set, connects and starts the bridge and the
    control server (raising ``NatsSetupError``). Returns the service or None."""

    table = section(daemon.config, "nats")
    if not table.get("url"):
        return None
    try:
        from symblctl.nats_settings import from_config
        from symbld.integrations.nats.service import NatsService
    except ImportError as e:  # configured but not installed: say so, do not run without it
        raise RuntimeError(f"[nats] is configured but nats-py is not installed ({e}); "
                           "pip install 'symbld[nats]'") from None
    service = NatsService(daemon, from_config(table))  # type: ignore[arg-type]
    service.start()
    return service
