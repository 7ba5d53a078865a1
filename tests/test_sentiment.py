"""Sentiment in Symbl's shape, and its quality on a labelled set of meeting sentences (tests/data/)."""

from __future__ import annotations

from pathlib import Path

from symbld.insights.sentiment import sentiment_of, sentiment_of_many

DATA = Path(__file__).parent / "data" / "sentiment_meeting_sentences.tsv"


def labelled() -> list[tuple[str, str]]:
    rows = []
    for line in DATA.read_text().splitlines():
        if line and not line.startswith("#"):
            label, sentence = line.split("\t", 1)
            rows.append((label, sentence))
    return rows


def test_symbl_shape() -> None:
    s = sentiment_of("This is a great plan, I love it.")
    assert set(s) == {"polarity", "suggested"} and -1 <= s["polarity"]["score"] <= 1
    assert s["suggested"] == "positive"
    assert sentiment_of("The build is broken and the customers are angry.")["suggested"] == "negative"
    assert sentiment_of("")["suggested"] == "neutral"
    assert sentiment_of_many([])["polarity"]["score"] == 0.0


def test_quality_on_labelled_meeting_sentences() -> None:
    rows = labelled()
    assert len(rows) >= 30
    right = sum(sentiment_of(sentence)["suggested"] == label for label, sentence in rows)
    polar = [(lab, s) for lab, s in rows if lab != "neutral"]
    # No polar sentence gets the opposite polarity: the error that would mislead a reader.
    flipped = [s for lab, s in polar if sentiment_of(s)["suggested"] not in (lab, "neutral")]
    print(f"sentiment accuracy {right}/{len(rows)} = {right / len(rows):.2f}; flipped {len(flipped)}")
    assert right / len(rows) >= 0.7, right
    assert len(flipped) <= 1, flipped


def test_conversation_api_messages_get_sentiment_unless_they_have_one() -> None:
    from symbld.insights.sentiment import ensure_on_api_messages

    kept = {"polarity": {"score": 0.5}, "suggested": "positive"}
    out = ensure_on_api_messages([{"text": "I hate this outage."}, {"text": "x", "sentiment": kept}])
    assert out[0]["sentiment"]["suggested"] == "negative" and out[1]["sentiment"] is kept
