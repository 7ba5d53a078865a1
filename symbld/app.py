"""symbld: wires config, the control server, the event bus, sessions and engines; owns signals.

Threads: the main thread runs the control socket and the housekeeping (watchdog, signals);
the bus thread owns the PUB socket; each session has a thread; engines have their own
workers. SIGTERM/SIGINT stop every session (flushing finals), close every socket with
linger 0 and exit 0. SIGHUP reloads the configuration file.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import hashlib
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import structlog
import zmq

from symblctl import events
from symblctl.keys import SecurityError
from symbld import __version__
from symbld.config import load, render_config, section
from symbld.config_check import ConfigError
from symbld.control import registry
from symbld.control.catalog import load_all
from symbld.control.curve import CurveServer, curve_socket, serve_curve
from symbld.control.publisher import Publisher
from symbld.control.router import ControlServer
from symbld.core import shutdown
from symbld.core.bus import EventBus
from symbld.core.conversations import ConversationIndex
from symbld.core.journal import Journal
from symbld.core.runtime import RuntimeDirError, check_runtime_dir
from symbld.core.service import ConnectionService
from symbld.core.sessions import Session, SessionRegistry
from symbld.core.sources import SourceFactory
from symbld.engines.base import Engine, EngineError
from symbld.errors import ControlError
from symbld.gateways.symbl.engine import SymblEngine
from symbld.integrations.systemd.journald import configure_logging
from symbld.integrations.systemd.notify import Notifier

log = structlog.get_logger("symbld")

_EXPIRE_EVERY_S = 3600.0  # journal retention is applied hourly while running
_ENDED_TYPES = ("connection_stopped", "connection_failed", "conversation_completed")
_HOUSEKEEPING_S = 0.1
_CONTINUOUS_SOURCES = ("mic", "file")  # deliver frames steadily while live (push and calls may pause)
_PIPELINE_STALL_S = 30.0


class StartupError(Exception):
    """A clear, one-line reason the daemon cannot start."""


def _ipc_path(endpoint: str) -> Path | None:
    return Path(endpoint[len("ipc://"):]) if endpoint.startswith("ipc://") else None


class InstanceLock:
    """One daemon per control endpoint: an flock next to the socket (released by the kernel on crash,
    so a stale socket file from a killed daemon never blocks a restart)."""

    def __init__(self, endpoint: str, runtime_dir: Path) -> None:
        ipc = _ipc_path(endpoint)
        if ipc is not None:
            self.path = ipc.with_name(ipc.name + ".lock")
        else:
            digest = hashlib.sha1(endpoint.encode()).hexdigest()[:12]
            self.path = runtime_dir / f"tcp-{digest}.lock"
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self._fd)
            raise StartupError(f"another symbld (pid {other}) is already running on {endpoint}") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


class Daemon:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.started_at = time.time()
        self.notifier = Notifier.from_env()
        self.runtime_dir = Path(config["runtime_dir"])
        self.state_dir = Path(config["state_dir"])
        self.actions: Any = None
        self.cut_connections: list[dict[str, Any]] = []
        self.spooled: dict[str, dict[str, Any]] = {}  # connections the last run spooled (symbld.core.shutdown)
        self._shutdown = threading.Event()
        self._shutdown_reason = ""
        self._reload = threading.Event()
        self.ctx: zmq.Context[zmq.Socket[bytes]] | None = None
        self.curve: CurveServer | None = None  # set in bind() when an endpoint is tcp://
        self.control: ControlServer | None = None
        self.lock: InstanceLock | None = None
        self.engines: dict[str, Engine] = {}
        self.sessions = SessionRegistry(max_live=config["max_connections"], on_pruned=self._forget_connection)
        self.sources = SourceFactory(config)
        self.journal: Journal | None = None
        self.conversations: ConversationIndex | None = None
        self.bus: EventBus = None  # type: ignore[assignment]  # set in bind()
        self._last_status = ""
        self.service: ConnectionService = None  # type: ignore[assignment]  # set in bind(), once the bus exists
        self.nats: Any = None  # symbld.integrations.nats.service.NatsService when [nats] url is set

    # -- start-up --------------------------------------------------------------------------
    def bind(self) -> None:
        """Create directories (0700), take the instance lock, bind both sockets."""
        # Socket files owner-only, except for the system service, whose RuntimeDirectory is 0750
        # group symbld: there the group must be able to connect (connect() needs write on the file).
        group = self.runtime_dir.is_dir() and bool(self.runtime_dir.stat().st_mode & 0o070)
        old_umask = os.umask(0o007 if group else 0o077)
        try:
            self.runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            try:
                check_runtime_dir(self.runtime_dir)
            except RuntimeDirError as e:
                raise StartupError(str(e)) from None
            for key in ("control", "events"):
                p = _ipc_path(self.config[key])
                if p is not None:
                    p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.lock = InstanceLock(self.config["control"], self.runtime_dir)
            self.journal = Journal(self.state_dir / "journal", float(self.config["journal_retention_days"]))
            self.journal.check_all()  # files that are not journals are moved aside, start-up goes on
            self.conversations = ConversationIndex(self.journal)
            self.journal.expire()
            self.ctx = zmq.Context()
            try:  # tcp:// only with CURVE (keys + allow-list), never open
                self.curve = serve_curve(self.ctx, self.config)
            except SecurityError as e:
                raise StartupError(str(e)) from None
            try:
                with curve_socket(self.curve, self.config["events"]):
                    publisher = Publisher(self.ctx, self.config["events"], self.config["event_queue_per_subscriber"])
                    checking = os.environ.get("SYMBLD_CHECK_EVENTS") == "1"  # events and replies, as declared
                    self.bus = EventBus(publisher, self.journal,
                                        history_per_connection=self.config["history_per_connection"], check=checking)
                    registry.check_replies(checking)
                self.service = ConnectionService(
                    self.config, state_dir=self.state_dir, engines=self.engines, sessions=self.sessions,
                    sources=self.sources, bus=self.bus, journal=self.journal, conversations=self.conversations,
                    host=self)
                with curve_socket(self.curve, self.config["control"]):
                    self.control = ControlServer(self.ctx, self.config["control"], self.service)
            except zmq.ZMQError as e:
                raise StartupError(f"cannot bind {self.config['control']} / {self.config['events']}: {e}") from None
        finally:
            os.umask(old_umask)
        from symbld.integrations.mail import ActionRunner

        self.actions = ActionRunner(section(self.config, "smtp"), self.state_dir, self._publish_action)
        self.service.actions = self.actions
        load_all()
        self._recover_cut_connections()

    def load_engines(self) -> None:
        from symbld.engines.local import LocalEngine

        try:
            local = LocalEngine(section(self.config, "engine", "local"))
        except EngineError as e:  # a setting the engine refuses (end_of_turn): one line, not a traceback
            raise StartupError(f"[engine.local] {e.message}") from None
        self.engines["local"] = local
        # failover = "local" in [engine.symbl] continues a connection offline when the endpoint stays down.
        self.engines["symbl"] = SymblEngine(section(self.config, "engine", "symbl"), fallback=local)
        if self.config["default_engine"] not in self.engines:
            raise StartupError(f"default engine {self.config['default_engine']!r} is not available; "
                               f"known: {sorted(self.engines)}")
        if self.config.get("preload", True):
            self.notifier.extend_timeout(120)
            t0 = time.monotonic()
            try:
                local.load()
            except EngineError as e:  # a configured model or recogniser whose extra is missing: one line
                raise StartupError(str(e)) from None
            log.info("engine_loaded", engine="local", seconds=round(time.monotonic() - t0, 2))

    def _recover_cut_connections(self) -> None:
        """Connections a crashed daemon left open: mark them failed in their journals and report them."""
        assert self.journal is not None
        self.spooled = shutdown.pending_recoveries(self.state_dir)  # decoded in run(), once the engine is loaded
        for cid in self.journal.connection_ids():
            last = self.journal.last_event(cid)
            if last is None or last.get("type") in _ENDED_TYPES or cid in self.spooled:
                continue
            conv = last.get("conversationId", "")
            self.bus.seed(cid, int(last.get("seq", 0)))
            info = {"connectionId": cid, "conversationId": conv, "lastSeq": last.get("seq"),
                    "lastEventAt": last.get("time")}
            self.bus.publish(cid, conv, "connection_failed", {
                **info, "state": "failed", "reason": "daemon_restarted",
                "error": {"code": "internal", "message": "the daemon stopped while this connection was live; "
                          "everything published before is in its journal", "details": {}}})
            self.bus.publish(cid, conv, "conversation_completed",
                             events.ConversationCompleted(conversation_id=conv, connection_id=cid))
            self.bus.close_connection(cid)
            self.cut_connections.append(info)
        if self.cut_connections:
            log.warning("connections_cut_by_restart", count=len(self.cut_connections))

    def start_extras(self) -> None:
        """Optional services beside the control socket (the summary page, the Symbl-compatible server)."""
        from symbld.web import links
        from symbld.web.server import start_page

        try:
            self.page_server = start_page(self)  # [page]: summaryUrl's pages (symbld/web/)
        except OSError as e:
            raise StartupError(f"cannot serve the summary page: {e}") from None
        self.service.summary_url = links.summary_url  # None while no page server runs
        self.symbl_server = None
        addr = self.config.get("serve_symbl")
        if not addr:
            return
        from symbld.gateways.apis import API_TABLES
        from symbld.gateways.clients import DaemonClients
        from symbld.gateways.symbl.server import serve_symbl

        host, _, port = str(addr).rpartition(":")
        try:
            # Generated app credentials (when none are configured) are written next to the sockets, 0600.
            server_cfg = {"credentials_out": str(self.runtime_dir / "symbl-credentials.json"),
                          **section(self.config, "symbl_server"),
                          "apis": {name: section(self.config, name) for name in API_TABLES}}
            self.symbl_server = serve_symbl(host or "127.0.0.1", int(port),
                                            DaemonClients(self.config["control"], self.config["events"]),
                                            server_cfg)
        except (OSError, ValueError) as e:
            raise StartupError(f"cannot serve the Symbl API on {addr}: {e}") from None
        log.info("serving_symbl_api", address=f"{host}:{self.symbl_server.port}")

    def start_nats(self) -> None:
        from symblctl.nats_settings import NatsSetupError
        from symbld.integrations.nats import start

        try:
            self.nats = start(self)
        except (NatsSetupError, RuntimeError) as e:
            raise StartupError(str(e)) from None

    def symbl_server_info(self) -> dict[str, Any] | None:
        server = getattr(self, "symbl_server", None)
        if server is None:
            return None
        host = str(self.config["serve_symbl"]).rpartition(":")[0] or "127.0.0.1"
        return {"url": f"http://{host}:{server.port}", "credentials": str(self.runtime_dir / "symbl-credentials.json")}

    def abort(self) -> None:
        """Undo a partial start-up (sockets bound, lock taken) after a StartupError."""
        if self.control is not None:
            self.control.close()
        if self.bus is not None:
            self.bus.close()
        if self.nats is not None:
            self.nats.close()
        if self.curve is not None:
            self.curve.close()
        if self.ctx is not None:
            self.ctx.term()
        if self.lock is not None:
            self.lock.release()

    # -- actions and forgetting -----------------------------------------------------------------
    def _forget_connection(self, connection_id: str) -> None:
        self.bus.forget(connection_id)

    def _publish_action(self, connection_id: str, conversation_id: str, event_type: str,
                        data: dict[str, Any]) -> None:
        """Action news goes on its connection, after conversation_completed; a connection of an
        earlier run continues its journal's numbering."""
        self.bus.continue_numbering(connection_id)
        self.bus.publish(connection_id, conversation_id, event_type, data)
        self.bus.close_connection(connection_id)  # the connection has ended: do not keep its journal open

    # -- running ----------------------------------------------------------------------------------
    def request_shutdown(self, reason: str) -> None:
        self._shutdown_reason = reason
        self._shutdown.set()
        if self.control is not None:
            self.control.wake()

    def _install_signals(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.request_shutdown("SIGTERM"))
        signal.signal(signal.SIGINT, lambda *_: self.request_shutdown("SIGINT"))

        def reload(*_: object) -> None:
            self._reload.set()
            if self.control is not None:
                self.control.wake()
        signal.signal(signal.SIGHUP, reload)

    def healthy(self) -> bool:
        """Withhold watchdog pings when a part we depend on is dead or wedged: the bus thread, or a
        live connection whose continuous source (microphone, real-time file) stopped reaching the engine.
        A lost microphone still feeds silence, so only a stuck pipeline trips this."""
        if not self.bus.alive():
            return False
        now = time.monotonic()
        for s in self.sessions.live():
            if (s.source.kind in _CONTINUOUS_SOURCES and s.state == "live" and s.last_frame_at is not None
                    and now - s.last_frame_at > _PIPELINE_STALL_S):
                log.error("audio_pipeline_stalled", connection_id=s.connection_id,
                          seconds=round(now - s.last_frame_at, 1))
                return False
        return True

    # -- what the connection service asks of the daemon (symbld.core.service.Host) ---------------
    def shutting_down(self) -> bool:
        return self._shutdown.is_set()

    def request_count(self) -> int:
        return self.control.requests if self.control else 0

    def nats_status(self) -> dict[str, Any]:
        return self.nats.describe() if self.nats is not None else {"enabled": False}

    def live_changed(self) -> None:
        self._update_status()

    def _update_status(self) -> None:
        live = self.sessions.live()
        kinds = sorted({s.source.kind for s in live})
        text = (f"{len(live)} connection{'s' if len(live) != 1 else ''} live"
                + (f" ({', '.join(kinds)})" if kinds else "") + f", engine: {self.config['default_engine']}")
        if text != self._last_status:
            self._last_status = text
            self.notifier.status(text)

    def reload(self) -> None:
        """SIGHUP: re-read and validate the config file; settings that can change live do, sockets stay.

        A file with any error changes nothing: the error (key and line) is logged, the old config stays.
        """
        self.notifier.reloading()
        try:
            fresh = load(self.config.get("config_path"), self.config.get("_flags", {}))
        except ConfigError as e:
            log.error("config_reload_failed", error=str(e), kept="the previous configuration")
            self.notifier.ready(self._last_status or None)
            return
        changed = [k for k in _LIVE_KEYS if self.config.get(k) != fresh.get(k)]
        for key in _LIVE_KEYS:
            if key in fresh:
                self.config[key] = fresh[key]
        self.sessions.max_live = int(fresh["max_connections"])
        if self.journal is not None and "journal_retention_days" in changed:
            self.journal.retention_days = float(fresh["journal_retention_days"])
            self.journal.expire()
        configure_logging(self.config["log_level"], _json_flag(self.config),
                          log_transcripts=bool(self.config["log_transcripts"]))
        _log_config_warnings(fresh)
        log.info("config_reloaded", path=self.config.get("config_path"), changed=changed)
        self.notifier.ready(self._last_status or None)

    def run(self) -> int:
        assert self.control is not None
        self._install_signals()
        poller = self.control.poller()
        self._update_status()
        self.notifier.ready(self._last_status)
        self.bus.publish_daemon("ready", events.DaemonReady(pid=os.getpid(), version=__version__))
        shutdown.resume_spooled(self, self.spooled)  # audio the last run could not decode in time
        if self.config.get("config_missing"):
            log.warning("config_file_missing_using_defaults", path=self.config.get("config_path"))
        _log_config_warnings(self.config)
        log.info("symbld_ready", control=self.config["control"], events=self.config["events"], pid=os.getpid())
        # Test hook (tests/test_systemd_daemon.py): while this file exists the loop is "wedged".
        stall_file = os.environ.get("SYMBLD_DEBUG_STALL_FILE")
        interval = self.notifier.watchdog_interval()
        next_ping = time.monotonic()
        next_backlog_check = time.monotonic()
        next_expire = time.monotonic() + _EXPIRE_EVERY_S
        while not self._shutdown.is_set():
            while stall_file and os.path.exists(stall_file) and not self._shutdown.is_set():
                time.sleep(0.05)
            self.control.poll_once(int(_HOUSEKEEPING_S * 1000), poller)
            if time.monotonic() >= next_backlog_check:  # engines that fall behind say so (event + status)
                next_backlog_check = time.monotonic() + 1.0
                for s in self.sessions.live():
                    s.check_backlog()
            if time.monotonic() >= next_expire and self.journal is not None:  # retention, not only at start
                next_expire = time.monotonic() + _EXPIRE_EVERY_S
                self.journal.expire()
            if self._reload.is_set():
                self._reload.clear()
                self.reload()
            # Pings come from this loop, so a wedged control loop stops them and systemd restarts us.
            if interval is not None and time.monotonic() >= next_ping and self.healthy():
                self.notifier.watchdog()
                next_ping = time.monotonic() + interval
        return self.shutdown()

    def shutdown(self) -> int:
        log.info("symbld_stopping", reason=self._shutdown_reason, live=len(self.sessions.live()))
        self.notifier.stopping()
        self.bus.publish_daemon("stopping", events.DaemonStopping(reason=self._shutdown_reason))
        stoppers = []
        for s in self.sessions.live():
            t = threading.Thread(target=_stop_quietly, args=(s,), daemon=True)
            t.start()
            stoppers.append(t)
        budget = shutdown.stop_budget(self.config)
        deadline = time.monotonic() + budget
        # Keep answering requests (status, history) while sessions flush.
        assert self.control is not None
        poller = self.control.poller()
        while any(t.is_alive() for t in stoppers) and time.monotonic() < deadline:
            self.control.poll_once(50, poller)
        shutdown.spool_unfinished(self.sessions.live(), functools.partial(self.control.poll_once, 50, poller))
        self.service.close_remote_subscriptions()
        for s in self.sessions.all():  # let hang-ups (SIP BYE) reach the far end before we exit
            wait_closed = getattr(s.source, "wait_closed", None)
            if wait_closed is not None:
                wait_closed(5.0)
        # start_extras may not have run (or failed part-way): the attributes may not exist
        if (symbl_server := self.symbl_server if hasattr(self, "symbl_server") else None) is not None:
            with contextlib.suppress(Exception):
                symbl_server.close()
        if (page_server := self.page_server if hasattr(self, "page_server") else None) is not None:
            page_server.close()
        self.sources.close()
        for eng in self.engines.values():
            with contextlib.suppress(Exception):
                eng.close()
        self.control.poll_once(0, poller)  # send replies that are ready (e.g. to shutdown)
        self.control.close()
        if self.actions is not None:
            self.actions.close()
        self.bus.close()
        if self.nats is not None:  # after the bus: its last events still go out
            self.nats.close()
        if self.curve is not None:
            self.curve.close()
        assert self.ctx is not None
        self.ctx.term()
        for key in ("control", "events"):
            p = _ipc_path(self.config[key])
            if p is not None:
                with contextlib.suppress(OSError):
                    p.unlink()
        if self.lock is not None:
            self.lock.release()
        self.notifier.close()
        _cancel_voice_prints()
        log.info("symbld_stopped")
        return 0


def _cancel_voice_prints() -> None:
    """Diarization's embedding thread (its module imported only where it ran) must not run its queued prints at
    exit: the process would outlive its stop by as long as they take."""
    labeller = sys.modules.get("symbld.diarization.labeller")
    if labeller is not None and (dropped := labeller.cancel_queued_prints()):
        log.warning("voice_prints_dropped", prints=dropped, why="the daemon stopped before them")


def _stop_quietly(session: Session) -> None:
    try:
        session.stop()
    except ControlError:
        pass
    except Exception:
        log.exception("stop_failed", connection_id=session.connection_id)


# Settings a SIGHUP applies to a running daemon (endpoints and directories need a restart).
_LIVE_KEYS = ("log_level", "log_transcripts", "max_connections", "stop_timeout", "journal_retention_days",
              "mic", "telephony", "smtp")


def _log_config_warnings(config: dict[str, Any]) -> None:
    for warning in config.get("config_warnings") or []:
        log.warning("config_warning", warning=warning)


def _json_flag(config: dict[str, Any]) -> bool | None:
    fmt = config.get("log_format", "auto")
    return None if fmt == "auto" else fmt == "json"


def build_parser() -> argparse.ArgumentParser:
    """symbld's command line (also the source of its man page: scripts/gen_man.py)."""
    p = argparse.ArgumentParser(prog="symbld", description="Local conversation-intelligence daemon.")
    p.add_argument("--config", help="TOML config file (default: $SYMBLD_CONFIG or ~/.config/symbld/symbld.toml)")
    p.add_argument("--runtime-dir", help="directory for the ipc sockets (default: $XDG_RUNTIME_DIR/symbld)")
    p.add_argument("--state-dir", help="directory for journals (default: $XDG_STATE_HOME/symbld)")
    p.add_argument("--control", help="control endpoint (ipc://PATH or tcp://HOST:PORT)")
    p.add_argument("--events", help="events endpoint")
    p.add_argument("--engine", dest="default_engine", help="default engine (local, symbl)")
    p.add_argument("--max-connections", type=int)
    p.add_argument("--no-preload", dest="preload", action="store_false", default=None,
                   help="load the offline model on first use instead of at start-up")
    p.add_argument("--log-level", choices=["auto", "debug", "info", "warning", "error"],
                   help="default auto: warning on a terminal, info elsewhere")
    p.add_argument("--log-format", choices=["auto", "console", "json"])
    p.add_argument("--log-transcripts", action="store_true", default=None, help="allow transcript text in logs")
    p.add_argument("--serve-symbl", nargs="?", const="127.0.0.1:5080", metavar="ADDR:PORT",
                   help="also serve Symbl's real-time API (default 127.0.0.1:5080)")
    p.add_argument("--print-config", action="store_true",
                   help="validate the configuration, print the effective one (TOML) and exit")
    p.add_argument("--version", action="version", version=f"symbld {__version__}")
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    ns = parse_args(argv)
    flags = {k: v for k, v in vars(ns).items() if k not in ("config", "print_config") and v is not None}
    try:
        config = load(ns.config, flags)
    except ConfigError as e:
        print(f"symbld: {e}", file=sys.stderr)
        return 2
    if ns.print_config:
        for warning in config["config_warnings"]:
            print(f"symbld: warning: {warning}", file=sys.stderr)
        sys.stdout.write(render_config(config))
        return 0
    config["_flags"] = flags
    configure_logging(config["log_level"], _json_flag(config), log_transcripts=bool(config["log_transcripts"]))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: nothing is ever downloaded
    daemon = Daemon(config)
    try:
        daemon.bind()
        daemon.load_engines()
        daemon.start_extras()
        daemon.start_nats()
    except (StartupError, ConfigError) as e:
        print(f"symbld: {e}", file=sys.stderr)
        daemon.abort()
        return 1
    return daemon.run()


if __name__ == "__main__":
    sys.exit(main())
