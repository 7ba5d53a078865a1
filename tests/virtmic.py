"""A virtual microphone for tests: a private PulseAudio daemon in a temp directory.

The default source is the monitor of a 16 kHz mono null sink, so whatever ``play()`` plays
into the sink is what a capture on the default input device "hears". Everything lives under
one directory and is reached only through :attr:`VirtMic.env`, so a user's own audio server
is never touched. Recipe and pitfalls: ``../shared/research/audio-sip-feasibility.md`` §1.

    mic = VirtMic(tmp_path / "pulse")
    mic.start()                      # ~0.2 s
    subprocess.Popen([...], env=mic.env)   # the process under test sees only this server
    mic.play(wav)                    # blocks for the WAV's duration
    mic.kill()                       # "unplug": SIGKILL the server (device-lost tests)
    mic.start()                      # "plug back in": same directory, same addresses
    mic.stop()

Speech to play comes from ``speechgen.synth`` (espeak-ng + sox, cached).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

SINK = "virtmic_sink"
SOURCE = f"{SINK}.monitor"
TOOLS = ("pulseaudio", "pactl", "pacat", "paplay")


def missing_tools() -> list[str]:
    """The command-line tools VirtMic needs that are not installed (empty when all are there)."""
    return [t for t in TOOLS if shutil.which(t) is None]


def _alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie counts as gone (PulseAudio's pid file check does not)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return not any(line.startswith("State:") and "Z" in line.split()[1:2] for line in f)
    except OSError:
        return False


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


class VirtMic:
    """A private PulseAudio server with a null sink whose monitor is the default source."""

    def __init__(self, base_dir: str | os.PathLike[str], rate: int = 16_000, channels: int = 1) -> None:
        self.dir = Path(base_dir).resolve()
        self.rate = rate
        self.channels = channels
        self.run_dir = self.dir / "run"
        self.socket = self.run_dir / "pulse" / "native"
        self._keepalive: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        """os.environ plus the variables that point libpulse (and only libpulse) at this server."""
        return dict(
            os.environ,
            XDG_RUNTIME_DIR=str(self.run_dir),
            PULSE_RUNTIME_PATH=str(self.run_dir / "pulse"),
            PULSE_SERVER=f"unix:{self.socket}",
            # else every libpulse client writes ~/.config/pulse/cookie
            XDG_CONFIG_HOME=str(self.dir / "config"),
        )

    @property
    def env_overrides(self) -> dict[str, str]:
        """Only the variables :attr:`env` changes (for monkeypatch.setenv)."""
        base = os.environ
        return {k: v for k, v in self.env.items() if base.get(k) != v}

    @property
    def server_pid(self) -> int | None:
        pid = _read_pid(self.run_dir / "pulse" / "pid")
        return pid if pid is not None and _alive(pid) else None

    def _pactl(self, *args: str, timeout: float = 5.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["pactl", *args], env=self.env, capture_output=True, text=True, timeout=timeout)

    def _wait(self, what: str, ok, timeout: float) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while not ok():
            if time.monotonic() > deadline:
                raise RuntimeError(f"virtmic: {what} (log: {self.dir / 'pulse.log'})")
            time.sleep(0.02)

    def start(self, timeout: float = 10.0) -> None:
        """Start the server, the null sink, and the keep-alive stream; returns once the mic delivers."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "config").mkdir(parents=True, exist_ok=True)
        os.chmod(self.run_dir, 0o700)
        pid_file = self.run_dir / "pulse" / "pid"
        # A pid file left by a killed daemon blocks a restart: a not-yet-reaped zombie looks alive.
        if pid_file.exists() and self.server_pid is None:
            pid_file.unlink(missing_ok=True)
        subprocess.run(
            # -n: no default.pa (no hardware probing); --disallow-exit/--exit-idle-time=-1 keep it up.
            ["pulseaudio", "--daemonize=yes", "-n", "--use-pid-file=yes", "--exit-idle-time=-1",
             "--disallow-exit", "--disallow-module-loading=no", f"--log-target=file:{self.dir / 'pulse.log'}",
             "--load=module-native-protocol-unix auth-anonymous=1"],
            env=self.env, capture_output=True, timeout=timeout, check=False,
        )
        self._wait("pulseaudio did not start", lambda: self._pactl("info").returncode == 0, timeout)
        self._pactl("load-module", "module-null-sink", f"sink_name={SINK}", f"rate={self.rate}",
                    f"channels={self.channels}", "sink_properties=device.description=VirtMicSink")
        self._pactl("set-default-sink", SINK)
        self._pactl("set-default-source", SOURCE)
        # Keep-alive: an idle null sink renders in 2 s blocks, so a capture opened on its monitor
        # would get its first data only after up to 2 s and lose the start of the audio.
        self._keepalive = subprocess.Popen(
            ["pacat", "--playback", "-d", SINK, "--format=s16le", f"--rate={self.rate}",
             f"--channels={self.channels}", "--latency-msec=20", "/dev/zero"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self._wait("keep-alive stream did not connect",
                   lambda: bool(self._pactl("list", "short", "sink-inputs").stdout.strip()), timeout)
        # suspend+resume restarts the sink clock so the 20 ms latency applies at once (saves ~2 s)
        self._pactl("suspend-sink", SINK, "1")
        self._pactl("suspend-sink", SINK, "0")
        self._wait("monitor never delivered", self._monitor_delivers, timeout)

    def _monitor_delivers(self) -> bool:
        want = self.rate * 2 * self.channels // 10  # 100 ms
        p = subprocess.Popen(["parec", "-d", SOURCE, "--latency-msec=20", "--raw"], env=self.env,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            got = 0
            deadline = time.monotonic() + 0.5
            assert p.stdout is not None
            os.set_blocking(p.stdout.fileno(), False)
            while got < want and time.monotonic() < deadline:
                chunk = p.stdout.read(want)
                if chunk:
                    got += len(chunk)
                else:
                    time.sleep(0.01)
            return got >= want
        finally:
            p.kill()
            p.wait(timeout=5)

    def play(self, wav: str | os.PathLike[str], timeout: float = 60.0) -> None:
        """Play a WAV (any rate/channels) into the mic in real time; blocks until done."""
        subprocess.run(["paplay", "-d", SINK, str(wav)], env=self.env, check=True, timeout=timeout,
                       capture_output=True)

    def play_async(self, wav: str | os.PathLike[str]) -> subprocess.Popen[bytes]:
        """Start playing a WAV into the mic; the caller waits on (or kills) the returned process."""
        return subprocess.Popen(["paplay", "-d", SINK, str(wav)], env=self.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def source_outputs(self) -> int:
        """How many capture streams are connected to the server (parec/PortAudio clients)."""
        out = self._pactl("list", "short", "source-outputs").stdout
        return sum(1 for line in out.splitlines() if line.strip())

    def kill(self) -> None:
        """SIGKILL the server, as if the audio server crashed (or the device was unplugged)."""
        pid = self.server_pid
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            self._wait("server survived SIGKILL", lambda: not _alive(pid), 5.0)
        self._stop_keepalive()

    def _stop_keepalive(self) -> None:
        if self._keepalive is not None:
            self._keepalive.kill()
            self._keepalive.wait(timeout=5)
            self._keepalive = None

    def stop(self) -> None:
        """Stop everything this mic started (pactl exit is refused because of --disallow-exit)."""
        self._stop_keepalive()
        pid = self.server_pid
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        try:
            self._wait("server ignored SIGTERM", lambda: not _alive(pid), 2.0)
        except RuntimeError:
            os.kill(pid, signal.SIGKILL)

    def __enter__(self) -> VirtMic:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
