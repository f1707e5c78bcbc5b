"""Serving engines' container templates: one entry per engine, so another can be added.

vLLM: `vllm serve MODEL --tensor-parallel-size TP --pipeline-parallel-size PP` (vLLM's CLI);
fp8 serves with `--quantization fp8` (weights quantised at load), int4 needs a pre-quantised
checkpoint (AWQ/GPTQ, named in the config's `models`), fp16 runs at `--dtype float16`.
SGLang: `python -m sglang.launch_server --model-path MODEL --tp-size TP` (no pipeline
parallelism in its server: a plan with pp > 1 is refused for it).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from schemas import Deployment


class RenderError(ValueError):
    """A plan the render cannot turn into manifests (the message says what to configure)."""


@dataclass(frozen=True)
class Engine:
    name: str
    image: str
    command: Callable[[Deployment, str, int], list[str]]   # (deployment, model source, port) -> argv
    metrics_path: str = "/metrics"


def _precision(engine: str, d: Deployment, flags: dict[str, list[str]]) -> list[str]:
    if d.precision not in flags:
        raise RenderError(f"deployment {d.id}: precision {d.precision!r} has no {engine} flags "
                          f"(known: {sorted(flags)})")
    return flags[d.precision]


def _vllm(d: Deployment, model: str, port: int) -> list[str]:
    return ["vllm", "serve", model, "--port", str(port), "--tensor-parallel-size", str(d.tp),
            "--pipeline-parallel-size", str(d.pp), "--served-model-name", d.model,
            *_precision("vllm", d, {"fp16": ["--dtype", "float16"], "fp8": ["--quantization", "fp8"],
                                    "int4": []})]


def _sglang(d: Deployment, model: str, port: int) -> list[str]:
    if d.pp > 1:
        raise RenderError(f"deployment {d.id}: sglang's server has no pipeline parallelism (pp={d.pp})")
    return ["python3", "-m", "sglang.launch_server", "--model-path", model, "--port", str(port),
            "--host", "0.0.0.0", "--tp-size", str(d.tp), "--served-model-name", d.model,
            *_precision("sglang", d, {"fp16": ["--dtype", "float16"], "fp8": ["--quantization", "fp8"],
                                      "int4": []})]


ENGINES = {e.name: e for e in (
    Engine("vllm", "vllm/vllm-openai:latest", _vllm),
    Engine("sglang", "lmsysorg/sglang:latest", _sglang),
)}
