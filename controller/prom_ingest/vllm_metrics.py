"""vLLM's Prometheus metric names that the ingest reads.

Source: vLLM's metrics design document (vllm-project/vllm, docs/design/metrics.md, "v1 Metrics")
and the production metrics page (https://docs.vllm.ai/en/stable/usage/metrics.html): request-level
histograms observed once per finished request, labelled `model_name` (v1 also `engine`). Token
histograms use 1-2-5 buckets up to the model's context length (vLLM's `build_1_2_5_buckets`).
The gauges `vllm:num_requests_running` / `vllm:num_requests_waiting` and the counter
`vllm:request_success_total` (label `finished_reason`) are not read: the histograms' `_count`
already counts finished requests, and a gauge has no per-interval delta.
"""
from __future__ import annotations

PROMPT_TOKENS = "vllm:request_prompt_tokens"
GENERATION_TOKENS = "vllm:request_generation_tokens"
TTFT_SECONDS = "vllm:time_to_first_token_seconds"
E2E_SECONDS = "vllm:e2e_request_latency_seconds"

#: histograms read; the first two are required (they give the request count and token lengths)
HISTOGRAMS: tuple[str, ...] = (PROMPT_TOKENS, GENERATION_TOKENS, TTFT_SECONDS, E2E_SECONDS)
REQUIRED: tuple[str, ...] = (PROMPT_TOKENS, GENERATION_TOKENS)
SUFFIXES: tuple[str, ...] = ("_bucket", "_sum", "_count")


def canonical(name: str) -> str:
    """`vllm:...` whichever spelling was stored. prometheus_client (0.26 measured here) serves OpenMetrics,
    which Prometheus asks for first, with the colon escaped to `_`: Prometheus then stores `vllm_...`."""
    return "vllm:" + name[5:] if name.startswith("vllm_") else name


def promql_selector(extra_matchers: str = "") -> str:
    """One instant-vector selector for every series the ingest reads (raw cumulative values), in
    either spelling of the prefix."""
    names = "|".join(h.removeprefix("vllm:") for h in HISTOGRAMS)
    extra = f",{extra_matchers}" if extra_matchers else ""
    return f'{{__name__=~"vllm[:_]({names})_(bucket|sum|count)"{extra}}}'
