"""Watch the Kafka brokers: notice an outage, retry with exponential backoff, report it.

aiokafka and faust reconnect on their own, but say little while they do. The watch probes
the bootstrap servers with a Kafka Metadata round-trip (controller.common.kafka_probe.cluster_id),
every `interval_s` while they answer and with exponential backoff (plus jitter) while none
does, and turns what it sees into metrics and log events: `broker.unreachable` when an
outage starts, `broker.recovered` (with its length) when one ends, and `broker.reset` when
the broker that answers is another cluster (another cluster id) than the one first seen:
an embedded broker started afresh, or a wiped Kafka. Its topics, committed offsets and
changelogs are gone, so what a client holds (positions, table state) refers to nothing.
Callbacks let a worker or router act on these, e.g. re-create topics and restart.
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import structlog

from controller.common.kafka_probe import cluster_id

log = structlog.get_logger()

CARRY_ENV = "LLMFLEET_BROKER_HISTORY"  # broker counters handed to a restarted process
OnRecovered = Callable[[float], Awaitable[None]]  # gets the outage's length in seconds
OnReset = Callable[[str, str], Awaitable[None]]  # gets the old and the new cluster id


def backoff_delays(initial_s: float, max_s: float, factor: float = 2.0,
                   jitter: float = 0.2, rng: random.Random | None = None) -> Iterator[float]:
    """initial, initial*factor, ... capped at max_s, each spread by +-jitter (so a fleet of
    clients that lost the same broker does not retry in lockstep)."""
    rng = rng or random.Random()
    delay = initial_s
    while True:
        yield min(max_s, delay) * (1.0 + rng.uniform(-jitter, jitter))
        delay = min(max_s, delay * factor)


def parse_bootstrap(bootstrap_servers: str) -> list[tuple[str, int]]:
    """[(host, port)] of "host:port,host:port" (a missing port means Kafka's 9092)."""
    out = []
    for part in bootstrap_servers.split(","):
        part = part.strip().removeprefix("kafka://")
        if not part:
            continue
        host, _, port = part.rpartition(":") if ":" in part else (part, "", "9092")
        out.append((host.strip("[]") or "127.0.0.1", int(port)))
    if not out:
        raise ValueError(f"no broker address in bootstrap_servers={bootstrap_servers!r}")
    return out


def bootstrap_cluster_id(bootstrap_servers: str, timeout: float = 5.0) -> str | None:
    """The cluster id reported by the first bootstrap broker that answers (None: none does):
    the cluster a process starts on, against which the watch recognises a reset."""
    for host, port in parse_bootstrap(bootstrap_servers):
        cid = cluster_id(host, port, timeout)
        if cid is not None:
            return cid or None
    return None


@dataclass
class BrokerHealth:
    """What the watch has seen; `as_dict` feeds logs and the router's metrics."""

    up: bool = True
    cluster_id: str | None = None      # of the cluster first seen (updated on a reset)
    outages: int = 0
    resets: int = 0
    outage_seconds: float = 0.0        # finished outages
    down_since: float | None = None    # time.monotonic() of the first failed probe
    last_outage_s: float | None = None
    probes: int = 0
    failed_probes: int = 0
    recoveries: list[float] = field(default_factory=list)  # lengths of finished outages

    def current_outage_s(self, now: float | None = None) -> float:
        if self.down_since is None:
            return 0.0
        return (now if now is not None else time.monotonic()) - self.down_since

    def carry(self) -> str:
        """The counters as JSON, for a process that restarts itself (see `carried`)."""
        return json.dumps({"outages": self.outages, "outage_seconds": self.outage_seconds,
                           "resets": self.resets, "last_outage_s": self.last_outage_s})

    @classmethod
    def carried(cls, env: str = CARRY_ENV) -> BrokerHealth:
        """A fresh health with the counters a previous incarnation of this process carried over
        in `env` (zeros when unset or unreadable)."""
        try:
            old = json.loads(os.environ.get(env) or "{}")
            return cls(outages=int(old.get("outages", 0)), outage_seconds=float(old.get("outage_seconds", 0.0)),
                       resets=int(old.get("resets", 0)), last_outage_s=old.get("last_outage_s"))
        except (ValueError, TypeError, AttributeError):
            return cls()

    def as_dict(self) -> dict[str, float | int | bool | None]:
        return {"broker_up": self.up, "broker_outages": self.outages, "broker_resets": self.resets,
                "broker_outage_seconds": round(self.outage_seconds + self.current_outage_s(), 3),
                "broker_last_outage_s": self.last_outage_s}


class BrokerWatch:
    """Probe `bootstrap_servers` until cancelled (run it as a task: `await watch.run()`).

    An outage starts at the first failed probe and ends at the first probe that answers;
    `on_down` / `on_recovered` / `on_reset` callbacks run in the watch's task (a failing
    callback is logged, not raised, so the watch keeps watching). `cluster_id`: the cluster
    the caller's state belongs to (default: the first one the watch sees)."""

    def __init__(self, bootstrap_servers: str, *, interval_s: float = 1.0, backoff_initial_s: float = 0.5,
                 backoff_max_s: float = 15.0, probe_timeout_s: float = 1.0, name: str = "controller",
                 on_down: list[Callable[[], Awaitable[None]]] | None = None,
                 on_recovered: list[OnRecovered] | None = None,
                 on_reset: list[OnReset] | None = None,
                 on_change: Callable[[BrokerHealth], None] | None = None,
                 cluster: str | None = None, health: BrokerHealth | None = None,
                 probe: Callable[[str, int, float], str | None] = cluster_id) -> None:
        self.addresses = parse_bootstrap(bootstrap_servers)
        self.interval_s = interval_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = max(backoff_max_s, backoff_initial_s)
        self.probe_timeout_s = probe_timeout_s
        self.name = name
        self.on_down = list(on_down or [])
        self.on_recovered = list(on_recovered or [])
        self.on_reset = list(on_reset or [])
        self.on_change = on_change
        self._probe = probe
        self.health = health or BrokerHealth()
        self.health.cluster_id = cluster or self.health.cluster_id

    async def probe_once(self) -> str | None:
        """The cluster id of the first bootstrap broker that answers a Metadata request ("" when
        it answers without one), None when none does. Probed in a thread: it blocks."""
        for host, port in self.addresses:
            cid = await asyncio.to_thread(self._probe, host, port, self.probe_timeout_s)
            if cid is not None:
                return cid
        return None

    async def run(self) -> None:
        delays: Iterator[float] | None = None
        while True:
            cid = await self.probe_once()
            await self._observe(cid)
            if cid is not None:
                delays = None
                await asyncio.sleep(self.interval_s)
            else:
                delays = delays or backoff_delays(self.backoff_initial_s, self.backoff_max_s)
                wait = next(delays)
                log.info("broker.retry", who=self.name, in_s=round(wait, 2), failed_probes=self.health.failed_probes,
                         down_s=round(self.health.current_outage_s(), 1))
                await asyncio.sleep(wait)

    async def _observe(self, cid: str | None) -> None:
        h = self.health
        h.probes += 1
        now = time.monotonic()
        if cid is None:
            h.failed_probes += 1
            if h.up:
                h.up, h.down_since = False, now
                h.outages += 1
                log.warning("broker.unreachable", who=self.name, bootstrap=self._where(), outages=h.outages)
                self._changed()
                for cb in self.on_down:
                    await self._call(cb)
            return
        if not h.up:
            await self._recovered(now)
        if cid and h.cluster_id is None:
            h.cluster_id = cid
        elif cid and cid != h.cluster_id:
            old, h.cluster_id = h.cluster_id or "", cid
            h.resets += 1
            log.warning("broker.reset", who=self.name, bootstrap=self._where(), old_cluster=old, cluster=cid,
                        resets=h.resets)
            self._changed()
            for cb in self.on_reset:
                await self._call(cb, old, cid)

    async def _recovered(self, now: float) -> None:
        h = self.health
        length = h.current_outage_s(now)
        h.up, h.down_since = True, None
        h.outage_seconds += length
        h.last_outage_s = length
        h.recoveries.append(length)
        log.warning("broker.recovered", who=self.name, bootstrap=self._where(), outage_s=round(length, 2),
                    outages=h.outages, failed_probes=h.failed_probes)
        self._changed()
        for cb in self.on_recovered:
            await self._call(cb, length)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self.health)

    async def _call(self, cb: Callable[..., Awaitable[None]], *args: float | str) -> None:
        try:
            await cb(*args)
        except Exception:
            log.exception("broker.callback_failed", who=self.name, callback=getattr(cb, "__qualname__", repr(cb)))

    def _where(self) -> str:
        return ",".join(f"{h}:{p}" for h, p in self.addresses)
