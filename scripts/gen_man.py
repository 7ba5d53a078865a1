#!/usr/bin/env python3
"""Write the man pages of symbld and symblctl from their argument parsers (argparse-manpage).

    python scripts/gen_man.py          # rewrite docs/man/symbld.1 and symblctl/man/symblctl.1
    python scripts/gen_man.py --check  # exit 1 if either is stale (tests/test_generated.py runs this)

Each distribution installs its page as share/man/man1/<name>.1 (data-files in its pyproject.toml), so
``man symblctl`` works after ``pip install``. Every subcommand of symblctl, with its options, is in the page.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ["COLUMNS"] = "80"  # argparse wraps usage lines to the terminal: the same width on every machine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from argparse_manpage.manpage import Manpage  # noqa: E402

from symblctl import __version__ as client_version  # noqa: E402
from symblctl.cli import build_parser as symblctl_parser  # noqa: E402
from symbld import __version__ as daemon_version  # noqa: E402
from symbld.app import build_parser as symbld_parser  # noqa: E402

DATE = "2026-12-07"  # the pages' date: fixed, so regenerating an unchanged parser changes nothing
SEE_ALSO = {
    "symbld": "symblctl(1). docs/architecture.md, docs/configuration.md and docs/protocol.md in the source.",
    "symblctl": "symbld(1). docs/client.md and docs/protocol.md in the source.",
}
PAGES = {
    ROOT / "docs" / "man" / "symbld.1": ("symbld", symbld_parser, daemon_version),
    ROOT / "symblctl" / "man" / "symblctl.1": ("symblctl", symblctl_parser, client_version),
}


def render(name: str, make: object, version: str) -> str:
    parser = make()  # type: ignore[operator]
    page = Manpage(parser, format="single-commands-section")
    page.source = f"{name} {version}"
    page.date = DATE
    page.manual = "User Commands"
    page.description = parser.description
    page.add_section("SEE ALSO", "=", SEE_ALSO[name])
    return str(page)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a page is stale")
    args = ap.parse_args()
    stale = 0
    for path, (name, make, version) in PAGES.items():
        text = render(name, make, version)
        if args.check:
            if not path.is_file() or path.read_text() != text:
                print(f"{path} is stale: run python scripts/gen_man.py", file=sys.stderr)
                stale = 1
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    return stale


if __name__ == "__main__":
    sys.exit(main())
