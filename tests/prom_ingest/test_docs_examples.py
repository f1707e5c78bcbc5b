"""docs/deploy.md's "Feed llmfleet from what you have" examples: the mapping file loads against the
catalog, the --scrape command line runs against simulated engines, the --prometheus-url one parses."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
from pathlib import Path


from controller.prom_ingest.command import prometheus
from controller.prom_ingest.mapping import load_mapping
from schemas import TelemetryBatch, load_catalog
from tests.prom_ingest.fake_vllm import FakeVllm, Traffic

REPO = Path(__file__).resolve().parents[2]
SECTION = REPO.joinpath("docs/deploy.md").read_text().split("## Feed llmfleet from what you have")[1]
KNOWN = {q.id for q in load_catalog().query_types}


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", SECTION, flags=re.S)


def _commands() -> list[list[str]]:
    lines = [ln for b in _blocks("bash") for ln in b.splitlines() if ln.startswith("llmfleet ingest prometheus")]
    assert len(lines) == 2
    return [shlex.split(ln)[3:] for ln in lines]


def _mapping_file(tmp_path: Path) -> Path:
    (yaml_text,) = [b for b in _blocks("yaml") if b.startswith("# mapping.yaml")]
    p = tmp_path / "mapping.yaml"
    p.write_text(yaml_text)
    return p


def test_the_documented_mapping_loads(tmp_path: Path) -> None:
    m = load_mapping(_mapping_file(tmp_path), KNOWN)
    assert m.deployment_of({"model_name": "Qwen/Qwen2.5-Coder-7B-Instruct"}) == "coder7b-a100"
    assert m.query_type_of({"model_name": "Qwen/Qwen2.5-Coder-7B-Instruct"}) == (True, "code")


def test_the_documented_prometheus_command_line_parses(tmp_path: Path) -> None:
    args = next(a for a in _commands() if "--prometheus-url" in a)
    args = [str(_mapping_file(tmp_path)) if a == "mapping.yaml" else a for a in args]
    ctx = prometheus.make_context("prometheus", args)
    assert ctx.params["prometheus_url"] == "http://prometheus:9090" and ctx.params["matchers"] == 'job="vllm"'


def test_the_documented_scrape_command_line_runs(tmp_path: Path) -> None:
    args = next(a for a in _commands() if "--scrape" in a)
    engines = {"code": FakeVllm("vllm-0-model"), "conversation": FakeVllm("vllm-1-model")}
    urls = iter(e.url for e in engines.values())
    args = [next(urls) if a.startswith("http://vllm-") else a for a in args] + ["--poll-s", "1"]
    traffic = Traffic(engines, {"code": 20, "conversation": 20}, seed=9)
    traffic.start()
    try:
        t0 = time.time()
        out = subprocess.run([sys.executable, "-m", "controller.cli", "ingest", "prometheus", *args],
                             capture_output=True, text=True, timeout=60, cwd=REPO)
        elapsed = time.time() - t0
    finally:
        traffic.stop()
        for e in engines.values():
            e.stop()
    assert out.returncode == 0, out.stderr
    batches = [TelemetryBatch.model_validate_json(line) for line in out.stdout.splitlines()]
    assert batches and all(b.producer.startswith("scrape:http://127.0.0.1:") for b in batches)
    deployments = {d for b in batches for d in (b.deployment or [])}
    assert deployments == {"vllm-0-model", "vllm-1-model"}
    n = sum(len(b) for b in batches)
    # --polls 3: a baseline and two 1 s intervals of 40 requests/s
    assert 20 <= n <= 40 * (elapsed + 1), (n, elapsed)
    assert "ingest stopped" in out.stderr


def test_bad_command_lines_are_clear_errors() -> None:
    from click.testing import CliRunner

    from controller.cli import main

    r = CliRunner().invoke(main, ["ingest", "prometheus"])
    assert r.exit_code == 2 and "either --prometheus-url URL or one or more --scrape URL" in r.output
    r = CliRunner().invoke(main, ["ingest", "prometheus", "--scrape", "vllm-0:8000/metrics", "--stdout"])
    assert r.exit_code == 2 and "is not an http(s):// URL" in r.output
    r = CliRunner().invoke(main, ["ingest", "prometheus", "--prometheus-url", "http://p:9090"],
                           env={"LLMFLEET_BOOTSTRAP_SERVERS": ""})
    assert r.exit_code == 2 and "ingest needs a running Kafka" in r.output
