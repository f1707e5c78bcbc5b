"""Shared helpers of the study scripts: frozen-plan evaluation and docs/studies.md sections."""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

sys.path.insert(0, str(REPO / "scripts"))

from bench_doc import md_table, update_section  # noqa: E402,F401  (md_table: re-exported for the studies)
from solvers.compile import CompiledInstance  # noqa: E402
from solvers.plan_codec import cand_index, cand_key  # noqa: E402
from solvers.result import objective  # noqa: E402
from solvers.route_lp import route_lp  # noqa: E402

FIG = REPO / "docs" / "figures"
DOC = REPO / "docs" / "studies.md"
QUIET = "log_to_console = false"
STUDIES_HEADER = "# Studies\n\nReproductions of the paper's studies (arXiv 2604.07472) on our allocation model.\n"


def stressed(inst: dict, lat: float = 1.0, err: float = 1.0) -> dict:
    """The instance with every time of spec section 2 multiplied by `lat` and model errors
    multiplied by `err`: solvers.robust.with_margins, the same transformation robust
    planning plans on (kept under this name for the studies)."""
    from solvers.robust import with_margins

    return with_margins(inst, lat, err)


def realise(ci: CompiledInstance, replicas: np.ndarray, ci_eval: CompiledInstance | None = None,
            lam: np.ndarray | None = None) -> dict:
    """Frozen replicas (planned on `ci`) evaluated on `ci_eval` (e.g. a stressed compile)
    with routing re-optimised (the paper: placements fixed, routing adapts) and unserved
    traffic allowed but penalised. Returns realised $/h (GPUs + penalties) and the share of
    requests not served within their SLOs."""
    ev = ci if ci_eval is None else ci_eval
    idx = cand_index(ev)
    rep = np.zeros(ev.n_cand, dtype=np.int64)
    lost = 0.0  # GPUs of configurations with no feasible route any more: paid, useless
    for d in np.nonzero(replicas > 0)[0]:
        k = idx.get(cand_key(ci, int(d)))
        if k is None:
            lost += float(replicas[d] * ci.cand_cost[d])
        else:
            rep[k] += int(replicas[d])
    ps = replace(ev, max_unserved=np.ones(ev.n_qt))
    if lam is not None:
        ps = ps.with_demand(lam)
    x = route_lp(ps, rep)
    if x is None:
        x = np.zeros(ps.n_routes)
    served = np.bincount(ps.route_qt, weights=x, minlength=ps.n_qt)
    viol = float(np.sum(ps.lam * (1 - served)) / max(ps.lam.sum(), 1e-12))
    return {"cost": objective(ps, rep, x) + lost, "gpu": float(rep @ ps.cand_cost) + lost,
            "violation": max(viol, 0.0)}


def max_latency_of(inst: dict) -> np.ndarray:
    return np.array([q["max_latency_s"] for q in inst["query_types"]], dtype=np.float64)


def write_section(key: str, body: str) -> None:
    update_section(key, body, DOC, STUDIES_HEADER)
