"""Configuration: defaults < TOML file < environment < command-line flags.

The file is TOML (``--config``, ``$SYMBLD_CONFIG``, else ``$XDG_CONFIG_HOME/symbld/symbld.toml``
when it exists). Top-level keys are the daemon's own; tables (``[engine.local]``, ``[mic]``,
``[telephony]``, ``[symbl]``, ``[smtp]``, ``[serve_symbl]``) are handed to the part they name.
See docs/configuration.md.
"""

from __future__ import annotations

import copy
import os
import tomllib
from pathlib import Path
from typing import Any

DEFAULTS: dict[str, Any] = {
    "runtime_dir": None,  # default: $XDG_RUNTIME_DIR/symbld, else /tmp/symbld-<uid>
    "state_dir": None,  # default: $XDG_STATE_HOME/symbld, else ~/.local/state/symbld
    "control": None,  # default: ipc://<runtime_dir>/control
    "events": None,  # default: ipc://<runtime_dir>/events
    "default_engine": "local",  # [engine.<name>] tables configure each engine
    "max_connections": 16,
    "history_per_connection": 5000,
    # Events queued per subscriber before PUB drops for that subscriber only (it refills by seq).
    "event_queue_per_subscriber": 10_000,
    "journal_retention_days": 30.0,
    "stop_timeout": 60.0,
    "preload": True,  # load the offline model at start-up (READY only after it is loaded)
    "log_level": "info",
    "log_format": "auto",  # auto | console | json
    "log_transcripts": False,
    "redaction": False,  # true or a list of kinds (symbld.insights.redaction.KINDS): mask personal data always
    "serve_symbl": None,  # "127.0.0.1:5080" to serve Symbl's real-time API
    # tcp:// endpoints only (symbld.control.curve): the server's secret key file and the allow-list of
    # client public keys. Defaults: $XDG_CONFIG_HOME/symbld/keys/server.secret and .../authorized_keys.
    "curve_server_key": None,
    "curve_authorized_keys": None,
}

# Environment variables that override top-level keys (the file is not required for a service).
ENV_KEYS = {
    "SYMBLD_RUNTIME_DIR": "runtime_dir",
    "SYMBLD_STATE_DIR": "state_dir",
    "SYMBLD_CONTROL": "control",
    "SYMBLD_EVENTS": "events",
    "SYMBLD_ENGINE": "default_engine",
    "SYMBLD_LOG_LEVEL": "log_level",
    "SYMBLD_LOG_FORMAT": "log_format",
    "SYMBLD_SERVE_SYMBL": "serve_symbl",
    "SYMBLD_CURVE_SERVER_KEY": "curve_server_key",
    "SYMBLD_CURVE_AUTHORIZED_KEYS": "curve_authorized_keys",
}


class ConfigError(Exception):
    pass


def default_runtime_dir() -> Path:
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "symbld"
    return Path(f"/tmp/symbld-{os.getuid()}")


def default_state_dir() -> Path:
    xdg = os.environ.get("XDG_STATE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "state") / "symbld"


def default_endpoints(runtime_dir: Path | None = None) -> tuple[str, str]:
    rd = runtime_dir or default_runtime_dir()
    return f"ipc://{rd}/control", f"ipc://{rd}/events"


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v
    return base


def config_file_path(explicit: str | None) -> Path | None:
    if explicit:
        return Path(explicit)
    if os.environ.get("SYMBLD_CONFIG"):
        return Path(os.environ["SYMBLD_CONFIG"])
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    p = Path(xdg) / "symbld" / "symbld.toml"
    return p if p.exists() else None


def load(config_path: str | None = None, flags: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build the effective configuration."""
    cfg = copy.deepcopy(DEFAULTS)
    path = config_file_path(config_path)
    missing = False
    if path is not None:
        try:
            with open(path, "rb") as f:
                _merge(cfg, tomllib.load(f))
        except FileNotFoundError:
            # The service units always pass --config; an absent file means "all defaults".
            missing = True
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
    cfg["config_path"] = str(path) if path else None
    cfg["config_missing"] = missing
    for env, key in ENV_KEYS.items():
        if os.environ.get(env):
            cfg[key] = os.environ[env]
    for k, v in (flags or {}).items():
        if v is not None:
            cfg[k] = v
    return resolve(cfg)


def resolve(cfg: dict[str, Any]) -> dict[str, Any]:
    rd = Path(cfg["runtime_dir"]) if cfg.get("runtime_dir") else default_runtime_dir()
    cfg["runtime_dir"] = str(rd)
    cfg["state_dir"] = str(Path(cfg["state_dir"]) if cfg.get("state_dir") else default_state_dir())
    control, events = default_endpoints(rd)
    cfg["control"] = cfg.get("control") or control
    cfg["events"] = cfg.get("events") or events
    if not isinstance(cfg.get("engine", {}), dict):
        raise ConfigError('"engine" is the table of engine settings ([engine.local], [engine.symbl]); '
                          'the default engine is "default_engine"')
    for key in ("max_connections", "history_per_connection", "event_queue_per_subscriber"):
        try:
            cfg[key] = int(cfg[key])
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be an integer, got {cfg[key]!r}") from None
    if cfg["control"] == cfg["events"]:
        raise ConfigError("control and events endpoints must differ")
    for key in ("control", "events"):
        if not str(cfg[key]).startswith(("ipc://", "tcp://")):
            raise ConfigError(f"{key} endpoint must be ipc://PATH or tcp://HOST:PORT, got {cfg[key]!r}")
    return cfg


def section(cfg: dict[str, Any], *names: str) -> dict[str, Any]:
    node: Any = cfg
    for n in names:
        node = node.get(n, {}) if isinstance(node, dict) else {}
    return node if isinstance(node, dict) else {}
