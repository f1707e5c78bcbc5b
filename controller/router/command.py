"""`llmfleet router`: the reference router and the fleet simulator as one long-running process.

Requests (replayed traces or a load generator) arrive on `topics.requests`; each is routed
by the newest allocation event and served by the simulated fleet, whose observed telemetry
goes to `topics.telemetry`, closing the loop for the controller.
"""
from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING

import click
import structlog

from controller.common.async_tasks import cancel_and_wait
from controller.common.broker_watch import BrokerWatch, bootstrap_cluster_id

if TYPE_CHECKING:
    from controller.sim.loop_service import LoopService

log = structlog.get_logger()


async def serve(cold_start_s: float, seed: int, max_wait_s: float | None) -> None:
    from schemas import load_catalog

    from controller.sim.fleet_sim import FleetSimulator, PerfTable
    from controller.sim.loop_service import ClosedLoop, LoopService
    from controller.router.core import Router
    from controller.router.service import RouterService
    from controller.common.settings import Settings
    from controller.common import workarounds
    from controller.common.topic_admin import ensure_topics

    s = Settings()
    if not s.bootstrap_servers:
        raise click.UsageError("the router needs a running Kafka: set LLMFLEET_BOOTSTRAP_SERVERS "
                               "(start one with `llmfleet broker`)")
    bootstrap = s.bootstrap_servers
    workarounds.install(faust=False)
    await ensure_topics(s, bootstrap)

    async def start_over(old: str, new: str) -> None:
        # another cluster: re-create the topics and start new clients on them; the plan in force
        # stays in the Router, and its epoch rule drops anything older that shows up
        await ensure_topics(s, bootstrap)
        await service.reconnect()

    watch = BrokerWatch(bootstrap, interval_s=s.broker_probe_s, backoff_max_s=s.broker_backoff_max_s,
                        name="router", cluster=await asyncio.to_thread(bootstrap_cluster_id, bootstrap),
                        on_reset=[start_over])
    catalog = load_catalog(s.catalog_path)
    sim = FleetSimulator(PerfTable.from_instance(catalog.to_instance().to_spec()),
                         cold_start_s=cold_start_s, seed=seed, window_s=s.window_s, max_wait_s=max_wait_s)
    router = Router(fleet_id=s.fleet_id, seed=seed)
    service = LoopService(s.bootstrap_servers, ClosedLoop(router, sim, fleet_id=s.fleet_id),
                          s.topics.requests, s.topics.telemetry, group_id=f"{s.consumer_group}-router",
                          router_service=RouterService(s.bootstrap_servers, router, topic=s.topics.allocations))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    watching = asyncio.create_task(watch.run(), name="broker-watch")
    await service.start()
    log.info("router.started", requests=s.topics.requests, telemetry=s.topics.telemetry,
             allocations=s.topics.allocations)
    try:
        while not stop.is_set():
            await _tick(stop, service, watch)
    finally:
        await cancel_and_wait(watching)
        await service.stop()
        log.info("router.stopped", **{k: v for k, v in service.metrics().items() if k != "sim"},
                 **watch.health.as_dict())


async def _tick(stop: asyncio.Event, service: LoopService, watch: BrokerWatch) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=30.0)
    except asyncio.TimeoutError:
        log.info("router.metrics", **{k: v for k, v in service.metrics().items()
                                      if k in ("processed", "published_records", "epoch_applied")},
                 **watch.health.as_dict())


@click.command()
@click.option("--cold-start", "cold_start_s", type=float, default=60.0, show_default=True,
              help="seconds before a newly added replica serves")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--max-wait", "max_wait_s", type=float, default=10.0, show_default=True,
              help="client timeout: requests queued longer are rejected (0: wait forever)")
def router(cold_start_s: float, seed: int, max_wait_s: float) -> None:
    """Run the reference router + fleet simulator (settings from LLMFLEET_* variables)."""
    asyncio.run(serve(cold_start_s, seed, max_wait_s or None))
