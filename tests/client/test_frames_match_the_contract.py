"""roomcast.client's event and result types carry exactly the fields of the
protocol's models of the same frames (protocol/replies.py, from which the
AsyncAPI document is generated): a field added to, renamed in or dropped from
the contract fails here until the client follows.

The client keeps its own small slotted dataclasses rather than the pydantic
models: they are cheap to build for every event, keep positional pattern
matching, and ignore fields a newer server adds (the models forbid them, to
catch undescribed frames in the server's tests)."""

from __future__ import annotations

import dataclasses

import pytest
from pydantic import BaseModel

from roomcast.client import events
from roomcast.protocol import replies

PAIRS: list[tuple[type, type[BaseModel], set[str]]] = [
    # (client type, protocol model, fields of the model the client type leaves out)
    (events.Message, replies.MessageEvent, {"type"}),
    (events.Join, replies.JoinEvent, {"type"}),
    (events.Leave, replies.LeaveEvent, {"type"}),
    (events.Session, replies.ConnectResult, set()),
    (events.SubscribeResult, replies.SubscribeResult, set()),
    (events.PublishResult, replies.PublishResult, set()),
    (events.HistoryPage, replies.HistoryResult, set()),
    (events.Member, replies.Member, set()),
]


@pytest.mark.parametrize(
    ("ours", "model", "left_out"), PAIRS, ids=lambda p: getattr(p, "__name__", "")
)
def test_a_client_type_has_the_fields_of_its_frame(
    ours: type, model: type[BaseModel], left_out: set[str]
) -> None:
    fields = [f.name for f in dataclasses.fields(ours)]
    assert fields == [name for name in model.model_fields if name not in left_out]


def test_the_client_reads_every_example_frame_of_the_contract() -> None:
    """Each event example of the document becomes the client's event with the same
    values; an unknown type would become a Notice."""
    from roomcast.protocol.asyncapi_examples import SERVER_EXAMPLES

    for name in ("messageEvent", "joinEvent", "leaveEvent", "resetEvent", "unsubscribedEvent"):
        frame = SERVER_EXAMPLES[name][0]["payload"]
        event = events.event_of(frame)
        assert not isinstance(event, events.Notice), name
        for key, value in frame.items():
            if key != "type":
                assert getattr(event, key) == value, (name, key)
