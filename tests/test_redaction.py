"""Redaction of the texts a connection publishes: each kind masked, ordinary numbers kept."""

from __future__ import annotations

import json
import re

import msgspec
import pytest

from symblctl import protocol
from symbld.insights.redaction import KINDS, kinds_of, luhn_ok, redact_event, redact_text

ALL = frozenset(KINDS)


@pytest.mark.parametrize(("text", "expected"), [
    ("Call me at 415-555-0134 tomorrow.", "Call me at [PHONE] tomorrow."),
    ("Call me at (415) 555 0134.", "Call me at [PHONE]."),
    ("My card is 4111 1111 1111 1111, thanks.", "My card is [CARD], thanks."),
    ("Mail john.smith@example.com now.", "Mail [EMAIL] now."),
    ("Write to john.smith at example.com today.", "Write to [EMAIL] today."),
    ("Write to john at example dot com.", "Write to [EMAIL]."),
    ("It is four one five five five five zero one three four.", "It is [NUMBER]."),
    ("We have one two three options.", "We have one two three options."),
    ("The meeting is at 10:30 on 2026-12-01 in room 12.", "The meeting is at 10:30 on 2026-12-01 in room 12."),
    ("We sold 1500 units.", "We sold 1500 units."),
    ("The budget is 1,500,000 dollars, up 3.25 percent.", "The budget is 1,500,000 dollars, up 3.25 percent."),
    ("Call me on 5 .5, 1, 2, 3, 4, 5, 6, 7", "Call me on [PHONE]"),
    ("Please email John at enlampo .com", "Please email [EMAIL]"),
    ("Look at this. Then we go.", "Look at this. Then we go."),
    ("Items 3, 4 and 5.", "Items 3, 4 and 5."),
])
def test_each_kind_is_masked_and_ordinary_numbers_stay(text: str, expected: str) -> None:
    assert redact_text(text, ALL) == expected


def test_card_needs_luhn() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    # 16 digits failing Luhn are not a card; as a phone they are too long: kept.
    assert redact_text("ref 4111 1111 1111 1112", frozenset({"card"})) == "ref 4111 1111 1111 1112"


def test_only_the_kinds_asked_for() -> None:
    text = "john@example.com or 415-555-0134"
    assert redact_text(text, frozenset({"email"})) == "[EMAIL] or 415-555-0134"
    assert redact_text(text, frozenset()) == text


def test_kinds_of_a_decoded_redaction() -> None:
    def kinds(wire: object) -> frozenset[str]:
        return kinds_of(msgspec.convert(wire, protocol.Redaction | None, strict=True))

    assert kinds(True) == ALL and kinds(None) == frozenset() and kinds(False) == frozenset()
    assert kinds(["email"]) == {"email"}
    assert kinds({"enabled": False}) == frozenset() and kinds({"kinds": ["card"]}) == {"card"} and kinds({}) == ALL
    # The declaration is the validation: an unknown kind or a string is refused naming where it is.
    with pytest.raises(msgspec.ValidationError, match=r"'ssn' - at `\$\[0\]`"):
        kinds(["ssn"])
    with pytest.raises(msgspec.ValidationError, match=re.escape("Expected `bool | object | array | null`, got `str`")):
        kinds("yes")


def test_event_masks_text_and_words_but_keeps_ids_and_times() -> None:
    words = json.dumps([{"word": "Call", "startTime": "2026-12-01T10:00:00.000Z"}, {"word": "415-555-0134."}])
    data = {"messages": [{"id": "0123456789", "payload": {"content": "Call 415-555-0134."},
                          "metadata": {"originalContent": "Call 415-555-0134.", "words": words},
                          "duration": {"startTime": "2026-12-01T10:00:00.000Z"}}]}
    out = redact_event(data, ALL)
    m = out["messages"][0]
    assert m["id"] == "0123456789" and m["duration"] == data["messages"][0]["duration"]
    assert m["payload"]["content"] == "Call [PHONE]." == m["metadata"]["originalContent"]
    assert "415" not in m["metadata"]["words"] and json.loads(m["metadata"]["words"])[0]["word"] == "Call"
    assert data["messages"][0]["payload"]["content"] == "Call 415-555-0134.", "the input is not changed"


def test_a_page_link_is_kept_whatever_digits_its_conversation_id_has() -> None:
    conversation = "4111111111111111"  # 16 digits that pass the card check, as one id in ten does
    assert luhn_ok(conversation)
    url = f"http://127.0.0.1:5081/meeting/{conversation}?s={'0' * 64}"
    out = redact_event({"summaryUrl": url, "conversationId": conversation, "url": url}, ALL)
    assert out == {"summaryUrl": url, "conversationId": conversation, "url": url}


def test_a_card_number_the_recogniser_grouped_like_an_amount_is_masked() -> None:
    kinds = frozenset({"card", "phone", "email", "spoken_digits"})
    assert redact_text("The current number is 4,111,111, please", kinds) == "The current number is [PHONE], please"
    for amount in ("It is 1,500,000 dollars.", "It costs $40,000 a year.", "About 12,000 people.", "Up 2,500,000%."):
        assert redact_text(amount, kinds) == amount
