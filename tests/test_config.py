"""Configuration checked as a whole: through the real daemon process (start, --print-config, SIGHUP)
and against docs/configuration.md (every documented key exists, every key is documented)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from conftest import DaemonProc, wait_until

from symblctl.client import DaemonError
from symbld import config, config_check

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "configuration.md"

TYPOS = """\
# a config with typos
max_conections = 3
log_level = "verbose"
stop_timeout = "soon"

[engine.lcoal]
model = "x"

[engine.local]
beam_size = 2.5
"""


def run_symbld(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "symbld", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def print_config(tmp_path: Path, text: str) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """``text`` as a config file, and what ``symbld --print-config --config FILE`` made of it."""
    cfg = tmp_path / "symbld.toml"
    cfg.write_text(text)
    return cfg, run_symbld("--print-config", "--config", str(cfg))


def test_typos_stop_the_daemon_naming_each_key_and_its_line(tmp_path: Path) -> None:
    cfg = tmp_path / "symbld.toml"
    cfg.write_text(TYPOS)
    r = run_symbld("--config", str(cfg), "--runtime-dir", str(tmp_path / "run"), "--state-dir", str(tmp_path / "st"))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.splitlines()
    assert lines[0] == "symbld: invalid configuration (5 problems):"
    assert lines[1:] == [
        f"  {cfg} line 2: unknown key max_conections in the top level (did you mean 'max_connections'?)",
        f"  {cfg} line 3: log_level = 'verbose' is not one of 'auto', 'debug', 'info', 'warning', 'error'",
        f"  {cfg} line 4: stop_timeout must be a number, not 'soon'",
        f"  {cfg} line 6: unknown section [engine.lcoal] in [engine] (did you mean 'local'?)",
        f"  {cfg} line 10: engine.local.beam_size must be an integer, not 2.5",
    ]
    assert not (tmp_path / "run" / "control").exists()


def test_bad_environment_value_is_named(tmp_path: Path) -> None:
    r = run_symbld("--print-config", "--config", str(tmp_path / "absent.toml"), env={"SYMBLD_LOG_FORMAT": "xml"})
    assert r.returncode == 2
    assert "environment/flags: log_format = 'xml' is not one of 'auto', 'console', 'json'" in r.stderr


def test_print_config_shows_the_effective_configuration(tmp_path: Path) -> None:
    cfg = tmp_path / "symbld.toml"
    cfg.write_text('max_connections = 3\n[engine.local]\nmodel_dir = "/models/tiny"\n'
                   '[smtp]\npassword = "hunter2"\n[telephony.limits]\nmax_calls = 2\n')
    r = run_symbld("--print-config", "--config", str(cfg), "--runtime-dir", str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == (f"symbld: warning: {cfg} line 3: engine.local.model_dir is kept for "
                                "compatibility; use engine.local.model")
    shown = tomllib.loads(r.stdout)
    assert shown["max_connections"] == 3  # the file
    assert shown["runtime_dir"] == str(tmp_path / "run")  # a flag
    assert shown["max_engine_backlog_s"] == 10.0  # a default
    assert shown["engine"]["local"]["model"] == "/models/tiny"  # the old name sets the new key
    assert shown["engine"]["local"]["beam_size"] == 5  # a table's default
    assert shown["telephony"]["limits"]["max_calls"] == 2
    assert shown["smtp"]["password"] == "(set, not shown)"
    assert "hunter2" not in r.stdout
    assert "# serve_symbl: unset (default applies)" in r.stdout


def _documented_keys() -> set[str]:
    text = DOC.read_text()
    body = text[text.index("## Every key"):text.index("<!-- config:begin -->")]  # not the generated reference
    keys: set[str] = set()
    table = ""
    for line in body.splitlines():
        head = re.match(r"^### (?:Top level|`\[([a-z_.]+)\]`)", line)
        if head:
            table = head.group(1) or ""
            continue
        row = re.match(r"^\| ((?:`[a-z_0-9]+`(?:, )?)+) \|", line)
        if row:
            for key in re.findall(r"`([a-z_0-9]+)`", row.group(1)):
                keys.add(f"{table}.{key}" if table else key)
    return keys


def _schema_keys(tree: dict, prefix: str = "") -> set[str]:
    out: set[str] = set()
    for k, v in tree.items():
        if isinstance(v, dict) and (prefix + k) != "telephony.limits":  # the same keys, nested
            out |= _schema_keys(v, f"{prefix}{k}.")
        elif not isinstance(v, dict):
            out.add(prefix + k)
    return out


def test_every_documented_key_exists_and_every_key_is_documented() -> None:
    documented, known = _documented_keys(), _schema_keys(config_check.schema(config.DECLARATIONS))
    assert documented - known == set(), "documented but not read by the code"
    assert known - documented == set(), "read by the code but not in docs/configuration.md"


def test_the_documented_example_is_a_valid_config() -> None:
    text = DOC.read_text()
    example = re.search(r"```toml\n(.*?)```", text, re.DOTALL).group(1)
    errors, warnings = config_check.check(tomllib.loads(example), config.DECLARATIONS)
    assert errors == [] and warnings == []


def _wait_log(d: DaemonProc, needle: str, timeout: float = 30) -> str:
    def found() -> str | None:
        log = d.log()
        return log if needle in log else None

    return wait_until(f"{needle!r} in the log", found, timeout)


def test_sighup_with_a_bad_config_keeps_the_old_one_and_a_good_one_applies(tmp_path: Path) -> None:
    d = DaemonProc(tmp_path / "d", args=["--no-preload"], config="max_connections = 1\n").start()
    try:
        journal = d.state_dir / "journal"
        old = journal / "oldconnection1.jsonl"
        old.write_text("")
        week_ago = time.time() - 7 * 86400
        os.utime(old, (week_ago, week_ago))

        d.config_path.write_text("max_connections = 5\nstop_timout = 5\n")  # type: ignore[union-attr]
        d.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        log = _wait_log(d, '"config_reload_failed"')
        assert f"{d.config_path} line 2: unknown key stop_timout in the top level (did you mean 'stop_timeout'?)" in log
        with d.client() as c:
            c.start(source={"type": "push"})
            with pytest.raises(DaemonError) as refused:  # the old limit (1) still holds, not the bad file's 5
                c.start(source={"type": "push"})
            assert refused.value.code == "limit_exceeded", refused.value

        d.config_path.write_text("max_connections = 1\nstop_timeout = 5\njournal_retention_days = 1\n")  # type: ignore[union-attr]
        d.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        log = _wait_log(d, '"config_reloaded"')
        assert '"changed": ["stop_timeout", "journal_retention_days"]' in log
        wait_until("the old journal expired", lambda: not old.exists(), 10)  # the new retention applied at once
    finally:
        d.kill()


@pytest.mark.parametrize(("table", "says"), [
    ("retry_initial = 0.01", "line 3: smtp.retry_initial: Expected `float` >= 0.05"),
    ("port = 70000", "line 3: smtp.port: Expected `int` <= 65535"),
    ("timeout = 0", "line 3: smtp.timeout: Expected `float` > 0.0"),
    ("retry_initial = 10\nretry_max = 5", "line 4: smtp.retry_max: retry_max (5.0) is less than retry_initial (10.0)"),
    ("[page]\nport = 70000", "line 4: page.port: Expected `int` <= 65535"),
    ("[page]\nhost = \"\"", "line 4: page.host: Expected `str` of length >= 1"),
])
def test_a_table_declared_by_a_struct_is_decoded_naming_the_key_and_line(tmp_path: Path, table: str,
                                                                         says: str) -> None:
    """[smtp] is a msgspec Struct (symbld.integrations.mail.SmtpTable): its ranges stop the daemon at start
    naming the key and its line, where they used to be clamped without a word."""
    cfg, r = print_config(tmp_path, f'log_level = "info"\n[smtp]\n{table}\n')
    assert r.returncode == 2, r.stdout
    assert r.stderr.strip() == f"symbld: invalid configuration: {cfg} {says}"


def test_a_struct_table_problem_is_reported_beside_the_others(tmp_path: Path) -> None:
    errors, _ = config_check.check({"max_conections": 3, "smtp": {"port": 0}}, config.DECLARATIONS)
    assert [p.path for p in errors] == ["max_conections", "smtp.port"]
    errors, _ = config_check.check({"smtp": {"prot": 25, "port": 0}}, config.DECLARATIONS)
    assert [p.path for p in errors] == ["smtp.prot", "smtp.port"]  # one rule for unknown keys; then each type


# One case per table (a wrong type or a value out of range), each decoded into the table's Struct at start.
EVERY_TABLE = [
    ("engine.local", "num_workers = 0", "engine.local.num_workers: Expected `int` >= 1"),
    ("engine.local", 'end_of_turn = "psychic"', "engine.local.end_of_turn: Invalid enum value 'psychic'"),
    ("engine.local", "vad_threshold = 1.5", "engine.local.vad_threshold: Expected `float` <= 1.0"),
    ("engine.symbl", 'failover = "cloud"', "engine.symbl.failover: Invalid enum value 'cloud'"),
    ("mic", "blocksize_ms = 100", "mic.blocksize_ms: Expected `int` <= 20"),  # it used to be clamped to 20
    ("mic", "device = 1.5", "mic.device: Expected `int | str | null`, got `float`"),
    ("telephony", "max_calls = 0", "telephony.max_calls: Expected `int` >= 1"),
    ("telephony", 'rtp_port_range = "41100-41000"',
     "telephony.rtp_port_range: rtp_port_range '41100-41000': need 1024 <= lo < hi <= 65535"),
    ("telephony.limits", "answer_timeout = -1", "telephony.limits.answer_timeout: Expected `float` > 0.0"),
    ("diarization", "max_speakers = 99", "diarization.max_speakers: Expected `int` <= 32"),
    ("symbl_server", "token_ttl = 0", "symbl_server.token_ttl: Expected `int` >= 1"),
    ("openai_api", "api_keys = [1]", "openai_api.api_keys: Expected `str`, got `int`"),
    ("deepgram_api", "idle_timeout = 0", "deepgram_api.idle_timeout: Expected `float` > 0.0"),
    ("nats", "replicas = 9", "nats.replicas: Expected `int` <= 5"),
    ("nats", "url = 5", "nats.url: Expected `str | array | null`, got `int`"),
]


@pytest.mark.parametrize(("table", "line", "says"), EVERY_TABLE)
def test_every_table_is_decoded_at_start_naming_the_key_and_line(tmp_path: Path, table: str, line: str,
                                                                says: str) -> None:
    cfg, r = print_config(tmp_path, f'log_level = "info"\n[{table}]\n{line}\n')
    assert r.returncode == 2, r.stdout
    assert r.stderr.strip() == f"symbld: invalid configuration: {cfg} line 3: {says}"


def test_every_problem_of_a_table_is_named_not_only_the_first(tmp_path: Path) -> None:
    """msgspec stops at a table's first problem; the check decodes key by key, so the operator fixes all at once."""
    cfg, r = print_config(tmp_path, '[telephony]\nmax_calls = 0\njitter_ms = -5\nsip_port = 70000\n'
                                    '[engine.local]\nbeam_size = 0\ninterims = "yes"\n')
    assert r.returncode == 2, r.stdout
    assert r.stderr.splitlines() == [
        "symbld: invalid configuration (5 problems):",
        f"  {cfg} line 7: engine.local.interims must be true or false, not 'yes'",
        f"  {cfg} line 6: engine.local.beam_size: Expected `int` >= 1",
        f"  {cfg} line 2: telephony.max_calls: Expected `int` >= 1",
        f"  {cfg} line 3: telephony.jitter_ms: Expected `int` >= 0",
        f"  {cfg} line 4: telephony.sip_port: Expected `int` <= 65535",
    ]


def test_an_unknown_key_is_one_rule_in_every_table(tmp_path: Path) -> None:
    """[telephony] had its own unknown-key rule (at the first call) and [engine.local] dropped unknown keys: now the
    config check refuses one in any table at start, with its line and the closest key."""
    tables = sorted({t for t, _, _ in EVERY_TABLE} | {"smtp", "page"})
    cfg, r = print_config(tmp_path, "".join(f"[{t}]\ntimeuot = 1\n" for t in tables))
    assert r.returncode == 2, r.stdout
    said = r.stderr.splitlines()
    assert said[0] == f"symbld: invalid configuration ({len(tables)} problems):"
    for i, t in enumerate(tables):
        assert any(line.startswith(f"  {cfg} line {2 * i + 2}: unknown key timeuot in [{t}]") for line in said), t


def test_top_level_redaction_takes_what_the_start_request_takes(tmp_path: Path) -> None:
    """``redaction`` is declared as the start request's: true/false or a list of kinds (a list was refused as
    "must be true or false" although the documentation offered it); a kind that does not exist is named."""
    cfg, r = print_config(tmp_path, 'redaction = ["email", "phone"]\n')
    assert r.returncode == 0, r.stderr
    assert tomllib.loads(r.stdout)["redaction"] == ["email", "phone"], r.stdout
    cfg.write_text('log_level = "info"\nredaction = ["email", "passport"]\n')
    r = run_symbld("--print-config", "--config", str(cfg))
    assert r.returncode == 2, r.stdout
    assert r.stderr.startswith(f"symbld: invalid configuration: {cfg} line 2: redaction: "), r.stderr
    assert "Invalid enum value 'passport'" in r.stderr, r.stderr


def test_a_check_across_keys_reads_the_table_as_written(tmp_path: Path) -> None:
    """Each key is also decoded alone (to name every bad one), but a rule between keys is judged on the table as
    written: retry_max = 1 beside retry_initial = 0.3 is valid, though 1 is under the default retry_initial."""
    _, r = print_config(tmp_path, '[smtp]\nretry_max = 1.0\nretry_initial = 0.3\n')
    assert r.returncode == 0, r.stderr
