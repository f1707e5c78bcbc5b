"""One deployment of the fleet simulator run by gate-and-route: iteration-level mixed/solo service.

The model is arXiv 2602.02987's (shared/research/paper_gate_route.md sections 2-6) at the
level of single requests with their real token counts:

* M replicas are *mixed*: one prefill slot plus B-1 decode slots. While a prefill of P tokens
  runs, the replica iterates with a token budget of C prompt tokens, tau(C) = alpha + beta C
  per iteration, for P/C iterations (the paper's rate C / (P tau): a prompt's last chunk
  shares its iteration with the next prompt's first, as chunked-prefill engines pack them),
  and every co-resident decode gains one token per iteration. Without a prefill its decodes
  run at the solo speed (the paper's endogenous mode switch).
* The other replicas are *solo*: B decode slots, gamma tokens/s per stream, never prefill.
* A free prefill slot takes the head of the class chosen by the occupancy gate
  (solvers.gate_route.policies.PrefillGate, the rule the standalone simulator uses); a
  prefilled request's decode goes where the router's placement hint says: with the SLI router
  ("randomised") strictly to that group, buffering in its queue; with the greedy router
  ("solo_first") to the hinted group if it has a free slot, else the other, else one FCFS
  buffer (no hint: solo first). Freed decode slots serve the buffers first.
* Waiting requests give up after `patience_s` (None: never).

Decodes are simulated per replica on a virtual token clock V (tokens gained per stream since
the start): V grows at gamma while the replica has no prefill and at k/T_pre during a prefill
of k chunks lasting T_pre, so a decode of D tokens ends when V passes its start value + D.
Events are only arrivals, prefill/decode completions, abandonments and replicas becoming
ready, so a pool costs O(log) per request event, not per iteration. There is no randomness
here: placement is least-loaded (ties: lowest index), service follows the token counts, and
a run is reproducible from its inputs.

The alpha, beta, gamma the pool serves at are the *plant* (what the hardware does), fixed
when the pool is created; the published parameters only steer it (M, targets, router). Real
iteration timings are reported through the `sampler` callback, as engines would.
"""
from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from solvers.gate_route.policies import GateRoutePolicy, PrefillGate, policy_from_params
from solvers.gate_route.iteration_model import IterationModel

__all__ = ["GateRouteJob", "GateRoutePool", "plant_from_params", "OTHER"]

_EPS_T = 1e-9
_DUE_S = 1e-6  # a decode within this much service time of its end is done: event times near
               # 1.7e9 s carry ~2e-7 s of rounding, which must not re-schedule it forever
_EV_REPLICA, _EV_READY, _EV_ABANDON = 0, 1, 2
_QUEUED, _PREFILL, _BUFFERED, _DECODE, _DONE = range(5)
OTHER = "*"  # class 0: request types the published parameters do not name (no prefill target)


class GateRouteJob:
    """One request inside a pool. `ticket` is the caller's handle, returned on completion."""

    __slots__ = ("cls", "arrival", "prompt", "decode", "placement", "ticket", "state",
                 "prefill_end", "wait_token")

    def __init__(self, cls: int, arrival: float, prompt: int, decode: int,
                 placement: str | None, ticket: Any) -> None:
        self.cls = cls
        self.arrival = arrival
        self.prompt = max(int(prompt), 1)
        self.decode = max(int(decode), 0)
        self.placement = placement
        self.ticket = ticket
        self.state = _QUEUED
        self.prefill_end = math.nan
        self.wait_token = 0


class _Replica:
    __slots__ = ("idx", "mixed", "ready_at", "retired", "pre", "pre_end", "pre_rate", "slow",
                 "v", "t_v", "rate", "decodes", "cnt", "version")

    def __init__(self, idx: int, ready_at: float, n_classes: int, gamma: float) -> None:
        self.idx = idx
        self.mixed = False
        self.ready_at = ready_at
        self.retired = False
        self.pre: GateRouteJob | None = None
        self.pre_end = math.inf
        self.pre_rate = 0.0
        self.slow = False                 # a prefill runs: decodes gain a token per mixed iteration
        self.v = 0.0
        self.t_v = ready_at
        self.rate = gamma
        self.decodes: list[tuple[float, int, GateRouteJob]] = []   # heap of (end V, seq, job)
        self.cnt = [0] * n_classes
        self.version = 0


def plant_from_params(params: Mapping[str, Any]) -> IterationModel:
    """alpha, beta, gamma, B as published (alpha_s/beta_s_per_token; else tau_mixed_s, beta 0)."""
    tau = float(params["tau_mixed_s"])
    beta = params.get("beta_s_per_token")
    alpha = params.get("alpha_s")
    if alpha is None or beta is None:
        alpha, beta = tau, 0.0
    return IterationModel(alpha=float(alpha), beta=float(beta),
                          gamma=float(params["gamma_tokens_per_s"]),
                          slots=int(params["slots_per_replica"]))


class GateRoutePool:
    """Replicas of one deployment under a gate-and-route policy (see the module docstring).

    `on_done(ticket, outcome, ttft_s, latency_s)` reports each request once: outcome "done"
    (with its TTFT and latency) or "abandoned" (both None). `sampler(ts, chunk_tokens,
    decode_batch, seconds)` receives iteration timings at the plant's tau(c): for every
    prefill its last chunk (the remainder of P, as an engine times the iteration that ends
    the prompt) and, if there were more, one full chunk; for every decode completion on a
    replica without a prefill one decode-only iteration (chunk 0, 1/gamma).
    """

    def __init__(self, key: Any, plant: IterationModel, on_done: Callable[..., None], *,
                 patience_s: float | None = None,
                 sampler: Callable[[float, int, int, float], None] | None = None) -> None:
        self.key = key
        self.plant = plant
        self.on_done = on_done
        self.patience_s = patience_s
        self.sampler = sampler
        self.clock = -math.inf
        self.replicas: list[_Replica] = []
        self._events: list[tuple[float, int, int, Any, int]] = []
        self._seq = 0
        self._next_idx = 0
        self.configured = False
        self.class_ids: list[str] = []
        self._index: dict[str, int] = {}
        self.queues: list[deque[GateRouteJob]] = []
        self.buffers: dict[str, deque[GateRouteJob]] = {
            "solo": deque(), "mixed": deque(), "shared": deque()}
        self.X: list[int] = []
        self.Ym: list[int] = []
        self.Ys: list[int] = []
        self.QD: list[int] = []
        self.reset_stats(None)
        self._add_classes([OTHER])

    # ---- control -----------------------------------------------------------------------------
    def configure(self, params: Mapping[str, Any], at: float | None = None) -> None:
        """Adopt published parameters (solvers.gate_route.plan.gate_route_plan): M, targets, router."""
        policy, ids = policy_from_params(params)
        self.configure_policy(policy, ids, int(params["replicas"]),
                              slots=int(params.get("slots_per_replica", self.plant.slots)),
                              chunk_tokens=float(params.get("chunk_tokens", 256.0)), at=at)

    def configure_policy(self, policy: GateRoutePolicy, class_ids: Sequence[str], n: int, *,
                         slots: int, chunk_tokens: float, at: float | None = None) -> None:
        """Adopt a policy for `n` planned replicas (its targets are per replica, indexed like
        `class_ids`). Classes seen before keep their queues; new ones are added."""
        if policy.layout != "static" or policy.coupling not in ("decode_first", "randomised"):
            raise ValueError("a fleet pool runs the static mixed/solo layout with the greedy "
                             "or randomised decode router")
        if slots < 2 or chunk_tokens <= 0:
            raise ValueError("slots must be >= 2 and chunk_tokens > 0")
        if at is not None:
            self.advance(at)
        ids = list(class_ids)
        self._add_classes([c for c in ids if c not in self._index])
        pos = {c: k for k, c in enumerate(ids)}

        def spread(values: Sequence[float], default: float) -> tuple[float, ...]:
            return tuple(float(values[pos[c]]) if c in pos else default for c in self.class_ids)

        low = min(policy.priority, default=0.0)
        self.policy = GateRoutePolicy(
            name=policy.name, layout="static", admission=policy.admission,
            coupling=policy.coupling, cap=policy.cap,
            x_target=spread(policy.x_target, 0.0), q_target=spread(policy.q_target, 0.0),
            priority=spread(policy.priority, low), mixed_replicas=policy.mixed_replicas,
            solo_probability=spread(policy.solo_probability, 1.0),
            backpressure=policy.backpressure)
        self.n_planned = max(int(n), 1)
        self.slots = int(slots)
        self.chunk = float(chunk_tokens)
        self.strict = policy.coupling == "randomised"
        self.gate = PrefillGate(self.policy, self.n_planned, head_time=_arrival, work_conserving=True)
        self.configured = True
        self._assign_roles()
        self._kick(self.clock)

    def _add_classes(self, ids: Sequence[str]) -> None:
        for c in ids:
            self._index[c] = len(self.class_ids)
            self.class_ids.append(c)
            self.queues.append(deque())
            for arr in (self.X, self.Ym, self.Ys, self.QD, *self._area, *self._counts()):
                arr.append(0)
            for r in self.replicas:
                r.cnt.append(0)

    def class_index(self, query_type: str | None) -> int:
        """Index of a request type; types the parameters do not name share class 0."""
        return self._index.get(query_type or OTHER, 0)

    def resize(self, replicas: int, at: float, cold_start_s: float) -> None:
        """Grow with replicas ready after `cold_start_s`; shrink by retiring the coldest first
        (a retired replica takes no new work and leaves once its in-flight work is done)."""
        self.advance(at)
        active = [r for r in self.replicas if not r.retired]
        n = max(int(replicas), 0)
        if n > len(active):
            for _ in range(n - len(active)):
                r = _Replica(self._next_idx, at + cold_start_s, len(self.class_ids), self.plant.gamma)
                self._next_idx += 1
                self.replicas.append(r)
                if cold_start_s > 0:
                    self._push(r.ready_at, _EV_READY, r, 0)
        elif n < len(active):
            for r in sorted(active, key=lambda r: (r.ready_at, r.idx))[n:]:
                r.retired = True
            self._drop_idle_retired()
        self._assign_roles()
        self._kick(max(at, self.clock))

    def ready_times(self) -> list[float]:
        """When each active replica serves (or served) from, earliest first."""
        return sorted(r.ready_at for r in self.replicas if not r.retired)

    def adopt(self, ready_at: list[float], at: float) -> None:
        """Take over replicas (their readiness times) from the pool this one replaces."""
        self.advance(at)
        for when in ready_at:
            r = _Replica(self._next_idx, when, len(self.class_ids), self.plant.gamma)
            r.t_v = max(when, at)
            self._next_idx += 1
            self.replicas.append(r)
            if when > at:
                self._push(when, _EV_READY, r, 0)
        self._assign_roles()
        self._kick(max(at, self.clock))

    def _assign_roles(self) -> None:
        """The earliest-ready active replicas are mixed (at least one while any is active)."""
        if not self.configured:
            return
        active = sorted((r for r in self.replicas if not r.retired), key=lambda r: (r.ready_at, r.idx))
        m = min(max(self.policy.mixed_replicas, 1), len(active))
        for k, r in enumerate(active):
            r.mixed = k < m

    def capacity(self, t: float) -> int:
        return sum(1 for r in self.replicas if not r.retired and r.ready_at <= t)

    @property
    def size(self) -> int:
        return sum(1 for r in self.replicas if not r.retired)

    @property
    def idle(self) -> bool:
        """No request queued, buffered or in service."""
        return not any(self.queues) and not any(self.buffers.values()) and all(
            r.pre is None and not r.decodes for r in self.replicas)

    # ---- requests ----------------------------------------------------------------------------
    def submit(self, job: GateRouteJob, t: float) -> None:
        """A request arrives at `t` (not before the pool clock): queue it for a prefill slot."""
        if not self.configured:
            raise RuntimeError("configure the pool before submitting requests")
        self.advance(t)
        self._tick(t)
        self.arrivals[job.cls] += 1
        self.queues[job.cls].append(job)
        self._wait(job, t)
        self._admit(t)

    def advance(self, t: float) -> None:
        """Process every event up to and including time `t`."""
        ev = self._events
        while ev and ev[0][0] <= t:
            when, _, kind, obj, token = heapq.heappop(ev)
            if when > self.clock:
                self.clock = when
            if kind == _EV_REPLICA:
                if obj.version == token:
                    self._tick(when)
                    self._replica_event(obj, when)
            elif kind == _EV_READY:
                self._tick(when)
                self._kick(when)
            elif obj.wait_token == token and obj.state in (_QUEUED, _BUFFERED):
                self._tick(when)
                self._abandon(obj, when)
        if t > self.clock:
            self.clock = t

    def finish(self) -> None:
        """No more arrivals: run until the pool is empty; requests no replica can ever serve
        (none left, or no prefill slot) are abandoned at the last event time."""
        while self._events:
            self.advance(self._events[0][0])
        for q in [*self.queues, *self.buffers.values()]:
            while q:
                self._abandon(q[0], self.clock)

    # ---- internals ---------------------------------------------------------------------------
    def _push(self, when: float, kind: int, obj: Any, token: int) -> None:
        self._seq += 1
        heapq.heappush(self._events, (when, self._seq, kind, obj, token))

    def _wait(self, job: GateRouteJob, t: float) -> None:
        job.wait_token += 1
        if self.patience_s is not None:
            self._push(t + self.patience_s, _EV_ABANDON, job, job.wait_token)

    def _kick(self, t: float) -> None:
        """Capacity or control changed: fill free decode slots, then free prefill slots."""
        if self.configured and math.isfinite(t):
            self._tick(t)
            self._drain_buffers(t)
            self._admit(t)

    def _sync(self, r: _Replica, t: float) -> None:
        if t > r.t_v:
            r.v += r.rate * (t - r.t_v)
            r.t_v = t

    def _schedule(self, r: _Replica) -> None:
        r.version += 1
        nxt = r.pre_end if r.pre is not None else math.inf
        if r.decodes:
            nxt = min(nxt, r.t_v + max(r.decodes[0][0] - r.v, 0.0) / r.rate)
        if math.isfinite(nxt):
            self._push(nxt, _EV_REPLICA, r, r.version)

    def _set_speed(self, r: _Replica, t: float, slow: bool) -> None:
        """Switch the replica between mixed speed (a prefill runs) and solo speed."""
        self._sync(r, t)
        if slow != r.slow:
            src, dst = (self.Ys, self.Ym) if slow else (self.Ym, self.Ys)
            for i, k in enumerate(r.cnt):
                if k:
                    src[i] -= k
                    dst[i] += k
            r.slow = slow
        r.rate = r.pre_rate if slow else self.plant.gamma

    def _replica_event(self, r: _Replica, t: float) -> None:
        self._sync(r, t)
        freed = False
        if r.pre is not None and r.pre_end <= t + _EPS_T:
            self._prefill_done(r, t)
        due = r.v + r.rate * _DUE_S
        while r.decodes and r.decodes[0][0] <= due:
            _, _, job = heapq.heappop(r.decodes)
            self._decode_done(r, job, t)
            freed = True
        self._schedule(r)
        if r.retired:
            self._drop_idle_retired()
        if freed:
            self._kick(t)

    def _start_prefill(self, r: _Replica, job: GateRouteJob, t: float) -> None:
        tau = self.plant.tau(self.chunk)
        dur = job.prompt / self.chunk * tau       # P/C iterations of a full token budget
        job.state = _PREFILL
        self.X[job.cls] += 1
        self.admitted[job.cls] += 1
        r.pre, r.pre_end, r.pre_rate = job, t + dur, 1.0 / tau
        self._set_speed(r, t, slow=True)
        self._schedule(r)

    def _prefill_done(self, r: _Replica, t: float) -> None:
        job = r.pre
        assert job is not None
        r.pre, r.pre_end = None, math.inf
        self._set_speed(r, t, slow=False)
        self.X[job.cls] -= 1
        self.prefill_done[job.cls] += 1
        job.prefill_end = t
        if self.sampler is not None:             # the chunks an engine would time for it
            p, c = self.plant, self.chunk
            k = math.ceil(job.prompt / c - 1e-12)
            last = int(round(job.prompt - (k - 1) * c))
            b = len(r.decodes)
            self.sampler(t, last, b, p.tau(last))
            if k > 1:
                self.sampler(t, int(c), b, p.tau(c))
        if job.decode == 0:
            self._finish_job(job, t)
        else:
            self._route_decode(job, t)
        self._admit(t)

    def _decode_done(self, r: _Replica, job: GateRouteJob, t: float) -> None:
        b = len(r.decodes) + 1
        r.cnt[job.cls] -= 1
        (self.Ym if r.slow else self.Ys)[job.cls] -= 1
        self.decode_done[job.cls] += 1
        self._finish_job(job, t)
        if self.sampler is not None and not r.slow:
            self.sampler(t, 0, b, 1.0 / self.plant.gamma)

    def _finish_job(self, job: GateRouteJob, t: float) -> None:
        job.state = _DONE
        self.completed[job.cls] += 1
        self.on_done(job.ticket, "done", job.prefill_end - job.arrival, t - job.arrival)

    def _abandon(self, job: GateRouteJob, t: float) -> None:
        if job.state == _QUEUED:
            self.queues[job.cls].remove(job)
            self.abandoned_prefill[job.cls] += 1
        else:
            for q in self.buffers.values():
                if job in q:
                    q.remove(job)
                    break
            self.QD[job.cls] -= 1
            self.abandoned_decode[job.cls] += 1
        job.state = _DONE
        self.on_done(job.ticket, "abandoned", None, None)
        if self.gate.bp_on:
            self._admit(t)

    def _free_replica(self, mixed: bool, t: float) -> _Replica | None:
        """The ready, active replica of the group with the fewest decodes and a free slot."""
        cap = self.slots - 1 if mixed else self.slots
        best: _Replica | None = None
        for r in self.replicas:
            if r.mixed is mixed and not r.retired and r.ready_at <= t and len(r.decodes) < cap:
                if best is None or len(r.decodes) < len(best.decodes):
                    best = r
        return best

    def _groups(self, job: GateRouteJob) -> tuple[bool, ...]:
        """Decode groups to try, in order (True = mixed)."""
        if job.placement == "mixed":
            return (True,) if self.strict else (True, False)
        if job.placement == "solo":
            return (False,) if self.strict else (False, True)
        return (False, True)  # no hint: greedy, solo first

    def _buffer_of(self, job: GateRouteJob) -> deque[GateRouteJob]:
        if not self.strict:
            return self.buffers["shared"]
        return self.buffers["mixed" if job.placement == "mixed" else "solo"]

    def _place(self, job: GateRouteJob, t: float) -> _Replica | None:
        for mixed in self._groups(job):
            r = self._free_replica(mixed, t)
            if r is not None:
                return r
        return None

    def _route_decode(self, job: GateRouteJob, t: float) -> None:
        r = self._place(job, t)
        if r is not None:
            self._add_decode(r, job, t)
            return
        job.state = _BUFFERED
        self._buffer_of(job).append(job)
        self.QD[job.cls] += 1
        self._wait(job, t)

    def _add_decode(self, r: _Replica, job: GateRouteJob, t: float) -> None:
        self._sync(r, t)
        job.state = _DECODE
        self._seq += 1
        heapq.heappush(r.decodes, (r.v + job.decode, self._seq, job))
        r.cnt[job.cls] += 1
        (self.Ym if r.slow else self.Ys)[job.cls] += 1
        self._schedule(r)

    def _drain_buffers(self, t: float) -> None:
        """Freed decode slots serve the buffers first (FCFS within each buffer)."""
        for q in self.buffers.values():
            while q:
                job = q[0]
                r = self._place(job, t)
                if r is None:
                    break
                q.popleft()
                self.QD[job.cls] -= 1
                self._add_decode(r, job, t)

    def _admit(self, t: float) -> None:
        """Fill idle prefill slots (the least-loaded mixed replica first) through the gate."""
        if not any(self.queues):
            return
        limit = self.slots - 1
        while True:
            slot: _Replica | None = None
            for r in self.replicas:
                if r.mixed and r.pre is None and not r.retired and r.ready_at <= t \
                        and len(r.decodes) <= limit:
                    if slot is None or len(r.decodes) < len(slot.decodes):
                        slot = r
            if slot is None:
                return
            c = self.gate.pick(self.X, self.queues, self.QD)
            if c < 0:
                return
            self._start_prefill(slot, self.queues[c].popleft(), t)

    def _drop_idle_retired(self) -> None:
        self.replicas = [r for r in self.replicas
                         if not (r.retired and r.pre is None and not r.decodes)]

    # ---- statistics --------------------------------------------------------------------------
    def _counts(self) -> tuple[list[int], ...]:
        return (self.arrivals, self.admitted, self.prefill_done, self.decode_done,
                self.completed, self.abandoned_prefill, self.abandoned_decode)

    def reset_stats(self, t: float | None) -> None:
        """Start measuring at `t` (None: at the first event): counts and time integrals of
        occupancy from here."""
        n = len(self.class_ids)
        self._t_stat = self._t0 = t
        self._area = [[0.0] * n for _ in range(5)]
        (self.arrivals, self.admitted, self.prefill_done, self.decode_done, self.completed,
         self.abandoned_prefill, self.abandoned_decode) = ([0] * n for _ in range(7))

    def _tick(self, t: float) -> None:
        if self._t_stat is None:
            self._t_stat = self._t0 = t
        dt = t - self._t_stat
        if dt > 0:
            ax, am, as_, aq, ad = self._area
            for i in range(len(self.X)):
                ax[i] += self.X[i] * dt
                am[i] += self.Ym[i] * dt
                as_[i] += self.Ys[i] * dt
                aq[i] += len(self.queues[i]) * dt
                ad[i] += self.QD[i] * dt
            self._t_stat = t

    def stats(self, t: float | None = None) -> dict[str, Any]:
        """Per class since reset_stats: counts, and mean occupancies per planned replica
        (x = prefills, y_m / y_s = decodes at mixed / solo speed, q_p / q_d = waiting)."""
        if t is not None:
            self.advance(t)
            self._tick(t)
        span = max(self._t_stat - self._t0, 1e-12) if self._t_stat is not None else 0.0
        n = self.n_planned if self.configured else 1
        out: dict[str, Any] = {"classes": list(self.class_ids), "seconds": span}
        names = ("arrivals", "admitted", "prefill_done", "decode_done", "completed",
                 "abandoned_prefill", "abandoned_decode")
        out.update({k: list(v) for k, v in zip(names, self._counts())})
        for j, k in enumerate(("x", "y_m", "y_s", "q_p", "q_d")):
            out[f"mean_{k}"] = [v / span / n if span > 0 else 0.0 for v in self._area[j]]
        return out

    def summary(self) -> dict[str, Any]:
        """Small JSON-ready view for metrics."""
        return {"replicas": self.size,
                "mixed": sum(1 for r in self.replicas if r.mixed and not r.retired),
                "prefilling": sum(self.X), "decoding": sum(self.Ym) + sum(self.Ys),
                "queued": sum(len(q) for q in self.queues), "buffered": sum(self.QD),
                "completed": sum(self.completed),
                "abandoned": sum(self.abandoned_prefill) + sum(self.abandoned_decode)}


def _arrival(job: GateRouteJob) -> float:
    return job.arrival
