"""Precision / recall / F1 of the sentence rules on a labelled JSONL set.

Shared by the tests (floors) and the benchmark (the table in docs/insights.md). Each row:
``{"id", "split": "dev"|"heldout", "asr": bool, "text", "labels": [...]}``; labels are
``question``, ``action_item``, ``follow_up`` (a follow-up is always also an action item),
an empty list means none.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from symbld.insights.classify import classify
from symbld.insights.text import split_sentences

TYPES = ("question", "action_item", "follow_up")


def load(path: str | Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def predict(text: str, threshold: float = 0.5) -> set[str]:
    """Labels the rules give a whole utterance (any of its sentences)."""
    out: set[str] = set()
    for sentence in split_sentences(text):
        c = classify(sentence)
        if c.question >= threshold:
            out.add("question")
        if c.action >= threshold:
            out.add("action_item")
        if c.follow_up >= threshold:
            out.add("follow_up")
    return out


def score(rows: list[dict[str, Any]], threshold: float = 0.5) -> dict[str, dict[str, float]]:
    """{type: {"p", "r", "f1", "tp", "fp", "fn"}} over rows."""
    counts = {t: [0, 0, 0] for t in TYPES}
    for row in rows:
        gold = set(row["labels"])
        got = predict(row["text"], threshold)
        for t in TYPES:
            tp, fp, fn = counts[t]
            counts[t] = [tp + (t in gold and t in got), fp + (t in got and t not in gold),
                         fn + (t in gold and t not in got)]
    result = {}
    for t, (tp, fp, fn) in counts.items():
        p = tp / (tp + fp) if tp + fp else 1.0
        r = tp / (tp + fn) if tp + fn else 1.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        result[t] = {"p": p, "r": r, "f1": f1, "tp": tp, "fp": fp, "fn": fn}
    return result


def errors(rows: list[dict[str, Any]], threshold: float = 0.5) -> list[tuple[str, list[str], list[str]]]:
    """(text, gold, predicted) for every row the rules got wrong."""
    out = []
    for row in rows:
        got = predict(row["text"], threshold)
        if got != set(row["labels"]):
            out.append((row["text"], sorted(row["labels"]), sorted(got)))
    return out
