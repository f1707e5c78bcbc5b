"""The plan in force as Prometheus gauges, so KEDA or an HPA can act on it (issue #18 item 1).

A custom prometheus_client collector holds the last `AllocationEvent` per fleet and yields, at
each scrape, only the series of that plan:

- `llmfleet_desired_replicas{fleet,deployment,model,gpu,precision,tp,pp}`: the plan's replicas;
- `llmfleet_transition_replicas{...same}`: the replicas make-before-break wants running now;
- `llmfleet_routing_weight{fleet,query_type,deployment}`: the plan's fraction (0..1);
- `llmfleet_plan_epoch{fleet}`, `llmfleet_plan_cost_dollars_per_hour{fleet}`;
- `llmfleet_transition_in_progress{fleet}`: 1 until the replicas the plan started are ready.

Why a collector rather than labelled Gauges: a Gauge child lives until someone removes it, so
a deployment a new plan drops would keep exporting its last value. Built from the current plan
at scrape time, its series are simply absent from the next scrape, and Prometheus marks them
stale at once (no 5-minute lookback). `KEDA_QUERY` turns "absent while a plan is in force" into
0 and leaves "no worker exports a plan" empty, which KEDA (`ignoreNullValues: "false"`) and an
HPA treat as an error and keep the replica count (docs/deploy.md, "Act on plans").

The transition rule (docs/router.md section 7, controller/sim/fleet_sim.py `apply_plan`): a
transition step that waits for readiness (scale_down, retire) keeps `max(from, to)` replicas,
the others want `to`, until the transition completes; then the plan's replicas. Steps come from
`ev.transition` when the event carries one; otherwise they are derived from the replicas this
collector last knew to be serving: the previous plan's if its transition had completed, else
what was serving before it (replicas a superseded transition was still starting are cancelled,
as the simulator does; surplus it kept stays kept). A transition completes when a `FleetStatus`
for its epoch (or later) says `transition_complete`, or, lacking one, once the slowest started
replica's expected cold start has passed since the event was observed (the step's
`cold_start_s`, else `cold_start(key)`, else `default_cold_start_s`). A transition that starts
nothing completes at once: there is nothing to wait for.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import structlog
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from schemas import AllocationEvent, FleetStatus, Plan, TransitionStep

from solvers.cold_start import ConfigKey

log = structlog.get_logger()

DEPLOYMENT_LABELS = ("fleet", "deployment", "model", "gpu", "precision", "tp", "pp")
ROUTE_LABELS = ("fleet", "query_type", "deployment")

#: instances whose plan is the newest of their fleet (an ex-leader keeps exporting its last plan)
_NEWEST = "(llmfleet_plan_epoch == on(fleet) group_left() max by (fleet) (llmfleet_plan_epoch))"
#: the PromQL a KEDA `prometheus` trigger runs for one deployment (docs/deploy.md shows it filled in)
KEDA_QUERY = ('max(llmfleet_transition_replicas{{fleet="{fleet}",deployment="{deployment}"}} '
              f'and on(instance, fleet) {_NEWEST}) '
              'or on() 0 * max(llmfleet_plan_epoch{{fleet="{fleet}"}})')
#: prometheus-adapter's external-rule metricsQuery (Go template) behind the HPA example
ADAPTER_METRICS_QUERY = ("max by (fleet, deployment) (<<.Series>>{<<.LabelMatchers>>} "
                         f"and on(instance, fleet) {_NEWEST})")


def keda_query(fleet: str, deployment: str) -> str:
    """KEDA_QUERY for one deployment of one fleet."""
    return KEDA_QUERY.format(fleet=fleet, deployment=deployment)


def adapter_query(series: str, fleet: str, deployment: str) -> str:
    """The query prometheus-adapter runs for an HPA whose selector is {fleet, deployment}."""
    return (ADAPTER_METRICS_QUERY.replace("<<.Series>>", series)
            .replace("<<.LabelMatchers>>", f'fleet="{fleet}",deployment="{deployment}"'))


def derive_steps(serving: Mapping[str, int], plan: Plan) -> list[TransitionStep]:
    """Make-before-break steps from the replicas serving now to `plan` (fleet_sim's actions)."""
    steps = []
    for d in plan.deployments:
        before = serving.get(d.id, 0)
        action = "start" if before == 0 else "keep" if d.replicas == before else \
            "scale_up" if d.replicas > before else "scale_down"
        steps.append(TransitionStep(deployment=d.id, action=action, from_replicas=before,
                                    to_replicas=d.replicas, wait_for_ready=action == "scale_down"))
    planned = {d.id for d in plan.deployments}
    steps += [TransitionStep(deployment=dep, action="retire", from_replicas=n, to_replicas=0, wait_for_ready=True)
              for dep, n in sorted(serving.items()) if dep not in planned and n > 0]
    return steps


def wanted_during(steps: list[TransitionStep]) -> dict[str, int]:
    """Replicas each deployment keeps running until the transition completes."""
    return {s.deployment: max(s.from_replicas, s.to_replicas) if s.wait_for_ready else s.to_replicas
            for s in steps}


@dataclass(frozen=True)
class FleetState:
    """One fleet's plan in force and its transition, as the collector last saw them."""

    event: AllocationEvent
    serving_before: dict[str, int]    # replicas serving when this transition began
    wanted: dict[str, int]            # transition replicas until it completes
    keys: dict[str, ConfigKey]        # labels of every deployment in `wanted` or the plan
    complete_at: float                # clock time the transition is expected to complete
    reported_complete: bool = False   # a FleetStatus said so

    def desired(self) -> dict[str, int]:
        return {d.id: d.replicas for d in self.event.plan.deployments}

    def in_transition(self, now: float) -> bool:
        """Replicas it started may not be ready yet (surplus, if any, is still kept)."""
        return not self.reported_complete and now < self.complete_at

    def serving(self, now: float) -> dict[str, int]:
        """Replicas a next transition starts from (started-but-unready ones are not counted)."""
        return self.serving_before if self.in_transition(now) else self.desired()


class DesiredStateCollector(Collector):
    """Yields the desired-state gauges of the last allocation event of each fleet."""

    def __init__(self, cold_start: Callable[[ConfigKey], float] | None = None, *,
                 default_cold_start_s: float = 300.0, clock: Callable[[], float] = time.time) -> None:
        """`cold_start(key)`: seconds until a started replica serves (solvers/cold_start.py
        `ColdStart.seconds`); `default_cold_start_s` (the uncached 5-minute start) otherwise."""
        if default_cold_start_s < 0:
            raise ValueError("default_cold_start_s must be >= 0")
        self.cold_start = cold_start
        self.default_cold_start_s = default_cold_start_s
        self.clock = clock
        self.fleets: dict[str, FleetState] = {}

    def observe(self, ev: AllocationEvent) -> None:
        """Make `ev` the plan in force of its fleet (an older or repeated epoch is ignored)."""
        now = self.clock()
        prev = self.fleets.get(ev.fleet_id)
        if prev is not None and ev.epoch <= prev.event.epoch:
            log.warning("desired_state.stale_event", fleet=ev.fleet_id, epoch=ev.epoch, in_force=prev.event.epoch)
            return
        serving = prev.serving(now) if prev is not None else {}
        steps = ev.transition.steps if ev.transition is not None else derive_steps(serving, ev.plan)
        keys = dict(prev.keys) if prev is not None else {}
        keys.update({d.id: (d.model, d.gpu, d.precision, d.tp, d.pp) for d in ev.plan.deployments})
        wanted = {**{d.id: d.replicas for d in ev.plan.deployments}, **wanted_during(steps)}
        wanted = {k: v for k, v in wanted.items() if v > 0}
        planned = {d.id for d in ev.plan.deployments}
        keys = {k: v for k, v in keys.items() if k in wanted or k in planned}
        waits = [self._cold_start_s(s, keys.get(s.deployment)) for s in steps if s.to_replicas > s.from_replicas]
        state = FleetState(event=ev, serving_before=serving, wanted=wanted, keys=keys,
                           complete_at=now + max(waits, default=0.0))
        self.fleets[ev.fleet_id] = state
        log.info("desired_state.plan", fleet=ev.fleet_id, epoch=ev.epoch, desired=state.desired(),
                 transition=wanted, complete_in_s=round(state.complete_at - now, 1))

    def observe_status(self, status: FleetStatus) -> None:
        """A fleet's readiness report: a completed transition of the plan in force ends it now."""
        state = self.fleets.get(status.fleet_id)
        if state is not None and status.transition_complete and status.epoch >= state.event.epoch:
            self.fleets[status.fleet_id] = FleetState(
                event=state.event, serving_before=state.serving_before, wanted=state.wanted, keys=state.keys,
                complete_at=state.complete_at, reported_complete=True)

    def _cold_start_s(self, step: TransitionStep, key: ConfigKey | None) -> float:
        if step.cold_start_s is not None:
            return step.cold_start_s
        if self.cold_start is not None and key is not None:
            return self.cold_start(key)
        return self.default_cold_start_s

    def _families(self) -> dict[str, GaugeMetricFamily]:
        g = GaugeMetricFamily
        return {
            "desired": g("llmfleet_desired_replicas", "replicas of each deployment in the plan in force",
                         labels=DEPLOYMENT_LABELS),
            "transition": g("llmfleet_transition_replicas", "replicas make-before-break wants running now: "
                            "max(before, planned) for scale-downs and retirements until the started "
                            "replicas are ready, then the plan's", labels=DEPLOYMENT_LABELS),
            "weight": g("llmfleet_routing_weight", "fraction (0..1) of a query type the plan routes to a "
                        "deployment", labels=ROUTE_LABELS),
            "epoch": g("llmfleet_plan_epoch", "epoch of the plan in force", labels=("fleet",)),
            "cost": g("llmfleet_plan_cost_dollars_per_hour", "objective of the plan in force",
                      labels=("fleet",)),
            "moving": g("llmfleet_transition_in_progress", "1 until the replicas the plan started are expected "
                        "ready (surplus replicas are kept until then)",
                        labels=("fleet",)),
        }

    def describe(self) -> Iterator[Metric]:
        """Names only, so registering checks duplicates without calling collect()."""
        return iter(self._families().values())

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        fam = self._families()
        for fleet, st in sorted(self.fleets.items()):
            ev, desired = st.event, st.desired()
            moving = st.in_transition(now)
            for d in ev.plan.deployments:
                fam["desired"].add_metric(_labels(fleet, d.id, st.keys[d.id]), float(d.replicas))
            for dep, n in sorted((st.wanted if moving else desired).items()):
                fam["transition"].add_metric(_labels(fleet, dep, st.keys.get(dep)), float(n))
            weights: dict[tuple[str, str], float] = {}
            for r in ev.plan.routes:
                weights[(r.query_type, r.deployment)] = weights.get((r.query_type, r.deployment), 0.0) + r.fraction
            for (q, dep), w in sorted(weights.items()):
                fam["weight"].add_metric([fleet, q, dep], min(w, 1.0))
            fam["epoch"].add_metric([fleet], float(ev.epoch))
            fam["cost"].add_metric([fleet], ev.cost_per_hour)
            fam["moving"].add_metric([fleet], 1.0 if moving else 0.0)
        return iter(fam.values())


def _labels(fleet: str, deployment: str, key: ConfigKey | None) -> list[str]:
    """Label values of a deployment series; a retiring deployment never seen in a plan has ''."""
    model, gpu, precision, tp, pp = key if key is not None else ("", "", "", "", "")
    return [fleet, deployment, model, gpu, precision, str(tp), str(pp)]
