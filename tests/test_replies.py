"""Replies are declared (``Command.reply`` in symblctl.protocol): a handler returns the declaration or a dict in
its wire shape, and while replies are checked (every daemon the tests start: ``SYMBLD_CHECK_EVENTS=1``) one that
does not fit its declaration is an error in the command that sent it, not a reply a client has to doubt."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from symblctl import protocol
from symbld.control.registry import ReplyShapeError, check_replies, reply_result


@pytest.fixture
def checking() -> Iterator[None]:
    check_replies(True)
    yield
    check_replies(False)


def test_a_declared_reply_goes_out_in_its_wire_shape(checking: None) -> None:
    assert reply_result(protocol.Finalize, protocol.Finalized(connection_id="c1", utterance_closed=True)) == {
        "connectionId": "c1", "utteranceClosed": True}
    assert reply_result(protocol.Finalize, protocol.Finalized(connection_id="c1")) == {"connectionId": "c1"}
    assert reply_result(protocol.Ping, {"pong": True, "version": "1", "pid": 7, "uptime": 1}) == {
        "pong": True, "version": "1", "pid": 7, "uptime": 1}  # a dict that fits: as it is


@pytest.mark.parametrize(("declaration", "result", "says"), [
    (protocol.Ping, {"pong": True, "version": "1", "pid": "7", "uptime": 1.0}, "at `$.pid`"),
    (protocol.Ping, {"pong": True, "version": "1", "uptime": 1.0}, "missing required field `pid`"),
    (protocol.SendAudio, {"accepted": 3.5}, "at `$.accepted`"),
    (protocol.Finalize, protocol.Accepted(accepted=1), "finalize replied Accepted, declared Finalized"),
])
def test_a_reply_that_does_not_fit_its_declaration_is_an_error(checking: None, declaration: type[protocol.Command],
                                                               result: object, says: str) -> None:
    with pytest.raises(ReplyShapeError) as e:
        reply_result(declaration, result)  # type: ignore[arg-type]
    assert says in str(e.value)


def test_unchecked_a_dict_reply_is_not_decoded() -> None:
    check_replies(False)
    assert reply_result(protocol.SendAudio, {"accepted": 3.5}) == {"accepted": 3.5}


def test_a_checked_daemon_answers_with_its_declared_replies(client) -> None:
    pong = client.ping()
    assert set(pong) == {"pong", "version", "pid", "uptime"}
    conn = client.start(source={"type": "push", "sampleRate": 16000})
    assert client.send_audio(conn["connectionId"], b"\x00\x00" * 1600) == {"accepted": 3200}
    assert client.request("finalize", connectionId=conn["connectionId"])["connectionId"] == conn["connectionId"]
    client.stop(conn["connectionId"])
