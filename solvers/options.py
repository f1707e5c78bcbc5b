"""One options object for every solver backend (solvers/__init__.py `solve`).

Every backend takes `(ci, options)`. The fields mean the same to every backend that uses
them; a backend ignores what it has no use for (GH has no deadline, the baselines no warm
start), and per-backend switches live in their own typed field.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ._typing import FloatArray, IntArray

DEFAULT_STARTS = 12   # AGH: greedy starts (orders) before the moves
# AGH's work budget (deterministic anytime search, solvers/adaptive.py): units; see
# docs/benchmarks.md (solver families) for what it buys
DEFAULT_WORK = 3000


@dataclass(frozen=True)
class AghOptions:
    """AGH's mechanisms (solvers/adaptive.py explains each); all on by default."""

    starts: int = DEFAULT_STARTS
    local_search: bool = True
    consolidate: bool = True
    m1: bool = True                 # greedy's mechanisms M1-M3 (solvers/greedy.py)
    m2: bool = True
    m3: bool = True
    polish: bool = True
    lns: bool = True
    fillers: bool = True
    warm_milp: bool = True
    hubs: bool = True
    lp_pool: bool = True
    explain_s: float = 0.0          # seconds for fleet-level infeasibility reasons (0: route-level only)


@dataclass(frozen=True)
class MilpOptions:
    backend: str = "highs"          # "highs" (scipy) or an OR-Tools MPSolver id ("SCIP", "CBC")
    params: str = ""                # "name = value" lines of solver options
    prev_orphan_gpus: float = 0.0


@dataclass(frozen=True)
class CpsatOptions:
    grid: int = 1000                # fraction grid of the routing variables
    workers: int = 8
    with_lp_bound: bool = True


@dataclass(frozen=True)
class SolveOptions:
    """`deadline_s`: wall-clock limit (None: the backend's own default: AGH 0.5 s, the exact
    backends 60 s, LPR 30 s; GH and the greedy baselines have none). `warm_start`: a plan
    (replicas, routing) to start from; GH keeps its replicas as capacity already paid for.
    `prev_replicas` with `switch_cost_per_gpu`: the plan in force and the price of moving away
    from it (spec §6). `work`: AGH's deterministic work budget (None: unlimited)."""

    deadline_s: float | None = None
    seed: int = 0
    work: float | None = DEFAULT_WORK
    warm_start: tuple[IntArray, FloatArray] | None = None
    prev_replicas: IntArray | None = None
    switch_cost_per_gpu: float = 0.0
    agh: AghOptions = field(default_factory=AghOptions)
    milp: MilpOptions = field(default_factory=MilpOptions)
    cpsat: CpsatOptions = field(default_factory=CpsatOptions)

    def limit(self, default: float) -> float:
        return default if self.deadline_s is None else float(self.deadline_s)
