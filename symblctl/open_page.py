"""``symblctl open ID``: the conversation's summary page (its signed URL, printed or opened).

The daemon makes the URL (``summary_page`` command): it alone holds the signing secret.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from symblctl.client import Client

SUMMARY = "a conversation's summary page: print its URL (or open it with --browser)"
DESCRIPTION = ("ID is a connectionId or a conversationId, live or past. The page shows the transcript, "
               "insights, topics, trackers, sentiment and the summary, and updates itself while the "
               "conversation runs. The link carries its own signature: whoever has it can read that "
               "conversation.")
EXAMPLES = "  symblctl open 7909733735465972\n  symblctl open 7909733735465972 --browser"


def add_parser(sub: Any, make: Callable[..., argparse.ArgumentParser]) -> None:
    """Declare ``open`` with the CLI's own sub-parser maker (its global options and help layout)."""
    p = make(sub, "open", SUMMARY, DESCRIPTION, EXAMPLES)
    p.add_argument("id")
    p.add_argument("--browser", action="store_true", help="open it in the web browser too ($BROWSER, else "
                   "the desktop's default)")


def run(client: Client, ns: argparse.Namespace) -> int:
    """Exit 0 with the URL on standard output; 1 when --browser finds no browser (the URL is printed)."""
    result = client.summary_page(ns.id)
    url = result["url"]
    print(json.dumps(result, ensure_ascii=False) if ns.json else url, flush=True)
    if not ns.browser:
        return 0
    import webbrowser  # only for --browser: its import is not free

    if not webbrowser.open(url):
        print("symblctl: no web browser found to open it; the URL is above", file=sys.stderr)
        return 1
    return 0
