"""Fit per-GPU constants of the route model to measured TTFT, time per output token and latency.

Spec section 1 lets each GPU carry compute_efficiency, bandwidth_efficiency and
step_overhead_s, and each (GPU, precision) its own values. Given measurement rows
(schemas.Measurement: configuration, workload, batch, and any of TTFT / TPOT / latency), this
fits, per (GPU, precision), compute_efficiency, bandwidth_efficiency and step_overhead_s
(fp8 GEMMs, fp8 weight streaming and fp8 kernels' launch overheads differ from fp16 ones),
by least squares on log(predicted / measured) (scipy.optimize.least_squares with
bounds). Log ratios weigh a 2x miss on a 5 ms TPOT like a 2x miss on a 5 s latency.

A weak pull (weight `prior_weight`) towards the constants in force keeps parameters that the
data does not identify (e.g. compute efficiency of a GPU measured only at small batches)
where they were. Each route is compiled once (solvers.perf.route_times) and re-evaluated at
trial constants with solvers.perf.rescale, which is exact for the spec's model.

The fit is accepted only when its rms log error is below that of the constants in force
(`FitResult.accepted`); `llmfleet calibrate` refuses to write a worse catalog.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from scipy.optimize import least_squares

from ._typing import FloatArray
from .compile import PER_GPU_KEYS
from .perf import PerfInputError, RouteTimes, rescale, route_times, times_at

QUANTITIES = ("ttft", "tpot", "latency")
BOUNDS = {"compute_efficiency": (0.02, 1.0), "bandwidth_efficiency": (0.02, 1.0), "step_overhead_s": (0.0, 0.05)}
OVERHEAD_SCALE = 1e-3  # step_overhead_s is fitted in ms so all parameters are O(1)
MIN_GAIN = 1e-3        # rms log error a fit must gain to be accepted


class MeasurementRow(Protocol):
    model: str
    gpu: str
    precision: str
    tp: int
    pp: int
    batch: int
    input_tokens: float
    output_tokens: float
    ttft_s: float | None
    tpot_s: float | None
    latency_s: float | None


class CalibrationError(ValueError):
    """A measurement the catalog cannot describe; the message names the row."""


@dataclass(frozen=True)
class Cell:
    """One measured number and where it came from."""

    row: int             # index of the measurement (0-based)
    quantity: str        # ttft | tpot | latency
    observed: float
    config: str          # "model@gpu/precision tpN ppM hIN/OUT bB"
    gpu: str
    precision: str


@dataclass(frozen=True)
class CellRatios:
    """predicted / observed per cell, at one set of constants."""

    ratio: FloatArray

    @property
    def log_rms(self) -> float:
        return float(np.sqrt(np.mean(np.log(self.ratio) ** 2))) if len(self.ratio) else 0.0

    def worst(self) -> int:
        return int(np.argmax(np.abs(np.log(self.ratio))))

    def summary(self, cells: Sequence[Cell]) -> dict[str, Any]:
        """median and worst ratio per quantity (worst = furthest from 1 in log terms)."""
        out: dict[str, Any] = {}
        q = np.array([c.quantity for c in cells])
        for name in QUANTITIES:
            r = self.ratio[q == name]
            if len(r):
                out[name] = {"n": int(len(r)), "median": float(np.median(r)),
                             "worst": float(r[np.argmax(np.abs(np.log(r)))]),
                             "within_10pct": float(np.mean(np.abs(r - 1) <= 0.10)),
                             "within_25pct": float(np.mean(np.abs(r - 1) <= 0.25))}
        return out


@dataclass(frozen=True)
class FitResult:
    cells: tuple[Cell, ...]
    before: CellRatios
    after: CellRatios
    gpus: dict[str, dict[str, Any]]  # gpu id -> {"constants": {...}, "constants_by_precision": {...}}
    ignored: tuple[str, ...] = field(default=())  # why some measured numbers were not used

    @property
    def accepted(self) -> bool:
        """Better than the constants in force by more than MIN_GAIN in rms log error (0.1 %):
        a smaller change is rounding, not information worth a new catalog."""
        return self.after.log_rms < self.before.log_rms - MIN_GAIN

    def worst_cell(self, which: str = "after") -> tuple[Cell, float]:
        r = self.after if which == "after" else self.before
        k = r.worst()
        return self.cells[k], float(r.ratio[k])


@dataclass(frozen=True)
class _Design:
    """Everything the residual function needs, as arrays over cells."""

    cells: tuple[Cell, ...]
    coef: FloatArray        # [n, 7] at the constants in force
    comp: FloatArray        # [n] T_pre compute part
    c0: FloatArray          # [n, 3] constants in force
    batch: FloatArray       # [n]
    qidx: FloatArray        # [n] 0 ttft, 1 tpot, 2 latency
    observed: FloatArray    # [n]
    tier_of: np.ndarray     # [n] index into tiers
    gpus: tuple[str, ...]
    tiers: tuple[tuple[str, str], ...]


def cells_from_measurements(inst: Mapping[str, Any], rows: Sequence[MeasurementRow]) -> tuple[_Design, list[str]]:
    """Compile each measured configuration once and lay the measured numbers out as cells."""
    cache: dict[tuple[Any, ...], RouteTimes] = {}
    cells: list[Cell] = []
    coef, comp, c0, batch, qidx, obs = [], [], [], [], [], []
    ignored: list[str] = []
    for k, m in enumerate(rows):
        key = (m.model, m.gpu, m.precision, int(m.tp), int(m.pp), float(m.input_tokens), float(m.output_tokens))
        rt = cache.get(key)
        if rt is None:
            try:
                rt = route_times(inst, *key)
            except PerfInputError as exc:
                raise CalibrationError(f"row {k + 1}: {exc}") from exc
            cache[key] = rt
        values = {"ttft": m.ttft_s, "tpot": m.tpot_s, "latency": m.latency_s}
        if m.ttft_s is not None and m.batch != 1:
            ignored.append(f"row {k + 1}: ttft_s at batch {m.batch} (TTFT is compared with one request's prefill)")
            values["ttft"] = None
        for qn, v in values.items():
            if v is None:
                continue
            cells.append(Cell(row=k, quantity=qn, observed=float(v), gpu=m.gpu, precision=m.precision,
                              config=f"{m.model}@{m.gpu}/{m.precision} tp{m.tp} pp{m.pp} "
                                     f"h{m.input_tokens:g}/{m.output_tokens:g} b{m.batch}"))
            coef.append(rt.coef)
            comp.append(rt.ttft_compute_s)
            c0.append(rt.constants_vector)
            batch.append(float(m.batch))
            qidx.append(QUANTITIES.index(qn))
            obs.append(float(v))
    if not cells:
        raise CalibrationError("no usable measurements (every row lacked ttft at batch 1, tpot and latency)")
    gpus = tuple(sorted({c.gpu for c in cells}))
    tiers = tuple(sorted({(c.gpu, c.precision) for c in cells}))
    design = _Design(cells=tuple(cells), coef=np.array(coef), comp=np.array(comp), c0=np.array(c0),
                     batch=np.array(batch), qidx=np.array(qidx), observed=np.array(obs),
                     tier_of=np.array([tiers.index((c.gpu, c.precision)) for c in cells]),
                     gpus=gpus, tiers=tiers)
    return design, ignored


def evaluate(inst: Mapping[str, Any], rows: Sequence[MeasurementRow]) -> tuple[tuple[Cell, ...], CellRatios]:
    """predicted / measured of every measured number under `inst` as it is."""
    design, _ = cells_from_measurements(inst, rows)
    return design.cells, CellRatios(predict(design, design.c0) / design.observed)


def predict(design: _Design, c: FloatArray) -> FloatArray:
    """Predicted value of every cell with per-cell constants c [n, 3]."""
    k, _ = rescale(design.coef, design.comp, design.c0, c)
    ttft, tpot, lat = times_at(k, design.batch)
    return np.choose(design.qidx.astype(int), [ttft, tpot, lat])


def _unpack(design: _Design, x: FloatArray) -> FloatArray:
    """Parameter vector -> per-cell constants. x = [log ce, log be, o (ms)], each one per tier."""
    nt = len(design.tiers)
    ce = np.exp(x[:nt])[design.tier_of]
    be = np.exp(x[nt:2 * nt])[design.tier_of]
    o = x[2 * nt:][design.tier_of] * OVERHEAD_SCALE
    return np.stack([ce, be, o], axis=1)


def fit_constants(inst: Mapping[str, Any], rows: Sequence[MeasurementRow], *,
                  prior_weight: float = 0.01) -> FitResult:
    """Least-squares per-GPU constants for `rows`, starting from (and pulled weakly towards)
    the constants `inst` has in force for each GPU and precision."""
    design, ignored = cells_from_measurements(inst, rows)
    nt = len(design.tiers)
    # starting point: the constants in force (first cell of each tier / GPU)
    x0 = np.empty(3 * nt)
    for t in range(nt):
        first = np.argmax(design.tier_of == t)
        x0[t] = math.log(design.c0[first, 0])
        x0[nt + t] = math.log(design.c0[first, 1])
        x0[2 * nt + t] = design.c0[first, 2] / OVERHEAD_SCALE
    bound = lambda k, i: math.log(BOUNDS[k][i])  # noqa: E731
    lo = np.concatenate([np.full(nt, bound("compute_efficiency", 0)), np.full(nt, bound("bandwidth_efficiency", 0)),
                         np.full(nt, BOUNDS["step_overhead_s"][0] / OVERHEAD_SCALE)])
    hi = np.concatenate([np.full(nt, bound("compute_efficiency", 1)), np.full(nt, bound("bandwidth_efficiency", 1)),
                         np.full(nt, BOUNDS["step_overhead_s"][1] / OVERHEAD_SCALE)])
    x_start = np.clip(x0, lo, hi)
    log_obs = np.log(design.observed)

    def residuals(x: FloatArray) -> FloatArray:
        pred = predict(design, _unpack(design, x))
        return np.concatenate([np.log(np.maximum(pred, 1e-12)) - log_obs, prior_weight * (x - x_start)])

    sol = least_squares(residuals, x_start, bounds=(lo, hi), method="trf", x_scale="jac", max_nfev=2000)
    before = CellRatios(predict(design, design.c0) / design.observed)
    after = CellRatios(predict(design, _unpack(design, sol.x)) / design.observed)
    return FitResult(cells=design.cells, before=before, after=after, gpus=_gpu_constants(design, sol.x),
                     ignored=tuple(ignored))


def _gpu_constants(design: _Design, x: FloatArray) -> dict[str, dict[str, Any]]:
    """Fitted values in the catalog's shape: the GPU's constants carry the efficiencies of its
    most-measured precision; another precision gets its own value where it differs by > 1 %."""
    nt = len(design.tiers)
    out: dict[str, dict[str, Any]] = {}
    for gid in design.gpus:
        tiers = [t for t in range(nt) if design.tiers[t][0] == gid]
        main = max(tiers, key=lambda t: (int(np.sum(design.tier_of == t)), design.tiers[t][1] == "fp16"))
        eff = lambda t: {"compute_efficiency": round(float(math.exp(x[t])), 4),  # noqa: E731
                         "bandwidth_efficiency": round(float(math.exp(x[nt + t])), 4),
                         "step_overhead_s": round(float(x[2 * nt + t] * OVERHEAD_SCALE), 6)}
        by_prec = {}
        for t in tiers:  # overheads compare in absolute terms (0.1 ms), efficiencies relatively (1 %)
            differs = {k: v for k, v in eff(t).items() if t != main and (
                abs(v - eff(main)[k]) > 1e-4 if k == "step_overhead_s" else abs(v / eff(main)[k] - 1) > 0.01)}
            if differs:
                by_prec[design.tiers[t][1]] = differs
        out[gid] = {"constants": eff(main), "constants_by_precision": by_prec, "main_precision": design.tiers[main][1]}
    return out


def apply_constants(gpus: Sequence[Mapping[str, Any]], fitted: Mapping[str, Mapping[str, Any]],
                    source: str) -> list[dict[str, Any]]:
    """Catalog GPU entries with the fitted constants written in (and a `sources` entry for
    each); GPUs without a fit are returned unchanged."""
    out = []
    for g in gpus:
        g = dict(g)
        fit = fitted.get(g["id"])
        if fit is not None:
            g["constants"] = dict(fit["constants"])
            cbp = {q: dict(v) for q, v in (g.get("constants_by_precision") or {}).items()}
            for q, v in fit["constants_by_precision"].items():
                cbp[q] = dict(v)
            # a precision that now matches the GPU's value needs no override
            main = fit.get("main_precision")
            if main in cbp:
                cbp.pop(main)
            g["constants_by_precision"] = cbp
            sources = dict(g.get("sources") or {})
            for k in PER_GPU_KEYS:
                sources[f"constants.{k}"] = source
            if cbp:
                sources["constants_by_precision"] = source
            g["sources"] = sources
        out.append(g)
    return out
