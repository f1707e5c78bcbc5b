"""Synthesise per-request telemetry records from one interval's histogram deltas.

What is reconstructed, exactly or not (docs/deploy.md states the same):
- the request count per series and interval is exact (the prompt-token histogram's `_count`);
- request times are unknown: the n requests are spread evenly over the interval [t0, t1);
- token lengths: the n values are the histogram's quantiles at (j + 0.5) / n, interpolated linearly
  inside a bucket (as PromQL's histogram_quantile does), then pulled toward the bucket edges so their
  sum matches the exact `_sum` when the buckets allow it. Every value stays in its true bucket, so the
  per-bucket counts, and any length rule whose threshold is a bucket bound, are exact; the +Inf
  bucket is taken as (lower bound, 2 x lower bound];
- which prompt length went with which generation length is lost (two separate histograms). They are
  paired `independent` (at random; the default, closest on the bundled Azure traces) or
  `antimonotone` (the longest prompt with the shortest answer: exact for a deployment whose types
  separate as the bundled `code` rule does, long prompt AND short answer, but it overcounts `code`
  by a third to two thirds on the Azure traces; scripts/bench_prom_ingest.py); then placed in time by
  a fixed pseudo-random permutation seeded from the series and interval. TTFT follows the prompt's
  rank, end-to-end latency the answer's.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from schemas import TelemetryBatch
from schemas.telemetry import MAX_TOKENS

from .deltas import HistDelta, SeriesDelta
from .vllm_metrics import E2E_SECONDS, GENERATION_TOKENS, PROMPT_TOKENS, TTFT_SECONDS

MAX_BATCH = 100_000


def quantile_values(h: HistDelta, n: int, lower: float = 0.0, integer: bool = False) -> np.ndarray:
    """n values (ascending) reproducing the bucket counts of `h`, with their sum pulled to `h.total`.

    With n == h.count each bucket receives exactly its count. `lower` is the smallest possible value;
    `integer` rounds to whole numbers that stay inside their bucket (a token bucket (20, 50] is 21..50).
    """
    if n <= 0 or h.count <= 0:
        return np.zeros(max(n, 0))
    upper = np.asarray(h.bounds, dtype=np.float64)
    lo = np.concatenate(([lower], upper[:-1]))
    hi = upper.copy()
    hi[-1] = max(2.0 * lo[-1], lo[-1] + 1.0)  # +Inf bucket: (lower bound, 2 x lower bound]
    cum = np.cumsum(h.counts).astype(np.float64)
    q = (np.arange(n) + 0.5) * (cum[-1] / n)
    k = np.searchsorted(cum, q, side="right")
    k = np.minimum(k, len(cum) - 1)
    start = cum[k] - h.counts[k]
    frac = (q - start) / np.maximum(h.counts[k], 1)
    v = lo[k] + (hi[k] - lo[k]) * frac
    lo_k, hi_k = lo[k], hi[k]
    target = h.total * (n / h.count)
    gap = target - float(v.sum())
    room = float((hi_k - v).sum()) if gap > 0 else float((v - lo_k).sum())
    if room > 0 and gap != 0:
        a = min(abs(gap) / room, 1.0)
        v = v + a * (hi_k - v) if gap > 0 else v - a * (v - lo_k)
    if integer:
        lo_int = np.where(k == 0, np.ceil(lo_k), np.floor(lo_k) + 1)
        v = np.clip(np.rint(v), lo_int, np.maximum(np.floor(hi_k), lo_int))
    return v


def _seed(key: object, t1: float) -> int:
    return int.from_bytes(hashlib.sha256(f"{key}|{t1!r}".encode()).digest()[:8], "little")


@dataclass(frozen=True)
class Records:
    """Columns of one series' synthesised requests (numpy, not yet a message)."""

    ts: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    ttft_s: np.ndarray | None
    latency_s: np.ndarray | None


def synthesise(d: SeriesDelta, pairing: str = "independent") -> Records | None:
    """The requests of one series' interval, or None when it saw none."""
    n = d.requests
    if n <= 0:
        return None
    rng = np.random.default_rng(_seed(d.key, d.t1))
    p_in = rng.permutation(n)
    p_out = (n - 1 - p_in) if pairing == "antimonotone" else rng.permutation(n)
    span = max(d.t1 - d.t0, 0.0)
    ts = d.t0 + (np.arange(n) + 0.5) * (span / n)
    inp = np.clip(quantile_values(d.hists[PROMPT_TOKENS], n, 1.0, integer=True), 1, MAX_TOKENS).astype(np.int64)
    out = np.clip(quantile_values(d.hists[GENERATION_TOKENS], n, 0.0, integer=True), 0, MAX_TOKENS).astype(np.int64)
    cols: dict[str, np.ndarray | None] = {}
    for name, metric, perm in (("ttft_s", TTFT_SECONDS, p_in), ("latency_s", E2E_SECONDS, p_out)):
        h = d.hists.get(metric)
        cols[name] = quantile_values(h, n)[perm] if h is not None and h.count > 0 else None
    return Records(ts, inp[p_in], out[p_out], cols["ttft_s"], cols["latency_s"])


def to_batches(parts: Sequence[tuple[Records, str, str | None]], producer: str) -> list[TelemetryBatch]:
    """TelemetryBatch messages (at most MAX_BATCH records each, in time order) from (records,
    deployment, query type) parts; query type None leaves classification to the controller."""
    if not parts:
        return []
    ts = np.concatenate([r.ts for r, _, _ in parts])
    order = np.argsort(ts, kind="stable")
    n = len(ts)

    def col(values: list[np.ndarray | None]) -> list[float | None] | None:
        if all(v is None for v in values):
            return None
        full = np.concatenate([v if v is not None else np.full(len(r.ts), np.nan)
                               for v, (r, _, _) in zip(values, parts, strict=True)])[order]
        return [None if not np.isfinite(x) else float(x) for x in full]

    inp = np.concatenate([r.input_tokens for r, _, _ in parts])[order].tolist()
    out = np.concatenate([r.output_tokens for r, _, _ in parts])[order].tolist()
    dep = np.concatenate([np.full(len(r.ts), d, dtype=object) for r, d, _ in parts])[order].tolist()
    qt = np.concatenate([np.full(len(r.ts), q, dtype=object) for r, _, q in parts])[order].tolist()
    ttft = col([r.ttft_s for r, _, _ in parts])
    lat = col([r.latency_s for r, _, _ in parts])
    tsl = ts[order].tolist()
    batches = []
    for a in range(0, n, MAX_BATCH):
        b = slice(a, a + MAX_BATCH)
        batches.append(TelemetryBatch(
            producer=producer, ts=tsl[b], input_tokens=inp[b], output_tokens=out[b], deployment=dep[b],
            query_type=qt[b] if any(q is not None for q in qt[b]) else None,
            ttft_s=ttft[b] if ttft is not None else None, latency_s=lat[b] if lat is not None else None))
    return batches
