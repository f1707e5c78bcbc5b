"""The multiclass many-server instance of the gate-and-route model (arXiv 2602.02987, section 2).

One frozen value object holds everything the fluid LPs, the policies and the simulator need:
per-class prompt/decode lengths, per-replica arrival rates, patience, prices, and the
iteration-time model (alpha, beta, gamma) with slots B and chunk C. Rates derived from it
(Eq. 4) live here too so every consumer uses the same formulas.

Units: seconds, tokens, money per token. Arrival rates are *per replica* (the paper's
lambda_i, "per GPU"): a cluster of n replicas sees n * lambda_i class-i requests per second.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["GateRouteInstance", "paper_instance"]


def _vec(values, name: str) -> tuple[float, ...]:
    out = tuple(float(v) for v in np.atleast_1d(np.asarray(values, dtype=float)))
    if not out:
        raise ValueError(f"{name} must be non-empty")
    return out


@dataclass(frozen=True)
class GateRouteInstance:
    """I request classes served by identical replicas with B slots and chunked prefill.

    ``weights`` overrides the bundled revenue per completed request; by default it is
    w_i = c_p * P_i + c_d * D_i (Eq. 21).
    """

    prompt_tokens: tuple[float, ...]
    decode_tokens: tuple[float, ...]
    arrival_rate: tuple[float, ...]
    patience_rate: tuple[float, ...]
    slots: int
    chunk_tokens: float
    alpha: float
    beta: float
    gamma: float
    price_prefill: float = 0.1
    price_decode: float = 0.2
    weights: tuple[float, ...] | None = None
    names: tuple[str, ...] | None = field(default=None)

    def __post_init__(self) -> None:
        for name in ("prompt_tokens", "decode_tokens", "arrival_rate", "patience_rate"):
            object.__setattr__(self, name, _vec(getattr(self, name), name))
        if self.weights is not None:
            object.__setattr__(self, "weights", _vec(self.weights, "weights"))
        n = len(self.prompt_tokens)
        sizes = {len(self.decode_tokens), len(self.arrival_rate), len(self.patience_rate)}
        if self.weights is not None:
            sizes.add(len(self.weights))
        if sizes != {n}:
            raise ValueError("per-class vectors must all have the same length")
        if self.names is None:
            object.__setattr__(self, "names", tuple(f"c{i}" for i in range(n)))
        elif len(self.names) != n:
            raise ValueError("names must have one entry per class")
        if int(self.slots) < 2:
            raise ValueError("slots (B) must be >= 2: a mixed replica needs a prefill and a decode slot")
        object.__setattr__(self, "slots", int(self.slots))
        if min(self.prompt_tokens) <= 0 or min(self.decode_tokens) <= 0:
            raise ValueError("prompt and decode lengths must be positive")
        if min(self.arrival_rate) < 0 or min(self.patience_rate) < 0:
            raise ValueError("arrival and patience rates must be non-negative")
        if self.chunk_tokens <= 0 or self.gamma <= 0 or self.tau <= 0:
            raise ValueError("chunk, gamma and tau must be positive")

    # ---- sizes and vectors -------------------------------------------------------------
    @property
    def n_classes(self) -> int:
        return len(self.prompt_tokens)

    @property
    def P(self) -> np.ndarray:
        return np.asarray(self.prompt_tokens)

    @property
    def D(self) -> np.ndarray:
        return np.asarray(self.decode_tokens)

    @property
    def lam(self) -> np.ndarray:
        return np.asarray(self.arrival_rate)

    @property
    def theta(self) -> np.ndarray:
        return np.asarray(self.patience_rate)

    # ---- Eq. (3)-(4) rates ------------------------------------------------------------
    @property
    def tau(self) -> float:
        """Mixed iteration time tau = alpha + beta * C (seconds)."""
        return float(self.alpha + self.beta * self.chunk_tokens)

    @property
    def mu_p(self) -> np.ndarray:
        """Prefill completion rate C / (P_i tau): P_i / C chunks of one mixed iteration each."""
        return self.chunk_tokens / (self.P * self.tau)

    @property
    def mu_m(self) -> np.ndarray:
        """Decode completion rate on a mixed replica: one token per mixed iteration."""
        return 1.0 / (self.D * self.tau)

    @property
    def mu_s(self) -> np.ndarray:
        """Decode completion rate on a solo replica: gamma tokens per second."""
        return self.gamma / self.D

    @property
    def speedup(self) -> float:
        """mu_s / mu_m = gamma * tau, the same for every class (what makes FCFS decode routing safe)."""
        return float(self.gamma * self.tau)

    @property
    def w(self) -> np.ndarray:
        """Bundled revenue per completed request."""
        if self.weights is not None:
            return np.asarray(self.weights)
        return self.price_prefill * self.P + self.price_decode * self.D

    @property
    def prefill_price(self) -> np.ndarray:
        """Separate charging: revenue at prefill completion, c_p * P_i."""
        return self.price_prefill * self.P

    @property
    def decode_price(self) -> np.ndarray:
        """Separate charging: revenue at decode completion, c_d * D_i."""
        return self.price_decode * self.D

    def replace(self, **changes) -> "GateRouteInstance":
        from dataclasses import replace

        return replace(self, **changes)


def paper_instance() -> GateRouteInstance:
    """The convergence instance of section 6.2 (Qwen-8B calibration, two classes)."""
    return GateRouteInstance(
        prompt_tokens=(300, 3000),
        decode_tokens=(1000, 400),
        arrival_rate=(0.5, 0.5),
        patience_rate=(0.1, 0.1),
        slots=16,
        chunk_tokens=256,
        alpha=0.0174,
        beta=6.2e-5,
        gamma=45.45,  # the notes solve with 45.45; 1/0.022 = 45.4545 gives R* = 297.716
        price_prefill=0.1,
        price_decode=0.2,
        names=("decode_heavy", "prefill_heavy"),
    )
