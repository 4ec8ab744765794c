"""The latency histogram: exact below 256, within 1% above, mergeable across processes."""

from __future__ import annotations

import pickle
import random

import pytest

from roomcast.bench.histogram import MAX_VALUE, Histogram, bucket_bounds, bucket_index


def test_small_values_are_exact() -> None:
    hist = Histogram()
    hist.record_many(range(256))
    assert [hist.quantile((v + 1) / 256) for v in range(256)] == list(range(256))


def test_buckets_are_contiguous_and_each_holds_its_bounds() -> None:
    previous_upper = -1
    for index in range(0, 4000):
        lower, upper = bucket_bounds(index)
        assert lower == previous_upper + 1
        assert bucket_index(lower) == index == bucket_index(upper)
        previous_upper = upper


def test_every_value_reads_back_within_one_percent() -> None:
    rng = random.Random(7)
    for value in [rng.randrange(1, 10**10) for _ in range(5000)] + [256, 257, 511, 512, 10**9]:
        lower, upper = bucket_bounds(bucket_index(value))
        assert lower <= value <= upper
        assert (upper - lower) / value < 0.01


def test_quantiles_are_within_one_percent_of_the_sorted_values() -> None:
    rng = random.Random(3)
    values = [int(rng.lognormvariate(8, 1.5)) for _ in range(20_000)]
    hist = Histogram()
    hist.record_many(values)
    ordered = sorted(values)
    for q in (0.5, 0.9, 0.99, 0.999):
        exact = ordered[int(q * len(ordered) + 0.999999) - 1]
        assert abs(hist.quantile(q) - exact) <= max(1, exact * 0.01)
    assert hist.quantile(1.0) == hist.max == max(values)
    assert hist.min == min(values)
    assert hist.count == len(values)


def test_percentiles_are_ordered_and_never_above_the_max() -> None:
    hist = Histogram()
    hist.record_many([1000, 1003, 1007, 5000])
    p50, p99, p100 = hist.quantile(0.5), hist.quantile(0.99), hist.quantile(1.0)
    assert p50 <= p99 <= p100 == hist.max == 5000


def test_merged_histograms_equal_one_that_saw_every_value() -> None:
    rng = random.Random(11)
    values = [rng.randrange(0, 5_000_000) for _ in range(3000)]
    whole = Histogram()
    whole.record_many(values)
    parts = [Histogram() for _ in range(3)]
    for i, value in enumerate(values):
        parts[i % 3].record(value)
    merged = Histogram()
    for part in parts:
        merged.merge(pickle.loads(pickle.dumps(part)))  # as sent by a worker process
    assert merged == whole
    assert merged.quantile(0.99) == whole.quantile(0.99)


def test_merging_an_empty_histogram_changes_nothing_and_into_empty_copies() -> None:
    hist = Histogram()
    hist.record(42)
    hist.merge(Histogram())
    empty = Histogram()
    empty.merge(hist)
    assert empty == hist
    assert empty.min == 42


def test_json_form_round_trips() -> None:
    hist = Histogram()
    hist.record_many([5, 500, 50_000, 5_000_000])
    assert Histogram.from_dict(hist.to_dict()) == hist


def test_out_of_range_values_are_clamped() -> None:
    hist = Histogram()
    hist.record(-5)
    hist.record(MAX_VALUE * 4)
    assert hist.min == 0
    assert hist.max == MAX_VALUE


def test_an_empty_histogram_reads_zero_and_bad_quantiles_are_refused() -> None:
    hist = Histogram()
    assert hist.quantile(0.99) == 0
    assert hist.mean == 0.0
    hist.record(1)
    with pytest.raises(ValueError, match="quantile"):
        hist.quantile(1.5)
