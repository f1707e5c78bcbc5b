#!/usr/bin/env python3
"""Compile time and peak memory of instance -> CompiledInstance on generated instances.

Targets (issue 3): (20,20,20) compiles in <= 0.5 s; (30,30,30) stays under 1 GB peak.
Peak memory is measured in a fresh child process (ru_maxrss), so imports are counted too,
and also as the numpy allocation peak of the compile alone (tracemalloc).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import tracemalloc

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))

from bench_doc import machine, md_table, update_section  # noqa: E402

CHILD = r"""
import json, resource, sys, time
from schemas import load_catalog
from solvers.compile import compile_instance
from solvers.generator import generate_instance
I, J, K, seed = map(int, sys.argv[1:5])
inst = generate_instance(load_catalog().model_dump(mode="json"), I, J, K, seed=seed, load=10.0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter(); ci = compile_instance(inst); dt = time.perf_counter() - t
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": dt, "rss_mb": after / 1024, "rss_before_mb": before / 1024,
                  "routes": ci.n_routes, "candidates": ci.n_cand}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    args = ap.parse_args()
    from schemas import load_catalog
    from solvers.compile import compile_instance
    from solvers.generator import generate_instance

    cat = load_catalog().model_dump(mode="json")
    rows, summary = [], {}
    for size, target in (((6, 6, 10), None), ((10, 10, 10), None), ((20, 20, 20), 0.5), ((30, 30, 30), None)):
        inst = generate_instance(cat, *size, seed=0, load=10.0)
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            ci = compile_instance(inst)
            times.append(time.perf_counter() - t)
        tracemalloc.start()
        compile_instance(inst)
        _cur, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        child = json.loads(subprocess.run([sys.executable, "-c", CHILD, *map(str, size), "0"],
                                          capture_output=True, text=True, check=True).stdout)
        med = statistics.median(times)
        key = "x".join(map(str, size))
        summary[key] = {"median_s": med, "numpy_peak_mb": peak / 2**20, "rss_mb": child["rss_mb"]}
        rows.append([key, ci.n_cand, ci.n_routes, f"{med * 1e3:.0f}", f"{min(times) * 1e3:.0f}",
                     f"{peak / 2**20:.0f}", f"{child['rss_mb']:.0f}",
                     f"{med / target:.2f}" if target else "-"])
        print(f"{key}: candidates={ci.n_cand} routes={ci.n_routes} median={med * 1e3:.0f} ms "
              f"min={min(times) * 1e3:.0f} ms numpy-peak={peak / 2**20:.0f} MB process-rss={child['rss_mb']:.0f} MB")
    table = md_table(["I x J x K", "candidates", "routes", "median ms", "min ms",
                      "compile numpy peak MB", "process peak RSS MB", "median / 0.5 s target"], rows)
    body = (f"## Compile (instance -> arrays)\n\n`python scripts/bench_compile.py` on {machine()}, "
            f"{args.repeats} repeats, generated instances (seed 0, load 10).\n\n{table}\n\n"
            "Targets: (20,20,20) <= 0.5 s; (30,30,30) < 1 GB peak (process RSS includes the Python "
            "runtime, numpy, scipy and the catalog).\n")
    if not args.no_doc:
        update_section("compile", body)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
