"""Prometheus ``/metrics`` on the summary-page listener: promtool accepts it and its counters move with work.

The daemon serves the OpenAI API on its own Symbl listener here, so the per-API request counts are
the daemon's (the gateways and /metrics share a process).
"""

from __future__ import annotations

import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from conftest import DaemonProc, events_until_complete, wait_until
from prometheus_client.parser import text_string_to_metric_families
from speechgen import SENTENCES, synth

pytestmark = [pytest.mark.timeout(240), pytest.mark.speech]
KEY = "sk-metrics-test-0123456789"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaemonProc, int, int]]:
    api, page = _free_port(), _free_port()
    config = f"""
serve_symbl = "127.0.0.1:{api}"
[page]
port = {page}
[openai_api]
api_keys = ["{KEY}"]
"""
    d = DaemonProc(tmp_path_factory.mktemp("metrics"), config=config).start()
    try:
        yield d, api, page
    finally:
        assert d.stop() == 0, d.log()


def scrape(page: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{page}/metrics", timeout=30) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=")
        return r.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def transcribe(api: int, key: str) -> int:
    """POST one spoken sentence to the daemon's OpenAI endpoint; the HTTP status."""
    boundary = "metricsboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n").encode()
    body += synth(SENTENCES[0]).read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(f"http://127.0.0.1:{api}/v1/audio/transcriptions", data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}",
                                          "Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_promtool_accepts_the_exposition(served: tuple[DaemonProc, int, int]) -> None:
    _, _, page = served
    out = subprocess.run(["promtool", "check", "metrics"], input=scrape(page), capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_counters_move_with_work(served: tuple[DaemonProc, int, int]) -> None:
    d, api, page = served
    before = samples(scrape(page))
    assert value(before, "symbld_connections_live") == 0
    with d.client() as c:
        cid = c.start(source={"type": "file", "path": str(synth(SENTENCES[6])), "realtime": False})["connectionId"]
        events_until_complete(c, cid, timeout=90)
    assert transcribe(api, KEY) == 200
    assert transcribe(api, "sk-wrong") == 401
    # The API answers once its finals are in; its connection's conversation_completed is published (and
    # counted) just after, so the scrape waits for the counts the work brings, not for a moment.
    kinds = ("connection_started", "message_response", "conversation_completed")

    def counted() -> dict | None:
        now = samples(scrape(page))
        moved = all(value(now, "symbld_events_total", type=t) >= value(before, "symbld_events_total", type=t) + 2
                    for t in kinds)
        return now if moved else None

    after = wait_until("every event of both connections counted", counted, timeout=30)
    spoken = len(synth(SENTENCES[6]).read_bytes()) / 32000 + len(synth(SENTENCES[0]).read_bytes()) / 32000
    moved = value(after, "symbld_audio_seconds_total") - value(before, "symbld_audio_seconds_total")
    assert spoken - 0.5 <= moved <= spoken + 0.5, (moved, spoken)
    assert value(after, "symbld_finals_total") >= value(before, "symbld_finals_total") + 2
    assert value(after, "symbld_final_lag_seconds_count") >= value(before, "symbld_final_lag_seconds_count") + 2
    assert value(after, "symbld_events_sent_total") > value(before, "symbld_events_sent_total")
    assert value(after, "symbld_control_requests_total") > value(before, "symbld_control_requests_total")
    assert value(after, "symbld_api_requests_total", api="openai", outcome="ok") == \
        value(before, "symbld_api_requests_total", api="openai", outcome="ok") + 1
    assert value(after, "symbld_api_requests_total", api="openai", outcome="401") == \
        value(before, "symbld_api_requests_total", api="openai", outcome="401") + 1
    assert value(after, "symbld_connections_live") == 0
    assert value(after, "symbld_journal_degraded") == 0
    assert value(after, "symbld_audio_dropped_seconds_total") == 0
