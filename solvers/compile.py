"""Compile an instance (spec JSON dict) into arrays of deployment candidates and feasible routes.

A *candidate* is a deployment configuration d = (model, GPU, precision, tp, pp); a *route*
is a (query type, candidate) pair that is feasible under shared/spec/model.md section 2.
Everything the solvers need is here as numpy arrays; ids map back through the tuples
(the "inverse data"). Performance is computed for all routes and all batch sizes at once,
in row chunks so that memory stays bounded on large instances.

`CompileCache` compiles a stream of instances (one per demand window): a query type's routes
depend on nothing but the fleet and that query type's tokens and bounds, so they are kept per
query type and only the query types whose token buckets moved are recompiled.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import numpy as np

from ._typing import FloatArray, IntArray

DEFAULT_CONSTANTS: dict[str, float] = {
    "compute_efficiency": 0.5, "bandwidth_efficiency": 0.7, "step_overhead_s": 0.003,
    "memory_utilization": 0.9, "max_batch": 256, "max_utilization": 0.85,
}
_CHUNK_CELLS = 1 << 21  # routes x batch sizes evaluated at once (~16 MB per float array)
_T = TypeVar("_T")


@dataclass(frozen=True)
class QueryDiagnostics:
    """Why a query type may have no feasible route: best values over every configuration."""

    has_model: bool            # some model has an error entry for it
    fits_memory: bool          # some configuration holds weights + one request's KV cache
    best_ttft_s: float         # smallest prefill time among memory-fitting configurations
    best_latency_s: float      # smallest single-request latency L(1) among them
    best_error: float          # smallest route error over models and offered precisions


@dataclass(frozen=True)
class CompiledInstance:
    """Arrays of one instance. Index spaces: i query types, d candidates, r routes, t GPUs."""

    name: str
    qt_ids: tuple[str, ...]
    model_ids: tuple[str, ...]
    gpu_ids: tuple[str, ...]
    prec_ids: tuple[str, ...]
    # query types [i]
    lam: FloatArray
    max_error: FloatArray
    max_ttft: FloatArray         # inf where unbounded
    max_latency: FloatArray
    max_unserved: FloatArray
    unserved_penalty: FloatArray
    latency_penalty: FloatArray
    # candidates [d] (only those with at least one feasible route)
    cand_model: IntArray
    cand_gpu: IntArray
    cand_prec: IntArray
    cand_tp: IntArray
    cand_pp: IntArray
    cand_ngpu: IntArray          # GPUs per replica = tp * pp
    cand_cost: FloatArray        # $/h per replica
    # routes [r], sorted by (query type, candidate)
    route_qt: IntArray
    route_cand: IntArray
    mu: FloatArray               # requests/s per replica at the operating point
    latency: FloatArray          # L at the operating point, s
    ttft: FloatArray             # prefill time T_pre, s
    error: FloatArray            # route error e_id
    batch: IntArray              # operating batch size b*
    # GPUs [t]
    gpu_price: FloatArray
    gpu_count: FloatArray        # inf where unlimited
    budget: float
    max_utilization: float
    latency_coef: FloatArray = field(repr=False)  # [r, 7]: (k0..k4, T_pre, f) of L(b), see latency_curve
    diagnostics: tuple[QueryDiagnostics, ...] = field(repr=False)
    qt_route_start: IntArray = field(repr=False)  # routes of qt i are [start[i], start[i+1])
    # lookups derived from the arrays, shared by copies that keep them (with_demand): see derived()
    _derived: dict[str, tuple[tuple[Any, ...], Any]] = field(
        default_factory=dict, repr=False, compare=False)

    @property
    def n_qt(self) -> int:
        return len(self.qt_ids)

    @property
    def n_cand(self) -> int:
        return len(self.cand_cost)

    @property
    def n_routes(self) -> int:
        return len(self.mu)

    @property
    def load_coef(self) -> FloatArray:
        """Replica-seconds per second of route r per unit fraction: lam_i / mu_r."""
        return self.lam[self.route_qt] / self.mu

    def routes_of(self, i: int) -> IntArray:
        return np.arange(self.qt_route_start[i], self.qt_route_start[i + 1])

    def with_demand(self, lam: FloatArray | Mapping[str, float]) -> CompiledInstance:
        """Same compiled arrays, new arrival rates (nothing in section 2 depends on them)."""
        if isinstance(lam, Mapping):
            vec = self.lam.copy()
            for q, v in lam.items():
                vec[self.qt_ids.index(q)] = float(v)
            lam = vec
        arr = np.asarray(lam, dtype=np.float64)
        if arr.shape != self.lam.shape or not np.all(np.isfinite(arr)) or np.any(arr < 0):
            raise ValueError("demand must be a finite, non-negative vector, one rate per query type")
        return replace(self, lam=arr)

    def derived(self, name: str, build: Callable[[], _T]) -> _T:
        """`build()` once per set of candidate and route arrays: copies made by `with_demand`
        share the value, copies with other arrays (dataclasses.replace, subproblem.restrict)
        rebuild it. For read-only lookups (plan_codec's index dicts); the value must not be mutated."""
        basis = (self.qt_ids, self.cand_model, self.cand_gpu, self.cand_prec, self.cand_tp,
                 self.cand_pp, self.route_qt, self.route_cand)
        got = self._derived.get(name)
        if got is not None and len(got[0]) == len(basis) and all(a is b for a, b in zip(got[0], basis)):
            return got[1]
        value = build()
        self._derived[name] = (basis, value)
        return value

    def latency_curve(self, r: int, b: FloatArray | float) -> FloatArray:
        """L(b) of route r at batch sizes b (continuous batching below the operating point)."""
        coef = tuple(self.latency_coef[[r], k] for k in range(7))
        bb = np.atleast_1d(np.asarray(b, dtype=np.float64))[None, :]
        return _latency(bb, np.array([0]), coef)[0]

    def tpot_curve(self, r: int, b: FloatArray | float) -> FloatArray:
        """t_tok(b) of route r (time per output token with b requests in flight)."""
        return tpot_from_coef(self.latency_coef[r], b)

    def describe_cand(self, d: int) -> str:
        return (f"{self.model_ids[self.cand_model[d]]}@{self.gpu_ids[self.cand_gpu[d]]}/"
                f"{self.prec_ids[self.cand_prec[d]]} tp{self.cand_tp[d]} pp{self.cand_pp[d]}")


PER_GPU_KEYS = ("compute_efficiency", "bandwidth_efficiency", "step_overhead_s")


def _const(inst: Mapping[str, Any]) -> dict[str, float]:
    return {**DEFAULT_CONSTANTS, **(inst.get("constants") or {})}


def gpu_constants(base: Mapping[str, float], gpu: Mapping[str, Any], prec_id: str) -> dict[str, float]:
    """The constants of a route on `gpu` at precision `prec_id` (spec section 1): the instance's
    `base`, overridden by `gpu["constants"]`, overridden by `gpu["constants_by_precision"][prec_id]`.
    Only the three per-GPU keys are read from the GPU; anything else there is ignored."""
    out = dict(base)
    for layer in (gpu.get("constants") or {}, (gpu.get("constants_by_precision") or {}).get(prec_id) or {}):
        out.update({k: float(v) for k, v in layer.items() if k in PER_GPU_KEYS and v is not None})
    return out


def allreduce_link(gpu: Mapping[str, Any], tp: int, model: str) -> tuple[float, float]:
    """(bytes/s, seconds) of the all-reduce term ar(M) = alpha + 2(tp-1)/tp M / Link for `tp`.

    `model == "spec"`: the GPU's link_gbps and link_latency_us (spec section 2). The richer
    `allreduce_table` model reads the GPU's `allreduce_by_tp[tp]` (nccl-tests busbw and
    small-message time at that degree) when it has one: on PCIe cards both move with tp, which
    one link figure per GPU cannot express. Without an entry it falls back to the spec figures.
    """
    if model == "allreduce_table":
        row = (gpu.get("allreduce_by_tp") or {}).get(tp)
        if row is None:
            row = (gpu.get("allreduce_by_tp") or {}).get(str(tp))
        if row is not None:
            return float(row["busbw_gbps"]) * 1e9, float(row["latency_us"]) * 1e-6
    elif model != "spec":
        raise ValueError(f"unknown performance_model {model!r}: 'spec' or 'allreduce_table'")
    return float(gpu["link_gbps"]) * 1e9, float(gpu["link_latency_us"]) * 1e-6


def compile_instance(inst: Mapping[str, Any]) -> CompiledInstance:
    """Compile the spec instance dict; routes agree with shared/spec/check_plan.py to ~1e-12."""
    fleet = _fleet(inst)
    return _assemble(inst, fleet, [_routes(fleet, inst["query_types"])])


class CompileCache:
    """`compile_instance` with memory, for callers that compile a stream of similar instances.

    A query type's routes depend only on the fleet (models, GPUs, precisions, parallelism,
    constants) and on that query type's id, token counts and latency/TTFT bounds. So routes
    are compiled and kept per query type, and an instance whose token means moved for one
    query type recompiles that query type only. The result is field for field the array
    set `compile_instance` returns (the route model is elementwise, so computing it in
    smaller blocks changes no bit). Not thread-safe: one caller at a time.
    """

    def __init__(self, max_query_types: int = 128, max_assembled: int = 8, max_fleets: int = 2) -> None:
        self._fleets: OrderedDict[str, _Fleet] = OrderedDict()
        self._routes: OrderedDict[tuple[str, str], _Routes] = OrderedDict()
        self._assembled: OrderedDict[tuple[str, ...], CompiledInstance] = OrderedDict()
        self._limits = (max_fleets, max_query_types, max_assembled)
        self.compiled = 0   # query-type route blocks computed
        self.reused = 0     # query-type route blocks found in memory

    def __call__(self, inst: Mapping[str, Any]) -> CompiledInstance:
        fkey = repr({k: v for k, v in inst.items() if k not in _PER_INSTANCE})
        qkeys = [repr({k: q.get(k) for k in _ROUTE_FIELDS}) for q in inst["query_types"]]
        akey = (fkey, *qkeys)
        core = _lru_get(self._assembled, akey)
        if core is None:
            fleet = _lru_get(self._fleets, fkey)
            if fleet is None:
                fleet = _lru_put(self._fleets, fkey, _fleet(inst), self._limits[0])
            blocks = []
            for q, qkey in zip(inst["query_types"], qkeys):
                block = _lru_get(self._routes, (fkey, qkey))
                if block is None:
                    self.compiled += 1
                    block = _lru_put(self._routes, (fkey, qkey), _routes(fleet, [q]), self._limits[1])
                else:
                    self.reused += 1
                blocks.append(block)
            core = _lru_put(self._assembled, akey, _assemble(inst, fleet, blocks), self._limits[2])
        else:
            self.reused += len(qkeys)
        return replace(core, **_query_type_vectors(inst))


_PER_INSTANCE = ("name", "query_types", "budget_per_hour")  # not part of the fleet
_ROUTE_FIELDS = ("id", "input_tokens", "output_tokens", "max_latency_s", "max_ttft_s")  # all a route reads


def _lru_get(cache: OrderedDict[Any, Any], key: Any) -> Any:
    value = cache.get(key)
    if value is not None:
        cache.move_to_end(key)
    return value


def _lru_put(cache: OrderedDict[Any, Any], key: Any, value: Any, limit: int) -> Any:
    cache[key] = value
    while len(cache) > limit:
        cache.popitem(last=False)
    return value


def _query_type_vectors(inst: Mapping[str, Any]) -> dict[str, Any]:
    """The CompiledInstance fields read from the query types that no route depends on."""
    qts = inst["query_types"]
    col = lambda k, default=None: np.array([q[k] if default is None else q.get(k, default)  # noqa: E731
                                            for q in qts], dtype=np.float64)
    return {"name": str(inst.get("name", "instance")), "lam": col("arrival_rate"),
            "max_error": col("max_error"), "max_unserved": col("max_unserved", 0.0),
            "unserved_penalty": col("unserved_penalty", 0.0),
            "latency_penalty": col("latency_penalty", 0.0), "budget": float(inst["budget_per_hour"])}


@dataclass(frozen=True)
class _Fleet:
    """Everything compiled from an instance but its query types: the candidates (every
    allowed (model, GPU, precision, tp, pp)) and the per-model / per-GPU arrays routes read."""

    c: dict[str, float]
    model_ids: tuple[str, ...]
    gpu_ids: tuple[str, ...]
    prec_ids: tuple[str, ...]
    model_error: tuple[dict[str, Any], ...]  # per model: query type id -> error rate
    cj: IntArray
    ct: IntArray
    cq: IntArray
    ctp: IntArray
    cpp: IntArray
    P_m: FloatArray
    Ln_m: FloatArray
    D_m: FloatArray
    kv_m: FloatArray
    bpp_q: FloatArray
    emul_q: FloatArray
    F_c: FloatArray              # [candidate] compute rate with its (GPU, precision) constants
    BW_c: FloatArray             # [candidate] memory bandwidth with its constants
    o_c: FloatArray              # [candidate] step overhead
    arlink_c: FloatArray         # [candidate] all-reduce bandwidth (Link of ar(M))
    aralpha_c: FloatArray        # [candidate] all-reduce latency (alpha of ar(M))
    link_t: FloatArray
    alpha_t: FloatArray
    mem_t: FloatArray
    price_t: FloatArray
    count_t: FloatArray


@dataclass(frozen=True)
class _Routes:
    """Feasible routes of some query types, in (query type, candidate) order; `qt` counts
    from 0 within the block and `cand` indexes the fleet's full candidate list."""

    n_qt: int
    qt: IntArray
    cand: IntArray
    mu: FloatArray
    latency: FloatArray
    ttft: FloatArray
    error: FloatArray
    batch: IntArray
    coef: FloatArray  # [r, 7]
    diagnostics: tuple[QueryDiagnostics, ...]


def _fleet(inst: Mapping[str, Any]) -> _Fleet:
    c = _const(inst)
    models, gpus, precs = inst["models"], inst["gpus"], inst["precisions"]
    par = inst["parallelism"]
    prec_index = {p["id"]: k for k, p in enumerate(precs)}
    rows = []
    for j, m in enumerate(models):
        for t, g in enumerate(gpus):
            for q_id in g["tflops"]:
                if q_id not in prec_index:
                    continue
                for tp in par["tp"]:
                    if tp > g["gpus_per_node"]:
                        continue
                    for pp in par["pp"]:
                        if pp <= m["n_layers"]:
                            rows.append((j, t, prec_index[q_id], tp, pp))
    cand = np.array(rows, dtype=np.int64).reshape(-1, 5)
    cj, ct, cq, ctp, cpp = (cand[:, k] for k in range(5))
    fl = lambda seq, key: np.array([x[key] for x in seq], dtype=np.float64)  # noqa: E731
    # per (GPU, precision) constants (spec section 1), then per candidate
    tier = {(t, q): gpu_constants(c, gpus[t], precs[q]["id"]) for t, q in set(zip(ct.tolist(), cq.tolist()))}
    per_c = lambda key: np.array([tier[t, q][key] for t, q in zip(ct, cq)], dtype=np.float64)  # noqa: E731
    perf_model = str(inst.get("performance_model") or "spec")
    links = {(t, tp): allreduce_link(gpus[t], tp, perf_model) for t, tp in set(zip(ct.tolist(), ctp.tolist()))}
    return _Fleet(
        c=c, model_ids=tuple(m["id"] for m in models), gpu_ids=tuple(g["id"] for g in gpus),
        prec_ids=tuple(p["id"] for p in precs),
        model_error=tuple(dict(m.get("error") or {}) for m in models),
        cj=cj, ct=ct, cq=cq, ctp=ctp, cpp=cpp,
        P_m=fl(models, "params_b") * 1e9, Ln_m=fl(models, "n_layers"), D_m=fl(models, "d_model"),
        kv_m=2 * fl(models, "n_layers") * fl(models, "n_kv_heads") * fl(models, "head_dim") * 2,
        bpp_q=fl(precs, "bytes_per_param"), emul_q=fl(precs, "error_multiplier"),
        F_c=np.array([gpus[t]["tflops"][precs[q]["id"]] for t, q in zip(ct, cq)], dtype=np.float64)
        * 1e12 * per_c("compute_efficiency"),
        BW_c=fl(gpus, "bandwidth_tbps")[ct] * 1e12 * per_c("bandwidth_efficiency"),
        o_c=per_c("step_overhead_s"),
        arlink_c=np.array([links[t, tp][0] for t, tp in zip(ct.tolist(), ctp.tolist())], dtype=np.float64),
        aralpha_c=np.array([links[t, tp][1] for t, tp in zip(ct.tolist(), ctp.tolist())], dtype=np.float64),
        link_t=fl(gpus, "link_gbps") * 1e9, alpha_t=fl(gpus, "link_latency_us") * 1e-6,
        mem_t=fl(gpus, "memory_gb"), price_t=fl(gpus, "price_per_hour"),
        count_t=np.array([np.inf if g.get("count") is None else g["count"] for g in gpus], dtype=np.float64),
    )


def _routes(fleet: _Fleet, qts: Sequence[Mapping[str, Any]]) -> _Routes:
    """The route model of spec section 2 for every (query type, candidate) pair of `qts`."""
    c = fleet.c
    cj, ct, cq, ctp, cpp = fleet.cj, fleet.ct, fleet.cq, fleet.ctp, fleet.cpp
    h_i = np.array([q["input_tokens"] for q in qts], dtype=np.float64)
    f_i = np.array([q["output_tokens"] for q in qts], dtype=np.float64)
    maxlat_i = np.array([q["max_latency_s"] for q in qts], dtype=np.float64)
    maxttft_i = np.array([np.inf if q.get("max_ttft_s") is None else q["max_ttft_s"] for q in qts])
    err = np.full((len(qts), len(fleet.model_ids)), np.nan)
    qt_index = {q["id"]: i for i, q in enumerate(qts)}
    for j, errors in enumerate(fleet.model_error):
        for q_id, e in errors.items():
            if q_id in qt_index:
                err[qt_index[q_id], j] = e

    # ---- all (i, d) pairs where the model can serve the query type ---------------------------
    ii, dd = np.nonzero(~np.isnan(err[:, cj]))
    j, t, q = cj[dd], ct[dd], cq[dd]
    tp, pp = ctp[dd].astype(np.float64), cpp[dd].astype(np.float64)
    P, Ln, D, kv = fleet.P_m[j], fleet.Ln_m[j], fleet.D_m[j], fleet.kv_m[j]
    h, f = h_i[ii], f_i[ii]
    F, BW, link, alpha = fleet.F_c[dd], fleet.BW_c[dd], fleet.link_t[t], fleet.alpha_t[t]
    ar_link = fleet.arlink_c[dd]
    W = P * fleet.bpp_q[q]
    o = fleet.o_c[dd]
    ar_scale = np.where(tp == 1, 0.0, 2 * (tp - 1) / tp)
    ar_alpha = np.where(tp == 1, 0.0, fleet.aralpha_c[dd])
    t_pre = 2 * P * h / (tp * F) + 2 * Ln * (ar_alpha + ar_scale * (2 * h * D) / ar_link) \
        + (pp - 1) * (alpha + 2 * h * D / link) + o
    b_max = memory_batch_limit(fleet.mem_t[t], c, tp, pp, W, h + f, kv)
    ttft_ok = t_pre <= maxttft_i[ii]
    error_r = np.minimum(1.0, err[ii, j] * fleet.emul_q[q])

    # ---- operating point over batch sizes, chunked ----------------------------------------------
    # t_tok(b) = max(k0 + k1 b, k2 b) + k3 + k4 b: fold every per-route constant once, so the
    # (route x batch) cells cost a handful of flops each.
    ctx = h + f / 2
    k0 = W / (tp * BW)
    k1 = ctx * kv / (pp * tp * BW)
    k2 = 2 * P / (pp * tp * F)
    k3 = 2 * Ln * ar_alpha + (pp - 1) * alpha + o
    k4 = 2 * Ln * ar_scale * 2 * D / (pp * ar_link)
    coef = (k0, k1, k2, k3, k4, t_pre, f)
    best_b = np.zeros(len(ii), dtype=np.int64)
    best_L = np.full(len(ii), np.inf)
    lat1 = np.full(len(ii), np.inf)
    fit = np.nonzero(b_max >= 1)[0]
    if len(fit):  # single-request latency, for infeasibility diagnostics
        lat1[fit] = _latency(np.ones((1, 1)), fit, coef)[:, 0]
    live = np.nonzero((b_max >= 1) & ttft_ok & (lat1 <= maxlat_i[ii]))[0]
    # L(b) is nondecreasing in b (dS/db >= T_pre and L >= T_pre), so the batch sizes meeting
    # max_latency are a prefix 1..b_lat: find it by bisection, then scan only that prefix.
    lo, hi = np.ones(len(live), dtype=np.int64), b_max[live].copy()
    cap_lat = maxlat_i[ii[live]]
    while np.any(lo < hi):
        mid = (lo + hi + 1) // 2
        ok = _latency_at(mid.astype(np.float64), live, coef) <= cap_lat
        lo = np.where(ok, mid, lo)
        hi = np.where(ok, hi, mid - 1)
    width_of = np.zeros(len(ii), dtype=np.int64)
    width_of[live] = lo
    live = live[np.argsort(lo, kind="stable")]  # similar widths share a chunk
    rows_n = max(1, _CHUNK_CELLS // int(width_of[live[-1]])) if len(live) else 1
    for s in range(0, len(live), rows_n):
        idx = live[s:s + rows_n]
        width = int(width_of[idx[-1]])
        b = np.arange(1, width + 1, dtype=np.float64)[None, :]
        L = _latency(b, idx, coef)
        mu = b / L
        mu[b > width_of[idx, None]] = -np.inf
        top = mu.max(axis=1)
        # ties go to the smaller b (first b within 1e-12 relative of the best)
        pick = np.argmax(mu * (1 + 1e-12) >= top[:, None], axis=1)
        best_b[idx] = pick + 1
        best_L[idx] = L[np.arange(len(idx)), pick]
    best_mu = np.zeros(len(ii))
    best_mu[best_b > 0] = best_b[best_b > 0] / best_L[best_b > 0]

    # ---- keep the feasible routes, in (query type, candidate) order -----------------------------
    keep = np.nonzero(best_b > 0)[0]
    keep = keep[np.lexsort((dd[keep], ii[keep]))]
    diags = []
    for i in range(len(qts)):
        mine = ii == i
        fitm = mine & (b_max >= 1)
        diags.append(QueryDiagnostics(
            has_model=bool(mine.any()), fits_memory=bool(fitm.any()),
            best_ttft_s=float(t_pre[fitm].min()) if fitm.any() else float("inf"),
            best_latency_s=float(lat1[fitm].min()) if fitm.any() else float("inf"),
            best_error=float(error_r[mine].min()) if mine.any() else float("inf"),
        ))
    return _Routes(n_qt=len(qts), qt=ii[keep], cand=dd[keep], mu=best_mu[keep], latency=best_L[keep],
                   ttft=t_pre[keep], error=error_r[keep], batch=best_b[keep],
                   coef=np.stack([a[keep] for a in coef], axis=1), diagnostics=tuple(diags))


def _assemble(inst: Mapping[str, Any], fleet: _Fleet, blocks: Sequence[_Routes]) -> CompiledInstance:
    """One CompiledInstance from route blocks covering the instance's query types in order:
    only candidates some feasible route uses are kept, renumbered in their original order."""
    qts = inst["query_types"]
    blocks = list(blocks) or [_routes(fleet, [])]
    offsets = np.cumsum([0] + [b.n_qt for b in blocks])
    assert offsets[-1] == len(qts), "route blocks must cover every query type once"
    cat = lambda name: np.concatenate([getattr(b, name) for b in blocks])  # noqa: E731
    route_qt = np.concatenate([b.qt + off for b, off in zip(blocks, offsets)])
    dd = cat("cand")
    used = np.unique(dd)
    remap = np.full(len(fleet.cj), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    ngpu = (fleet.ctp * fleet.cpp)[used]
    ct_used = fleet.ct[used]
    ci = CompiledInstance(
        qt_ids=tuple(q["id"] for q in qts), model_ids=fleet.model_ids, gpu_ids=fleet.gpu_ids,
        prec_ids=fleet.prec_ids,
        max_ttft=np.array([np.inf if q.get("max_ttft_s") is None else q["max_ttft_s"] for q in qts],
                          dtype=np.float64),
        max_latency=np.array([q["max_latency_s"] for q in qts], dtype=np.float64),
        cand_model=fleet.cj[used], cand_gpu=ct_used, cand_prec=fleet.cq[used], cand_tp=fleet.ctp[used],
        cand_pp=fleet.cpp[used], cand_ngpu=ngpu, cand_cost=ngpu * fleet.price_t[ct_used],
        route_qt=route_qt, route_cand=remap[dd], mu=cat("mu"), latency=cat("latency"),
        ttft=cat("ttft"), error=cat("error"), batch=cat("batch"),
        gpu_price=fleet.price_t, gpu_count=fleet.count_t,
        max_utilization=float(fleet.c["max_utilization"]),
        diagnostics=tuple(d for b in blocks for d in b.diagnostics),
        latency_coef=cat("coef"), qt_route_start=np.searchsorted(route_qt, np.arange(len(qts) + 1)),
        **_query_type_vectors(inst),
    )
    _assert_finite(ci)
    return ci


def memory_batch_limit(memory_gb: Any, c: Mapping[str, float], tp: Any, pp: Any, W: Any, tokens: Any,
                       kv: Any) -> IntArray:
    """b_max of spec section 2 (memory): the most requests of `tokens` = h + f tokens whose KV
    cache fits beside the weights W, capped at max_batch; 0 when none fits."""
    cap = np.asarray(memory_gb, dtype=np.float64) * 1e9 * c["memory_utilization"] * tp * pp
    with np.errstate(divide="ignore", invalid="ignore"):
        bm = np.where(cap > W, np.floor((cap - W) / (tokens * kv)), 0.0)
    return np.minimum(float(int(c["max_batch"])), bm).astype(np.int64)


def tpot_from_coef(coef: FloatArray, b: FloatArray | float) -> FloatArray:
    """t_tok(b) = max(k0 + k1 b, k2 b) + k3 + k4 b from one route's 7 coefficients (or routes'
    [n, 7] rows, each at its own b)."""
    k = np.asarray(coef, dtype=np.float64)
    k0, k1, k2, k3, k4 = (k[..., j] for j in range(5))
    bb = np.atleast_1d(np.asarray(b, dtype=np.float64))
    return np.maximum(k0 + k1 * bb, k2 * bb) + k3 + k4 * bb


def _latency(b: FloatArray, idx: IntArray, coef: tuple[FloatArray, ...]) -> FloatArray:
    """L(b) of spec section 2 for routes `idx` (rows) and batch sizes `b` (columns).

    Written with in-place ufuncs: this is the compile hot path (routes x batch sizes cells).
    """
    k0, k1, k2, k3, k4, t_pre, f = (a[idx, None] for a in coef)
    shape = (len(idx), b.shape[1]) if b.shape[0] == 1 else (len(idx), 1)
    t = np.multiply(k1, b, out=np.empty(shape))
    t += k0
    u = np.multiply(k2, b, out=np.empty(shape))
    np.maximum(t, u, out=t)
    np.multiply(k4, b, out=u)
    t += u
    t += k3                                  # t = t_tok(b)
    t *= f
    np.multiply(1 + b, t_pre, out=u)
    t += u                                   # t = S
    np.multiply(t, t, out=u)
    u -= (4 * b) * (t_pre * t_pre)
    np.maximum(u, 0.0, out=u)
    np.sqrt(u, out=u)
    u += t
    u *= 0.5                                 # u = L
    return u


def _latency_at(b: FloatArray, idx: IntArray, coef: tuple[FloatArray, ...]) -> FloatArray:
    """L at one batch size per route."""
    return _latency(b[:, None], idx, coef)[:, 0]  # one column: b varies by row


def _assert_finite(ci: CompiledInstance) -> None:
    for name in ("mu", "latency", "ttft", "error", "cand_cost"):
        arr = getattr(ci, name)
        if not np.all(np.isfinite(arr)):
            bad = int(np.argmax(~np.isfinite(arr)))
            raise ValueError(f"compiled {name} is not finite at index {bad}: check the instance's "
                             "models, GPUs and query types for zero or absurd values")
