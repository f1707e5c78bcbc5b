"""How long a new replica takes to serve, per deployment: weights to load plus engine start-up.

A replica is ready after `engine_s` (process start, imports, torch.compile from its cache,
CUDA-graph capture, engine init) plus the time to stream its share of the weights into GPU
memory: params x bytes_per_param / (tp x pp) GB per GPU, each GPU loading in parallel at
`load_gbps`. Defaults (docs/benchmarks.md, "Cold starts"): Tensorfuse measured a vLLM replica
of Llama-3.1-8B (16 GB in fp16) on one L40S at 82 s with warm caches on a volume (weights
18 s, i.e. ~0.9 GB/s; dynamo 10 s, compile 13 s, graph capture 7 s, engine init and imports
34 s: 64 s besides the weights) and 294 s with nothing cached (download 61 s, compile 42 s,
capture 54 s, init 94 s). "Breaking the Ice" (arXiv 2606.07362, MLSys 2026) finds the start
predominantly CPU-bound, so `engine_s` does not shrink on faster GPUs.

`fixed_s` replaces the model by one figure for every start (the pessimistic benchmark runs
`ColdStart.fixed(300)`, the uncached case rounded to five minutes).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ConfigKey = tuple[str, str, str, int, int]  # (model, gpu, precision, tp, pp)


@dataclass(frozen=True)
class ColdStart:
    engine_s: float = 64.0
    load_gbps: float = 0.9
    fixed_s: float | None = None
    params_b: Mapping[str, float] = field(default_factory=dict)       # model -> billions
    bytes_per_param: Mapping[str, float] = field(default_factory=dict)  # precision -> bytes

    def __post_init__(self) -> None:
        if self.engine_s < 0 or self.load_gbps <= 0 or (self.fixed_s is not None and self.fixed_s < 0):
            raise ValueError("engine_s and fixed_s must be >= 0 and load_gbps > 0")

    @classmethod
    def fixed(cls, seconds: float) -> ColdStart:
        return cls(fixed_s=float(seconds))

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], **kw: Any) -> ColdStart:
        """The model of an instance (spec section 1): model sizes and precisions' bytes."""
        return cls(params_b={m["id"]: float(m["params_b"]) for m in spec.get("models", [])},
                   bytes_per_param={p["id"]: float(p["bytes_per_param"]) for p in spec.get("precisions", [])},
                   **kw)

    def seconds(self, key: ConfigKey) -> float:
        """Seconds from start to ready for one replica of configuration `key`."""
        if self.fixed_s is not None:
            return self.fixed_s
        model, _gpu, prec, tp, pp = key
        gb = self.params_b.get(model, 0.0) * self.bytes_per_param.get(prec, 2.0)
        return self.engine_s + gb / max(tp * pp, 1) / self.load_gbps
