#!/usr/bin/env python3
"""Fidelity of the route model against a measurement table, before and after calibration.

    python scripts/bench_fidelity.py [TABLE.csv] [--holdout-model M ...] [--no-doc]

TABLE defaults to docs/figures/fidelity_reference.csv (aisimulate's vLLM predictions, see
scripts/aisim_reference.py). Ratios are llmfleet / reference per measured number (TTFT of
one request, time per output token at batch b, latency L(b)). Variants, all in this process:

* pre-#16: no per-GPU constants and the PCIe cards' line-rate link (32 GB/s, 10 us), the
  model issue 16 measured;
* uncalibrated: no per-GPU constants, the catalog's effective PCIe all-reduce figures;
* calibrated: per-GPU constants fitted (solvers/calibration.py) on the training rows only,
  reported on the held-out rows (whole models held out: the fit never sees them) and on all;
* calibrated + allreduce_table: the same, with the richer all-reduce model (fitted under it);
* bundled catalog: the catalog as shipped, with the spec model and with allreduce_table (its
  constants were fitted on every row, so these are in-sample figures).

Prints per-configuration ratios of the held-out rows, the summaries, and a JSON last line;
updates docs/fidelity.md (between markers) unless --no-doc.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_doc import DOCS, machine, md_table, update_section  # noqa: E402

from controller.offline.measurements import read_measurements  # noqa: E402
from schemas import load_catalog  # noqa: E402
from solvers.calibration import QUANTITIES, apply_constants, evaluate, fit_constants  # noqa: E402

FIDELITY_MD = DOCS / "fidelity.md"
HEADER = "# Fidelity of the performance model\n\nFigures written by `scripts/bench_fidelity.py`.\n"


def strip_calibration(inst: dict[str, Any], line_rate_pcie: bool = False) -> dict[str, Any]:
    out = copy.deepcopy(inst)
    for g in out["gpus"]:
        g.pop("constants", None)
        g.pop("constants_by_precision", None)
        if line_rate_pcie and g["link_gbps"] < 32:  # the PCIe cards' effective figures (issue 16)
            g["link_gbps"], g["link_latency_us"] = 32.0, 10.0
    return out


def with_fit(inst: dict[str, Any], fitted: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(inst)
    out["gpus"] = apply_constants(out["gpus"], fitted, "bench")
    for g in out["gpus"]:
        g.pop("sources", None)
    return out


def summary(ratios: Any, cells: Any, keep: Any = None) -> dict[str, Any]:
    import numpy as np

    idx = [k for k, c in enumerate(cells) if keep is None or keep(c)]
    from solvers.calibration import CellRatios

    return CellRatios(np.asarray(ratios.ratio)[idx]).summary([cells[k] for k in idx])


def fmt(s: dict[str, Any]) -> list[str]:
    out = []
    for q in QUANTITIES:
        v = s.get(q)
        out.append("-" if v is None else f"{v['median']:.2f} / {v['worst']:.2f} / {100 * v['within_10pct']:.0f} % "
                                         f"/ {100 * v['within_25pct']:.0f} %")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("table", nargs="?", default=str(ROOT / "docs/figures/fidelity_reference.csv"))
    ap.add_argument("--holdout-model", action="append", default=None,
                    help="model ids the fit never sees (default: llama-3.1-70b-instruct)")
    ap.add_argument("--holdout", action="append", default=None, metavar="FIELD=VALUE",
                    help="hold out rows whose FIELD equals VALUE instead (e.g. input_tokens=1155, gpu=B200)")
    ap.add_argument("--catalog", default=None)
    ap.add_argument("--no-doc", action="store_true")
    args = ap.parse_args()
    rules = [tuple(h.split("=", 1)) for h in args.holdout or []]
    if any(len(r) != 2 for r in rules):
        raise SystemExit("--holdout takes FIELD=VALUE")
    if not rules:
        rules = [("model", m) for m in args.holdout_model or ["llama-3.1-70b-instruct"]]
    holdout = {f"{k}={v}" for k, v in rules}
    is_held = lambda r: any(str(getattr(r, k)).rstrip("0").rstrip(".") == v.rstrip("0").rstrip(".")  # noqa: E731
                            for k, v in rules)
    t0 = time.perf_counter()
    rows = read_measurements(args.table)
    train = [r for r in rows if not is_held(r)]
    test_rows = [r for r in rows if is_held(r)]
    if not train or not test_rows:
        raise SystemExit("the holdout must leave rows on both sides")
    cat = load_catalog(args.catalog)
    bundled = cat.to_instance().to_spec()
    base = strip_calibration(bundled)
    variants: dict[str, dict[str, Any]] = {"pre-#16": strip_calibration(bundled, line_rate_pcie=True),
                                           "uncalibrated": base}
    fit = fit_constants(base, train)
    variants["calibrated"] = with_fit(base, fit.gpus)
    rich = dict(base, performance_model="allreduce_table")
    fit_rich = fit_constants(rich, train)
    variants["calibrated + allreduce_table"] = with_fit(rich, fit_rich.gpus)
    variants["bundled catalog (in-sample)"] = bundled
    variants["bundled + allreduce_table (in-sample)"] = dict(bundled, performance_model="allreduce_table")
    results: dict[str, Any] = {}
    held = lambda c: is_held(rows[c.row])  # noqa: E731
    pcie = lambda c: rows[c.row].gpu == "L40S" and rows[c.row].tp > 1  # noqa: E731
    per_cell: dict[str, Any] = {}
    for name, inst in variants.items():
        cells, ratios = evaluate(inst, rows)
        per_cell[name] = (cells, ratios)
        results[name] = {"all": summary(ratios, cells), "held_out": summary(ratios, cells, held),
                         "pcie_tp": summary(ratios, cells, pcie),
                         "pcie_tp_held_out": summary(ratios, cells, lambda c: pcie(c) and held(c))}
    # per-configuration ratios of the held-out rows, calibrated (spec model) vs pre-#16
    cells, cal = per_cell["calibrated"]
    _, pre = per_cell["pre-#16"]
    _, rich_r = per_cell["calibrated + allreduce_table"]
    by_cfg: dict[str, dict[str, list[str]]] = {}
    for k, c in enumerate(cells):
        if not held(c):
            continue
        key = c.config
        by_cfg.setdefault(key, {})[c.quantity] = [f"{pre.ratio[k]:.2f}", f"{cal.ratio[k]:.2f}", f"{rich_r.ratio[k]:.2f}"]
    cfg_rows = [[cfg] + [" → ".join(v.get(q, ["-"])) for q in QUANTITIES] for cfg, v in sorted(by_cfg.items())]
    head = ["variant", "rows", "TTFT median / worst / ±10 % / ±25 %", "TPOT(b) ...", "L(b) ..."]
    summary_rows = []
    for name in variants:
        for part in ("held_out", "all", "pcie_tp_held_out"):
            summary_rows.append([name, part] + fmt(results[name][part]))
    print(md_table(head, summary_rows))
    print()
    print(md_table(["held-out configuration (pre-#16 → calibrated → + allreduce_table)", "TTFT", "TPOT(b)", "L(b)"],
                   cfg_rows))
    fitted = {g: v["constants"] | {"by_precision": v["constants_by_precision"]} for g, v in fit.gpus.items()}
    secs = time.perf_counter() - t0
    if not args.no_doc:
        body = "\n".join([
            f"Reference: `{Path(args.table).name}` ({len(rows)} rows, {len(per_cell['calibrated'][0])} measured "
            f"numbers). Fit on every row but {', '.join(sorted(holdout))} ({len(train)} rows); "
            f"held-out rows: {len(test_rows)}. Ratio = llmfleet / reference; cells: median / worst (furthest "
            "from 1) / share within ±10 % / share within ±25 %. `pcie_tp_held_out`: L40S with TP > 1 of the held-out model.",
            "", md_table(head, summary_rows), "",
            "Constants fitted on the training rows (spec model):", "",
            md_table(["GPU", "compute_efficiency", "bandwidth_efficiency", "step_overhead_s", "by precision"],
                     [[g, v["compute_efficiency"], v["bandwidth_efficiency"], v["step_overhead_s"],
                       json.dumps(v["by_precision"]) if v["by_precision"] else "-"] for g, v in fitted.items()]),
            "", "Per held-out configuration (ratios pre-#16 → calibrated → calibrated + allreduce_table):", "",
            md_table(["configuration", "TTFT", "TPOT(b)", "L(b)"], cfg_rows), "",
            f"{secs:.1f} s on {machine()} (shared machine)."])
        update_section("fidelity", body, FIDELITY_MD, HEADER)
        short = [r for r in summary_rows if r[1] in ("held_out", "pcie_tp_held_out")]
        update_section("fidelity_summary", "\n".join([
            "## Fidelity of the performance model (scripts/bench_fidelity.py)", "",
            f"Ratio llmfleet / reference ({Path(args.table).name}: aisimulate's vLLM predictions) on the held-out "
            f"rows ({', '.join(sorted(holdout))}), fit on the others; median / worst / ±10 % / ±25 %. "
            "Full tables and the per-configuration ratios: docs/fidelity.md.", "",
            md_table(head, short), "", f"{secs:.1f} s on {machine()} (shared machine)."]))
    print(json.dumps({"table": Path(args.table).name, "rows": len(rows), "holdout": sorted(holdout),
                      "results": results, "fitted": fitted, "seconds": secs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
