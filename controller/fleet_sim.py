"""Fleet simulator behind the router: the reference performance model as a queue, in event time.

Each deployment is a pool of replicas. A replica serving query type i at the operating point
of shared/spec/model.md section 2 runs b*_i requests at once, each for L_i seconds, i.e.
mu_i = b*_i / L_i requests/s. The simulator models exactly that: a replica is one unit of
capacity, a request of type i occupies 1/b*_i of it for its service time, and a request
waits (FCFS, no overtaking) until the pool has room. This is an M/G/c-style queue with
c = replicas * b* slots, pooled across the deployment's replicas (ideal load balancing):
at low load the wait is zero and latency = L_i, as utilisation nears 1 the wait grows, and
beyond 1 the backlog grows without bound (or requests abandon after `max_wait_s`).

Observed latency = service time + wait, TTFT = T_pre + wait, and the SLO is met iff
latency <= max_latency_s and TTFT <= max_ttft_s. Replicas added by a plan serve only after
`cold_start_s`; removed replicas stop taking work at once (in-flight requests finish).
Time is the records' event time (`ts`); nothing sleeps. The only randomness is the optional
service-time jitter, from a seeded numpy Generator, so a run is reproducible.
"""
from __future__ import annotations

import bisect
import heapq
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import structlog

from schemas import Plan, RequestRecord, TelemetryBatch
from solvers.compile import CompiledInstance, compile_instance
from solvers.plan_codec import cand_key

from .slo_window import SloWindows

log = structlog.get_logger()

ConfigKey = tuple[str, str, str, int, int]  # (model, gpu, precision, tp, pp)
_EPS = 1e-9


@dataclass(frozen=True)
class RoutePerf:
    """One (query type, deployment configuration) route at its operating point."""

    mu: float              # requests/s per replica
    latency_s: float       # L at the operating point
    ttft_s: float          # prefill time T_pre
    batch: int             # b*: concurrent requests per replica
    max_latency_s: float
    max_ttft_s: float      # inf when unbounded
    curve: tuple[float, ...] | None = None  # latency L(b) for b = 1..batch (continuous batching)

    def latency_at(self, b: int) -> float:
        """Latency with b requests in flight on the replica (L(b*) when no curve is known)."""
        if not self.curve:
            return self.latency_s
        return self.curve[min(max(b, 1), len(self.curve)) - 1]


class PerfTable:
    """Route performance by (query type, configuration), from a compiled instance."""

    def __init__(self, routes: Mapping[tuple[str, ConfigKey], RoutePerf]) -> None:
        self._routes = dict(routes)

    @classmethod
    def from_compiled(cls, ci: CompiledInstance) -> PerfTable:
        routes = {}
        for r in range(ci.n_routes):
            i = int(ci.route_qt[r])
            b = int(ci.batch[r])
            routes[(ci.qt_ids[i], cand_key(ci, int(ci.route_cand[r])))] = RoutePerf(
                mu=float(ci.mu[r]), latency_s=float(ci.latency[r]), ttft_s=float(ci.ttft[r]),
                batch=b, max_latency_s=float(ci.max_latency[i]), max_ttft_s=float(ci.max_ttft[i]),
                curve=tuple(float(v) for v in ci.latency_curve(r, np.arange(1, b + 1))))
        return cls(routes)

    @classmethod
    def from_instance(cls, spec: Mapping[str, Any]) -> PerfTable:
        return cls.from_compiled(compile_instance(spec))

    def get(self, query_type: str, key: ConfigKey) -> RoutePerf | None:
        return self._routes.get((query_type, key))

    def __len__(self) -> int:
        return len(self._routes)


class _Pool:
    """One deployment: replica readiness times and the requests in service (a heap of ends)."""

    def __init__(self, key: ConfigKey) -> None:
        self.key = key
        self.ready_at: list[float] = []          # sorted; replica k serves from ready_at[k]
        self.busy: list[tuple[float, float]] = []  # (end time, capacity share)
        self.occupancy = 0.0
        self.gate = -math.inf                    # FCFS: no request starts before the previous one
        self.clock = -math.inf                   # latest arrival seen

    def resize(self, replicas: int, at: float, cold_start_s: float) -> None:
        n = len(self.ready_at)
        if replicas > n:
            self.ready_at.extend([at + cold_start_s] * (replicas - n))
            self.ready_at.sort()
        elif replicas < n:
            del self.ready_at[replicas:]          # the latest-ready (coldest) replicas go first

    def capacity(self, t: float) -> int:
        return bisect.bisect_right(self.ready_at, t)

    def _release(self, t: float) -> None:
        while self.busy and self.busy[0][0] <= t:
            self.occupancy -= heapq.heappop(self.busy)[1]
        if not self.busy:
            self.occupancy = 0.0                  # no drift from float sums

    def start_time(self, t: float, share: float) -> float | None:
        """Earliest FCFS start for a request arriving at t (None: no capacity ever comes)."""
        s = max(t, self.gate)
        self._release(s)
        while self.occupancy + share > self.capacity(s) + _EPS:
            nxt = self.busy[0][0] if self.busy else math.inf
            k = self.capacity(s)
            if k < len(self.ready_at):
                nxt = min(nxt, self.ready_at[k])
            if math.isinf(nxt):
                self.gate = s
                return None
            s = max(s, nxt)
            self._release(s)
        self.gate = s
        return s

    def occupy(self, end: float, share: float) -> None:
        heapq.heappush(self.busy, (end, share))
        self.occupancy += share


class FleetSimulator:
    """Serve routed requests with the reference model; collect observed telemetry and SLOs.

    `service_cv` > 0 draws service times from a gamma distribution with mean L (coefficient
    of variation `service_cv`); 0 keeps them deterministic. `max_wait_s` makes a request
    abandon (outcome rejected) when it would wait longer; None lets queues grow.
    """

    def __init__(self, perf: PerfTable, *, cold_start_s: float = 60.0, seed: int = 0,
                 service_cv: float = 0.0, max_wait_s: float | None = None,
                 batch_size: int = 500, window_s: float = 60.0,
                 producer: str = "llmfleet-fleet-sim") -> None:
        if cold_start_s < 0 or service_cv < 0 or batch_size < 1:
            raise ValueError("cold_start_s and service_cv must be >= 0, batch_size >= 1")
        self.perf = perf
        self.cold_start_s = cold_start_s
        self.service_cv = service_cv
        self.max_wait_s = max_wait_s
        self.batch_size = batch_size
        self.producer = producer
        self.slo = SloWindows(window_s)
        self.outcomes: Counter[str] = Counter()
        self.by_deployment: Counter[str] = Counter()
        self.unroutable = 0
        self._rng = np.random.default_rng(seed)
        self._pools: dict[str, _Pool] = {}
        self._outbox: list[RequestRecord] = []

    # ---- plans -------------------------------------------------------------------------------
    def apply_plan(self, plan: Plan | Mapping[str, Any], at: float, *, warm: bool = False) -> None:
        """Resize pools to the plan at event time `at`; `warm` skips the cold start (bootstrap)."""
        p = plan if isinstance(plan, Plan) else Plan.model_validate(plan)
        delay = 0.0 if warm else self.cold_start_s
        seen = set()
        for d in p.deployments:
            key: ConfigKey = (d.model, d.gpu, d.precision, d.tp, d.pp)
            pool = self._pools.get(d.id)
            if pool is None or pool.key != key:
                pool = self._pools[d.id] = _Pool(key)
            pool.resize(d.replicas, at, delay)
            seen.add(d.id)
        for dep in [k for k in self._pools if k not in seen]:
            del self._pools[dep]                  # the router no longer sends it work
        log.info("fleet_sim.plan_applied", at=at, warm=warm,
                 replicas={k: len(v.ready_at) for k, v in sorted(self._pools.items())})

    def replicas(self, deployment: str, at: float) -> tuple[int, int]:
        """(serving, total) replicas of a deployment at event time `at`."""
        pool = self._pools.get(deployment)
        return (pool.capacity(at), len(pool.ready_at)) if pool else (0, 0)

    # ---- requests ----------------------------------------------------------------------------
    def submit(self, rec: RequestRecord, deployment: str | None,
               query_type: str | None = None) -> RequestRecord:
        """Serve one request on `deployment` (None: the router rejected it); returns what a
        serving engine would report and queues it for `drain`."""
        qt = query_type or rec.query_type or "unknown"
        pool = self._pools.get(deployment) if deployment is not None else None
        perf = self.perf.get(qt, pool.key) if pool is not None else None
        if deployment is not None and perf is None:
            self.unroutable += 1                  # plan/router mismatch: count, do not crash
        if pool is None or perf is None:
            return self._emit(rec, qt, deployment, "rejected", None, None)
        t = max(rec.ts, pool.clock)               # out-of-order arrivals join at the pool clock
        pool.clock = t
        share = 1.0 / max(perf.batch, 1)
        start = pool.start_time(t, share)
        if start is None or (self.max_wait_s is not None and start - t > self.max_wait_s):
            return self._emit(rec, qt, deployment, "rejected", None, None)
        # continuous batching: a request starting while the replicas hold b requests each runs
        # at L(b) <= L(b*); at the planned operating point this is exactly the spec's L
        ready = max(pool.capacity(start), 1)
        b_now = math.ceil((pool.occupancy + share) / ready * perf.batch - 1e-9)
        mean = perf.latency_at(b_now)
        service = mean
        if self.service_cv > 0:
            k = 1.0 / self.service_cv ** 2
            service = float(self._rng.gamma(k, mean / k))
        pool.occupy(start + service, share)
        wait = start - t
        latency, ttft = service + wait, perf.ttft_s + wait
        ok = latency <= perf.max_latency_s + _EPS and ttft <= perf.max_ttft_s + _EPS
        return self._emit(rec, qt, deployment, "served" if ok else "slo_missed", ttft, latency)

    def _emit(self, rec: RequestRecord, qt: str, deployment: str | None, outcome: str,
              ttft: float | None, latency: float | None) -> RequestRecord:
        out = RequestRecord.model_construct(
            ts=rec.ts, query_type=qt, input_tokens=rec.input_tokens,
            output_tokens=rec.output_tokens, ttft_s=ttft, latency_s=latency,
            deployment=deployment, outcome=outcome,
            request_id=rec.request_id)
        self.outcomes[outcome] += 1
        if outcome != "rejected" and deployment is not None:
            self.by_deployment[deployment] += 1
        self.slo.add(rec.ts, qt, outcome)
        self._outbox.append(out)
        return out

    # ---- telemetry ---------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        return len(self._outbox)

    def drain(self, flush: bool = False) -> list[TelemetryBatch]:
        """Full batches of observed records (and the remainder when `flush`)."""
        n = len(self._outbox)
        cut = n if flush else n - n % self.batch_size
        out = [TelemetryBatch.from_records(self._outbox[k:min(k + self.batch_size, cut)],
                                           producer=self.producer)
               for k in range(0, cut, self.batch_size)]
        del self._outbox[:cut]
        return out

    def metrics(self) -> dict[str, Any]:
        return {"outcomes": dict(self.outcomes), "by_deployment": dict(sorted(self.by_deployment.items())),
                "unroutable": self.unroutable, "pending": self.pending, "slo": self.slo.overall()}
