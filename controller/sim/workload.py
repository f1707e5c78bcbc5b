"""Synthetic request streams in event time (Poisson arrivals), for the simulator and tests."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from schemas import RequestRecord


def poisson_requests(rates: Mapping[str, float], tokens: Mapping[str, tuple[int, int]],
                     duration_s: float, *, start_ts: float = 1_700_000_000.0,
                     seed: int = 0) -> list[RequestRecord]:
    """Merged Poisson arrivals: `rates[q]` requests/s of type q with `tokens[q]` = (in, out).

    One merged process (rate sum, type drawn per arrival) keeps the output sorted by ts and
    reproducible from `seed`.
    """
    ids = [q for q in sorted(rates) if rates[q] > 0]
    lam = np.array([float(rates[q]) for q in ids])
    total = float(lam.sum())
    if total <= 0 or duration_s <= 0:
        return []
    rng = np.random.default_rng(seed)
    n_max = int(total * duration_s + 10 * np.sqrt(total * duration_s) + 10)
    ts = np.cumsum(rng.exponential(1.0 / total, size=n_max))
    ts = ts[ts < duration_s]
    kinds = rng.choice(len(ids), size=len(ts), p=lam / total)
    return [RequestRecord(ts=start_ts + float(t), query_type=ids[k], input_tokens=tokens[ids[k]][0],
                          output_tokens=tokens[ids[k]][1], request_id=f"r{n}")
            for n, (t, k) in enumerate(zip(ts, kinds))]
