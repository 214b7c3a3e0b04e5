"""The read-ahead thread a streamed table is coded in: order, errors and early stops."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from pytest_trainsanity.threads import read_ahead


def _alive() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("trainsanity-read-ahead")]


def test_items_arrive_in_order_and_are_produced_off_the_consumers_thread() -> None:
    producers: set[int] = set()

    def blocks():
        for i in range(50):
            producers.add(threading.get_ident())
            yield i, np.full(10_000, i, np.float64).sum()

    got = list(read_ahead(blocks(), depth=2))
    assert [i for i, _ in got] == list(range(50))
    assert [s for _, s in got] == [10_000.0 * i for i in range(50)]
    assert producers and threading.get_ident() not in producers
    assert not _alive()


def test_an_error_in_the_producer_is_raised_where_its_item_would_have_come() -> None:
    def blocks():
        yield 1
        yield 2
        raise ValueError("decode failed in file part-007")

    seen = []
    with pytest.raises(ValueError, match="part-007"):
        for item in read_ahead(blocks()):
            seen.append(item)
    assert seen == [1, 2]
    assert not _alive()


def test_a_consumer_that_stops_early_stops_the_producer_and_closes_its_source() -> None:
    closed, produced = threading.Event(), []

    def blocks():
        try:
            for i in range(10_000):
                produced.append(i)
                yield i
        finally:
            closed.set()

    stream = read_ahead(blocks(), depth=2)
    assert next(stream) == 0
    stream.close()
    assert closed.is_set()  # closed in the producer's thread, before close() returned
    assert len(produced) <= 5  # at most depth items ahead (and one in hand)
    assert not _alive()
