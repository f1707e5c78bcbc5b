"""Where the plan to render comes from: an allocation event file, a plan file, or the
allocation topic at a given epoch; and how the files land (all or nothing)."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from controller.render.engines import RenderError
from schemas import AllocationEvent, Plan, describe
from schemas.render import RenderConfig


def load_config(path: Path | None) -> RenderConfig:
    if path is None:
        return RenderConfig()
    try:
        return RenderConfig.model_validate(yaml.safe_load(path.read_text()) or {})
    except (OSError, yaml.YAMLError) as exc:
        raise RenderError(f"{path}: {exc}") from exc
    except ValidationError as exc:
        raise RenderError(f"{path}: {describe(exc)}") from exc


def event_from_file(path: Path, fleet: str = "default", epoch: int = 1) -> AllocationEvent:
    """An AllocationEvent JSON, or a plan JSON (spec §3) wrapped as one of `fleet`/`epoch`."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RenderError(f"{path}: {exc}") from exc
    try:
        if isinstance(doc, dict) and "plan" in doc and "epoch" in doc:
            return AllocationEvent.model_validate(doc)
        plan = Plan.model_validate(doc)
    except ValidationError as exc:
        raise RenderError(f"{path}: neither an allocation event nor a plan: {describe(exc)}") from exc
    return AllocationEvent(fleet_id=fleet, epoch=epoch, trigger="window", method="gh", status="feasible",
                           plan=plan, cost_per_hour=0.0, gpu_cost_per_hour=0.0, demand={}, created_at=time.time())


async def event_from_topic(bootstrap: str, topic: str, fleet: str, epoch: int | None,
                           timeout_s: float = 10.0) -> AllocationEvent:
    """`fleet`'s event at `epoch` on the allocation topic (None: its newest)."""
    from aiokafka import AIOKafkaConsumer

    from controller.common.topic_admin import topic_partitions

    # "earliest": an assigned partition starts at its beginning even before the seek below has
    # resolved (aiokafka's default "latest" can win that race, and the topic then reads empty)
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        await c.start()
    except Exception as exc:  # aiokafka raises KafkaConnectionError and friends
        raise RenderError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    best: AllocationEvent | None = None
    try:
        tps = await topic_partitions(c, topic)
        c.assign(tps)
        ends = await c.end_offsets(tps)
        await c.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and await _behind(c, tps, ends):  # to the end offsets
            got = await c.getmany(timeout_ms=500)
            for msgs in got.values():
                for m in msgs:
                    try:
                        ev = AllocationEvent.model_validate_json(m.value)
                    except ValidationError:
                        continue
                    if ev.fleet_id != fleet or (epoch is not None and ev.epoch != epoch):
                        continue
                    if best is None or ev.epoch >= best.epoch:
                        best = ev
    finally:
        await c.stop()
    if best is None:
        raise RenderError(f"no allocation event of fleet {fleet!r}" + (f" at epoch {epoch}" if epoch else "")
                          + f" on {topic}")
    return best


async def _behind(c: Any, tps: list[Any], ends: dict[Any, int]) -> bool:
    for tp in tps:
        if await c.position(tp) < ends[tp]:
            return True
    return False


def write_all(files: dict[str, str], out_dir: Path, clean: bool = True) -> list[Path]:
    """Write every file into a temporary directory beside `out_dir`, then put it in place in
    one rename: a failure leaves `out_dir` as it was. `clean`: files of an earlier render that
    this one no longer has (a retired deployment) go; other files are kept."""
    out_dir = out_dir.resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        if out_dir.exists() and not clean:
            shutil.copytree(out_dir, tmp, dirs_exist_ok=True)
        elif out_dir.exists():  # keep what is not ours (a README, other manifests)
            for p in out_dir.iterdir():
                if not (p.suffix == ".yaml" and _ours(p)):
                    (shutil.copytree if p.is_dir() else shutil.copy2)(p, tmp / p.name)
        for name, text in files.items():
            (tmp / name).write_text(text)
        old = None
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}-old-{os.getpid()}")
            out_dir.rename(old)
        tmp.rename(out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [out_dir / n for n in sorted(files)]


def _ours(p: Path) -> bool:
    try:
        head = p.read_text(errors="replace")
    except OSError:
        return False
    return "app.kubernetes.io/managed-by: llmfleet" in head or (
        p.name == "kustomization.yaml" and "kind: Kustomization" in head)
