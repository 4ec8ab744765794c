"""A log-linear histogram of non-negative integers, in the manner of HdrHistogram.

Latencies are recorded as integer microseconds. Values below 256 get a bucket each
(exact); above that every power of two is split into 128 equal buckets, so a bucket is
at most 1/128 of its lower bound wide and any value read back is within 0.8% of the value
recorded. A day in microseconds needs about 4,600 buckets, kept as a plain list of counts.

Two histograms merge by adding their counts, which is how the worker processes' latencies
become one: each worker records into its own histogram and sends it (it pickles, and
:meth:`Histogram.to_dict` gives a compact JSON form) to the coordinator, which merges them.
Quantiles read from a merged histogram are the same as if one histogram had seen every value.

>>> h = Histogram()
>>> for v in (100, 200, 300, 40_000):
...     h.record(v)
>>> h.quantile(0.5), h.max
(200, 40000)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["MAX_VALUE", "SUB_BUCKET_BITS", "Histogram", "bucket_bounds", "bucket_index"]

SUB_BUCKET_BITS = 8
"""Values below ``2**SUB_BUCKET_BITS`` are exact; above, ``2**(SUB_BUCKET_BITS - 1)``
buckets per power of two."""
_HALF_BITS = SUB_BUCKET_BITS - 1
_EXACT = 1 << SUB_BUCKET_BITS

MAX_VALUE = (1 << 42) - 1
"""Larger values are recorded as this (about 51 days in microseconds)."""


def bucket_index(value: int) -> int:
    """The bucket that holds ``value`` (0 <= value <= MAX_VALUE)."""
    shift = value.bit_length() - SUB_BUCKET_BITS
    if shift <= 0:
        return value
    return (shift << _HALF_BITS) + (value >> shift)


def bucket_bounds(index: int) -> tuple[int, int]:
    """The smallest and the largest value that land in bucket ``index``."""
    if index < _EXACT:
        return index, index
    shift = (index >> _HALF_BITS) - 1
    lower = (index - (shift << _HALF_BITS)) << shift
    return lower, lower + (1 << shift) - 1


class Histogram:
    """Counts of integer values in log-linear buckets; mergeable, picklable.

    Negative values are recorded as 0 (a latency computed from two clocks can come out
    a little below zero) and values above :data:`MAX_VALUE` as :data:`MAX_VALUE`.
    ``min`` and ``max`` are exact; quantiles are within one bucket (0.8%) of the truth
    and never outside ``[min, max]``.
    """

    __slots__ = ("count", "counts", "max", "min", "total")

    def __init__(self) -> None:
        self.counts: list[int] = []
        self.count = 0
        self.total = 0
        self.min = 0
        self.max = 0

    def record(self, value: int, times: int = 1) -> None:
        """Add ``value`` ``times`` times."""
        if value < 0:
            value = 0
        elif value > MAX_VALUE:
            value = MAX_VALUE
        shift = value.bit_length() - SUB_BUCKET_BITS
        index = value if shift <= 0 else (shift << _HALF_BITS) + (value >> shift)
        counts = self.counts
        if index >= len(counts):
            counts.extend([0] * (index + 1 - len(counts)))
        counts[index] += times
        if self.count == 0 or value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        self.count += times
        self.total += value * times

    def record_many(self, values: Iterable[int]) -> None:
        for value in values:
            self.record(value)

    def merge(self, other: Histogram) -> None:
        """Add every value ``other`` recorded to this histogram."""
        if other.count == 0:
            return
        if len(other.counts) > len(self.counts):
            self.counts.extend([0] * (len(other.counts) - len(self.counts)))
        for index, n in enumerate(other.counts):
            if n:
                self.counts[index] += n
        self.min = other.min if self.count == 0 else min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.count += other.count
        self.total += other.total

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def quantile(self, q: float) -> int:
        """The value at quantile ``q`` (0..1): the largest value of the bucket that holds
        the ``ceil(q * count)``-th smallest recorded value, clamped to ``[min, max]``.
        0 for an empty histogram."""
        if self.count == 0:
            return 0
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be within 0..1, not {q}")
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for index, n in enumerate(self.counts):
            seen += n
            if seen >= rank:
                upper = bucket_bounds(index)[1]
                return max(self.min, min(upper, self.max))
        return self.max  # pragma: no cover - counts always add up to count

    def buckets(self) -> Iterator[tuple[int, int]]:
        """``(bucket index, count)`` of every non-empty bucket, in order."""
        return ((i, n) for i, n in enumerate(self.counts) if n)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly form; :meth:`from_dict` reads it back."""
        return {
            "sub_bucket_bits": SUB_BUCKET_BITS,
            "count": self.count,
            "min": self.min,
            "max": self.max,
            "total": self.total,
            "buckets": [[i, n] for i, n in self.buckets()],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Histogram:
        if data.get("sub_bucket_bits") != SUB_BUCKET_BITS:
            raise ValueError("histogram recorded with another bucket layout")
        hist = cls()
        for index, n in data["buckets"]:
            if index >= len(hist.counts):
                hist.counts.extend([0] * (index + 1 - len(hist.counts)))
            hist.counts[index] += n
        hist.count = int(data["count"])
        hist.min = int(data["min"])
        hist.max = int(data["max"])
        hist.total = int(data["total"])
        return hist

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Histogram):
            return NotImplemented
        return list(self.buckets()) == list(other.buckets()) and (
            self.count,
            self.min,
            self.max,
            self.total,
        ) == (other.count, other.min, other.max, other.total)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<Histogram count={self.count} min={self.min} max={self.max}>"
