"""The reference router: applies allocation events by epoch and routes requests by the plan.

A client library, no I/O: `Router` holds the plan in force per fleet and answers "which
deployment serves this request?". `controller/router/service.py` feeds it from Kafka.

Routing is smooth weighted round-robin (SWRR, the nginx algorithm) over the plan's fractions
for the query type, with the unserved fraction 1 - sum(fractions) as one more member that
means "reject". SWRR is deterministic and spreads picks evenly (0.5/0.3/0.2 gives exactly
50/30/20 over any 100 consecutive requests of the cycle), so a router needs no RNG to follow
a plan and its output is reproducible. The contract for other languages is docs/router.md.
"""
from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog

from schemas import AllocationEvent, FleetStatus

log = structlog.get_logger()

#: fractions are turned into integer weights at this resolution so SWRR runs in exact arithmetic
WEIGHT_SCALE = 1_000_000
#: SWRR member standing for "planned, but nothing that can serve it is ready"
NO_READY = "\x00no-ready"

Reason = Literal["routed", "unserved", "shed", "no_plan", "unknown_query_type", "no_ready"]
Placement = Literal["mixed", "solo"]


class SmoothWRR:
    """Smooth weighted round-robin over fixed integer weights (members may include None).

    Each pick adds every member's weight to its current value, takes the largest current
    (ties: the earlier member) and subtracts the total from it. Over one cycle of
    sum(weights) picks each member is chosen exactly weight times, and any prefix deviates
    from the ideal share by less than one pick per member.
    """

    __slots__ = ("members", "weights", "current", "total")

    def __init__(self, members: Sequence[str | None], weights: Sequence[int]) -> None:
        if len(members) != len(weights):
            raise ValueError("members and weights differ in length")
        if any(w < 0 for w in weights):
            raise ValueError("weights must be non-negative")
        keep = [k for k, w in enumerate(weights) if w > 0]
        self.members: tuple[str | None, ...] = tuple(members[k] for k in keep)
        self.weights: tuple[int, ...] = tuple(int(weights[k]) for k in keep)
        self.current: list[int] = [0] * len(keep)
        self.total = sum(self.weights)

    def pick(self) -> str | None:
        if not self.members:
            return None
        cur, w = self.current, self.weights
        best = 0
        for k in range(len(cur)):
            cur[k] += w[k]
            if cur[k] > cur[best]:
                best = k
        cur[best] -= self.total
        return self.members[best]


def plan_weights(routes: Mapping[str, float]) -> tuple[list[str | None], list[int]]:
    """Integer SWRR weights of one query type's fractions, with None for the unserved share.

    Members are sorted by deployment id (None last) so every router builds the same cycle.
    """
    members: list[str | None] = sorted(routes)
    weights = [max(0, round(routes[d] * WEIGHT_SCALE)) for d in members]
    unserved = WEIGHT_SCALE - sum(weights)
    if unserved > 0:
        members.append(None)
        weights.append(unserved)
    return members, weights


@dataclass(frozen=True)
class Decision:
    """Where one request goes: a deployment, or None with the reason it was rejected.

    `placement` is the gate-and-route decode placement hint ("mixed" or "solo") when the
    plan carries gate_route parameters for the deployment, else None.
    """

    deployment: str | None
    reason: Reason
    placement: Placement | None = None


@dataclass(frozen=True)
class _Previous:
    """Routes and replica targets of the plans a transition replaces (merged, newest first)."""

    shares: dict[str, dict[str, float]]
    target: dict[str, int]

    @classmethod
    def of(cls, event: AllocationEvent, older: _Previous | None = None) -> _Previous:
        shares = {qt: dict(v) for qt, v in (older.shares if older else {}).items()}
        for qt, v in _shares(event).items():
            shares.setdefault(qt, {}).update(v)
        target = {**(older.target if older else {}), **{d.id: d.replicas for d in event.plan.deployments}}
        return cls(shares, target)


@dataclass
class _Fleet:
    event: AllocationEvent
    wrr: dict[str, SmoothWRR]
    gate: dict[str, Mapping[str, Any]]
    routed: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    previous: _Previous | None = None           # plans being replaced, until the transition completes
    status: FleetStatus | None = None            # latest readiness report (None: route by the plan)


def _shares(event: AllocationEvent | None) -> dict[str, dict[str, float]]:
    """query type -> deployment -> fraction of one event's plan."""
    out: dict[str, dict[str, float]] = {}
    for r in event.plan.routes if event is not None else ():
        shares = out.setdefault(r.query_type, {})
        shares[r.deployment] = shares.get(r.deployment, 0.0) + r.fraction
    return out


def ready_shares(new: Mapping[str, float], old: Mapping[str, float], target: Mapping[str, int],
                 old_target: Mapping[str, int], ready: Mapping[str, int]) -> dict[str, float]:
    """One query type's fractions over what is ready (docs/router.md §6).

    A deployment of the new plan carries its fraction times the share of its replicas that
    are ready. What is missing goes to deployments of the previous plan that are still
    serving (each up to its old fraction times its ready share), then to whatever is ready in
    the new plan; a fraction with nothing ready anywhere is dropped (rejected as no_ready).
    The unserved share 1 - sum(new) stays unserved."""
    def ready_part(dep: str, want: int) -> float:
        return min(1.0, ready.get(dep, 0) / want) if want > 0 else 0.0

    out = {d: f * ready_part(d, target.get(d, 0)) for d, f in new.items()}
    for d, f in new.items():  # scaling up: its running replicas still carry their old share
        if d in old and old_target.get(d, 0) > 0:
            out[d] = max(out[d], old[d] * min(1.0, ready.get(d, 0) / old_target[d]))
    planned = sum(new.values())
    if sum(out.values()) > planned > 0:
        scale = planned / sum(out.values())
        out = {d: v * scale for d, v in out.items()}
    missing = planned - sum(out.values())
    if missing <= 1e-12:
        return out
    old_cap = {d: f * ready_part(d, old_target.get(d, 0)) for d, f in old.items() if d not in new}
    total = sum(old_cap.values())
    if total > 0:
        take = min(missing, total)
        for d, c in old_cap.items():
            out[d] = out.get(d, 0.0) + take * c / total
        missing -= take
    if missing > 1e-12:
        live = {d: v for d, v in out.items() if v > 0}
        if live:
            scale = sum(live.values())
            for d, v in live.items():
                out[d] = v + missing * v / scale
    return out


def _usable_gate(params: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    """Keep only gate_route entries that solved (status optimal) and carry per-class numbers."""
    out: dict[str, Mapping[str, Any]] = {}
    for dep, p in (params or {}).items():
        if isinstance(p, Mapping) and p.get("status", "optimal") == "optimal" \
                and isinstance(p.get("classes"), Mapping):
            out[dep] = p
    return out


class Router:
    """Latest allocation per fleet plus per-query-type SWRR state.

    `fleet_id` restricts the router to one fleet (events of other fleets are ignored) and
    makes it the default for `route`. `seed` drives the admission/placement draws and, when
    given, shuffles each query type's member order so that many routers with different
    seeds do not pick the same deployment in lock-step (SWRR ties go to the earlier member).
    """

    def __init__(self, fleet_id: str | None = None, seed: int | None = None) -> None:
        self.fleet_id = fleet_id
        self.seed = seed
        self._rng = random.Random(0 if seed is None else seed)
        self._fleets: dict[str, _Fleet] = {}
        self.stale_ignored = 0
        self.duplicates_ignored = 0
        self.foreign_ignored = 0
        self.applied = 0
        self.no_plan_rejected = 0
        self.status_applied = 0
        self._early_status: dict[str, FleetStatus] = {}

    # ---- allocation events ------------------------------------------------------------------
    def apply(self, event: AllocationEvent) -> bool:
        """Adopt `event` iff its epoch is strictly greater than the one in force for its fleet."""
        if self.fleet_id is not None and event.fleet_id != self.fleet_id:
            self.foreign_ignored += 1
            return False
        cur = self._fleets.get(event.fleet_id)
        if cur is not None and event.epoch <= cur.event.epoch:
            self.stale_ignored += 1
            if event.epoch == cur.event.epoch:
                self.duplicates_ignored += 1
            log.info("router.stale_event", fleet_id=event.fleet_id, epoch=event.epoch,
                     in_force=cur.event.epoch)
            return False
        self._fleets[event.fleet_id] = self._build(event, cur)
        self.applied += 1
        early = self._early_status.pop(event.fleet_id, None)
        if early is not None:
            self.set_status(early)
        log.info("router.epoch_applied", fleet_id=event.fleet_id, epoch=event.epoch,
                 previous=cur.event.epoch if cur else None,
                 deployments=len(event.plan.deployments), routes=len(event.plan.routes))
        return True

    def _build(self, event: AllocationEvent, prev: _Fleet | None) -> _Fleet:
        fleet = _Fleet(event=event, wrr={}, gate=_usable_gate(event.gate_route))
        if prev is not None:  # counters are per fleet, across epochs
            fleet.routed, fleet.rejected = prev.routed, prev.rejected
            fleet.status = prev.status
            # kept even before any readiness report: once one arrives, the old plan serves what
            # the new one has not made ready yet (without reports it is not used)
            fleet.previous = _Previous.of(prev.event, None if self._settled(prev) else prev.previous)
        self._rebuild(fleet)
        return fleet

    @staticmethod
    def _settled(fleet: _Fleet) -> bool:
        """Every deployment of the plan in force has its target ready (unknown: assumed)."""
        st = fleet.status
        if st is None:
            return True
        ready = st.ready()
        return all(ready.get(d.id, 0) >= d.replicas for d in fleet.event.plan.deployments)

    def _rebuild(self, fleet: _Fleet) -> None:
        """SWRR per query type from the plan, or, with readiness known, over what is ready."""
        new = _shares(fleet.event)
        old = fleet.previous.shares if fleet.previous else {}
        target = {d.id: d.replicas for d in fleet.event.plan.deployments}
        old_target = fleet.previous.target if fleet.previous else {}
        ready = fleet.status.ready() if fleet.status is not None else None
        fleet.wrr = {}
        for qt, shares in new.items():
            if ready is not None:
                shares = ready_shares(shares, old.get(qt, {}), target, old_target, ready)
            members, weights = plan_weights(shares)
            if ready is not None and sum(new[qt].values()) > sum(shares.values()) + 1e-9:
                members, weights = self._no_ready_member(members, weights, shares, new[qt])
            if self.seed is not None:
                order = list(range(len(members)))
                random.Random(f"{self.seed}:{qt}").shuffle(order)
                members, weights = [members[k] for k in order], [weights[k] for k in order]
            fleet.wrr[qt] = SmoothWRR(members, weights)

    @staticmethod
    def _no_ready_member(members: list[str | None], weights: list[int], shares: Mapping[str, float],
                         planned: Mapping[str, float]) -> tuple[list[str | None], list[int]]:
        """Split the None member into unserved (the plan's) and no-ready (nothing to serve it)."""
        lost = round((sum(planned.values()) - sum(shares.values())) * WEIGHT_SCALE)
        if lost <= 0 or None not in members:
            return members, weights
        k = members.index(None)
        weights = list(weights)
        weights[k] -= lost
        return [*members, NO_READY], [*weights, lost]

    # ---- readiness ----------------------------------------------------------------------------
    def set_status(self, status: FleetStatus) -> bool:
        """Adopt a fleet's readiness report: from now on its query types are routed only to
        ready replicas, with the previous plan's deployments covering what is not ready yet."""
        if self.fleet_id is not None and status.fleet_id != self.fleet_id:
            self.foreign_ignored += 1
            return False
        fleet = self._fleets.get(status.fleet_id)
        if fleet is None:  # a report before the fleet's first plan: applied with that plan
            early = self._early_status.get(status.fleet_id)
            if early is None or status.ts >= early.ts:
                self._early_status[status.fleet_id] = status
            return False
        if fleet.status is not None and status.ts < fleet.status.ts:
            return False
        fleet.status = status
        if fleet.previous is not None and status.epoch >= fleet.event.epoch and status.transition_complete:
            fleet.previous = None
        self._rebuild(fleet)
        self.status_applied += 1
        return True

    # ---- routing ----------------------------------------------------------------------------
    def route(self, query_type: str, fleet_id: str | None = None) -> str | None:
        """Deployment id for one request of `query_type`, or None: reject it."""
        return self.decide(query_type, fleet_id).deployment

    def decide(self, query_type: str, fleet_id: str | None = None) -> Decision:
        """Route one request: SWRR pick, then the deployment's gate (admission, placement)."""
        fleet = self._fleet(fleet_id)
        if fleet is None:
            self.no_plan_rejected += 1
            return Decision(None, "no_plan")
        wrr = fleet.wrr.get(query_type)
        if wrr is None:
            return self._reject(fleet, "unknown_query_type")
        dep = wrr.pick()
        if dep is None:
            return self._reject(fleet, "unserved")
        if dep == NO_READY:
            return self._reject(fleet, "no_ready")
        placement: Placement | None = None
        gate = fleet.gate.get(dep)
        cls = gate["classes"].get(query_type) if gate else None
        if isinstance(cls, Mapping):
            if not self._draw(cls.get("admit_probability", 1.0)):
                return self._reject(fleet, "shed")
            placement = "solo" if self._draw(cls.get("solo_probability", 0.0)) else "mixed"
        fleet.routed[dep] += 1
        return Decision(dep, "routed", placement)

    def _draw(self, p: Any) -> bool:
        """Bernoulli(p) from the seeded RNG; p <= 0 or p >= 1 draws nothing (deterministic)."""
        try:
            q = float(p)
        except (TypeError, ValueError):
            return True
        if q >= 1.0:
            return True
        if q <= 0.0:
            return False
        return self._rng.random() < q

    def _reject(self, fleet: _Fleet, reason: Reason) -> Decision:
        fleet.rejected[reason] += 1
        return Decision(None, reason)

    def _fleet(self, fleet_id: str | None) -> _Fleet | None:
        fid = fleet_id or self.fleet_id
        if fid is not None:
            return self._fleets.get(fid)
        if len(self._fleets) == 1:
            return next(iter(self._fleets.values()))
        return None

    # ---- inspection -------------------------------------------------------------------------
    @property
    def fleets(self) -> list[str]:
        return sorted(self._fleets)

    def epoch(self, fleet_id: str | None = None) -> int:
        """Epoch in force (0: no plan yet)."""
        fleet = self._fleet(fleet_id)
        return fleet.event.epoch if fleet else 0

    def event(self, fleet_id: str | None = None) -> AllocationEvent | None:
        fleet = self._fleet(fleet_id)
        return fleet.event if fleet else None

    def gate_params(self, deployment: str, fleet_id: str | None = None) -> Mapping[str, Any] | None:
        """The gate_route parameters in force for `deployment` (None: plain SWRR)."""
        fleet = self._fleet(fleet_id)
        return fleet.gate.get(deployment) if fleet else None

    def metrics(self) -> dict[str, Any]:
        """JSON-ready snapshot: epoch in force, routed per deployment, rejections, stale events."""
        return {
            "applied": self.applied,
            "status_applied": self.status_applied,
            "stale_ignored": self.stale_ignored,
            "duplicates_ignored": self.duplicates_ignored,
            "foreign_ignored": self.foreign_ignored,
            "no_plan_rejected": self.no_plan_rejected,
            "fleets": {
                fid: {
                    "epoch": f.event.epoch,
                    "routed": dict(sorted(f.routed.items())),
                    "rejected": sum(f.rejected.values()),
                    "rejected_by_reason": dict(sorted(f.rejected.items())),
                }
                for fid, f in sorted(self._fleets.items())
            },
        }
