"""faust's producer buffer, flushed before an offset commit, with sends slower than 0.1 s."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from faust.transport.producer import ProducerBuffer

from controller import faust_flush


class SlowBuffer(ProducerBuffer):
    """A buffer whose every write takes `delay_s` to be delivered; a write's future resolves
    on delivery, as faust's FutureMessage does."""

    delay_s = 0.25

    async def _send_pending(self, fut: Any) -> None:
        await asyncio.sleep(self.delay_s)
        fut.set_result(None)


async def _flush_three(flush: Any, put: Any = ProducerBuffer.put) -> int:
    """Undelivered writes left when `flush` returns."""
    buf = SlowBuffer()
    buf.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))  # type: ignore[assignment]
    await buf.start()
    loop = asyncio.get_running_loop()
    futs = [loop.create_future() for _ in range(3)]
    try:
        for f in futs:
            put(buf, f)
        await flush(buf)
        return sum(not f.done() for f in futs)
    finally:
        while not buf.pending.empty():  # a stuck producer's leftovers: nothing for stop() to flush
            buf.pending.get_nowait()
        await buf.stop()


async def test_faust_alone_returns_before_the_writes_are_delivered() -> None:
    """What the shim is for; if this starts failing, faust fixed it and the shim can go."""
    assert await _flush_three(lambda b: faust_flush._flush_atmost(b, None), put=faust_flush._put) > 0


async def test_flush_waits_until_every_buffered_write_is_delivered() -> None:
    faust_flush.install()
    assert ProducerBuffer.flush is faust_flush.flush_until_delivered
    assert await _flush_three(lambda b: b.flush(), put=lambda b, f: b.put(f)) == 0


async def test_a_stuck_producer_does_not_hang_the_flush(monkeypatch: Any) -> None:
    faust_flush.install()
    monkeypatch.setattr(faust_flush, "FLUSH_LIMIT_S", 0.3)
    monkeypatch.setattr(SlowBuffer, "delay_s", 5.0)
    left = await asyncio.wait_for(_flush_three(lambda b: b.flush(), put=lambda b, f: b.put(f)), 10)
    assert left == 3
