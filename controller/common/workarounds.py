"""Every patch llmfleet applies to faust, aiokafka and the embedded broker (tansu), in one place.

Each `Workaround` names the defect it works around (upstream issue or the code that has it)
and the test that reproduces it; `install()` applies the process-wide patches (idempotent),
`faust_app_options()` gives the faust App settings that are workarounds, and `installed()`
says what this process has applied (the worker logs it at start; `llmfleet workarounds` lists
the registry). Remove an entry when its defect is fixed upstream and its test still passes
without it.
"""
from __future__ import annotations

import functools
import types
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import structlog

from controller.common.kafka_probe import embedded_broker

log = structlog.get_logger()


@dataclass(frozen=True)
class Workaround:
    name: str
    library: str       # what has the defect
    defect: str        # the upstream issue, or where the defective code is
    effect: str        # what goes wrong without the workaround
    test: str          # the test that reproduces the defect / checks the workaround
    kind: str          # "patch" (process-wide, install()) or "app-option" (faust_app_options())


REGISTRY: tuple[Workaround, ...] = (
    Workaround(
        "faust-resume-streams-last", "faust-streaming 0.11-0.15",
        "faust-streaming/faust#596: Recovery resumes stream partitions before flow_control.resume() "
        "empties the agents' queues",
        "messages fetched between the seek and the queue flush are dropped and their offsets never "
        "acked: a restarted leader skipped 7 of 8 replayed windows messages",
        "tests/controller/test_workarounds_recovery_order.py", "patch"),
    Workaround(
        "faust-consumer-fetch-wait", "faust-streaming 0.15",
        "faust/transport/drivers/aiokafka.py builds AIOKafkaConsumer with a hard-coded "
        "fetch_max_wait_ms=1500",
        "each hop (telemetry -> ingest -> windows -> planner) can wait 1.5 s on an empty partition",
        "tests/controller/test_workarounds.py::test_faust_consumers_get_the_short_fetch_wait", "patch"),
    Workaround(
        "aiokafka-no-auto-create", "aiokafka 0.10-0.14",
        "aiokafka.client sends MetadataRequest with allow_auto_topic_creation=True",
        "a client touching a topic makes the broker create it with its default partition count, "
        "behind ensure_topics' back (faust then refuses a table whose changelog disagrees)",
        "tests/controller/test_workarounds.py::test_metadata_requests_do_not_auto_create", "patch"),
    Workaround(
        "tansu-exact-end-offsets", "tansu 0.6 (the embedded broker)",
        "ListOffsets(latest) reports the last record batch's base offset + 1, not the end",
        "faust's table recovery reads a changelog to that end and misses the tail of a multi-record "
        "last batch: a worker taking over partitions restored stale ingest state and lost counts",
        "tests/reliability/test_worker_crash.py", "app-option"),
    Workaround(
        "faust-no-recovery-consistency-check", "faust-streaming 0.15 with in-memory tables",
        "Recovery compares the changelog's end with this process's own 'persisted' offset",
        "after a broker that came back empty it crashes table recovery before the broker watch can "
        "restart the worker cleanly",
        "tests/reliability/test_broker_outage.py::test_empty_broker_on_the_same_port", "app-option"),
)
BY_NAME = {w.name: w for w in REGISTRY}
_installed: dict[str, Workaround] = {}


def installed() -> list[Workaround]:
    """What this process has applied so far, in the order it was applied."""
    return list(_installed.values())


def _mark(name: str) -> None:
    _installed.setdefault(name, BY_NAME[name])


def install(*, faust: bool = True, no_auto_create: bool = True, fetch_wait_ms: int = 20) -> list[Workaround]:
    """Apply the process-wide patches (idempotent). `faust=False` for processes that use only
    aiokafka (router, replay), so they do not import faust; `no_auto_create=False` leaves
    aiokafka's metadata requests alone (a faust app built inside a test process or another
    program: its process entry decides)."""
    if no_auto_create:
        _no_auto_create_topics()
    if faust:
        _faust_fetch_wait(fetch_wait_ms)
        _faust_resume_streams_last()
    names = [w.name for w in installed()]
    log.info("workarounds.installed", names=names)
    return installed()


def faust_app_options(cluster: str | None) -> dict[str, Any]:
    """faust.App keyword settings that are workarounds (see REGISTRY), for a worker on `cluster`."""
    opts: dict[str, Any] = {"recovery_consistency_check": False, "producer_max_batch_size": 16384}
    _mark("faust-no-recovery-consistency-check")
    if embedded_broker(cluster):  # every write its own batch makes tansu's reported end exact
        opts["producer_max_batch_size"] = 1
        _mark("tansu-exact-end-offsets")
    return opts


# ---- aiokafka-no-auto-create ------------------------------------------------------------------
def _no_auto_create_topics() -> None:
    """Real Kafka deployments should also set auto.create.topics.enable=false (docker-compose.yml
    does). It does not stop a client with stale metadata from writing into a topic the embedded
    broker does not have yet (docs/reliability.md)."""
    import aiokafka.client as aiokafka_client
    from aiokafka.protocol.metadata import MetadataRequest

    if not getattr(aiokafka_client.MetadataRequest, "_llmfleet_no_auto_create", False):
        class MetadataRequestWithoutAutoCreate(MetadataRequest):  # type: ignore[misc, valid-type]
            _llmfleet_no_auto_create = True

            def __init__(self, topics: list[str] | None = None,
                         allow_auto_topic_creation: bool | None = False) -> None:
                super().__init__(topics, allow_auto_topic_creation)

        aiokafka_client.MetadataRequest = MetadataRequestWithoutAutoCreate  # type: ignore[misc]
    _mark("aiokafka-no-auto-create")


# ---- faust-consumer-fetch-wait ------------------------------------------------------------------
FETCH_WAIT_MS = 20


def _faust_fetch_wait(fetch_wait_ms: int) -> None:
    """Hand faust's driver a consumer class with a short wait; the cost is a fetch request every
    FETCH_WAIT_MS per idle connection, negligible on a LAN."""
    import aiokafka
    import faust.transport.drivers.aiokafka as faust_aiokafka

    global FETCH_WAIT_MS
    FETCH_WAIT_MS = fetch_wait_ms
    if not getattr(faust_aiokafka.aiokafka, "_llmfleet_fetch_wait", False):
        class LowLatencyConsumer(aiokafka.AIOKafkaConsumer):  # type: ignore[misc]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                kwargs["fetch_max_wait_ms"] = FETCH_WAIT_MS
                super().__init__(*args, **kwargs)

        class AiokafkaWithLowLatencyConsumer(types.ModuleType):
            _llmfleet_fetch_wait = True

            def __getattr__(self, name: str) -> Any:
                return getattr(aiokafka, name)

        proxy = AiokafkaWithLowLatencyConsumer("aiokafka")
        proxy.AIOKafkaConsumer = LowLatencyConsumer  # type: ignore[attr-defined]
        faust_aiokafka.aiokafka = proxy  # type: ignore[assignment]
    _mark("faust-consumer-fetch-wait")


# ---- faust-resume-streams-last ------------------------------------------------------------------
# When a worker finishes restoring its tables (or finds nothing to restore), faust's Recovery
# resumes fetching from the stream partitions, seeks them to their committed offsets and only
# then calls `flow_control.resume()`, which empties every agent's queue. With flow control
# already on (table recovery turns it on to read the changelogs), messages fetched after the
# seek reach the agents' queues in that gap and are then thrown away, while the consumer's
# position is past them. The shim defers the stream partitions' resume until after
# `flow_control.resume()`: the seek still happens while they are paused, the queues are emptied
# while nothing can be in them, and fetching then starts at the committed offsets.
_Step = Callable[..., Awaitable[None]]


def resume_streams_last(step: _Step) -> _Step:
    """Wrap a Recovery step so the stream partitions it resumes are resumed when it returns."""
    if getattr(step, "_resumes_streams_last", False):
        return step

    @functools.wraps(step)
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
        consumer = self.app.consumer
        generation = self.app.consumer_generation_id
        deferred: list[set[Any]] = []

        def defer(tps: Iterable[Any]) -> None:
            deferred.append(set(tps))

        consumer.resume_partitions = defer  # instance attribute: shadows the method
        try:
            await step(self, *args, **kwargs)
        finally:
            del consumer.resume_partitions
        # a step that returned early (another rebalance began) resumed nothing; and when a
        # rebalance began while the step awaited, its own recovery resumes what it assigns
        if self.app.consumer_generation_id != generation:
            return
        for tps in deferred:
            consumer.resume_partitions(tps)

    wrapper._resumes_streams_last = True  # type: ignore[attr-defined]
    return wrapper



def _faust_resume_streams_last() -> None:
    """Patch both places where faust resumes streams after a rebalance."""
    from faust.tables.recovery import Recovery

    Recovery.on_recovery_completed = resume_streams_last(Recovery.on_recovery_completed)  # type: ignore[method-assign]
    Recovery._resume_streams = resume_streams_last(Recovery._resume_streams)  # type: ignore[method-assign]
    _mark("faust-resume-streams-last")
