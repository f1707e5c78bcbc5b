"""Signed idle-partition ticks: the only control message on the telemetry topic.

A tick moves an idle partition's watermark so its windows close. An unsigned tick used to be
accepted from any producer, so anyone who could write telemetry could close windows early.
Now every tick carries an HMAC under the consumer group's `tick_key` (schemas.Tick); the
ingest agent dead-letters a tick that does not verify. A captured tick replayed later is
harmless: its watermark is one the partition already passed, and watermarks never go back.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets

from pydantic import ValidationError

from schemas import Tick

_PROCESS_SECRET = secrets.token_hex(32)


def key_bytes(tick_key: str | None) -> bytes:
    """The configured key, or a random one private to this process."""
    return (tick_key or _PROCESS_SECRET).encode()


def _mac(key: bytes, topic: str, partition: int, wm: float) -> str:
    return hmac.new(key, f"{topic}|{partition}|{float(wm)!r}".encode(), hashlib.sha256).hexdigest()


def make(tick_key: str | None, topic: str, partition: int, wm: float) -> bytes:
    """The message value of a tick for `partition` of `topic`."""
    tick = Tick(partition=partition, wm=float(wm), sig=_mac(key_bytes(tick_key), topic, partition, wm))
    return tick.model_dump_json().encode()


def verify(tick_key: str | None, topic: str, partition: int, head: dict[str, object]) -> float:
    """The tick's watermark; ValueError (with the reason) when it is not a valid tick of ours."""
    try:
        tick = Tick.model_validate(head, strict=True)
    except ValidationError as exc:
        raise ValueError(f"malformed tick: {exc.errors()[0]['msg']}") from None
    if tick.partition != partition:
        raise ValueError(f"tick names partition {tick.partition} but sits on partition {partition}")
    if not hmac.compare_digest(tick.sig, _mac(key_bytes(tick_key), topic, partition, tick.wm)):
        raise ValueError("forged tick: signature does not verify (ticks come only from controller workers)")
    return tick.wm

