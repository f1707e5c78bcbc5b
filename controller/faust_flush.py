"""Faust 0.15's producer-buffer flush can return before buffered writes are delivered.

Table writes (every ingest window update, every planner state) go through faust's producer
buffer, and faust flushes it before committing the consumer offsets those writes belong to.
But `ProducerBuffer.flush()` gives up as soon as one message takes longer than 0.1 s to be
handed to the Kafka client (a slow broker, a busy event loop), and the message it is handing
over when the buffer empties is not yet in the client's batches that the client's flush waits
for. The commit can then cover events whose changelog writes are not on the broker; a
`kill -9` at that moment loses them, and the worker that takes over restores stale window
counts. This shim makes the flush wait until every write put in the buffer is delivered (or
failed), bounded by `FLUSH_LIMIT_S` so that a producer that died cannot hang commits forever.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog
from faust.transport.producer import ProducerBuffer

FLUSH_LIMIT_S = 60.0

log = structlog.get_logger()
_put = ProducerBuffer.put
_flush_atmost = ProducerBuffer.flush_atmost


def _unresolved(buf: ProducerBuffer) -> set[Any]:
    return buf.__dict__.setdefault("_llmfleet_unresolved", set())  # type: ignore[no-any-return]


def put_tracked(self: ProducerBuffer, fut: Any) -> None:
    """Buffer a write and remember it until its delivery future resolves."""
    pending = _unresolved(self)
    pending.add(fut)
    fut.add_done_callback(pending.discard)
    _put(self, fut)


async def flush_until_delivered(self: ProducerBuffer) -> None:
    """Return once every buffered write is delivered or failed (or FLUSH_LIMIT_S passed)."""
    give_up = time.monotonic() + FLUSH_LIMIT_S
    while self.size and time.monotonic() < give_up:
        await _flush_atmost(self, None)  # raises if the producer stopped with messages left
    waiting = [f for f in _unresolved(self) if not f.done()]
    if waiting:
        await asyncio.wait(waiting, timeout=max(0.0, give_up - time.monotonic()))
    left = sum(not f.done() for f in _unresolved(self))
    if self.size or left:
        log.warning("faust.flush_incomplete", buffered=self.size, undelivered=left, limit_s=FLUSH_LIMIT_S)


def install() -> None:
    """Idempotent."""
    ProducerBuffer.put = put_tracked  # type: ignore[method-assign]
    ProducerBuffer.flush = flush_until_delivered  # type: ignore[method-assign]
