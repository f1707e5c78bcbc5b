"""The ingest scraping engines' /metrics directly (no Prometheus): counts, lengths, classification by
the controller's token-length rules, resets, gaps, unexpected labels and failing sources."""
from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator

import aiohttp
import numpy as np
import pytest
from aiohttp import web

from controller.worker.windows import demand_window as dw
from controller.prom_ingest.loop import Ingest
from controller.prom_ingest.mapping import MappingError, load_mapping
from controller.prom_ingest.source import PrometheusSource, ScrapeSource, SourceError
from controller.common.settings import Settings
from schemas import TelemetryBatch, load_catalog
from schemas.prom_ingest import PromIngestMapping
from tests.prom_ingest.fake_vllm import TOKEN_BUCKETS, FakeVllm, Truth, feed
from tests.prometheus_server import free_port

KNOWN = {q.id for q in load_catalog().query_types}
T0 = 1_750_000_000.0


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def engines() -> Iterator[dict[str, FakeVllm]]:
    es = {"mixed": FakeVllm("llama-mixed"), "chat": FakeVllm("llama-chat")}
    yield es
    for e in es.values():
        e.stop()


def _records(batches: list[TelemetryBatch]) -> dict[str, np.ndarray]:
    cols = {c: [] for c in ("ts", "input_tokens", "output_tokens", "deployment", "query_type")}
    for b in batches:
        for c in cols:
            v = getattr(b, c)
            cols[c] += v if v is not None else [None] * len(b)
    return {c: np.asarray(v, dtype=object if c in ("deployment", "query_type") else float) for c, v in cols.items()}


def _bucket_counts(values: np.ndarray) -> list[int]:
    bounds = np.asarray([*TOKEN_BUCKETS, math.inf])
    return np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds)).tolist()


async def test_direct_scrape_keeps_counts_and_buckets_and_the_length_rules_recover_the_types(engines) -> None:
    """Types that separate as the `code` rule does (long prompt and short answer) are recovered from a
    deployment serving both with antimonotone pairing (independent pairing would mix them)."""
    clock, truth, rng = Clock(), Truth(), np.random.default_rng(7)
    ing = Ingest(ScrapeSource([e.url for e in engines.values()]), PromIngestMapping(pairing="antimonotone"), KNOWN,
                 poll_s=10, clock=clock)
    async with aiohttp.ClientSession() as s:
        assert await ing.poll_once(s) == []  # baseline
        batches = []
        for k, (n_code, n_mixed_conv, n_chat) in enumerate([(120, 200, 90), (60, 310, 150)]):
            t = T0 + 10 * k + 5
            feed(engines["mixed"], truth, rng, "code", n_code, t)
            feed(engines["mixed"], truth, rng, "conversation", n_mixed_conv, t)
            feed(engines["chat"], truth, rng, "conversation", n_chat, t)
            clock.t = T0 + 10 * (k + 1)
            got = await ing.poll_once(s)
            assert all(b.producer.startswith("scrape:http://127.0.0.1:") for b in got)
            r = _records(got)
            assert r["ts"].min() >= clock.t - 10 and r["ts"].max() < clock.t  # spread over the interval
            assert (r["deployment"] == "llama-mixed").sum() == n_code + n_mixed_conv
            assert (r["deployment"] == "llama-chat").sum() == n_chat
            batches += got
    r = _records(batches)
    tr_in, tr_out = np.asarray(truth.input_tokens), np.asarray(truth.output_tokens)
    tr_eng, tr_qt = np.asarray(truth.engine), np.asarray(truth.query_type)
    for name in ("llama-mixed", "llama-chat"):  # per deployment the token buckets are exact
        sel, tsel = r["deployment"] == name, tr_eng == name
        assert _bucket_counts(r["input_tokens"][sel]) == _bucket_counts(tr_in[tsel])
        assert _bucket_counts(r["output_tokens"][sel]) == _bucket_counts(tr_out[tsel])
        assert r["input_tokens"][sel].mean() == pytest.approx(tr_in[tsel].mean(), rel=0.01)
    assert all(q is None for q in r["query_type"])  # left to the controller's rules
    s = Settings()
    rules = [dw.LengthRule(**x) for x in s.classify_rules]  # type: ignore[arg-type]
    qt = dw.classify(r["input_tokens"], r["output_tokens"], rules, s.default_query_type)
    # resolution: the rule's prompt threshold (1000) is a bucket bound, its answer threshold (48) lies in
    # the bucket (20, 50]: only requests in that bucket can be classified otherwise than the truth
    ambiguous = int(((tr_out > 20) & (tr_out <= 50)).sum())
    n_code = int((tr_qt == "code").sum())
    assert n_code - ambiguous <= int((qt == "code").sum()) <= n_code
    assert int((qt == "code").sum()) >= 0.9 * n_code, (int((qt == "code").sum()), n_code, ambiguous)


async def test_restart_resets_counters_and_the_new_value_is_the_delta(engines) -> None:
    clock, truth, rng = Clock(), Truth(), np.random.default_rng(1)
    ing = Ingest(ScrapeSource([engines["chat"].url]), PromIngestMapping(), KNOWN, poll_s=10, clock=clock)
    async with aiohttp.ClientSession() as s:
        feed(engines["chat"], truth, rng, "conversation", 500, T0)
        await ing.poll_once(s)
        engines["chat"].restart()
        feed(engines["chat"], truth, rng, "conversation", 7, T0 + 5)
        clock.t += 10
        got = await ing.poll_once(s)
    assert sum(len(b) for b in got) == 7 and ing.counters.resets == 1


async def test_a_failed_scrape_is_a_gap_and_the_next_interval_spans_it(engines) -> None:
    clock, truth, rng = Clock(), Truth(), np.random.default_rng(2)
    ing = Ingest(ScrapeSource([e.url for e in engines.values()]), PromIngestMapping(), KNOWN, poll_s=10, clock=clock)
    async with aiohttp.ClientSession() as s:
        await ing.poll_once(s)
        engines["chat"].down = True
        feed(engines["chat"], truth, rng, "conversation", 40, T0 + 5)
        clock.t += 10
        assert await ing.poll_once(s) == []  # the other engine answered, with nothing new
        assert ing.counters.target_failures == 1
        engines["chat"].down = False
        feed(engines["chat"], truth, rng, "conversation", 10, T0 + 15)
        clock.t += 10
        got = await ing.poll_once(s)
    r = _records(got)
    assert len(r["ts"]) == 50 and ing.counters.gaps == 1 and ing.counters.gap_s == 20
    assert r["ts"].min() < T0 + 1 and r["ts"].max() > T0 + 19  # spread over the whole gap


async def test_unexpected_and_unmapped_labels_are_counted_skips() -> None:
    lora = FakeVllm("llama-chat", {"lora_name": "a"})
    plain = FakeVllm("llama-other")
    try:
        mapping = PromIngestMapping(deployments={"llama-chat": "chat-a100"},
                                    query_type={"by": "model", "values": {"llama-chat": "conversation"}})
        ing = Ingest(ScrapeSource([lora.url, plain.url]), mapping, KNOWN, poll_s=10, clock=Clock())
        async with aiohttp.ClientSession() as s:
            await ing.poll_once(s)
            await ing.poll_once(s)
        assert ing.counters.skipped == {"unexpected_label": 2, "unmapped_deployment": 2}
        mapping = PromIngestMapping(query_type={"by": "label", "label": "lora_name", "values": {"b": "code"}},
                                    ignore_labels=["instance", "engine"])
        ing = Ingest(ScrapeSource([lora.url]), mapping, KNOWN, poll_s=10, clock=Clock())
        async with aiohttp.ClientSession() as s:
            await ing.poll_once(s)
        assert ing.counters.skipped == {"unmapped_query_type": 1}
    finally:
        lora.stop()
        plain.stop()


def test_mapping_errors_are_clear(tmp_path) -> None:
    bad = tmp_path / "m.yaml"
    bad.write_text("query_type: {by: model, values: {llama: no_such_type}}\n")
    with pytest.raises(MappingError, match="no_such_type"):
        load_mapping(bad, KNOWN)
    bad.write_text("query_type: {by: label}\n")
    with pytest.raises(MappingError, match="query_type.label is not set"):
        load_mapping(bad, KNOWN)
    bad.write_text("deployment_label: [\n")
    with pytest.raises(MappingError, match="cannot read mapping file"):
        load_mapping(bad, KNOWN)


@pytest.fixture
async def fake_prometheus() -> Iterator[dict]:
    """An HTTP server answering /api/v1/query with whatever the test sets (status, body)."""
    state: dict = {"status": 500, "body": "internal error", "calls": 0}

    async def handler(request: web.Request) -> web.Response:
        state["calls"] += 1
        return web.Response(status=state["status"], text=state["body"], content_type="application/json")

    app = web.Application()
    app.router.add_get("/api/v1/query", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    state["url"] = f"http://127.0.0.1:{port}"
    yield state
    await runner.cleanup()


async def test_prometheus_errors_are_clear(fake_prometheus) -> None:
    src = PrometheusSource(fake_prometheus["url"])
    async with aiohttp.ClientSession() as s:
        with pytest.raises(SourceError, match="answered HTTP 500: internal error"):
            await src.fetch(s, T0)
        fake_prometheus.update(status=400, body='{"status":"error","errorType":"bad_data","error":"parse error"}')
        with pytest.raises(SourceError, match="HTTP 400: bad_data: parse error"):
            await src.fetch(s, T0)
        fake_prometheus.update(status=200, body='{"status":"success","data":{"resultType":"matrix","result":[]}}')
        with pytest.raises(SourceError, match="cannot read"):
            await src.fetch(s, T0)
        with pytest.raises(SourceError, match="cannot reach Prometheus"):
            await PrometheusSource(f"http://127.0.0.1:{free_port()}", timeout_s=2).fetch(s, T0)


async def test_the_loop_backs_off_while_the_source_fails_and_produces_nothing(fake_prometheus) -> None:
    ing = Ingest(PrometheusSource(fake_prometheus["url"]), PromIngestMapping(), KNOWN, poll_s=0.05, backoff_max_s=0.2)
    sent: list[TelemetryBatch] = []

    async def send(b: TelemetryBatch) -> None:
        sent.append(b)

    stop = asyncio.Event()
    task = asyncio.create_task(ing.run(send, stop))
    await asyncio.sleep(1.0)
    stop.set()
    counters = await task
    # waits 0.05, 0.1, 0.2, 0.2, ... s: about 6-7 attempts in a second, not 20
    assert 3 <= counters.source_errors <= 10 and counters.polls == 0 and sent == []
    fake_prometheus.update(status=200, body='{"status":"success","data":{"resultType":"vector","result":[]}}')
    counters = await ing.run(send, asyncio.Event(), max_polls=2)
    assert counters.polls == 2 and sent == []


async def test_the_ingest_counters_are_exported(engines) -> None:
    from prometheus_client import generate_latest

    from controller.prom_ingest.exporter import registry_for

    mapping = PromIngestMapping(deployments={"llama-chat": "chat-a100"})
    ing = Ingest(ScrapeSource([e.url for e in engines.values()]), mapping, KNOWN, poll_s=10, clock=Clock())
    registry = registry_for(ing.counters)
    async with aiohttp.ClientSession() as s:
        await ing.poll_once(s)
        feed(engines["chat"], Truth(), np.random.default_rng(0), "conversation", 9, T0)
        await ing.poll_once(s)
    text = generate_latest(registry).decode()
    assert "llmfleet_prom_ingest_polls_total 2.0" in text
    assert "llmfleet_prom_ingest_records_total 9.0" in text
    assert 'llmfleet_prom_ingest_skipped_series_total{reason="unmapped_deployment"} 2.0' in text


async def test_query_types_by_a_label() -> None:
    chat, code = FakeVllm("llama", {"route": "chat"}), FakeVllm("llama", {"route": "code"})
    try:
        mapping = PromIngestMapping(deployment_label="instance",
                                    query_type={"by": "label", "label": "route",
                                                "values": {"chat": "conversation", "code": "code"}})
        ing = Ingest(ScrapeSource([chat.url, code.url]), mapping, KNOWN, poll_s=10, clock=Clock())
        rng, truth = np.random.default_rng(3), Truth()
        async with aiohttp.ClientSession() as s:
            await ing.poll_once(s)
            feed(chat, truth, rng, "conversation", 11, T0)
            feed(code, truth, rng, "code", 4, T0)
            ing.clock.t += 10  # type: ignore[attr-defined]
            got = await ing.poll_once(s)
        r = _records(got)
        assert sorted(r["query_type"].tolist()) == ["code"] * 4 + ["conversation"] * 11
        assert set(r["deployment"]) == {chat.target, code.target}  # deployment by the instance label
        assert ing.counters.skipped == {}
    finally:
        chat.stop()
        code.stop()
