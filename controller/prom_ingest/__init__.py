"""`llmfleet ingest prometheus`: vLLM's Prometheus metrics in, llmfleet telemetry batches out.

One job per module: `vllm_metrics` (the metric names), `samples` (exposition text and Prometheus
API answers to samples), `deltas` (per-series counter/histogram deltas with resets and gaps; pure),
`synth` (deltas to synthesised request records; pure), `source` (the HTTP sources), `loop` (the
poll loop and its counters), `command` (the click command). docs/deploy.md says what is kept and
what is lost.
"""
