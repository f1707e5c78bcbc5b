"""Shared fixtures: the embedded broker (one per session), spec paths, structlog reset."""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LLMFLEET_SHARED", REPO.parent / "shared"))
SPEC = SHARED / "spec"
EXAMPLES = SPEC / "examples"


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


@pytest.fixture(scope="session")
def broker() -> Iterator[str]:
    """bootstrap_servers of a real Kafka: $LLMFLEET_TEST_BOOTSTRAP, else a fresh embedded tansu."""
    external = os.environ.get("LLMFLEET_TEST_BOOTSTRAP")
    if external:
        yield external
        return
    from controller.broker import EmbeddedBroker

    b = EmbeddedBroker().start()
    try:
        yield b.bootstrap_servers
    finally:
        b.stop()


@pytest.fixture(scope="session")
def spec_instance() -> dict:
    return json.loads((EXAMPLES / "instance.json").read_text())


def load_checker():
    """The spec's outside checker, imported from shared/ (run as an oracle, never copied)."""
    import importlib.util

    path = SPEC / "check_plan.py"
    if not path.exists():
        pytest.skip(f"outside checker not found at {path}")
    spec = importlib.util.spec_from_file_location("spec_check_plan", path)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod
