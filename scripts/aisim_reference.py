#!/usr/bin/env python3
"""Write a reference measurement table with NVIDIA's aisimulate (optional, NOT a dependency).

aisimulate predicts vLLM step times from per-operation GPU measurements. It brings a ~1.5 GB
environment, so it lives in its own venv outside the repository:

    python3 -m venv /work/aisim-venv
    /work/aisim-venv/bin/pip install --only-binary=:all: aisimulate==0.13.0.dev202610130000000070
    /work/aisim-venv/bin/python scripts/aisim_reference.py -o docs/figures/fidelity_reference.csv

This script imports nothing from llmfleet. Per (model, GPU, precision, tp) configuration and
workload (code 2048/28, conversation 1155/211) it records, in the measurement-table format
`llmfleet calibrate` reads:
  * batch 1:  ttft_s  = static single-request prefill (vLLM backend, `run_static`, batch 1);
  * batch b:  tpot_s  = static decode step at batch b (`run_static`, batch b),
              latency_s = mean request latency of aggregated continuous batching at
              concurrency b with one prompt per prefill step (`run_agg`, ctx_tokens = isl),
              which is what L(b) of spec section 2 models.
"""
from __future__ import annotations

import argparse
import csv
import logging
import sys
import time

logging.disable(logging.WARNING)

# (catalog model id, HF path)
MODELS = {"llama-3.1-8b-instruct": "meta-llama/Meta-Llama-3.1-8B",
          "llama-3.1-70b-instruct": "meta-llama/Meta-Llama-3.1-70B"}
# (catalog GPU id, aisimulate system)
SYSTEMS = {"H100-SXM": "h100_sxm", "H200-SXM": "h200_sxm", "B200": "b200_sxm",
           "A100-80G-SXM": "a100_sxm", "L40S": "l40s"}
CONFIGS = [  # model, gpu, precision, tp
    ("llama-3.1-8b-instruct", "H100-SXM", "fp16", 1), ("llama-3.1-8b-instruct", "H100-SXM", "fp8", 1),
    ("llama-3.1-8b-instruct", "H100-SXM", "fp16", 2),
    ("llama-3.1-8b-instruct", "H200-SXM", "fp16", 1), ("llama-3.1-8b-instruct", "H200-SXM", "fp8", 1),
    ("llama-3.1-8b-instruct", "B200", "fp16", 1), ("llama-3.1-8b-instruct", "B200", "fp8", 1),
    ("llama-3.1-8b-instruct", "A100-80G-SXM", "fp16", 1), ("llama-3.1-8b-instruct", "A100-80G-SXM", "fp16", 2),
    ("llama-3.1-8b-instruct", "L40S", "fp16", 1), ("llama-3.1-8b-instruct", "L40S", "fp8", 1),
    ("llama-3.1-8b-instruct", "L40S", "fp16", 2), ("llama-3.1-8b-instruct", "L40S", "fp8", 4),
    ("llama-3.1-8b-instruct", "L40S", "fp16", 8),
    ("llama-3.1-70b-instruct", "H100-SXM", "fp16", 4), ("llama-3.1-70b-instruct", "H100-SXM", "fp8", 2),
    ("llama-3.1-70b-instruct", "H100-SXM", "fp16", 8),
    ("llama-3.1-70b-instruct", "H200-SXM", "fp16", 4), ("llama-3.1-70b-instruct", "H200-SXM", "fp8", 2),
    ("llama-3.1-70b-instruct", "B200", "fp16", 2), ("llama-3.1-70b-instruct", "B200", "fp8", 1),
    ("llama-3.1-70b-instruct", "A100-80G-SXM", "fp16", 4), ("llama-3.1-70b-instruct", "A100-80G-SXM", "fp16", 8),
    ("llama-3.1-70b-instruct", "L40S", "fp8", 4), ("llama-3.1-70b-instruct", "L40S", "fp16", 8),
    ("llama-3.1-70b-instruct", "L40S", "fp8", 8),
]
WORKLOADS = [(2048, 28), (1155, 211)]
BATCHES = (1, 8, 32)
FIELDS = ["model", "gpu", "precision", "tp", "pp", "batch", "input_tokens", "output_tokens",
          "ttft_s", "tpot_s", "latency_s", "source"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--version", default="current", help="vLLM version of aisimulate's data")
    args = ap.parse_args()
    from aisimulate.sdk import config
    from aisimulate.sdk.backends.factory import get_backend
    from aisimulate.sdk.models import get_model
    from aisimulate.sdk.perf_database import get_database
    from aisimulate_core.quantization import GEMMQuantMode

    import aisimulate
    backend = get_backend("vllm")
    rows = []
    t0 = time.time()
    for model_id, gpu, prec, tp in CONFIGS:
        db = get_database(SYSTEMS[gpu], "vllm", args.version)
        quant = GEMMQuantMode.fp8 if prec == "fp8" else GEMMQuantMode.bfloat16
        model = get_model(MODELS[model_id], config.ModelConfig(tp_size=tp, pp_size=1, gemm_quant_mode=quant), "vllm")
        src = f"aisimulate {getattr(aisimulate, '__version__', '0.13.0.dev202610130000000070')} vllm {db.version} {SYSTEMS[gpu]}"
        for isl, osl in WORKLOADS:
            for b in BATCHES:
                rc = config.RuntimeConfig(batch_size=b, isl=isl, osl=osl)
                backend._agg_cache.clear()  # keyed by shapes only, not by model or GPU
                st = backend.run_static(model, db, rc, "static", 32, 1.0).get_summary_df().iloc[0]
                ag = backend.run_agg(model, db, rc, ctx_tokens=isl).get_summary_df().iloc[0]
                if bool(st.get("is_oom", False)) or bool(ag.get("is_oom", False)):
                    print(f"skip (OOM) {model_id} {gpu} {prec} tp{tp} b{b}", file=sys.stderr)
                    continue
                rows.append({"model": model_id, "gpu": gpu, "precision": prec, "tp": tp, "pp": 1, "batch": b,
                             "input_tokens": isl, "output_tokens": osl,
                             "ttft_s": f"{st['ttft'] / 1e3:.6g}" if b == 1 else "",
                             "tpot_s": f"{st['tpot'] / 1e3:.6g}",
                             "latency_s": f"{ag['request_latency'] / 1e3:.6g}", "source": src})
        print(f"{model_id} {gpu} {prec} tp{tp}: {time.time() - t0:.0f} s", file=sys.stderr)
    with open(args.output, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    print(f"{len(rows)} rows -> {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
