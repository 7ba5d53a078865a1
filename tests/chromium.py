"""Real headless Chromium for page tests: ``--dump-dom`` runs and a DevTools-protocol session.

    dom = dump_dom(url)                       # the DOM after the page's scripts ran
    with Browser(tmp_path) as b:              # one browser, one tab, driven over CDP
        b.open(url)
        b.wait_for("document.body.innerText.includes('budget')")
        b.screenshot(Path("shot.png"))

Chromium is Debian's ``chromium`` (scripts/install-deps.sh); it runs as root here, hence
``--no-sandbox``. Every run gets a fresh profile and nothing that reaches outside the machine.
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import websocket
from conftest import wait_until

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-extensions", "--disable-default-apps",
         "--mute-audio", "--hide-scrollbars"]


def executable() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def dump_dom(url: str, timeout: float = 90.0, budget_ms: int = 3000) -> str:
    """The serialised DOM of ``url`` once loaded (plus ``budget_ms`` of virtual time for scripts)."""
    exe = executable()
    assert exe, "chromium is not installed (scripts/install-deps.sh installs it)"
    with tempfile.TemporaryDirectory(prefix="symbld-chromium-") as profile:
        out = subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}",
                              "--dump-dom", url], capture_output=True, timeout=timeout, check=False)
    assert out.returncode == 0, f"chromium --dump-dom failed ({out.returncode}): {out.stderr.decode()[-2000:]}"
    return out.stdout.decode()


class Browser:
    """One headless Chromium with one tab, driven over the DevTools protocol (websocket-client)."""

    def __init__(self, root: Path, width: int = 1280, height: int = 1000) -> None:
        self.profile = root / "chromium-profile"
        self.size = (width, height)
        self.proc: subprocess.Popen[bytes] | None = None
        self.ws: websocket.WebSocket | None = None
        self._ids = itertools.count(1)

    def __enter__(self) -> Browser:
        exe = executable()
        assert exe, "chromium is not installed (scripts/install-deps.sh installs it)"
        shutil.rmtree(self.profile, ignore_errors=True)
        self.profile.mkdir(parents=True)
        self.log = open(self.profile.parent / "chromium.log", "ab")
        self.proc = subprocess.Popen([exe, *FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
                                      f"--window-size={self.size[0]},{self.size[1]}", "about:blank"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        port = self._devtools_port(60.0)
        targets = self._json(port, "/json/list")
        page = next(t for t in targets if t.get("type") == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60, suppress_origin=True)
        self.call("Page.enable")
        self.call("Runtime.enable")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.ws is not None:
            self.ws.close()
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()

    def _devtools_port(self, timeout: float) -> int:
        """Chromium writes the port it chose to DevToolsActivePort in the profile."""
        marker = self.profile / "DevToolsActivePort"

        def port() -> int | None:
            assert self.proc is not None and self.proc.poll() is None, "chromium exited at start"
            text = marker.read_text().strip() if marker.exists() else ""
            return int(text.split()[0]) if text else None

        return wait_until("chromium to open its DevTools port", port, timeout)

    @staticmethod
    def _json(port: int, path: str) -> Any:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as r:
            return json.load(r)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One CDP command; events that arrive meanwhile are skipped."""
        assert self.ws is not None
        msg_id = next(self._ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str, timeout: float = 60.0) -> None:
        self.call("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'", timeout, "the page to load")

    def wait_for(self, expression: str, timeout: float = 60.0, what: str = "") -> Any:
        """Poll ``expression`` in the page until it is truthy; its value then."""
        return wait_until(what or expression, lambda: self.evaluate(expression), timeout)

    def text(self) -> str:
        return str(self.evaluate("document.body.innerText"))

    def screenshot(self, path: Path, full_page: bool = True) -> None:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            metrics = self.call("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            params["clip"] = {"x": 0, "y": 0, "width": self.size[0], "height": min(size["height"], 4000),
                              "scale": 1}
            params["captureBeyondViewport"] = True
        data = self.call("Page.captureScreenshot", **params)["data"]
        path.write_bytes(base64.b64decode(data))
