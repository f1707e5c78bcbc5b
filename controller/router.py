"""The reference router: applies allocation events by epoch and routes requests by the plan.

A client library, no I/O: `Router` holds the plan in force per fleet and answers "which
deployment serves this request?". `controller/router_service.py` feeds it from Kafka.

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

from schemas import AllocationEvent

log = structlog.get_logger()

#: fractions are turned into integer weights at this resolution so SWRR runs in exact arithmetic
WEIGHT_SCALE = 1_000_000

Reason = Literal["routed", "unserved", "shed", "no_plan", "unknown_query_type"]
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


@dataclass
class _Fleet:
    event: AllocationEvent
    wrr: dict[str, SmoothWRR]
    gate: dict[str, Mapping[str, Any]]
    routed: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)


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
        log.info("router.epoch_applied", fleet_id=event.fleet_id, epoch=event.epoch,
                 previous=cur.event.epoch if cur else None,
                 deployments=len(event.plan.deployments), routes=len(event.plan.routes))
        return True

    def _build(self, event: AllocationEvent, prev: _Fleet | None) -> _Fleet:
        by_qt: dict[str, dict[str, float]] = {}
        for r in event.plan.routes:
            shares = by_qt.setdefault(r.query_type, {})
            shares[r.deployment] = shares.get(r.deployment, 0.0) + r.fraction
        wrr = {}
        for qt, shares in by_qt.items():
            members, weights = plan_weights(shares)
            if self.seed is not None:
                order = list(range(len(members)))
                random.Random(f"{self.seed}:{qt}").shuffle(order)
                members, weights = [members[k] for k in order], [weights[k] for k in order]
            wrr[qt] = SmoothWRR(members, weights)
        fleet = _Fleet(event=event, wrr=wrr, gate=_usable_gate(event.gate_route))
        if prev is not None:  # counters are per fleet, across epochs
            fleet.routed, fleet.rejected = prev.routed, prev.rejected
        return fleet

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


def __getattr__(name: str) -> Any:
    """`from controller.router import RouterService` without importing aiokafka eagerly."""
    if name == "RouterService":
        from .router_service import RouterService

        return RouterService
    raise AttributeError(name)
