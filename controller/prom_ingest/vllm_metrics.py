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


def promql_selector(extra_matchers: str = "") -> str:
    """One instant-vector selector for every series the ingest reads (raw cumulative values)."""
    names = "|".join(HISTOGRAMS)
    extra = f",{extra_matchers}" if extra_matchers else ""
    return f'{{__name__=~"({names})_(bucket|sum|count)"{extra}}}'
