"""Per-subscriber delivery accounting: gaps, duplicates and reorders are each counted."""

from __future__ import annotations

from roomcast.bench.accounting import Integrity, Stream, integrity


def feed(stream: Stream, offsets: list[int]) -> Stream:
    for offset in offsets:
        stream.deliver(offset)
    return stream


def test_in_order_deliveries_are_complete() -> None:
    stream = feed(Stream("r", 10), [11, 12, 13])
    assert stream.missing(13) == 0
    assert stream.complete(13)
    assert stream.duplicated == stream.out_of_order == 0


def test_a_gap_is_lost_only_up_to_the_target() -> None:
    stream = feed(Stream("r", 0), [1, 2, 5, 6])
    assert stream.missing(6) == 2  # 3 and 4
    assert stream.missing(3) == 1
    assert stream.missing(8) == 4  # 3, 4, 7, 8 never came
    assert not stream.complete(6)


def test_a_late_arrival_fills_its_gap_and_counts_as_out_of_order() -> None:
    stream = feed(Stream("r", 0), [1, 3, 4, 2])
    assert stream.out_of_order == 1
    assert stream.missing(4) == 0
    assert stream.complete(4)


def test_filling_the_middle_of_a_gap_splits_it() -> None:
    stream = feed(Stream("r", 0), [1, 7, 4])
    assert stream.gaps == [[2, 3], [5, 6]]
    feed(stream, [2, 6, 3, 5])
    assert stream.gaps == []
    assert stream.out_of_order == 5


def test_repeats_and_offsets_before_the_start_are_duplicates() -> None:
    stream = feed(Stream("r", 5), [6, 7, 7, 6, 3])
    assert stream.duplicated == 3
    assert stream.out_of_order == 0


def test_a_gap_a_duplicate_and_a_reorder_are_each_counted() -> None:
    # 3 never arrives, 5 arrives twice, 7 arrives after 8.
    stream = feed(Stream("r", 0), [1, 2, 4, 5, 5, 6, 8, 7, 9])
    result = integrity([stream], {"r": 9})
    assert result == Integrity(lost=1, duplicated=1, out_of_order=1, incomplete=1)
    assert not result.ok


def test_integrity_sums_streams_and_separates_losses_on_closed_connections() -> None:
    healthy = feed(Stream("a", 0), [1, 2, 3])
    closed = feed(Stream("a", 0), [1])
    closed.closed = True
    other_room = feed(Stream("b", 0), [1, 2])
    unexpected = feed(Stream("c", 0), [1])  # no target: nothing acknowledged there
    result = integrity([healthy, closed, other_room, unexpected], {"a": 3, "b": 4})
    assert result.lost == 2 + 2
    assert result.lost_on_closed == 2
    assert result.incomplete == 2


def test_integrity_adds_up() -> None:
    total = Integrity()
    total.add(Integrity(lost=1, duplicated=2))
    total.add(Integrity(out_of_order=3, lost_on_closed=1, lost=1))
    assert total == Integrity(lost=2, lost_on_closed=1, duplicated=2, out_of_order=3)
    assert Integrity().ok
