"""The faust application: topics, tables, agents and timers are declared here; the work is
done by plain functions elsewhere in controller/worker/ (ingest/, windows/, planning/,
recovery.py, fleet_state.py, audit.py), each tested without Kafka.

    telemetry (N partitions) --ingest--> windows (keyed by fleet) --planner--> allocations
                                 |                                   |  \\--> demand
                                 +--> dlq                            +--> audit-requests --audit--> audits --planner

* ingest: one changelog-backed table entry per telemetry partition holds its open windows
  per fleet and the last offset applied (each record is counted once per offset, also after
  a crash).
* planner: a fleet's windows-topic messages share its key, so exactly one worker of the group
  plans each fleet; its state (epoch, plan in force, pending partials) is a table entry
  co-partitioned with the fleet's windows partition, so a worker that takes the partition over
  recovers the fleet's epoch sequence. Planning runs in a thread so ingest keeps flowing.
* audit: exact solves in a separate OS process, scaled out over audit-request partitions.
* workarounds for faust, aiokafka and the embedded broker: controller/common/workarounds.py.
"""
from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from typing import Any

import faust
import numpy as np
import structlog
from pydantic import ValidationError

from schemas import (
    WINDOWS_MESSAGE, AllocationEvent, AuditReport, AuditRequest, Catalog, PartitionWatermark,
    WindowPartial, WindowProgress, describe, load_catalog,
)

from controller.common import workarounds
from controller.common.broker_watch import BrokerHealth, BrokerWatch
from controller.common.settings import Settings
from controller.worker import fleet_state, recovery
from controller.worker.audit import AuditRunner
from controller.worker.ingest import event_time, screening, telemetry_decode, ticks
from controller.worker.ingest.dedup import RequestDedup
from controller.worker.metrics import Metrics
from controller.worker.planning.iteration_telemetry import IterationTelemetry
from controller.worker.planning.planner import Planner
from controller.worker.planning.self_calibration import SelfCalibration
from controller.worker.windows import demand_window as dw
from controller.worker.windows import window_assembly
from controller.worker.windows.window_assembly import fast_path_step

log = structlog.get_logger()


def _bootstrap(s: Settings) -> list[str]:
    assert s.bootstrap_servers, "bootstrap_servers must be resolved before building the app"
    return [f"kafka://{h.strip()}" for h in s.bootstrap_servers.split(",")]


class Controller:
    """Everything one worker runs; `app` is the faust App."""

    def __init__(self, settings: Settings, catalog: Catalog | None = None, *, cluster: str | None = None,
                 restart: Callable[[str, BrokerHealth], None] | None = None) -> None:
        """`cluster`: id of the Kafka cluster the worker started on (see broker_watch);
        `restart(reason, health)` replaces the process after the broker came back empty."""
        s = self.s = settings
        self.catalog = catalog or load_catalog(s.catalog_path)
        self.qt_ids = {q.id for q in self.catalog.query_types}
        rules = tuple(dw.LengthRule(**r) for r in s.classify_rules)  # type: ignore[arg-type]
        self.rules = screening.Rules(frozenset(self.qt_ids), rules, s.default_query_type, s.window_s,
                                     s.event_time_bound_s, s.min_event_ts, s.max_open_windows)
        for name in [r.query_type for r in rules] + [s.default_query_type]:
            if name not in self.qt_ids:
                raise ValueError(f"classification names query type {name!r} missing from the catalog")
        self.planner = Planner(self.catalog, s)
        # engine iteration timings ("iterations" telemetry) -> fitted gate-and-route iteration
        # models; the planner reads them when it is the leader in this worker. Each worker sees
        # only the samples of its own telemetry partitions.
        self.iterations = IterationTelemetry()
        self.planner.iteration_telemetry = self.iterations  # type: ignore[attr-defined]
        self.self_calibration = SelfCalibration(  # issue 16: per-tier speed correction from latencies
            self.catalog.to_instance(performance_model=s.performance_model).to_spec(), gain=s.self_calibration_gain,
            max_factor=s.self_calibration_max_factor, min_requests=s.self_calibration_min_requests) \
            if s.self_calibration else None
        self.planner.self_calibration = self.self_calibration  # type: ignore[attr-defined]
        self.metrics = Metrics(self.planner.cold_start.seconds)
        self.audits = AuditRunner(s.audit_time_limit_s)
        workarounds.install(no_auto_create=False, fetch_wait_ms=s.fetch_wait_ms)  # run_worker: all
        self.last_seen: dict[int, float] = {}
        self.dedup = RequestDedup(s.dedup_ids)
        self._synced: set[str] = set()  # fleets whose state is aligned with the published topics
        self._last_event: dict[str, AllocationEvent] = {}  # per fleet: newest plan published or synced
        self._restart = restart
        self.broker_watch = BrokerWatch(
            s.bootstrap_servers or "", interval_s=s.broker_probe_s, backoff_max_s=s.broker_backoff_max_s,
            name="worker", cluster=cluster, health=BrokerHealth.carried(),
            on_reset=[self._on_broker_reset], on_change=self.metrics.observe_broker)
        self.metrics.observe_broker(self.broker_watch.health)
        self.app = app = faust.App(
            s.consumer_group, broker=_bootstrap(s), store="memory://", autodiscover=False,
            topic_partitions=s.telemetry_partitions, topic_allow_declare=True,
            broker_rebalance_timeout=5.0, broker_session_timeout=8.0, broker_heartbeat_interval=1.0,
            consumer_auto_offset_reset="earliest", web_enabled=s.web_port > 0,
            web_port=s.web_port or 6066, web_bind=s.web_bind,
            producer_max_request_size=s.max_message_bytes,
            processing_guarantee="exactly_once" if s.enable_idempotence else "at_least_once",
            table_cleanup_interval=3600.0,
            **workarounds.faust_app_options(cluster),  # tansu end offsets, in-memory tables
        )
        t = s.topics
        raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
        self.t_telemetry = app.topic(t.telemetry, partitions=s.telemetry_partitions, **raw)
        self.t_windows = app.topic(t.windows, partitions=s.windows_partitions, **raw)
        self.t_audits = app.topic(t.audits, partitions=s.windows_partitions, **raw)
        self.t_audit_requests = app.topic(t.audit_requests, partitions=2, **raw)
        self.t_allocations = app.topic(t.shadow_allocations if s.observe_only else t.allocations,
                                       partitions=1, **raw)
        self.t_demand = app.topic(t.demand, partitions=1, **raw)
        self.t_dlq = app.topic(t.dlq, partitions=1, **raw)
        # no key/value types: faust serialises table keys and values as JSON
        self.ingest_table = app.Table("ingest-windows", default=None, partitions=s.telemetry_partitions)
        # one entry per fleet, on the windows partition the fleet's key hashes to (fleet_state.py)
        self.planner_table = app.Table("planner-state", default=None, partitions=s.windows_partitions)
        app.agent(self.t_telemetry, name="ingest")(self._ingest)
        app.agent(app.topic(t.windows, t.audits, **raw), name="planner")(self._plan)
        app.agent(self.t_audit_requests, name="audit")(self._audit)
        app.timer(max(0.2, min(s.idle_s, 1.0)), name="tick-idle-partitions")(self._tick_idle)
        app.task(self._watch_broker)
        if s.web_port > 0:
            app.page("/metrics")(self.metrics.faust_view())
        app.on_partitions_assigned.connect(self._on_assigned)

    async def _on_assigned(self, sender: Any, assigned: Any, **kwargs: Any) -> None:
        """Gaining windows partitions makes this worker the leader of their fleets: re-sync each
        fleet before planning it."""
        if any(tp.topic == self.s.topics.windows for tp in assigned):
            self._synced.clear()

    # ---- ingest --------------------------------------------------------------------------------
    async def _ingest(self, stream: Any) -> None:
        s = self.s
        async for event in stream.events():
            msg = event.message
            p, off = msg.partition, msg.offset
            self.last_seen[p] = time.monotonic()
            key = f"p{p}"
            state = fleet_state.ingest_from_changelog(self.ingest_table.get(key), s.fleet_id)
            wm_in = state.wm
            try:
                cols, wm_only, fleet = await self._decode(event.value, msg, state)
            except Exception as exc:  # a decoder bug must cost one message, not the ingest agent
                log.exception("telemetry.decode_failed", partition=p, offset=off)
                await self._dead(event.value or b"", msg, f"internal error while decoding: {exc!r}")
                cols, wm_only, fleet = None, None, s.fleet_id
            if cols is not None:
                new_wm = event_time.advance(state.wm, float(cols[0].max()), time.time(),
                                            bound_s=s.event_time_bound_s) if len(cols[0]) else None
                applied, late = dw.add_records(state, off, *cols, window_s=s.window_s, grace_s=s.grace_s,
                                                burst_s=s.burst_s, watermark=new_wm, fleet=fleet)
                if applied:
                    self.metrics.records.inc(len(cols[0]))
                    self.metrics.late.inc(late)
            else:
                state.offset = max(state.offset, off)
            before = state.wm
            partials = dw.close_ready(state, p, window_s=s.window_s, grace_s=s.grace_s, watermark=wm_only)
            for part in partials:
                await self._to_fleet(WindowPartial(**part, closed_at=time.time()))
            progress = self._progress(state, p, wm_in) if cols is not None else []
            for prog in progress:
                await self._to_fleet(WindowProgress(**prog))
            if state.wm is not None and (partials or wm_only is not None or before is None
                                         or state.wm // s.window_s != before // s.window_s):
                # every fleet waits for every telemetry partition: the watermark goes to all
                note = PartitionWatermark(partition=p, wm=state.wm).model_dump_json().encode()
                for k in range(s.windows_partitions):
                    await self.t_windows.send(key=b"wm", value=note, partition=k)
            self.ingest_table[key] = fleet_state.ingest_to_changelog(state)

    async def _to_fleet(self, msg: WindowPartial | WindowProgress) -> None:
        """A fleet's windows message, keyed by the fleet: its partition, and so its leader."""
        fleet = msg.fleet or self.s.fleet_id
        await self.t_windows.send(key=fleet.encode(), value=msg.model_dump_json(exclude_none=True).encode())

    def _progress(self, state: dw.PartitionState, partition: int, before: float | None) -> list[dict[str, Any]]:
        """The open window so far, per fleet, each time the partition's watermark crosses a
        fast-path step (Planner.on_burst: the first plan from observed traffic, and re-plans on
        a burst)."""
        s = self.s
        if not (s.fast_path or s.startup_plan == "observed") or state.wm is None:
            return []
        step = fast_path_step(s)
        if before is not None and state.wm // step == before // step:
            return []
        return dw.progress(state, partition, window_s=s.window_s)

    async def _decode(self, raw: bytes | None, msg: Any, state: dw.PartitionState
                      ) -> tuple[tuple[np.ndarray, ...] | None, float | None, str]:
        """Columns of a message's sane records and their fleet, or a verified tick's (bounded)
        watermark.

        Every refused message, and every refused record of a batch (with its index), goes to
        the DLQ with its reason; the good records of a batch are still counted.
        """
        s = self.s
        d = telemetry_decode.decode(raw, s.max_decode_bytes)
        for r in d.rejected:
            await self._dead(raw or b"", msg, r.reason, r.index, r.record)
        if d.tick is not None:
            try:
                wm = ticks.verify(s.tick_key, msg.topic, msg.partition, d.tick)
            except ValueError as exc:
                await self._dead(raw or b"", msg, str(exc))
                return None, None, s.fleet_id
            if wm > time.time() + s.event_time_bound_s:
                await self._dead(raw or b"", msg, f"tick: {event_time.FAR_FUTURE}")
                return None, None, s.fleet_id
            return None, event_time.advance(state.wm, wm, time.time(), bound_s=s.event_time_bound_s), s.fleet_id
        if d.iterations is not None:  # engine iteration timings: they feed the iteration-model fit only
            self.iterations.add(d.iterations)
            return None, None, s.fleet_id
        batch = d.batch
        if batch is None:
            return None, None, s.fleet_id
        fleet = batch.fleet or s.fleet_id
        if self.self_calibration is not None:
            self.self_calibration.add_batch(batch)
        sc = screening.screen_batch(batch, state.wm, state.windows.get(fleet, {}), self.rules,
                                    d.original_index if d.n_in > 1 else None)
        for (q, k), c in sc.classified.items():
            self.metrics.classified.labels(query_type=q, rule=str(k)).inc(c)
        for r in sc.rejected:
            await self._dead(raw or b"", msg, r.reason, r.index, r.record)
        keep = sc.keep.copy()
        if batch.request_id is not None and keep.any():  # a producer's retry is not counted twice
            pos = np.nonzero(keep)[0]
            fresh = self.dedup.fresh(msg.partition, [batch.request_id[i] for i in pos.tolist()])
            keep[pos[~fresh]] = False
            self.metrics.duplicates.inc(int((~fresh).sum()))
        return screening.kept_columns(batch, sc, keep), None, fleet

    async def _dead(self, raw: bytes, msg: Any, reason: str, index: int | None = None,
                    record: dict[str, Any] | None = None) -> None:
        """Publish a dead letter (controller/worker/ingest/screening.py builds it)."""
        self.metrics.dlq.inc()
        letter = screening.dead_letter(raw, msg.topic, msg.partition, msg.offset, reason, self.s.max_message_bytes,
                                       index, record)
        await self.t_dlq.send(value=letter.model_dump_json().encode())
        log.warning("telemetry.dead_letter", partition=msg.partition, offset=msg.offset, index=index,
                    reason=reason[:200])

    async def _tick_idle(self) -> None:
        """Advance idle partitions to this worker's watermark by sending them a signed tick."""
        if not self.broker_watch.health.up:
            # nothing arrives in an outage, so nothing to advance; and a tick buffered now would
            # be written, with stale metadata, into a broker that comes back empty
            return
        assigned = [tp.partition for tp in self.app.consumer.assignment()
                    if tp.topic == self.s.topics.telemetry]
        if not assigned:
            return
        wms = [st["wm"] for p in assigned if (st := self.ingest_table.get(f"p{p}")) and st.get("wm") is not None]
        if not wms:
            return
        now, top = time.monotonic(), max(wms)
        for p in assigned:
            if now - self.last_seen.get(p, 0.0) >= self.s.idle_s:
                self.last_seen[p] = now
                await self.t_telemetry.send(key=b"tick", value=ticks.make(self.s.tick_key, self.s.topics.telemetry,
                                                                          p, top), partition=p)

    # ---- planner (leader) ---------------------------------------------------------------------
    async def _plan(self, stream: Any) -> None:
        async for event in stream.events():
            part = event.message.partition
            if event.message.topic == self.s.topics.audits:
                try:
                    report = AuditReport.model_validate_json(event.value)
                except ValidationError as exc:
                    log.warning("planner.bad_audit_report", reason=describe(exc))
                    continue
                fs = await self._fleet(report.fleet_id, part)
                self.metrics.audit_gap.set(report.gap or 0.0)
                await self._publish(self.planner.on_audit(fs.planner, report))
                self._save(fs)
                continue
            try:
                msg = WINDOWS_MESSAGE.validate_json(event.value)
            except ValidationError as exc:
                await self._dead(event.value or b"", event.message, f"windows message: {describe(exc)}")
                continue
            if isinstance(msg, PartitionWatermark):  # every fleet planned on this partition waits for it
                fleets = self._fleets_on(part)
            else:
                fleets = [msg.fleet or self.s.fleet_id]
            for fleet in fleets:
                fs = await self._fleet(fleet, part)
                if isinstance(msg, PartitionWatermark) and fs.assembly.wm.get(str(msg.partition), -1.0) >= msg.wm:
                    continue  # nothing new for this fleet (idle ticks repeat watermarks): no work, no write
                await self._step(fs, msg)
                self._save(fs)

    def _fleets_on(self, partition: int) -> list[str]:
        """The fleets whose state lives on this windows partition (and, on a single windows
        partition, the configured fleet, so a single-fleet worker behaves as before any of its
        telemetry arrived; with more partitions a fleet is known from its first partial)."""
        fleets = {k for k, v in self.planner_table.items() if v and int(v.get("partition", 0)) == partition}
        if self.s.windows_partitions == 1:
            fleets.add(self.s.fleet_id)
        return sorted(fleets)

    async def _fleet(self, fleet: str, partition: int) -> fleet_state.FleetState:
        """This fleet's state; a fleet first seen by this process is re-synced with what is
        published (a new or restarted leader), and gets a startup plan if it has none."""
        fs = fleet_state.FleetState.from_changelog(self.planner_table.get(fleet), fleet, partition)
        fs.partition = partition
        if fleet not in self._synced:
            await self._sync_with_published(fs)
            if fs.planner.epoch == 0 and fs.planner.plan is None and self.s.startup_plan == "catalog":
                # routers get a plan at once (with "observed", the first progress makes it)
                await self._publish(await asyncio.get_running_loop().run_in_executor(
                    None, self.planner.on_startup, fs.planner, fleet, time.time()))
        return fs

    def _save(self, fs: fleet_state.FleetState) -> None:
        self.planner_table[fs.fleet] = fs.to_changelog()

    async def _step(self, fs: fleet_state.FleetState, msg: Any) -> None:
        """One windows message for one fleet: absorb it, close and plan what it completes, and
        look at the open window on progress (the fast path)."""
        s, loop, fleet = self.s, asyncio.get_running_loop(), fs.fleet
        self._absorb(fs.assembly, msg.model_dump(exclude_none=True))
        follow_up = None
        for window, closed_at in window_assembly.closable(
                fs.assembly, fleet_id=fleet, partitions=s.telemetry_partitions, window_s=s.window_s,
                grace_s=s.grace_s):
            await self.t_demand.send(key=fleet.encode(), value=window.model_dump_json().encode())
            self.metrics.windows.inc()
            decision = await loop.run_in_executor(None, self.planner.on_window, fs.planner, window, closed_at)
            await self._publish(decision)
            follow_up = decision.follow_up or follow_up
        if follow_up is not None:  # AGH once the GH plan is out: off the window -> event path
            await self._publish(await loop.run_in_executor(None, self.planner.follow_up, fs.planner, follow_up))
        if isinstance(msg, WindowProgress):  # the fast path looks at the window still open
            fast = window_assembly.open_window(fs.assembly, fleet_id=fleet, window_s=s.window_s,
                                               step_s=fast_path_step(s))
            if fast is not None:
                await self._publish(await loop.run_in_executor(None, functools.partial(
                    self.planner.on_burst, fs.planner, fast[0], time.time(), bins=fast[1])))

    def _absorb(self, state: window_assembly.AssemblyState, msg: dict[str, Any]) -> None:
        kind = window_assembly.absorb_any(state, msg)
        if kind == "duplicate":
            self.metrics.duplicate_partials.inc()
            log.info("planner.duplicate_partial", window=msg["window"], partition=msg["partition"])
        elif kind == "late":
            self.metrics.late_partials.inc()
            log.warning("planner.late_partial", window=msg["window"], partition=msg["partition"],
                        records=window_assembly.partial_records(msg), counted_in="next window's late_records")

    async def _publish(self, decision: Any) -> None:
        s = self.s
        for ev in decision.events:
            await self.t_allocations.send(key=ev.fleet_id.encode(), value=ev.model_dump_json().encode())
            self._last_event[ev.fleet_id] = ev
            self.metrics.observe_event(ev, decision.solve_seconds)
            log.info("plan.published", fleet=ev.fleet_id, epoch=ev.epoch, trigger=ev.trigger, method=ev.method,
                     status=ev.status, cost_per_hour=round(ev.cost_per_hour, 4), degraded=ev.degraded,
                     drift=decision.drift, gpus=sum(d.replicas * d.tp * d.pp for d in ev.plan.deployments),
                     solve_ms={k: round(v * 1e3, 2) for k, v in decision.solve_seconds.items()},
                     stage_ms={k: round(v * 1e3, 2) for k, v in decision.stage_seconds.items()},
                     compiled_qts=decision.compiled_query_types, window_end=ev.window_end,
                     shadow=s.observe_only)
        if decision.drift:
            self.metrics.drift.inc()
        for req in decision.audits:
            await self.t_audit_requests.send(key=req.fleet_id.encode(), value=req.model_dump_json().encode())

    async def _sync_with_published(self, fs: fleet_state.FleetState) -> None:
        """Align one fleet's recovered state with what is already published.

        The fleet table and the output topics are not written atomically: a leader killed
        after publishing but before its table update reached the changelog would otherwise
        publish the same window (and epoch) again. So a new leader continues from the fleet's
        highest epoch on the allocations topic and its last window on the demand topic. A
        leader whose table lost the plan in force (its changelog is gone) takes it from that
        event."""
        s, fleet, state = self.s, fs.fleet, fs.planner
        topic = s.topics.shadow_allocations if s.observe_only else s.topics.allocations
        last = await recovery.last_published(s.bootstrap_servers or "", topic, "epoch", fleet)
        end_msg = await recovery.last_published(s.bootstrap_servers or "", s.topics.demand, "window_end", fleet)
        last_end = float(end_msg["window_end"]) if end_msg else 0.0
        event = None
        if last is not None:
            try:
                event = AllocationEvent.model_validate(last)
            except ValidationError as exc:
                log.warning("planner.sync_bad_event", fleet=fleet, epoch=last.get("epoch"), reason=describe(exc))
            else:
                self._last_event[fleet] = event
                self.metrics.desired.observe(event)  # a new leader exports the plan in force at once
        if Planner.restore(state, event, int(last["epoch"]) if last else 0) and event is not None:
            log.info("planner.plan_restored", fleet=fleet, epoch=event.epoch, trigger=event.trigger)
        if last_end > 0:
            window_assembly.skip_to(fs.assembly, round(last_end / s.window_s) - 1)
        self._synced.add(fleet)
        log.info("planner.synced", fleet=fleet, partition=fs.partition, epoch=state.epoch,
                 closed_upto=fs.assembly.closed_upto)

    # ---- broker outages -------------------------------------------------------------------------
    async def _watch_broker(self) -> None:
        await self.broker_watch.run()

    async def _on_broker_reset(self, old: str, new: str) -> None:
        """The broker came back as another cluster (the embedded broker keeps nothing): its
        topics, committed offsets and table changelogs are gone, so this process's consumer
        positions and table state refer to nothing. Re-create the topics, put the plan in force
        back on the allocations topic at the next epoch (routers keep it, and a new leader
        continues from it), then restart the worker so faust starts from the new cluster."""
        s = self.s
        if s.broker_recovery == "off":
            log.error("worker.broker_reset_not_recovered", old_cluster=old, cluster=new,
                      hint="broker_recovery=off: restart the workers (and routers) by hand")
            return
        from controller.common.topic_admin import ensure_topics

        assert s.bootstrap_servers
        await ensure_topics(s, s.bootstrap_servers)
        topic = s.topics.shadow_allocations if s.observe_only else s.topics.allocations
        for fleet, last in sorted(self._last_event.items()):
            epoch_in_state = int(((self.planner_table.get(fleet) or {}).get("planner") or {}).get("epoch", 0))
            event = recovery.recovered_event(last, epoch_in_state)
            await recovery.send_direct(s.bootstrap_servers, s.max_message_bytes, topic,
                                       event.fleet_id.encode(), event.model_dump_json().encode())
            log.warning("plan.republished", fleet=event.fleet_id, epoch=event.epoch, was=last.epoch)
        if not self._last_event:  # the leader holds the plan in force: give it time to put it back first
            found = await recovery.wait_for_plan(s.bootstrap_servers, topic, s.fleet_id, s.broker_recovery_wait_s)
            log.info("worker.waited_for_plan", found=found, waited_max_s=s.broker_recovery_wait_s)
        self.audits.close()
        restart = self._restart or recovery.restart_worker
        restart("broker reset", self.broker_watch.health)

    # ---- audit ---------------------------------------------------------------------------------
    async def _audit(self, stream: Any) -> None:
        await self.audits.ensure_ready()  # the audit process imports while nothing waits on it
        async for raw in stream:
            try:
                req = AuditRequest.model_validate_json(raw)
            except ValidationError as exc:
                log.warning("audit.bad_request", reason=describe(exc))
                continue
            report = await self.audits.run(req)
            self.metrics.solve_seconds.labels(method=req.method).observe(report.seconds)
            await self.t_audits.send(key=req.fleet_id.encode(), value=report.model_dump_json().encode())
            log.info("audit.reported", epoch=report.epoch, status=report.status, gap=report.gap,
                     plan_cost=report.plan_cost, best_cost=report.best_cost, seconds=round(report.seconds, 3))
