"""``symblctl voices add NAME FILE | add NAME --conversation ID --speaker LABEL | list | remove NAME``: the known
voices diarization names speakers by.

The same as the declared commands ``voices_add``, ``voices_list`` and ``voices_remove`` (also
``symblctl voices-add --voice-name NAME --path FILE``), in the shape people type.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from symblctl.client import Client

SUMMARY = "known voices: enrol one from a recording or a past conversation, list them, forget one"
DESCRIPTION = ("A diarized speaker whose voice matches an enrolled one gets its name (from.name) and userId; "
               "a stranger stays Speaker N. The print is kept in the daemon's state directory; no audio is.")
EXAMPLES = ("  symblctl voices add Ada ada-hello.wav\n"
            "  symblctl voices add Bob --conversation 6186995463583031 --speaker 'Speaker 2'\n"
            "  symblctl voices list\n  symblctl voices remove Ada")


def add_parser(sub: Any, make: Callable[..., argparse.ArgumentParser]) -> None:
    """One parser (not nested ones), so the CLI's global options work after the arguments too."""
    p = make(sub, "voices", SUMMARY, DESCRIPTION, EXAMPLES)
    p.add_argument("action", choices=("add", "list", "remove"))
    p.add_argument("voice_name", metavar="NAME", nargs="?", help="the voice's name (add, remove)")
    p.add_argument("file", metavar="FILE", nargs="?", help="add: a recording of that person alone, 1 s of "
                   "speech or more")
    p.add_argument("--user-id", help="add: from.userId (default: the name)")
    p.add_argument("--conversation", metavar="ID", help="add, instead of FILE: a past diarized conversation "
                   "(or connection) id")
    p.add_argument("--speaker", metavar="LABEL", help="with --conversation: the speaker to enrol, as it was "
                   "shown ('Speaker 2') or its id")


def run(client: Client, ns: argparse.Namespace) -> int:
    from_past = ns.conversation is not None or ns.speaker is not None
    needs = {"add": ("voice_name",) if from_past else ("voice_name", "file"), "remove": ("voice_name",),
             "list": ()}[ns.action]
    missing = [n for n in needs if getattr(ns, n) is None]
    if missing:
        names = " and ".join("NAME" if m == "voice_name" else "FILE" for m in missing)
        hint = " (or --conversation ID --speaker LABEL)" if missing == ["file"] else ""
        print(f"symblctl voices {ns.action}: give {names}{hint}", file=sys.stderr)
        return 2
    if ns.action == "add":
        result = client.voices_add(ns.voice_name, os.path.abspath(ns.file) if ns.file else None, ns.user_id,
                                   conversation_id=ns.conversation, speaker=ns.speaker)
    elif ns.action == "remove":
        result = client.voices_remove(ns.voice_name)
    else:
        result = client.voices_list()
        if not ns.json:
            for v in result["voices"]:
                print(f"{v['name']}\t{v.get('userId') or ''}\t{v.get('speechSeconds')} s\t{v.get('addedAt') or ''}")
            return 0
    print(json.dumps(result, ensure_ascii=False) if ns.json else f"{ns.action}: {result['name']}")
    return 0
