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
latency <= max_latency_s and TTFT <= max_ttft_s. Plans are applied make-before-break (see
`apply_plan`): replicas a plan adds serve only after their deployment's cold start
(solvers/cold_start.py), and replicas it removes keep serving until the added ones are ready,
then drain (in-flight requests finish). Every replica costs its GPUs' price from start to stop
(`cost`), and `status` reports readiness as a fleet would (schemas.FleetStatus).
Time is the records' event time (`ts`); nothing sleeps. The only randomness is the optional
service-time jitter, from a seeded numpy Generator, so a run is reproducible.

Gate-and-route pools: when the allocation event carries usable `gate_route` parameters for a
deployment (docs/router.md section 5), that deployment is served by a
`solvers.gate_route.pool.GateRoutePool` instead: iteration-level mixed/solo service of the
paper's model, the occupancy gate on prefill slots, decodes placed by the router's hint. Its
outcomes are known only when a request completes, so `submit` returns the record with outcome
None and the finished record reaches `drain()` later; records are released in submission
order (a record waits behind earlier ones still in flight, at most `reorder_hold_s` of event
time), so the telemetry stream stays in event-time order and the controller's windows do not
count G&R records as late. Such pools report iteration timings (chunk tokens, decode batch,
seconds) for the controller's iteration-model fit; `drain_iterations()` returns them as
`IterationBatch` messages. Event time advances with the submitted records (and `advance`);
`finish()` completes all in-flight work at the end of a run.
"""
from __future__ import annotations

import bisect
import heapq
import math
import random
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import structlog

from schemas import (DeploymentStatus, FleetStatus, IterationBatch, Plan, RequestRecord, TelemetryBatch,
                     Transition, TransitionStep)
from solvers.compile import CompiledInstance, compile_instance
from solvers.gate_route.iteration_model import IterationModel
from solvers.plan_codec import cand_key

from solvers.cold_start import ColdStart
from solvers.gate_route.pool import GateRouteJob, GateRoutePool, plant_from_params
from controller.router.core import _usable_gate as usable_gate_params  # the router's rule: same pools
from controller.sim.slo_window import SloWindows

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

    def __init__(self, routes: Mapping[tuple[str, ConfigKey], RoutePerf],
                 gpu_price: Mapping[str, float] | None = None) -> None:
        self._routes = dict(routes)
        self.gpu_price: dict[str, float] = dict(gpu_price or {})   # $ per GPU-hour

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
        return cls(routes, dict(zip(ci.gpu_ids, (float(p) for p in ci.gpu_price))))

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

    @property
    def size(self) -> int:
        return len(self.ready_at)

    def ready_times(self) -> list[float]:
        return list(self.ready_at)

    def adopt(self, ready_at: list[float], at: float) -> None:
        """Take over replicas (their readiness times) from the pool this one replaces."""
        self.ready_at = sorted([*self.ready_at, *ready_at])

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


class _Slot:
    """A submitted request's place in the output order; `record` is set once it is known."""

    __slots__ = ("record", "ts", "straggler", "rec", "qt", "deployment", "perf")

    def __init__(self, ts: float) -> None:
        self.record: RequestRecord | None = None
        self.ts = ts
        self.straggler = False


class FleetSimulator:
    """Serve routed requests with the reference model; collect observed telemetry and SLOs.

    `service_cv` > 0 draws service times from a gamma distribution with mean L (coefficient
    of variation `service_cv`); 0 keeps them deterministic. `max_wait_s` makes a request
    abandon (outcome rejected) when it would wait longer; None lets queues grow. `shed_late`
    is deadline-aware admission (an engine queue whose time limit is the request's SLO slack):
    a request that could not start in time to meet its TTFT and latency SLOs is rejected at
    once instead of queueing, so an overloaded pool serves what it can within SLO rather than
    everything late.

    Gate-and-route (module docstring): `gate_route` False keeps every pool FCFS even when
    the plan carries parameters. `iteration_truth` maps a deployment id or configuration key
    to the iteration model its hardware really has (default: the published alpha, beta,
    gamma of the first parameters the pool sees), so experiments can make the plant differ
    from what the planner assumes. `iteration_cv` is the relative jitter of reported
    iteration timings (the pool itself serves at the mean); `iteration_samples` False stops
    reporting them.
    """

    def __init__(self, perf: PerfTable, *, cold_start_s: float | ColdStart = 60.0, seed: int = 0,
                 service_cv: float = 0.0, max_wait_s: float | None = None,
                 batch_size: int = 500, window_s: float = 60.0,
                 producer: str = "llmfleet-fleet-sim", gate_route: bool = True,
                 iteration_truth: Mapping[Any, IterationModel] | None = None,
                 iteration_cv: float = 0.03, iteration_samples: bool = True,
                 reorder_hold_s: float = 10.0, make_before_break: bool = True,
                 shed_late: bool = False) -> None:
        cold = cold_start_s if isinstance(cold_start_s, ColdStart) else ColdStart.fixed(float(cold_start_s))
        if service_cv < 0 or batch_size < 1 or iteration_cv < 0:
            raise ValueError("service_cv and iteration_cv must be >= 0, batch_size >= 1")
        self.perf = perf
        self.cold_start = cold
        self.make_before_break = make_before_break
        self.shed_late = shed_late
        self.shed = 0
        self.service_cv = service_cv
        self.max_wait_s = max_wait_s
        self.batch_size = batch_size
        self.producer = producer
        self.gate_route = gate_route
        self.iteration_truth = dict(iteration_truth or {})
        self.iteration_cv = iteration_cv
        self.iteration_samples = iteration_samples
        self.reorder_hold_s = reorder_hold_s
        self.seed = seed
        self.slo = SloWindows(window_s)
        self.outcomes: Counter[str] = Counter()
        self.by_deployment: Counter[str] = Counter()
        self.unroutable = 0
        self.unroutable_by: Counter[tuple[str, str]] = Counter()
        self._rng = np.random.default_rng(seed)
        self._pools: dict[str, _Pool | GateRoutePool] = {}
        self._draining: list[GateRoutePool] = []     # replaced G&R pools finishing their work
        self._outbox: list[RequestRecord] = []
        self._order: deque[_Slot] = deque()          # submitted, not yet released, in order
        self._in_flight = 0
        self._clock = -math.inf
        self._samples: dict[str, list[tuple[float, int, int, float]]] = {}
        self._jitter: dict[str, random.Random] = {}
        self._targets: dict[str, int] = {}           # replicas per deployment of the plan in force
        self._pending: dict[str, int] = {}           # surplus kept until the transition completes
        self._complete_at = -math.inf
        self._accounted_to = -math.inf
        self._dollars = self._gpu_seconds = 0.0
        self._gpus_started = self._gpus_stopped = 0

    # ---- plans -------------------------------------------------------------------------------
    def apply_plan(self, plan: Plan | Mapping[str, Any], at: float, *, warm: bool = False,
                   gate_route: Mapping[str, Any] | None = None) -> Transition:
        """Move the fleet towards `plan` at event time `at`, make-before-break; returns the steps.

        New replicas start at once and serve after their deployment's cold start (`warm`: at
        once, for the fleet a bootstrap plan describes as running). Replicas the plan no longer
        wants (scale-down, deployments it drops) keep serving until every replica this
        transition starts is ready; then they drain: no new work, in-flight work finishes.
        Replicas still starting are cancelled at once when a plan no longer wants them. With
        `make_before_break` False, surplus replicas stop at once (the old behaviour).

        `gate_route` is the event's per-deployment parameters: deployments with usable ones
        (status optimal, per-class numbers) are served by gate-and-route pools.
        """
        p = plan if isinstance(plan, Plan) else Plan.model_validate(plan)
        self.advance(at)
        self._account(at)
        if self._pending:                        # a newer plan supersedes the transition in flight
            self._pending = {}
        params = usable_gate_params(gate_route) if self.gate_route else {}
        steps: list[TransitionStep] = []
        pending: dict[str, int] = {}
        starting: list[float] = []
        started = stopped = 0
        self._targets = {d.id: d.replicas for d in p.deployments}
        for d in p.deployments:
            step, up, down, keep_until_ready = self._move_deployment(d, params.get(d.id), at, warm)
            steps.append(step)
            started, stopped = started + up, stopped + down
            if keep_until_ready:
                pending[d.id] = d.replicas
            starting += [t for t in self._pools[d.id].ready_times() if t > at]
        retired, down, draining = self._retire_dropped(at)
        steps += retired
        stopped += down
        pending.update(draining)
        self._gpus_started += started
        self._gpus_stopped += stopped
        self._pending, self._complete_at = pending, max(starting, default=at)
        if pending and (not self.make_before_break or self._complete_at <= at):
            self._complete(at)
        stopping = sum((self._pools[k].size - v) * self._pools[k].key[3] * self._pools[k].key[4]
                       for k, v in self._pending.items())
        log.info("fleet_sim.plan_applied", at=at, warm=warm, complete_at=self._complete_at,
                 replicas={k: v.size for k, v in sorted(self._pools.items())},
                 draining=dict(sorted(self._pending.items())),
                 gate_route=sorted(k for k, v in self._pools.items() if isinstance(v, GateRoutePool)))
        return Transition(from_epoch=0, steps=steps, gpus_started=started, gpus_stopped=stopped + stopping)

    def _move_deployment(self, d: Any, gr: Mapping[str, Any] | None, at: float,
                         warm: bool) -> tuple[TransitionStep, int, int, bool]:
        """One deployment of a new plan: (its step, GPUs started, GPUs stopped, whether surplus
        replicas keep serving until the transition's new replicas are ready)."""
        key: ConfigKey = (d.model, d.gpu, d.precision, d.tp, d.pp)
        pool = self._pools.get(d.id)
        before = pool.size if pool is not None else 0
        warm_at: list[float] = []
        started = stopped = 0
        if pool is not None and (pool.key != key or isinstance(pool, GateRoutePool) != (gr is not None)):
            if pool.key == key:               # same machines, other service model: stay warm
                warm_at = pool.ready_times()
            else:
                stopped += before * pool.key[3] * pool.key[4]
            self._retire(pool)
            pool = None
        if pool is None:
            pool = self._pools[d.id] = (
                self._new_gate_route_pool(d.id, key, gr) if gr is not None else _Pool(key))
        if isinstance(pool, GateRoutePool):
            assert gr is not None
            pool.configure(gr, at=at)
        if warm_at:
            pool.adopt(warm_at[:d.replicas], at)
        n, ngpu = pool.size, d.tp * d.pp
        cold = 0.0 if warm else self.cold_start.seconds(key)
        keep_until_ready = False
        if d.replicas > n:
            pool.resize(d.replicas, at, cold)
            started += 0 if warm else (d.replicas - n) * ngpu
        elif d.replicas < n:
            cut = min(n - d.replicas, n - pool.capacity(at))   # still starting: cancel now
            if cut:
                pool.resize(n - cut, at, 0.0)
                stopped += cut * ngpu
            keep_until_ready = pool.size > d.replicas
        action = "start" if before == 0 else "keep" if d.replicas == before else \
            "scale_up" if d.replicas > before else "scale_down"
        step = TransitionStep(deployment=d.id, action=action, from_replicas=before, to_replicas=d.replicas,
                              wait_for_ready=action == "scale_down",
                              cold_start_s=cold if d.replicas > before else None)
        return step, started, stopped, keep_until_ready

    def _retire_dropped(self, at: float) -> tuple[list[TransitionStep], int, dict[str, int]]:
        """Deployments the new plan drops: replicas still starting stop now, the rest drain once
        the transition is complete. Returns (steps, GPUs stopped now, deployments draining)."""
        steps, stopped, draining = [], 0, {}
        for dep in sorted(k for k in self._pools if k not in self._targets):
            pool = self._pools[dep]
            before, ngpu = pool.size, pool.key[3] * pool.key[4]
            cut = before - pool.capacity(at)
            if cut:
                pool.resize(before - cut, at, 0.0)
                stopped += cut * ngpu
            if pool.size:
                draining[dep] = 0
            else:
                self._retire(self._pools.pop(dep))
            steps.append(TransitionStep(deployment=dep, action="retire", from_replicas=before,
                                        to_replicas=0, wait_for_ready=True))
        return steps, stopped, draining

    def _complete(self, t: float) -> None:
        """The transition's new replicas are ready: stop the surplus (it drains its work)."""
        pending, self._pending = self._pending, {}
        self._account(t)
        for dep, target in sorted(pending.items()):
            pool = self._pools.get(dep)
            if pool is None:
                continue
            self._gpus_stopped += max(0, pool.size - target) * pool.key[3] * pool.key[4]
            if target == 0:
                self._retire(self._pools.pop(dep))
            elif pool.size > target:
                pool.resize(target, t, 0.0)
        log.info("fleet_sim.transition_complete", at=t, stopped=sorted(pending))

    def _account(self, t: float) -> None:
        """Integrate replica time (and its price) up to event time `t`: every replica costs from
        the moment it is started, through its cold start, until it is stopped."""
        last, self._accounted_to = self._accounted_to, max(self._accounted_to, t)
        if math.isinf(last) or t <= last:
            return
        dt = t - last
        for pool in self._pools.values():
            n = pool.size
            if n:
                ngpu = pool.key[3] * pool.key[4]
                self._gpu_seconds += n * ngpu * dt
                self._dollars += n * ngpu * self.perf.gpu_price.get(pool.key[1], 0.0) * dt / 3600.0

    def cost(self, until: float | None = None) -> dict[str, float]:
        """Dollars and GPU-hours of every replica started so far, up to event time `until`
        (default: the simulator's clock), and GPUs started and stopped."""
        self._account(self._clock if until is None else until)
        return {"dollars": self._dollars, "gpu_hours": self._gpu_seconds / 3600.0,
                "gpus_started": float(self._gpus_started), "gpus_stopped": float(self._gpus_stopped)}

    def status(self, at: float, fleet_id: str = "default", epoch: int = 0) -> FleetStatus:
        """Readiness per deployment at event time `at`, as a fleet reports it (FleetStatus)."""
        self.advance(at)
        deps = []
        for dep, pool in sorted(self._pools.items()):
            ready, size = pool.capacity(at), pool.size
            target = self._targets.get(dep, 0)
            deps.append(DeploymentStatus(deployment=dep, target=target, ready=ready, starting=size - ready,
                                         draining=max(0, size - target) if dep in self._pending else 0))
        complete = not self._pending and all(d.starting == 0 for d in deps)
        return FleetStatus(fleet_id=fleet_id, epoch=epoch, ts=at, deployments=deps, transition_complete=complete)

    def next_change(self) -> float:
        """Event time of the next readiness change (a replica ready, a transition completing)."""
        nxt = self._complete_at if self._pending else math.inf
        for pool in self._pools.values():
            for t in pool.ready_times():
                if t > self._clock:
                    nxt = min(nxt, t)
                    break
        return nxt

    def _new_gate_route_pool(self, deployment: str, key: ConfigKey,
                             params: Mapping[str, Any]) -> GateRoutePool:
        plant = self.iteration_truth.get(deployment) or self.iteration_truth.get(key) \
            or plant_from_params(params)
        return GateRoutePool(key, plant, self._done, patience_s=self.max_wait_s,
                             sampler=self._sampler(deployment) if self.iteration_samples else None)

    def _sampler(self, deployment: str) -> Callable[[float, int, int, float], None]:
        """Collects a pool's iteration timings, with seeded multiplicative jitter."""
        out = self._samples.setdefault(deployment, [])
        jitter = self._jitter.setdefault(deployment, random.Random(f"{self.seed}:{deployment}"))
        cv = self.iteration_cv

        def sample(ts: float, chunk: int, batch: int, seconds: float) -> None:
            if cv > 0:
                seconds *= max(0.05, 1.0 + cv * jitter.gauss(0.0, 1.0))
            out.append((ts, chunk, batch, seconds))

        return sample

    def _retire(self, pool: _Pool | GateRoutePool) -> None:
        """A replaced G&R pool keeps serving what it holds (no new arrivals) until empty."""
        if isinstance(pool, GateRoutePool) and not pool.idle:
            self._draining.append(pool)

    def replicas(self, deployment: str, at: float) -> tuple[int, int]:
        """(serving, total) replicas of a deployment at event time `at`."""
        pool = self._pools.get(deployment)
        return (pool.capacity(at), pool.size) if pool else (0, 0)

    def gate_route_pool(self, deployment: str) -> GateRoutePool | None:
        """The G&R pool serving `deployment`, if it runs gate-and-route."""
        pool = self._pools.get(deployment)
        return pool if isinstance(pool, GateRoutePool) else None

    # ---- event time --------------------------------------------------------------------------
    def advance(self, t: float) -> None:
        """Run the gate-and-route pools up to event time `t` and release finished records."""
        if t <= self._clock:
            return
        if self._pending and t >= self._complete_at:
            self._complete(max(self._complete_at, self._clock))
        self._clock = t
        for pool in self._pools.values():
            if isinstance(pool, GateRoutePool):
                pool.advance(t)
        if self._draining:
            for pool in self._draining:
                pool.advance(t)
            self._draining = [p for p in self._draining if not p.idle]
        self._release()

    def finish(self) -> None:
        """End of input: complete every request in flight and release all records."""
        for pool in [*self._draining, *(p for p in self._pools.values() if isinstance(p, GateRoutePool))]:
            pool.finish()
            self._clock = max(self._clock, pool.clock)
        self._draining = []
        self.reorder_hold_s, hold = -math.inf, self.reorder_hold_s
        try:
            self._release()
        finally:
            self.reorder_hold_s = hold

    # ---- requests ----------------------------------------------------------------------------
    def submit(self, rec: RequestRecord, deployment: str | None,
               query_type: str | None = None, placement: str | None = None) -> RequestRecord:
        """Serve one request on `deployment` (None: the router rejected it); returns what a
        serving engine would report and queues it for `drain`. On a gate-and-route pool the
        request is still in flight: the returned record has outcome None, and the finished one
        is queued when it completes. `placement` is the router's decode hint ("solo"/"mixed")."""
        qt = query_type or rec.query_type or "unknown"
        self.advance(rec.ts)
        pool = self._pools.get(deployment) if deployment is not None else None
        perf = self.perf.get(qt, pool.key) if pool is not None else None
        if deployment is not None and perf is None:
            self.unroutable += 1                  # plan/router mismatch: count, do not crash
            self.unroutable_by[(qt, deployment)] += 1
        if pool is None or perf is None:
            return self._emit(rec, qt, deployment, "rejected", None, None)
        if isinstance(pool, GateRoutePool):
            return self._submit_gate_route(pool, rec, qt, deployment, perf, placement)
        t = max(rec.ts, pool.clock)               # out-of-order arrivals join at the pool clock
        pool.clock = t
        share = 1.0 / max(perf.batch, 1)
        gate = pool.gate
        start = pool.start_time(t, share)
        if start is None or (self.max_wait_s is not None and start - t > self.max_wait_s):
            return self._emit(rec, qt, deployment, "rejected", None, None)
        if self.shed_late and (perf.ttft_s + start - t > perf.max_ttft_s + _EPS
                               or perf.latency_s + start - t > perf.max_latency_s + _EPS):
            pool.gate = gate                      # shed: it takes no capacity, later ones may start
            self.shed += 1
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

    def _submit_gate_route(self, pool: GateRoutePool, rec: RequestRecord, qt: str, deployment: str,
                           perf: RoutePerf, placement: str | None) -> RequestRecord:
        slot = _Slot(rec.ts)
        slot.rec, slot.qt, slot.deployment, slot.perf = rec, qt, deployment, perf
        self._order.append(slot)
        self._in_flight += 1
        t = max(rec.ts, pool.clock)
        pool.submit(GateRouteJob(pool.class_index(qt), t, rec.input_tokens, rec.output_tokens,
                                 placement, slot), t)
        return RequestRecord.model_construct(
            ts=rec.ts, query_type=qt, input_tokens=rec.input_tokens, output_tokens=rec.output_tokens,
            ttft_s=None, latency_s=None, deployment=deployment, outcome=None, request_id=rec.request_id)

    def _done(self, slot: _Slot, outcome: str, ttft: float | None, latency: float | None) -> None:
        """A G&R pool finished (or lost) the request of `slot`."""
        self._in_flight -= 1
        perf: RoutePerf = slot.perf
        if outcome == "done":
            assert ttft is not None and latency is not None
            ok = latency <= perf.max_latency_s + _EPS and ttft <= perf.max_ttft_s + _EPS
            outcome = "served" if ok else "slo_missed"
        else:
            outcome = "rejected"
        rec = self._record(slot.rec, slot.qt, slot.deployment, outcome, ttft, latency)
        slot.rec = slot.perf = None
        if slot.straggler:
            self._outbox.append(rec)
        else:
            slot.record = rec

    def _emit(self, rec: RequestRecord, qt: str, deployment: str | None, outcome: str,
              ttft: float | None, latency: float | None) -> RequestRecord:
        out = self._record(rec, qt, deployment, outcome, ttft, latency)
        if self._order:                           # keep submission order behind in-flight ones
            slot = _Slot(rec.ts)
            slot.record = out
            self._order.append(slot)
        else:
            self._outbox.append(out)
        return out

    def _record(self, rec: RequestRecord, qt: str, deployment: str | None, outcome: str,
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
        return out

    def _release(self) -> None:
        """Move finished records at the head of the order to the outbox; a head still in flight
        for longer than `reorder_hold_s` stops blocking (it is emitted when it finishes)."""
        order, out = self._order, self._outbox
        cutoff = self._clock - self.reorder_hold_s
        while order:
            slot = order[0]
            if slot.record is not None:
                out.append(slot.record)
            elif slot.ts < cutoff:
                slot.straggler = True
            else:
                break
            order.popleft()

    # ---- telemetry ---------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Records ready to drain."""
        return len(self._outbox)

    @property
    def in_flight(self) -> int:
        """Requests still being served by gate-and-route pools."""
        return self._in_flight

    def drain(self, flush: bool = False) -> list[TelemetryBatch]:
        """Full batches of observed records (and the remainder when `flush`)."""
        n = len(self._outbox)
        cut = n if flush else n - n % self.batch_size
        out = [TelemetryBatch.from_records(self._outbox[k:min(k + self.batch_size, cut)],
                                           producer=self.producer)
               for k in range(0, cut, self.batch_size)]
        del self._outbox[:cut]
        return out

    def drain_iterations(self, flush: bool = False) -> list[IterationBatch]:
        """Iteration timings of the gate-and-route pools, per deployment, in full batches of
        `batch_size` samples (and the remainders when `flush`)."""
        out = []
        for dep, rows in sorted(self._samples.items()):
            n = len(rows)
            cut = n if flush else n - n % self.batch_size
            for k in range(0, cut, self.batch_size):
                ts, chunk, batch, secs = zip(*rows[k:min(k + self.batch_size, cut)])
                out.append(IterationBatch(producer=self.producer, deployment=dep, ts=list(ts),
                                          chunk_tokens=list(chunk), decode_batch=list(batch),
                                          iteration_s=list(secs)))
            del rows[:cut]
        return out

    def metrics(self) -> dict[str, Any]:
        return {"outcomes": dict(self.outcomes), "by_deployment": dict(sorted(self.by_deployment.items())),
                "unroutable": self.unroutable, "shed": self.shed,
                "unroutable_by": {f"{q}@{d}": n for (q, d), n in self.unroutable_by.most_common(5)}, "pending": self.pending, "in_flight": self.in_flight,
                "slo": self.slo.overall(),
                "gate_route": {k: v.summary() for k, v in sorted(self._pools.items())
                               if isinstance(v, GateRoutePool)}}
