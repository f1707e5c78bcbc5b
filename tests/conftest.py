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
    from controller.devtools.broker import EmbeddedBroker

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


@pytest.fixture
def prometheus_server():
    """A factory: `prometheus_server(["127.0.0.1:8000"], scrape_interval_s=1)` starts a real
    Prometheus scraping those targets (stopped after the test). Skips when no `prometheus`
    binary is on PATH (Debian package `prometheus`; `.ci/run` installs it where apt-get exists)."""
    import shutil

    from tests.prometheus_server import PrometheusServer

    if shutil.which("prometheus") is None:
        pytest.skip("no `prometheus` binary on PATH: real-Prometheus tests skipped "
                    "(Debian: apt-get install -y prometheus)")
    started: list[PrometheusServer] = []

    def start(targets, **kw) -> PrometheusServer:
        server = PrometheusServer(targets, **kw).start()
        started.append(server)
        return server

    yield start
    for s in started:
        s.stop()
