"""Run one controller worker: `llmfleet worker` or `python -m controller.worker.run` (env-configured).

Workers started with the same consumer group share telemetry partitions; exactly one of them
plans (it owns the single windows partition).
"""
from __future__ import annotations

import asyncio
import os
import tempfile

import structlog

from controller.common.settings import Settings

log = structlog.get_logger()


def run_worker(settings: Settings, loglevel: str = "warning") -> None:
    """Blocking: ensure topics, build the faust app, run it until SIGTERM/SIGINT."""
    from faust.worker import Worker

    from controller.worker.app import Controller
    from controller.common.broker_watch import bootstrap_cluster_id
    from controller.common import workarounds
    from controller.common.topic_admin import ensure_topics

    if not settings.bootstrap_servers:
        raise SystemExit("a worker needs bootstrap_servers (LLMFLEET_BOOTSTRAP_SERVERS); "
                         "`llmfleet worker --embedded` starts a broker for you")
    workarounds.install(fetch_wait_ms=settings.fetch_wait_ms)
    asyncio.run(ensure_topics(settings, settings.bootstrap_servers))
    ctl = Controller(settings, cluster=bootstrap_cluster_id(settings.bootstrap_servers))
    ctl.app.conf.datadir = tempfile.mkdtemp(prefix="llmfleet-faust-")
    log.info("worker.starting", group=settings.consumer_group, bootstrap=settings.bootstrap_servers,
             pid=os.getpid(), observe_only=settings.observe_only)
    try:
        Worker(ctl.app, loglevel=loglevel, quiet=True, redirect_stdouts=False,
               override_logging=False).execute_from_commandline()
    finally:
        ctl.audits.close()


if __name__ == "__main__":
    from controller.common.logging_setup import configure_logging

    s = Settings()
    configure_logging(json=True, level=s.log_level)
    run_worker(s, loglevel=os.environ.get("LLMFLEET_FAUST_LOGLEVEL", "warning"))
