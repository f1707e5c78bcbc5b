"""How `llmfleet render k8s | gateway` turns a plan into Kubernetes objects (a YAML/JSON file).

Every field has a default; a file need only name what differs (e.g. another GPU label, an
image, the query types' header values). `llmfleet render ... --config FILE`.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from ._base import Frozen, Id

#: NVIDIA GPU feature discovery's `nvidia.com/gpu.product` values for the catalog's NVIDIA GPUs
#: (check yours: `kubectl get nodes -L nvidia.com/gpu.product`); MI300X has no default: name its
#: label in the config.
NVIDIA_PRODUCTS = {
    "H100-SXM": "NVIDIA-H100-80GB-HBM3", "H200-SXM": "NVIDIA-H200", "B200": "NVIDIA-B200",
    "A100-80G-SXM": "NVIDIA-A100-SXM4-80GB", "A100-40G-SXM": "NVIDIA-A100-SXM4-40GB", "L40S": "NVIDIA-L40S",
    "L4": "NVIDIA-L4", "A10": "NVIDIA-A10", "RTX-4090": "NVIDIA-GeForce-RTX-4090", "RTX-A6000": "NVIDIA-RTX-A6000",
}
#: the catalog's models on the Hugging Face Hub (what the engine loads)
HF_MODELS = {
    "qwen2.5-1.5b-instruct": "Qwen/Qwen2.5-1.5B-Instruct", "qwen2.5-3b-instruct": "Qwen/Qwen2.5-3B-Instruct",
    "qwen2.5-7b-instruct": "Qwen/Qwen2.5-7B-Instruct", "qwen2.5-14b-instruct": "Qwen/Qwen2.5-14B-Instruct",
    "qwen2.5-32b-instruct": "Qwen/Qwen2.5-32B-Instruct", "qwen2.5-72b-instruct": "Qwen/Qwen2.5-72B-Instruct",
    "llama-3.1-8b-instruct": "meta-llama/Llama-3.1-8B-Instruct",
    "llama-3.1-70b-instruct": "meta-llama/Llama-3.1-70B-Instruct",
    "llama-3.3-70b-instruct": "meta-llama/Llama-3.3-70B-Instruct", "gemma-2-2b-it": "google/gemma-2-2b-it",
    "gemma-2-9b-it": "google/gemma-2-9b-it", "gemma-2-27b-it": "google/gemma-2-27b-it",
    "phi-3.5-mini-instruct": "microsoft/Phi-3.5-mini-instruct",
}


class GpuNodes(Frozen):
    """Where pods for one GPU type go, and the resource that counts its GPUs."""

    label: str = "nvidia.com/gpu.product"
    value: str
    resource: str = "nvidia.com/gpu"


class GatewayOptions(Frozen):
    gateway: str = Field(default="inference-gateway", description="parentRef of the HTTPRoute")
    match: Literal["header", "model"] = Field(
        default="header", description="header: a request header names the query type; model: the "
        "requested model name, which body-based routing copies into X-Gateway-Model-Name")
    header: str = Field(default="x-llmfleet-query-type", description="the header when match is 'header'")
    values: dict[Id, str] = Field(default_factory=dict, description="query type -> the header value (or "
                                  "model name) that selects it; default: the query type's id")
    query_types: list[Id] | None = Field(default=None, description="the query types that get a rule; "
                                         "default: every query type the plan routes")
    weight_total: int = Field(default=1000, ge=1, le=1_000_000, description="a rule's weights sum to this")
    endpoint_picker: str | None = Field(default=None, description="Service name of the endpoint picker "
                                        "(InferencePool endpointPickerRef); None: omitted")


class RenderConfig(Frozen):
    namespace: str = "llmfleet"
    engine: Literal["vllm", "sglang"] = "vllm"
    image: str | None = Field(default=None, description="container image (default: the engine's)")
    port: int = Field(default=8000, ge=1, le=65535)
    gpus: dict[Id, GpuNodes] = Field(
        default_factory=lambda: {g: GpuNodes(value=v) for g, v in NVIDIA_PRODUCTS.items()})
    models: dict[Id, str] = Field(default_factory=lambda: dict(HF_MODELS),
                                  description="llmfleet model id -> what the engine loads")
    autoscaler: Literal["none", "keda", "hpa"] = "none"
    prometheus: str = Field(default="http://prometheus.monitoring.svc:9090", description="KEDA's serverAddress")
    max_replicas: int = Field(default=64, ge=1)
    gateway: GatewayOptions = Field(default_factory=GatewayOptions)

    @field_validator("gpus", mode="before")
    @classmethod
    def _over_default_gpus(cls, v: Any) -> Any:
        """A config's `gpus` add to (or override) the NVIDIA defaults."""
        return {**{g: {"value": val} for g, val in NVIDIA_PRODUCTS.items()}, **v} if isinstance(v, dict) else v

    @field_validator("models", mode="before")
    @classmethod
    def _over_default_models(cls, v: Any) -> Any:
        return {**HF_MODELS, **v} if isinstance(v, dict) else v
