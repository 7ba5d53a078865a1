"""Configuration: defaults < TOML file < environment < command-line flags.

The file is TOML (``--config``, ``$SYMBLD_CONFIG``, else ``$XDG_CONFIG_HOME/symbld/symbld.toml``
when it exists). Top-level keys are the daemon's own; tables (``[engine.local]``, ``[mic]``,
``[telephony]``, ``[engine.symbl]``, ``[smtp]``, ``[symbl_server]``, ``[nats]``, ``[page]``) are handed
to the part they name.
The whole file is validated first (``symbld.config_check``): unknown keys and tables, wrong types
and bad enum values are one ``ConfigError`` naming each key and its line. See docs/configuration.md.
"""

from __future__ import annotations

import copy
import os
import tomllib
from pathlib import Path
from typing import Any

from symblctl import protocol
from symblctl.endpoints import default_endpoints, default_runtime_dir  # shared with the client
from symblctl.units import UNIT_STOP_SECONDS
from symbld.config_check import ConfigError, Declarations, schema, validate

# UNIT_STOP_SECONDS: TimeoutStopSec= of the shipped units (symblctl.units writes it), from which the
# daemon's stop budget is derived.
# What shutdown keeps back from stop_timeout to spool undecoded audio and close sockets.
STOP_SPOOL_MARGIN = 5.0

DEFAULTS: dict[str, Any] = {
    "runtime_dir": None,  # default: $XDG_RUNTIME_DIR/symbld, else /tmp/symbld-<uid>
    "state_dir": None,  # default: $XDG_STATE_HOME/symbld, else ~/.local/state/symbld
    "control": None,  # default: ipc://<runtime_dir>/control
    "events": None,  # default: ipc://<runtime_dir>/events
    "default_engine": "local",  # [engine.<name>] tables configure each engine
    # A start without config.languageCode: a BCP-47 tag (en-US, es-ES, ...) or "auto" (docs/languages.md).
    "language": "en-US",
    "max_connections": 16,
    "history_per_connection": 5000,
    # Events queued per subscriber before PUB drops for that subscriber only (it refills by seq).
    "event_queue_per_subscriber": 10_000,
    "journal_retention_days": 30.0,
    # Seconds shutdown waits for engines to decode; the rest is spooled and decoded at the next start.
    "stop_timeout": UNIT_STOP_SECONDS - 10.0,
    "max_engine_backlog_s": 10.0,  # audio waiting for a final decode before sources are held or spooled
    "preload": True,  # load the offline model at start-up (READY only after it is loaded)
    "log_level": "auto",  # auto: warning on a terminal, info elsewhere (journal, files, pipes)
    "log_format": "auto",  # auto | console | json
    "log_transcripts": False,
    "redaction": False,  # true or a list of kinds (symbld.insights.redaction.KINDS): mask personal data always
    "serve_symbl": None,  # "127.0.0.1:5080" to serve Symbl's real-time API
    # tcp:// endpoints only (symbld.control.curve): the server's secret key file and the allow-list of
    # client public keys. Defaults: $XDG_CONFIG_HOME/symbld/keys/server.secret and .../authorized_keys.
    "curve_server_key": None,
    "curve_authorized_keys": None,
}

# Each [table] the daemon reads, and where its keys and defaults are declared: "module:ATTR", a msgspec Struct
# (or two, whose keys share the table). The check decodes each table into its Structs, so their types and ranges
# hold: a wrong one stops the daemon naming the key and its line. A key added to a declaration is known to the
# validator; a new table needs one line here.
TABLES: dict[str, str | dict[str, Any] | list[str | dict[str, Any]]] = {
    "engine.local": ["symbld.engines.local.engine:LocalEngineTable", "symbld.engines.local.streaming:StreamSettings"],
    "engine.symbl": "symbld.gateways.symbl.tables:SymblEngineTable",
    "mic": "symbld.audio.mic:MicTable",
    "telephony": "symbld.audio.telephony.table:TelephonyTable",
    "smtp": "symbld.integrations.mail:SmtpTable",
    "page": "symbld.web.server:PageTable",  # the summary page (docs/summary-page.md)
    "diarization": "symbld.diarization.options:DiarizationTable",  # speaker labels (docs/diarization.md)
    "symbl_server": "symbld.gateways.symbl.tables:SymblServerTable",
    # The other APIs on the Symbl server's listener (symbld/gateways/apis.py): each its own keys.
    "openai_api": "symbld.gateways.openai.server:OpenAiApiTable",
    "deepgram_api": "symbld.gateways.deepgram.server:DeepgramApiTable",
    "nats": "symblctl.nats_settings:NatsTable",  # read by symblctl.nats_settings.from_config
}

# Allowed values of some top-level keys (a table's are its Struct's Literal types). default_engine is checked
# against the engines that loaded (load_engines), since which engines exist depends on what is installed.
ENUMS: dict[str, tuple[Any, ...]] = {
    "log_level": ("auto", "debug", "info", "warning", "error"),
    "log_format": ("auto", "console", "json"),
}

# Keys kept only for compatibility (a warning at start) -> the key read now, which they set.
COMPAT: dict[str, str] = {
    "engine.local.model_dir": "engine.local.model",
}

# Never printed by --print-config.
SECRET_KEYS = frozenset({"password", "app_secret", "token_secret", "api_keys"})

# Tables whose keys are free-form (none yet): not checked key by key.
OPEN_TABLES: dict[str, bool] = {}

# Top-level keys whose values are wider than their default's type: declared as the start request declares them.
TYPES: dict[str, Any] = {"redaction": protocol.Redaction}

DECLARATIONS = Declarations(DEFAULTS, TABLES, ENUMS, COMPAT, OPEN_TABLES, TYPES)

# Environment variables that override top-level keys (the file is not required for a service).
ENV_KEYS = {
    "SYMBLD_RUNTIME_DIR": "runtime_dir",
    "SYMBLD_STATE_DIR": "state_dir",
    "SYMBLD_CONTROL": "control",
    "SYMBLD_EVENTS": "events",
    "SYMBLD_ENGINE": "default_engine",
    "SYMBLD_LANGUAGE": "language",
    "SYMBLD_LOG_LEVEL": "log_level",
    "SYMBLD_LOG_FORMAT": "log_format",
    "SYMBLD_SERVE_SYMBL": "serve_symbl",
    "SYMBLD_CURVE_SERVER_KEY": "curve_server_key",
    "SYMBLD_CURVE_AUTHORIZED_KEYS": "curve_authorized_keys",
}


def default_state_dir() -> Path:
    xdg = os.environ.get("XDG_STATE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "state") / "symbld"


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
    """Build the effective configuration; raise ``ConfigError`` naming every bad key and its line.

    ``cfg["config_warnings"]`` lists the warnings (keys kept for compatibility) for the caller to log.
    """
    cfg = copy.deepcopy(DEFAULTS)
    path = config_file_path(config_path)
    missing = False
    warnings: list[str] = []
    if path is not None:
        data, text = _read(path)
        if data is None:
            missing = True  # the service units always pass --config; an absent file means "all defaults"
        else:
            warnings = validate(data, text, str(path), DECLARATIONS)
            _apply_compat(data)
            _merge(cfg, data)
    overrides = {key: os.environ[env] for env, key in ENV_KEYS.items() if os.environ.get(env)}
    overrides.update({k: v for k, v in (flags or {}).items() if v is not None})
    validate(overrides, None, "environment/flags", DECLARATIONS)
    cfg.update(overrides)
    cfg["config_path"] = str(path) if path else None
    cfg["config_missing"] = missing
    cfg["config_warnings"] = warnings
    return resolve(cfg)


def _read(path: Path) -> tuple[dict[str, Any] | None, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, ""
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None


def _apply_compat(data: dict[str, Any]) -> None:
    """Move each compatibility key's value to the key read now (unless that one is set too)."""
    for old, new in COMPAT.items():
        *old_table, old_key = old.split(".")
        *new_table, new_key = new.split(".")
        src = section(data, *old_table)
        if old_key in src:
            value = src.pop(old_key)
            dst = data
            for name in new_table:
                dst = dst.setdefault(name, {})
            dst.setdefault(new_key, value)


def effective(cfg: dict[str, Any]) -> dict[str, Any]:
    """The configuration as the parts see it: every declared table with its defaults filled in."""
    def fill(tree: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for k, default in tree.items():
            if isinstance(default, dict) and isinstance(given.get(k, {}), dict):
                out[k] = fill(default, given.get(k) or {})
            else:
                out[k] = given.get(k, default)
        return out

    shown = {k: v for k, v in cfg.items() if not k.startswith("_") and not k.startswith("config_")}
    return fill(schema(DECLARATIONS), shown)


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
    from symbld.languages import LanguageError, parse

    try:
        cfg["language"] = parse(cfg.get("language") or "en-US").tag
    except LanguageError as e:
        raise ConfigError(f"language: {e}") from None
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


def render_config(cfg: dict[str, Any]) -> str:
    """``symbld --print-config``: the effective configuration as TOML; unset keys as comments."""
    import tomli_w

    unset: list[str] = []

    def strip(node: dict[str, Any], prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in node.items():
            if isinstance(v, dict):
                out[k] = strip(v, f"{prefix}{k}.")
            elif v is None:
                unset.append(prefix + k)
            elif k in SECRET_KEYS:
                out[k] = "(set, not shown)"
            else:
                out[k] = list(v) if isinstance(v, tuple) else v
        return out

    body = tomli_w.dumps(strip(effective(cfg), ""))
    head = (f"# effective configuration (file: {cfg.get('config_path') or 'none'}; "
            "defaults < file < environment < flags)\n")
    tail = "".join(f"# {key}: unset (default applies)\n" for key in unset)
    return head + body + ("\n" + tail if tail else "")
