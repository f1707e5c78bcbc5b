"""Gate-and-route policies and the paper's baselines as plain parameter objects.

A policy is data, not code: the simulator (solvers.gate_route.sim) and a real router read the
same few fields. Each policy is three choices (arXiv 2602.02987 sections 4-6, Fig. 7):

* layout    -- "static": M = ceil(n sum x*) replicas are mixed (one reserved prefill slot plus
               B-1 decode slots), the rest solo (B decode slots, never prefill);
               "shared": every replica has B slots, at most one of them prefilling (no plan).
* admission -- which waiting class a free prefill slot takes: "occupancy" (argmin of
               xi_i = (X_i - n x*_i)/x*_i, ties by largest Q_p,i - n q*_p,i), "priority"
               (argmax D_i/P_i) or "fcfs" (oldest waiting request). ``cap`` admits class i only
               while X_i < n x*_i (xi_i < 0), i.e. a real admission gate.
* coupling  -- what happens after prefill: "decode_first" (greedy router: free solo slot, else
               free mixed slot, else one FCFS decode buffer; freed slots serve the buffer first),
               "randomised" (SLI router: solo with probability p_s,i, else mixed; one buffer per
               pool), "immediate" (decode stays in its slot on the same replica) or
               "prefill_first" (decoupled, but a freed slot starts a new prefill before a
               waiting decode).
* backpressure -- optional: the gate stays closed while more than backpressure*sqrt(n)
               decodes wait in the buffer (decode before new prefill).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from solvers.gate_route.fluid_lp import (
    FluidSolution,
    SliTargets,
    mixed_replicas_for,
    solve_bundled_lp,
    solve_separate_lp,
    solve_sli_lp,
)
from solvers.gate_route.instance import GateRouteInstance

__all__ = [
    "GateRoutePolicy",
    "gate_and_route",
    "prioritize_and_route",
    "sli_gate_and_route",
    "fi_wsp",
    "gi_wsp",
    "gf_wsp",
    "fg_sp",
    "gate_and_route_literal",
    "BASELINES",
    "PrefillGate",
    "policy_from_params",
]

_LAYOUTS = {"static", "shared"}
_ADMISSIONS = {"occupancy", "priority", "fcfs"}
_COUPLINGS = {"decode_first", "randomised", "immediate", "prefill_first"}


@dataclass(frozen=True)
class GateRoutePolicy:
    """Parameters of one policy for n replicas (targets are per replica, as in the LP)."""

    name: str
    layout: str
    admission: str
    coupling: str
    cap: bool
    x_target: tuple[float, ...]
    q_target: tuple[float, ...]
    priority: tuple[float, ...]
    mixed_replicas: int
    solo_probability: tuple[float, ...]
    backpressure: float | None = None

    def __post_init__(self) -> None:
        if self.layout not in _LAYOUTS:
            raise ValueError(f"layout must be one of {sorted(_LAYOUTS)}")
        if self.admission not in _ADMISSIONS:
            raise ValueError(f"admission must be one of {sorted(_ADMISSIONS)}")
        if self.coupling not in _COUPLINGS:
            raise ValueError(f"coupling must be one of {sorted(_COUPLINGS)}")
        if self.layout == "shared" and self.coupling in ("decode_first", "randomised"):
            raise ValueError("decode_first/randomised routing needs the static mixed/solo layout")
        if self.layout == "static" and self.coupling in ("immediate", "prefill_first"):
            raise ValueError("immediate/prefill_first coupling is defined for the shared layout")


def _lp_fields(inst: GateRouteInstance, lp: FluidSolution, n: int) -> dict:
    if not lp.ok:
        raise ValueError(f"fluid LP is not optimal: {lp.status}")
    return dict(
        x_target=tuple(float(v) for v in lp.x),
        q_target=tuple(float(v) for v in lp.q_p),
        mixed_replicas=mixed_replicas_for(lp.mixed_fraction, n),
        solo_probability=tuple(float(v) for v in lp.solo_probability(inst)),
    )


def _dp_ratio(inst: GateRouteInstance) -> tuple[float, ...]:
    return tuple(float(v) for v in inst.D / inst.P)


def gate_and_route(
    inst: GateRouteInstance,
    n: int,
    lp: FluidSolution | None = None,
    cap: bool = False,
    backpressure: float | None = 0.0,
) -> GateRoutePolicy:
    """Occupancy gate + greedy decode router on the LP (40) plan (section 4.1, GG-SP).

    cap=False is the literal gate (any waiting class with x* > 0 may take an idle slot);
    cap=True admits only classes below their occupancy target (notes section 8.4).
    backpressure closes the gate while more than backpressure*sqrt(n) decodes wait, the
    paper's section 6.3 reading of GG-SP ("waiting decodes go to free solo GPUs before any new
    prefill starts"). Without it (None, the literal section 4.1 gate) the gate over-admits
    at finite n and prefilled work abandons in the decode buffer (notes section 8.4): on the
    paper's instance at n = 500 that costs about 1.5 % of R*.
    """
    lp = lp or solve_bundled_lp(inst, n)
    return GateRoutePolicy(
        name="gate_and_route", layout="static", admission="occupancy", coupling="decode_first",
        cap=cap, priority=_dp_ratio(inst), backpressure=backpressure, **_lp_fields(inst, lp, n),
    )


def gate_and_route_literal(
    inst: GateRouteInstance, n: int, lp: FluidSolution | None = None
) -> GateRoutePolicy:
    """The section 4.1 policy exactly as written: occupancy gate without cap or backpressure."""
    pol = gate_and_route(inst, n, lp, cap=False, backpressure=None)
    return dataclasses.replace(pol, name="gate_and_route_literal")


def prioritize_and_route(
    inst: GateRouteInstance, n: int, lp: FluidSolution | None = None
) -> GateRoutePolicy:
    """Separate charging (section 4.2.1): LP (42) plan, gate by largest D_i/P_i, greedy router."""
    lp = lp or solve_separate_lp(inst, n)
    return GateRoutePolicy(
        name="prioritize_and_route", layout="static", admission="priority",
        coupling="decode_first", cap=False, priority=_dp_ratio(inst), **_lp_fields(inst, lp, n),
    )


def sli_gate_and_route(
    inst: GateRouteInstance,
    n: int,
    sli: SliTargets | None = None,
    lp: FluidSolution | None = None,
    cap: bool = False,
    backpressure: float | None = 0.0,
) -> GateRoutePolicy:
    """SLI-aware gate-and-route (section 5.1): LP (49) plan, occupancy gate, randomised router.

    Backpressure (as in gate_and_route) keeps the gate from over-admitting the class with the
    short prefill at finite n; without it class occupancies overshoot the SLI plan.
    """
    lp = lp or solve_sli_lp(inst, sli, n)
    return GateRoutePolicy(
        name="sli_gate_and_route", layout="static", admission="occupancy",
        coupling="randomised", cap=cap, priority=_dp_ratio(inst), backpressure=backpressure,
        **_lp_fields(inst, lp, n),
    )


def _baseline(name, layout, admission, coupling, cap, inst, n, lp):
    lp = lp or solve_bundled_lp(inst, n)
    return GateRoutePolicy(
        name=name, layout=layout, admission=admission, coupling=coupling, cap=cap,
        priority=_dp_ratio(inst), **_lp_fields(inst, lp, n),
    )


def fi_wsp(inst: GateRouteInstance, n: int, lp: FluidSolution | None = None) -> GateRoutePolicy:
    """Sarathi-Serve-like: FCFS admission whenever a replica can prefill; decode stays in place."""
    return _baseline("fi_wsp", "shared", "fcfs", "immediate", False, inst, n, lp)


def gi_wsp(inst: GateRouteInstance, n: int, lp: FluidSolution | None = None) -> GateRoutePolicy:
    """Occupancy gate with caps at the LP targets, but decode stays on its replica (no plan)."""
    return _baseline("gi_wsp", "shared", "occupancy", "immediate", True, inst, n, lp)


def gf_wsp(inst: GateRouteInstance, n: int, lp: FluidSolution | None = None) -> GateRoutePolicy:
    """Gate and decoupled decode, no plan, and a freed slot prefers a new prefill (inverted)."""
    return _baseline("gf_wsp", "shared", "occupancy", "prefill_first", True, inst, n, lp)


def fg_sp(inst: GateRouteInstance, n: int, lp: FluidSolution | None = None) -> GateRoutePolicy:
    """Static plan and greedy router, but FCFS admission of everyone (no gate)."""
    return _baseline("fg_sp", "static", "fcfs", "decode_first", False, inst, n, lp)


BASELINES = {"fi_wsp": fi_wsp, "gi_wsp": gi_wsp, "gf_wsp": gf_wsp, "fg_sp": fg_sp}



class PrefillGate:
    """Which waiting class a free prefill slot takes under ``policy`` with ``n`` replicas.

    One rule for every simulator (solvers.gate_route.sim, solvers.gate_route.pool), so the
    fleet's pools and the standalone model admit identically. ``queues[i]`` holds class i's
    waiting jobs in arrival order; ``head_time(job)`` is a job's arrival time (only the fcfs
    admission reads it; default: the job is its arrival time). ``buffered[i]`` counts class
    i's prefilled jobs waiting for a decode slot (the backpressure signal).

    ``work_conserving`` lets a slot that no targeted class may take start a class the plan
    gives no prefill share (x*_i = 0), oldest head first, instead of idling: the fleet needs it
    because the allocation plan, not the fluid LP, decides which traffic a pool serves.
    """

    __slots__ = ("admission", "cap", "x_t", "nx", "nq", "prio_order", "bp_on", "bp_thr",
                 "head_time", "work_conserving", "n_classes")

    def __init__(self, policy: GateRoutePolicy, n: int,
                 head_time: Callable[[Any], float] | None = None,
                 work_conserving: bool = False) -> None:
        self.n_classes = len(policy.x_target)
        self.admission = policy.admission
        self.cap = policy.cap
        self.x_t = [float(v) for v in policy.x_target]
        self.nx = [n * float(v) for v in policy.x_target]
        self.nq = [n * float(v) for v in policy.q_target]
        self.prio_order = sorted(range(self.n_classes), key=lambda i: -policy.priority[i])
        self.bp_on = policy.backpressure is not None
        self.bp_thr = float(policy.backpressure or 0.0) * math.sqrt(n)
        self.head_time = head_time
        self.work_conserving = work_conserving

    def closed(self, buffered: Sequence[int]) -> bool:
        """Backpressure: no new prefill while more decodes than the threshold wait."""
        return self.bp_on and sum(buffered) > self.bp_thr

    def pick(self, X: Sequence[int], queues: Sequence[Sequence[Any]], buffered: Sequence[int]) -> int:
        """Class whose head-of-line job the slot should start, or -1 (stay idle)."""
        if self.bp_on and sum(buffered) > self.bp_thr:
            return -1
        best = -1
        cap, nx = self.cap, self.nx
        if self.admission == "occupancy":
            x_t, nq = self.x_t, self.nq
            bxi = bq = 0.0
            for i in range(self.n_classes):
                ql = len(queues[i])
                if ql and x_t[i] > 0.0:
                    if cap and X[i] >= nx[i]:
                        continue
                    xi = (X[i] - nx[i]) / x_t[i]
                    dq = ql - nq[i]
                    if best < 0 or xi < bxi or (xi == bxi and dq > bq):
                        best, bxi, bq = i, xi, dq
        elif self.admission == "priority":
            for i in self.prio_order:
                if queues[i] and not (cap and X[i] >= nx[i]):
                    return i
        else:  # fcfs across classes
            ht = self.head_time
            bt = 0.0
            for i in range(self.n_classes):
                q = queues[i]
                if q and not (cap and X[i] >= nx[i]):
                    h = q[0] if ht is None else ht(q[0])
                    if best < 0 or h < bt:
                        best, bt = i, h
        if best < 0 and self.work_conserving:
            best = self._oldest_untargeted(queues)
        return best

    def _oldest_untargeted(self, queues: Sequence[Sequence[Any]]) -> int:
        """The waiting class without a prefill target whose head arrived first, or -1."""
        ht = self.head_time
        best, bt = -1, 0.0
        for i in range(self.n_classes):
            q = queues[i]
            if q and self.x_t[i] <= 0.0:
                h = q[0] if ht is None else ht(q[0])
                if best < 0 or h < bt:
                    best, bt = i, h
        return best


def policy_from_params(params: Mapping[str, Any]) -> tuple[GateRoutePolicy, tuple[str, ...]]:
    """The policy a router or engine applies from published parameters (solvers.gate_route.plan).

    Returns the policy (per-replica targets, as the LP states them) and the class ids in
    its index order. Admission is the occupancy gate; ``router`` "randomised" gives the SLI
    router (coupling "randomised"), anything else the greedy solo-first router.
    """
    n = int(params["replicas"])
    if n < 1:
        raise ValueError("replicas must be >= 1")
    classes = params["classes"]
    ids = tuple(classes)
    get = lambda key, default=0.0: tuple(  # noqa: E731
        float(classes[c].get(key, default) or 0.0) for c in ids)
    bp = params.get("backpressure_jobs")
    return GateRoutePolicy(
        name=str(params.get("policy", "gate_and_route")),
        layout="static",
        admission="occupancy",
        coupling="randomised" if params.get("router") == "randomised" else "decode_first",
        cap=False,
        x_target=tuple(v / n for v in get("prefill_target")),
        q_target=tuple(v / n for v in get("prefill_queue_target")),
        priority=tuple(1.0 for _ in ids),
        mixed_replicas=max(0, min(n, int(params.get("mixed_replicas", 0)))),
        solo_probability=get("solo_probability"),
        backpressure=None if bp is None else float(bp) / math.sqrt(n),
    ), ids
