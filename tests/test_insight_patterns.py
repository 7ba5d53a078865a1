"""Questions and action items phrased the ways people speak (issue 18, item 4).

Every row of the labelled split ``spoken`` in tests/data/insights_eval.jsonl must be classified
exactly as labelled: each indirect question, polite request, passive obligation, next step and
commitment after a clause found, and no insight on the neutral statements next to them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from symbld.insights.evaluation import load, predict

ROWS = [r for r in load(Path(__file__).parent / "data" / "insights_eval.jsonl") if r["split"] == "spoken"]


def test_the_split_has_patterns_and_neutral_statements():
    assert sum(bool(r["labels"]) for r in ROWS) >= 20
    assert sum(not r["labels"] for r in ROWS) >= 10


@pytest.mark.parametrize("row", ROWS, ids=[r["id"] for r in ROWS])
def test_spoken_phrasing(row):
    assert predict(row["text"]) == set(row["labels"]), row["text"]
