#!/usr/bin/env python3
"""What the controller's demand windows keep when telemetry comes from vLLM's Prometheus metrics.

    python scripts/bench_prom_ingest.py [--scale 20] [--minutes 15] [--seeds 0,1,2]

The bundled Azure traces (code + conversation, scaled like the quickstart) are served by one
simulated vLLM engine per trace family; each request is recorded in vLLM's histograms when it
*finishes* (arrival + 0.05 s + prompt/20k s + 20 ms per generated token), as vLLM does. Prometheus
scrapes every S = 1 s; `llmfleet ingest prometheus` polls every P seconds, synthesises records
(controller/prom_ingest) and the controller's own window code (controller/worker/windows/demand_window.py: 60 s
windows, 10 s bursts, untyped records classified by the bundled length rules) builds the demand
windows. The same windows are built from the true requests (classified by the same rules, dated by
arrival) and compared, per query type and window: count, peak 10 s rate, token means and p95.
Baselines in the same process: independent length pairing instead of antimonotone; both engines'
traffic on one deployment (mixed) so the rules must split it; and P = 1, 5, 15 s. Prints a table
and, last, a JSON object. No network: the scrape/poll timing is simulated.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from controller.worker.windows import demand_window as dw  # noqa: E402
from controller.prom_ingest.deltas import Tracker  # noqa: E402
from controller.prom_ingest.samples import Hist  # noqa: E402
from controller.prom_ingest.synth import synthesise  # noqa: E402
from controller.prom_ingest.vllm_metrics import GENERATION_TOKENS, PROMPT_TOKENS  # noqa: E402
from controller.common.settings import Settings  # noqa: E402
from controller.replay.trace_reader import Chunk, TraceOptions, bundled_sources, read_trace  # noqa: E402

T0 = 1_700_000_000.0
W, BURST, S = 60.0, 10.0, 1.0


def _buckets(max_value: int = 32_768) -> np.ndarray:
    """vLLM's build_1_2_5_buckets, + Inf."""
    out = [float(m * 10**e) for e in range(6) for m in (1, 2, 5) if m * 10**e <= max_value]
    return np.asarray([*out, np.inf])


BOUNDS = _buckets()


class Engine:
    """Cumulative vLLM token histograms of one engine, readable at any time (what a scrape sees)."""

    def __init__(self, finish: np.ndarray, inp: np.ndarray, out: np.ndarray) -> None:
        order = np.argsort(finish, kind="stable")
        self.finish = finish[order]
        self.cum = {}
        for name, v in ((PROMPT_TOKENS, inp[order]), (GENERATION_TOKENS, out[order])):
            onehot = np.zeros((len(v) + 1, len(BOUNDS)), dtype=np.int64)
            onehot[np.arange(1, len(v) + 1), np.searchsorted(BOUNDS, v, side="left")] = 1
            self.cum[name] = (np.cumsum(np.cumsum(onehot, axis=0), axis=1), np.concatenate(([0.0], np.cumsum(v))))

    def at(self, t: float) -> dict[str, Hist]:
        i = int(np.searchsorted(self.finish, t, side="right"))
        return {name: Hist(tuple(BOUNDS), tuple(float(x) for x in c[i]), float(s[i]), float(c[i][-1]))
                for name, (c, s) in self.cum.items()}


def windows(ts: np.ndarray, inp: np.ndarray, out: np.ndarray, qt: np.ndarray | None, rules, default: str,
            t_end: float) -> dict:
    """(window start, query type) -> QueryDemand, by the controller's own window code (qt None:
    classified by the length rules, as the controller does untyped records)."""
    if qt is None:
        qt = dw.classify(inp, out, rules, default)
    state = dw.new_state()
    dw.add_records(state, 0, ts, qt, inp.astype(float), out.astype(float), window_s=W, grace_s=0.0, burst_s=BURST)
    parts = dw.close_ready(state, 0, window_s=W, grace_s=0.0, watermark=t_end + 2 * W)
    res = {}
    for p in parts:
        a = p["window_start"]
        for d in dw.combine("default", a, a + W, [p]).demand:
            res[(a, d.query_type)] = d
    return res


def run(trace: Chunk, engines_of: np.ndarray, poll_s: float, pairing: str, at_finish: bool = True) -> tuple[np.ndarray, ...]:
    """Synthesised (ts, input, output, engine) for the trace, seen through S-second scrapes and P-second polls."""
    finish = trace.ts + (0.05 + trace.input_tokens / 20_000 + 0.02 * trace.output_tokens if at_finish else 0.0)
    names = sorted(set(engines_of))
    engines = {n: Engine(finish[engines_of == n], trace.input_tokens[engines_of == n].astype(float),
                         trace.output_tokens[engines_of == n].astype(float)) for n in names}
    tracker = Tracker(gap_after_s=1.5 * poll_s)
    # polls are not aligned with windows or scrapes (phase 0.37 P), as in a real deployment
    t, t_end = T0 - 0.63 * poll_s, float(finish.max()) + 2 * poll_s + S
    cols: list[tuple[np.ndarray, ...]] = []
    while t <= t_end:
        scraped = np.floor(t / S) * S  # Prometheus answers with its last scrape
        groups = {(("model_name", n),): e.at(scraped) for n, e in engines.items()}
        for d in tracker.update(groups, t):
            r = synthesise(d, pairing)
            if r is not None:
                cols.append((r.ts, r.input_tokens, r.output_tokens, np.full(len(r.ts), dict(d.key)["model_name"],
                                                                            dtype=object)))
        t += poll_s
    return tuple(np.concatenate([c[k] for c in cols]) for k in range(4))


def compare(true: dict, syn: dict, min_n: int = 20) -> dict:
    err: dict[str, list[float]] = {k: [] for k in ("count", "peak", "in_mean", "out_mean", "in_p95")}
    for key, d in true.items():
        if d.count < min_n:
            continue
        s = syn.get(key)
        if s is None:
            err["count"].append(1.0)
            continue
        err["count"].append(abs(s.count - d.count) / d.count)
        err["peak"].append(abs((s.arrival_rate_peak or 0) - (d.arrival_rate_peak or 0)) / (d.arrival_rate_peak or 1))
        err["in_mean"].append(abs(s.input_tokens_mean - d.input_tokens_mean) / d.input_tokens_mean)
        err["out_mean"].append(abs(s.output_tokens_mean - d.output_tokens_mean) / max(d.output_tokens_mean, 1))
        err["in_p95"].append(abs(s.input_tokens_p95 - d.input_tokens_p95) / d.input_tokens_p95)
    out = {f"{k}_err_mean": round(float(np.mean(v)), 4) for k, v in err.items() if v}
    out.update({f"{k}_err_max": round(float(np.max(v)), 4) for k, v in err.items() if v})
    out["windows"] = len(err["count"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=20.0)
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--at", choices=["finish", "arrival"], default="finish",
                    help="engines record a request when it finishes (as vLLM does) or, to isolate that, at arrival")
    a = ap.parse_args()
    s = Settings()
    rules = [dw.LengthRule(**x) for x in s.classify_rules]  # type: ignore[arg-type]
    # (name, query types by, engines, poll interval, pairing)
    configs = [("by model, P=1", "model", "family", 1.0, "independent"),
               ("by model, P=5", "model", "family", 5.0, "independent"),
               ("by model, P=15", "model", "family", 15.0, "independent"),
               ("by length, per-family, indep.", "length", "family", 5.0, "independent"),
               ("by length, per-family, anti.", "length", "family", 5.0, "antimonotone"),
               ("by length, mixed, indep.", "length", "mixed", 5.0, "independent"),
               ("by length, mixed, anti.", "length", "mixed", 5.0, "antimonotone")]
    results: dict[str, dict] = {}
    t_start = time.perf_counter()
    for seed in [int(x) for x in a.seeds.split(",")]:
        trace = Chunk.concat(list(read_trace(bundled_sources(), TraceOptions(scale=a.scale, start=T0, seed=seed))))
        trace = trace.take(trace.ts < T0 + a.minutes * 60)
        # the bundled sources carry their family as query_type (code / conversation)
        family = np.asarray(trace.query_type, dtype=object)
        t_end = float(trace.ts.max())
        true_by = {"model": windows(trace.ts, trace.input_tokens, trace.output_tokens, family, rules, "", t_end),
                   "length": windows(trace.ts, trace.input_tokens, trace.output_tokens, None, rules,
                                     s.default_query_type, t_end)}
        for name, by, layout, poll, pairing in configs:
            eng = family if layout == "family" else np.full(len(trace), "mixed", dtype=object)
            ts, inp, out, e = run(trace, eng, poll, pairing, a.at == "finish")
            syn = windows(ts, inp, out, e if by == "model" else None, rules, s.default_query_type, t_end)
            true = true_by[by]
            per_type = {}
            for q in sorted({k[1] for k in true}):
                per_type[q] = compare({k: v for k, v in true.items() if k[1] == q},
                                      {k: v for k, v in syn.items() if k[1] == q})
                tq = sum(v.count for k, v in true.items() if k[1] == q)
                sq = sum(v.count for k, v in syn.items() if k[1] == q)
                per_type[q]["total_ratio"] = round(sq / tq, 4) if tq else None
            results.setdefault(name, {})[seed] = {"records_true": len(trace), "records_synth": len(ts), **per_type}
    print(f"bundled traces x{a.scale:g}, {a.minutes:g} min, seeds {a.seeds}, recorded at {a.at}; windows {W:g} s, bursts {BURST:g} s, "
          f"scrape {S:g} s; wall {time.perf_counter() - t_start:.1f} s (2-core machine, shared)")
    hdr = f"{'config':30s} {'type':13s} {'count err':>10s} {'peak err':>9s} {'in mean':>8s} {'out mean':>9s} {'in p95':>7s} {'total':>7s}"
    print(hdr)
    summary: dict[str, dict] = {}
    for name, by_seed in results.items():
        for q in ("code", "conversation"):
            rows = [r[q] for r in by_seed.values() if q in r]

            def m(key: str) -> float:
                return float(np.mean([r.get(key, np.nan) for r in rows]))
            row = {k: round(m(k), 4) for k in ("count_err_mean", "count_err_max", "peak_err_mean", "in_mean_err_mean",
                                                 "out_mean_err_mean", "in_p95_err_mean", "total_ratio")}
            summary.setdefault(name, {})[q] = row
            print(f"{name:30s} {q:13s} {row['count_err_mean']:10.3f} {row['peak_err_mean']:9.3f} "
                  f"{row['in_mean_err_mean']:8.3f} {row['out_mean_err_mean']:9.3f} {row['in_p95_err_mean']:7.3f} "
                  f"{row['total_ratio']:7.3f}")
    for layout in ("per-family", "mixed"):
        print(f"length rules, {layout} deployments: code requests found / true: independent pairing "
              f"{summary[f'by length, {layout}, indep.']['code']['total_ratio']:.3f}, antimonotone "
              f"{summary[f'by length, {layout}, anti.']['code']['total_ratio']:.3f}")
    print(json.dumps({"bench": "prom_ingest", "scale": a.scale, "minutes": a.minutes, "seeds": a.seeds, "at": a.at,
                      "summary": summary}))


if __name__ == "__main__":
    main()
