"""The one module of third-party workarounds: what it installs, and that each entry is sourced."""
from __future__ import annotations

from pathlib import Path

import pytest

from controller.common import workarounds

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("w", workarounds.REGISTRY, ids=lambda w: w.name)
def test_every_workaround_cites_its_defect_and_an_existing_test(w: workarounds.Workaround) -> None:
    path, _, name = w.test.partition("::")
    test_file = REPO / path
    assert test_file.exists(), w.test
    if name:
        assert f"def {name}(" in test_file.read_text(), w.test
    assert w.defect and w.effect and w.kind in ("patch", "app-option")


def test_metadata_requests_do_not_auto_create(monkeypatch: pytest.MonkeyPatch) -> None:
    import aiokafka.client as aiokafka_client

    # undone after the test: other tests' clients create their topics by touching them
    monkeypatch.setattr(aiokafka_client, "MetadataRequest", aiokafka_client.MetadataRequest)
    monkeypatch.setattr(workarounds, "_installed", dict(workarounds._installed))
    workarounds.install(faust=False)
    req = aiokafka_client.MetadataRequest(["some-topic"])
    assert req._allow_auto_topic_creation is False  # what build() sends from Metadata v4 on
    assert "aiokafka-no-auto-create" in [w.name for w in workarounds.installed()]


def test_faust_consumers_get_the_short_fetch_wait() -> None:
    import faust.transport.drivers.aiokafka as faust_aiokafka

    workarounds.install(no_auto_create=False, fetch_wait_ms=35)
    workarounds.install(no_auto_create=False, fetch_wait_ms=35)  # idempotent: one proxy, not a proxy of a proxy
    consumer_cls = faust_aiokafka.aiokafka.AIOKafkaConsumer
    captured: dict[str, object] = {}

    def fake_init(self: object, *args: object, **kwargs: object) -> None:
        captured.update(kwargs)

    base = consumer_cls.__mro__[1]
    original = base.__init__
    base.__init__ = fake_init  # type: ignore[method-assign]
    try:
        consumer_cls(fetch_max_wait_ms=1500)
    finally:
        base.__init__ = original  # type: ignore[method-assign]
    assert captured["fetch_max_wait_ms"] == 35
    assert base.__name__ == "AIOKafkaConsumer"  # installed twice: still one wrapper deep
    names = [w.name for w in workarounds.installed()]
    assert {"faust-consumer-fetch-wait", "faust-resume-streams-last"} <= set(names)


def test_app_options_depend_on_the_broker() -> None:
    assert workarounds.faust_app_options("llmfleet-abc123")["producer_max_batch_size"] == 1
    real = workarounds.faust_app_options("kraft-cluster-xyz")
    assert real["producer_max_batch_size"] > 1 and real["recovery_consistency_check"] is False


def test_the_cli_lists_the_registry() -> None:
    import json

    from click.testing import CliRunner

    from controller.cli import main

    res = CliRunner().invoke(main, ["workarounds", "--json"])
    assert res.exit_code == 0, res.output
    names = [json.loads(line)["name"] for line in res.output.splitlines() if line.startswith("{")]
    assert names == [w.name for w in workarounds.REGISTRY]
