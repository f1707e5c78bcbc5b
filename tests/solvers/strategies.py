"""Hypothesis strategies for random spec instances (small, but covering every branch of
the performance model: tp/pp limits, missing error entries, TTFT bounds, memory limits)."""
from __future__ import annotations

from hypothesis import strategies as st

PRECS = [{"id": "fp16", "bytes_per_param": 2.0, "error_multiplier": 1.0},
         {"id": "fp8", "bytes_per_param": 1.0, "error_multiplier": 1.05},
         {"id": "int4", "bytes_per_param": 0.5, "error_multiplier": 1.2}]


@st.composite
def instances(draw: st.DrawFn, max_qt: int = 3, max_models: int = 3, max_gpus: int = 3) -> dict:
    fl = lambda lo, hi: st.floats(lo, hi, allow_nan=False, allow_infinity=False)  # noqa: E731
    nq = draw(st.integers(1, max_qt))
    qts = [{"id": f"q{i}", "arrival_rate": draw(fl(0.0, 20.0)),
            "input_tokens": draw(st.integers(1, 8000)), "output_tokens": draw(st.integers(1, 1500)),
            "max_latency_s": draw(fl(0.2, 60.0)),
            "max_ttft_s": draw(st.none() | fl(0.01, 5.0)), "max_error": draw(fl(0.05, 0.6)),
            "max_unserved": draw(st.sampled_from([0.0, 0.0, 0.1, 1.0])),
            "unserved_penalty": draw(fl(0.0, 0.1)), "latency_penalty": draw(fl(0.0, 0.001))}
           for i in range(nq)]
    models = []
    for j in range(draw(st.integers(1, max_models))):
        heads = draw(st.sampled_from([1, 2, 4, 8]))
        models.append({
            "id": f"m{j}", "params_b": draw(fl(0.5, 120.0)), "n_layers": draw(st.integers(1, 96)),
            "d_model": draw(st.sampled_from([1024, 2048, 4096, 8192])), "n_kv_heads": heads,
            "head_dim": draw(st.sampled_from([64, 128])),
            "error": {q["id"]: draw(fl(0.01, 0.7)) for q in qts if draw(st.booleans()) or q is qts[0]},
        })
    gpus = []
    for t in range(draw(st.integers(1, max_gpus))):
        offered = draw(st.lists(st.sampled_from(["fp16", "fp8", "int4"]), min_size=1, max_size=3,
                                unique=True))
        base = draw(fl(20.0, 2000.0))
        gpus.append({"id": f"g{t}", "memory_gb": draw(fl(8.0, 192.0)),
                     "tflops": {p: base * {"fp16": 1, "fp8": 2, "int4": 1}[p] for p in offered},
                     "bandwidth_tbps": draw(fl(0.2, 8.0)), "link_gbps": draw(fl(16.0, 900.0)),
                     "link_latency_us": draw(fl(0.0, 20.0)),
                     "gpus_per_node": draw(st.sampled_from([1, 2, 4, 8])),
                     "price_per_hour": draw(fl(0.1, 6.0)),
                     "count": draw(st.none() | st.integers(0, 64))})
    return {"name": "hyp", "query_types": qts, "models": models, "gpus": gpus,
            "precisions": PRECS, "parallelism": {"tp": [1, 2, 4, 8], "pp": [1, 2, 4]},
            "budget_per_hour": draw(fl(1.0, 500.0)),
            "constants": {"max_batch": draw(st.sampled_from([1, 16, 64, 256]))}}
