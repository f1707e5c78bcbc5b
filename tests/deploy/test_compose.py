"""docker-compose.yml and the Dockerfile agree with the settings model and the CLI
(no Docker engine runs here, so the files are checked as data)."""
from __future__ import annotations

from pathlib import Path

import yaml

from controller.cli import main
from controller.common.settings import Settings, Topics
from controller.common.topic_admin import topic_plan

REPO = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def _env_names() -> set[str]:
    names = {f"LLMFLEET_{f.upper()}" for f in Settings.model_fields if f != "topics"}
    return names | {f"LLMFLEET_TOPICS__{f.upper()}" for f in Topics.model_fields}


def test_services_and_images() -> None:
    svc = _compose()["services"]
    assert {"kafka", "topics", "controller", "router", "replay"} <= set(svc)
    assert svc["kafka"]["image"].startswith("apache/kafka:")
    env = svc["kafka"]["environment"]
    assert "broker,controller" in env["KAFKA_PROCESS_ROLES"], "KRaft mode, no ZooKeeper"
    assert svc["controller"]["deploy"]["replicas"] == 2
    for name in ("controller", "router", "replay"):
        assert svc[name]["image"] == "llmfleet:latest" and svc[name]["build"] == "."


def test_environment_matches_settings() -> None:
    svc = _compose()["services"]
    known = _env_names()
    for name in ("controller", "router", "replay"):
        env = svc[name]["environment"]
        unknown = sorted(k for k in env if k.startswith("LLMFLEET_") and k not in known)
        assert not unknown, f"{name}: {unknown} are not settings"
        Settings(**{k[len("LLMFLEET_"):].lower(): v for k, v in env.items() if "__" not in k})


def test_commands_exist_in_cli() -> None:
    svc = _compose()["services"]
    for name in ("controller", "router", "replay"):
        cmd = svc[name]["command"][0]
        assert cmd in main.commands, f"{name} runs `llmfleet {cmd}`, which the CLI lacks"
    assert "ENTRYPOINT [\"llmfleet\"]" in (REPO / "Dockerfile").read_text()


def test_topic_initialiser_matches_topic_plan() -> None:
    script = _compose()["services"]["topics"]["command"][0]
    env = _compose()["services"]["controller"]["environment"]
    s = Settings(telemetry_partitions=int(env["LLMFLEET_TELEMETRY_PARTITIONS"]),
                 windows_partitions=int(env["LLMFLEET_WINDOWS_PARTITIONS"]))
    for topic, (parts, cfg) in topic_plan(s).items():
        line = next((ln for ln in script.splitlines() if f"--topic {topic} " in ln), None)
        assert line is not None, f"the initialiser does not create {topic}"
        assert f"--partitions {parts}" in line, topic
        if cfg.get("cleanup.policy") == "compact":
            assert "cleanup.policy=compact" in line, topic
