"""Scenario 3: a flood of malformed messages mixed into valid telemetry.

Every bad message must reach the DLQ (matched one to one by partition and offset) with a
reason naming what is wrong, the worker must keep running, and every valid record must be
counted in the demand windows.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from schemas import DeadLetter, RequestRecord, TelemetryBatch
from tests.e2e.harness import Cluster, batch, collect
from tests.reliability.conftest import Figures, scaled

T0 = 1_700_000_000.0
PARTITIONS = 4
pytestmark = pytest.mark.broker

_REC = {"kind": "request", "ts": T0 + 1, "query_type": "code", "input_tokens": 900, "output_tokens": 20}


def _rec(**kw: object) -> bytes:
    return json.dumps({**_REC, **kw}).encode()


# kind -> (message bytes for the k-th copy, predicate on the DLQ reason)
BAD: dict[str, tuple[Callable[[int], bytes | None], Callable[[str], bool]]] = {
    "not_json": (lambda k: b"{not json %d" % k, lambda r: r.startswith("not JSON")),
    "binary": (lambda k: random.Random(k).randbytes(64), lambda r: r.startswith("not JSON")),
    "empty": (lambda k: b"", lambda r: r.startswith("not JSON")),
    "tombstone": (lambda k: None, lambda r: "tombstone" in r),
    "wrong_types": (lambda k: _rec(ts="yesterday", input_tokens="many"),
                    lambda r: "ts" in r and "input_tokens" in r),
    "nan": (lambda k: _rec(ts=float("nan")), lambda r: r.startswith("not JSON") and "NaN" in r),
    "inf": (lambda k: _rec(latency_s=float("inf")), lambda r: r.startswith("not JSON") and "Infinity" in r),
    "negative_tokens": (lambda k: _rec(input_tokens=-4 - k), lambda r: "input_tokens" in r),
    "absurd_tokens": (lambda k: _rec(output_tokens=10**12), lambda r: "output_tokens" in r),
    "unknown_query_type": (lambda k: _rec(query_type=f"nosuch{k % 7}"),
                           lambda r: "unknown query type 'nosuch" in r and "conversation" in r),
    "schema_version": (lambda k: _rec(schema_version=2), lambda r: "schema_version" in r),
    "unknown_kind": (lambda k: json.dumps({"kind": "metrics", "v": k}).encode(),
                     lambda r: "unknown message kind 'metrics'" in r),
    "not_an_object": (lambda k: json.dumps([k, k]).encode(), lambda r: r.startswith("invalid telemetry")),
    "extra_field": (lambda k: _rec(evil=k), lambda r: "evil" in r),
    "ragged_batch": (lambda k: json.dumps({"kind": "batch", "ts": [T0, T0 + 1], "input_tokens": [5],
                                           "output_tokens": [1, 2]}).encode(),
                     lambda r: "input_tokens has 1 values" in r),
}
OVERSIZED = (lambda k: b'{"kind": "batch", "pad": "' + b"x" * 1_300_000 + b'"}',
             lambda r: r.startswith("oversized"))


def _mixed_batch(ts: float, k: int) -> tuple[bytes, int]:
    """A batch with some unknown query types: one dead letter per such row, the known rows counted."""
    recs = [RequestRecord(ts=ts + i * 0.01, query_type="conversation" if i % 3 else f"alien{k}",
                          input_tokens=500, output_tokens=100) for i in range(9)]
    return TelemetryBatch.from_records(recs).model_dump_json().encode(), 6


async def test_malformed_flood_all_dead_lettered_none_lost(broker: str, tmp_path: Path, figures: Figures) -> None:
    n_bad = int(scaled(10_000, 50_000))
    seconds = int(scaled(60, 300))
    c = Cluster(broker, tmp_path, LLMFLEET_MAX_DECODE_BYTES="1048576")
    t = c.topics
    try:
        valid = batch(T0, seconds, {"code": 10, "conversation": 20})
        expected_records = 30 * seconds
        kinds = list(BAD)
        bad: list[tuple[str, bytes | None]] = []
        for k in range(n_bad - 5 - 20):
            kind = kinds[k % len(kinds)]
            bad.append((kind, BAD[kind][0](k)))
        bad += [("oversized", OVERSIZED[0](k)) for k in range(5)]
        random.Random(7).shuffle(bad)
        # valid telemetry stays in event-time order; the bad messages are spread between it
        msgs: list[tuple[str, bytes | None]] = []
        per = -(-len(bad) // seconds)
        for sec, v in enumerate(valid):
            msgs.append(("valid", v))
            msgs += bad[sec * per:(sec + 1) * per]
            if sec % (seconds // 20) == 0 and sum(k == "mixed_batch" for k, _ in msgs) < 20:
                value, known = _mixed_batch(T0 + sec + 0.5, sec)
                msgs.append(("mixed_batch", value))
                expected_records += known

        c.start_worker()
        t0 = time.perf_counter()
        sent: dict[tuple[int, int], tuple[str, bytes | None]] = {}
        p = AIOKafkaProducer(bootstrap_servers=broker, max_request_size=4_000_000, linger_ms=5)
        await p.start()
        try:
            for start in range(0, len(msgs), 500):
                chunk = msgs[start:start + 500]
                futs = [await p.send(t.telemetry, v, key=b"flood", partition=(start + j) % PARTITIONS)
                        for j, (_, v) in enumerate(chunk)]
                for (kind, v), md in zip(chunk, await asyncio.gather(*futs)):
                    if kind != "valid":
                        sent[(md.partition, md.offset)] = (kind, v)
            for part in range(PARTITIONS):  # move every partition past the last window
                await p.send_and_wait(t.telemetry, c.tick(part, T0 + seconds + 60),
                                      partition=part)
        finally:
            await p.stop()
        produced_s = time.perf_counter() - t0

        got = await collect(broker, [t.dlq, t.demand],
                            lambda g: len(g[t.dlq]) >= sum(3 if k == "mixed_batch" else 1 for k, _ in sent.values()) and
                            sum(w["records"] for w in g[t.demand]) >= expected_records,
                            timeout=scaled(120, 600))
        drained_s = time.perf_counter() - t0
        letters = [DeadLetter.model_validate(d) for d in got[t.dlq]]
        by_pos: dict[tuple[int | None, int | None], DeadLetter] = {}
        rows: dict[tuple[int | None, int | None], list[DeadLetter]] = {}
        for d in letters:  # a batch's refused records: one letter each, with its index
            if d.record_index is None:
                assert (d.partition, d.offset) not in by_pos, "one dead letter per bad message, none twice"
                by_pos[(d.partition, d.offset)] = d
            else:
                rows.setdefault((d.partition, d.offset), []).append(d)
        for pos, ds in rows.items():
            assert sorted(x.record_index for x in ds) == [0, 3, 6], ds
            for x in ds:
                assert "unknown query type 'alien" in x.reason, x.reason
                assert json.loads(base64.b64decode(x.original_b64))["query_type"].startswith("alien")
            by_pos[pos] = ds[0]
        missing = [pos for pos in sent if pos not in by_pos]
        assert not missing, f"{len(missing)} bad messages never reached the DLQ, e.g. {missing[:5]}\n{c.logs()}"
        assert set(by_pos) == set(sent), "nothing valid was dead-lettered"
        wrong = []
        for pos, (kind, value) in sent.items():
            d = by_pos[pos]
            if kind == "mixed_batch":
                continue  # checked per record above
            check = OVERSIZED[1] if kind == "oversized" else BAD[kind][1]
            if not check(d.reason):
                wrong.append((kind, d.reason[:120]))
            raw = value or b""
            assert d.original_size == len(raw) and d.original_sha256 == hashlib.sha256(raw).hexdigest()
            kept = base64.b64decode(d.original_b64)
            assert raw.startswith(kept) and (d.truncated or kept == raw)
        assert not wrong, f"{len(wrong)} reasons do not say what is wrong, e.g. {wrong[:5]}"

        counted = sum(w["records"] for w in got[t.demand])
        assert counted == expected_records, f"valid records counted {counted} != sent {expected_records}"
        assert all(p.poll() is None for p in c.procs), "the worker kept running\n" + c.logs()
        assert "crashed" not in c.logs().lower(), c.logs()

        by_kind: dict[str, int] = {}
        for kind, _ in sent.values():
            by_kind[kind] = by_kind.get(kind, 0) + 1
        figures.add("bad messages sent", len(sent), note=f"{len(by_kind)} kinds: " + ", ".join(
            f"{k} {n}" for k, n in sorted(by_kind.items())))
        figures.add("reached the DLQ", f"{100.0 * len(by_pos) / len(sent):.1f} %",
                    note="matched one to one by partition and offset")
        figures.add("reasons naming the fault", f"{100.0 * (len(sent) - len(wrong)) / len(sent):.1f} %")
        figures.add("valid records counted", f"{counted} of {expected_records}")
        figures.add("worker crashes", 0)
        figures.add("produce time", round(produced_s, 1), "s", f"{len(msgs)} messages")
        figures.add("all dead letters and windows out after", round(drained_s, 1), "s",
                    f"{len(sent) / drained_s:,.0f} bad msgs/s through the DLQ path")
    finally:
        c.close()
