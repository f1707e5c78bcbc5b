"""The broker watch: backoff, outage and reset detection, counters carried over a restart."""
from __future__ import annotations

import asyncio
import random
from itertools import islice

import pytest

from controller.common.kafka_probe import cluster_id
from controller.devtools.broker import free_port
from controller.common.broker_watch import (
    BrokerHealth, BrokerWatch, backoff_delays, bootstrap_cluster_id, parse_bootstrap,
)
from controller.worker.metrics import Metrics


def test_backoff_doubles_up_to_the_cap() -> None:
    assert list(islice(backoff_delays(0.5, 6.0, jitter=0.0), 6)) == [0.5, 1.0, 2.0, 4.0, 6.0, 6.0]
    spread = list(islice(backoff_delays(1.0, 1.0, jitter=0.2, rng=random.Random(1)), 200))
    assert all(0.8 <= d <= 1.2 for d in spread) and max(spread) - min(spread) > 0.2, "jitter spreads retries"


def test_parse_bootstrap() -> None:
    assert parse_bootstrap("a:1, kafka://b:2,c") == [("a", 1), ("b", 2), ("c", 9092)]
    with pytest.raises(ValueError, match="no broker address"):
        parse_bootstrap(" , ")


async def test_outage_recovery_and_reset_are_seen_once_each() -> None:
    answers = iter(["c1", None, None, None, "c1", "c1", "c2", "c2"])
    done = asyncio.Event()

    def probe(host: str, port: int, timeout: float) -> str | None:
        try:
            return next(answers)
        except StopIteration:
            done.set()
            return "c2"

    calls: list[tuple[str, tuple[object, ...]]] = []

    async def down() -> None:
        calls.append(("down", ()))

    async def recovered(length: float) -> None:
        calls.append(("recovered", (length,)))

    async def reset(old: str, new: str) -> None:
        calls.append(("reset", (old, new)))

    m = Metrics()
    w = BrokerWatch("h:1", interval_s=0.001, backoff_initial_s=0.01, backoff_max_s=0.02, probe=probe,
                    on_down=[down], on_recovered=[recovered], on_reset=[reset], on_change=m.observe_broker)
    task = asyncio.create_task(w.run())
    await asyncio.wait_for(done.wait(), 5)
    task.cancel()
    h = w.health
    assert (h.up, h.outages, h.resets, h.cluster_id, h.failed_probes) == (True, 1, 1, "c2", 3)
    assert [c[0] for c in calls] == ["down", "recovered", "reset"]
    assert calls[2][1] == ("c1", "c2")
    assert 0.02 <= h.outage_seconds == calls[1][1][0] < 1.0, "three failed probes, with backoff between"
    text = m.text().decode()
    assert "llmfleet_broker_outages_total 1.0" in text and "llmfleet_broker_resets_total 1.0" in text
    assert "llmfleet_broker_up 1.0" in text


async def test_a_failing_callback_does_not_stop_the_watch() -> None:
    answers = iter(["c1", None, "c1"])

    async def boom(length: float) -> None:
        raise RuntimeError("callback bug")

    w = BrokerWatch("h:1", interval_s=0.001, backoff_initial_s=0.001, probe=lambda *a: next(answers, "c1"),
                    on_recovered=[boom])
    task = asyncio.create_task(w.run())
    await asyncio.sleep(0.2)
    assert not task.done(), "the watch keeps running"
    task.cancel()
    assert w.health.outages == 1 and w.health.up


def test_counters_survive_a_process_restart(monkeypatch: pytest.MonkeyPatch) -> None:
    h = BrokerHealth(outages=2, outage_seconds=31.5, resets=1, last_outage_s=12.0)
    monkeypatch.setenv("LLMFLEET_BROKER_HISTORY", h.carry())
    again = BrokerHealth.carried()
    assert (again.outages, again.outage_seconds, again.resets, again.last_outage_s) == (2, 31.5, 1, 12.0)
    monkeypatch.setenv("LLMFLEET_BROKER_HISTORY", "{not json")
    assert BrokerHealth.carried().outages == 0
    m = Metrics()
    m.observe_broker(again)
    assert "llmfleet_broker_outage_seconds_total 31.5" in m.text().decode()


async def test_metrics_view_is_a_faust_handler() -> None:
    """faust calls a page handler as get(view, request): a bound method would get the request
    as its first argument (the bug this guards against)."""
    class View:
        def bytes(self, body: bytes, content_type: str) -> tuple[bytes, str]:
            return body, content_type

    m = Metrics()
    m.records.inc(5)
    body, ctype = await m.faust_view()(View(), object())
    assert b"llmfleet_records_ingested_total 5.0" in body and ctype.startswith("text/plain")


@pytest.mark.broker
def test_cluster_id_of_a_real_broker(broker: str) -> None:
    host, port = parse_bootstrap(broker)[0]
    cid = cluster_id(host, port)
    assert cid, "a broker answering Metadata v2 reports its cluster id"
    assert cluster_id(host, port) == cid
    assert cluster_id("127.0.0.1", free_port(), timeout=0.5) is None
    dead = f"127.0.0.1:{free_port()}"
    assert bootstrap_cluster_id(f"{dead},{broker}", timeout=0.5) == cid, "the first broker that answers"
    assert bootstrap_cluster_id(dead, timeout=0.5) is None
