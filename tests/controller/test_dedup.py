"""request_id de-duplication: retries count once, memory stays bounded."""
from __future__ import annotations

from controller.worker.ingest.dedup import RequestDedup


def test_a_retried_request_counts_once_and_records_without_ids_always_count() -> None:
    d = RequestDedup(max_ids=10)
    assert d.fresh(0, ["a", "b", None, "a"]).tolist() == [True, True, True, False]
    assert d.fresh(0, ["b", None, "c"]).tolist() == [False, True, True]
    assert d.fresh(1, ["a"]).tolist() == [True]  # partitions are independent (a producer keys by request)


def test_the_horizon_is_the_last_max_ids_and_memory_is_bounded() -> None:
    d = RequestDedup(max_ids=1000)
    for k in range(50):
        d.fresh(0, [f"r{k}-{i}" for i in range(100)])
        assert len(d) <= 1000
    assert d.fresh(0, ["r49-99"]).tolist() == [False]  # recent: remembered
    assert d.fresh(0, ["r0-0"]).tolist() == [True]  # beyond the horizon: forgotten


def test_zero_turns_it_off() -> None:
    d = RequestDedup(max_ids=0)
    assert d.fresh(0, ["a", "a"]).tolist() == [True, True]
    assert len(d) == 0
