"""Recent engine iteration timings per deployment, and the iteration model fitted to them.

Gate-and-route needs tau(C) = alpha + beta C and gamma per deployment (solvers/gate_route/iteration_model.py).
The planner derives them from the spec's performance model; real engines report what their
iterations actually take (schemas.IterationBatch, kind "iterations"), and this accumulator
fits the paper's calibration to those reports (section 6.1: the mean iteration time per
chunk size, then OLS of tau on C; gamma = 1 / mean decode-only iteration time). Fitting the
per-size means rather than single iterations is what the paper did and what makes R^2 a test
of linearity: single iterations carry jitter that, when beta C is small next to alpha, would
drive R^2 down however good the line is. Sizes are grouped in `bins` equal-width bins of C.
Pure: no I/O, no clock.

Only the most recent `max_samples` iterations per deployment are kept, so the fit follows
the hardware as it is now. `model_for` hands back a fit only when it is trustworthy: enough
mixed iterations, at least two distinct chunk sizes, R^2 >= `min_r_squared`, and a
physically meaningful line (alpha > 0, beta > 0); otherwise the caller keeps the spec model.

Thread safety: the controller adds samples on its event loop while the planner reads fits in
an executor thread, so every access holds one lock. In a controller group each worker sees
only the telemetry partitions assigned to it, so the planner (the leader) fits on its own
partitions' share of the samples.
"""
from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from schemas import IterationBatch
from solvers.gate_route.iteration_model import IterationFit, fit_iteration_model

__all__ = ["FittedIteration", "IterationTelemetry"]

MAX_SAMPLES = 4000
MIN_MIXED_SAMPLES = 50
MIN_DECODE_SAMPLES = 20
MIN_R_SQUARED = 0.9
BINS = 16
MIN_PER_BIN = 3


@dataclass(frozen=True)
class FittedIteration:
    """alpha, beta from mixed iterations (R^2 of the line through the per-size means, and how
    many sizes), gamma from decode-only ones (None: too few)."""

    alpha: float
    beta: float
    r_squared: float
    n_mixed: int
    n_sizes: int
    gamma: float | None
    n_decode: int


class IterationTelemetry:
    """Sliding window of (C, decode batch, seconds) samples per deployment, with fits."""

    def __init__(self, max_samples: int = MAX_SAMPLES, min_samples: int = MIN_MIXED_SAMPLES,
                 min_r_squared: float = MIN_R_SQUARED,
                 min_decode_samples: int = MIN_DECODE_SAMPLES) -> None:
        if max_samples < 2 or min_samples < 2:
            raise ValueError("max_samples and min_samples must be >= 2")
        self.max_samples = max_samples
        self.min_samples = min_samples
        self.min_r_squared = min_r_squared
        self.min_decode_samples = min_decode_samples
        self._mixed: dict[str, deque[tuple[float, float]]] = {}
        self._decode: dict[str, deque[float]] = {}
        self._fits: dict[str, FittedIteration | None] = {}
        self._lock = threading.Lock()
        self.samples_seen = 0

    def add(self, batch: IterationBatch) -> int:
        """Take one message's iterations; returns how many were kept."""
        return self.add_samples(batch.deployment, batch.chunk_tokens, batch.decode_batch,
                                batch.iteration_s)

    def add_samples(self, deployment: str, chunk_tokens: Iterable[float],
                    decode_batch: Iterable[float], iteration_s: Iterable[float]) -> int:
        kept = 0
        with self._lock:
            mixed = self._mixed.setdefault(deployment, deque(maxlen=self.max_samples))
            dec = self._decode.setdefault(deployment, deque(maxlen=self.max_samples))
            for c, b, s in zip(chunk_tokens, decode_batch, iteration_s):
                if not (math.isfinite(s) and s > 0):
                    continue
                if c > 0:
                    mixed.append((float(c), float(s)))
                elif b > 0:
                    dec.append(float(s))
                else:
                    continue
                kept += 1
            if kept:
                self._fits.pop(deployment, None)
                self.samples_seen += kept
        return kept

    def deployments(self) -> list[str]:
        with self._lock:
            return sorted(self._mixed)

    def counts(self, deployment: str) -> tuple[int, int]:
        """(mixed, decode-only) samples held for a deployment."""
        with self._lock:
            return len(self._mixed.get(deployment, ())), len(self._decode.get(deployment, ()))

    def fit(self, deployment: str) -> FittedIteration | None:
        """Least-squares fit on the samples held (None: fewer than two distinct chunk sizes)."""
        with self._lock:
            if deployment not in self._fits:
                self._fits[deployment] = self._fit(deployment)
            return self._fits[deployment]

    def model_for(self, deployment: str) -> FittedIteration | None:
        """The fit if it is good enough to replace the spec model, else None."""
        f = self.fit(deployment)
        if f is None or f.n_mixed < self.min_samples or f.r_squared < self.min_r_squared:
            return None
        if not (f.alpha > 0 and f.beta > 0):
            return None
        return f

    def _fit(self, deployment: str) -> FittedIteration | None:
        mixed = self._mixed.get(deployment)
        if not mixed:
            return None
        arr = np.asarray(mixed, dtype=float)
        try:
            line: IterationFit = fit_iteration_model(*_size_means(arr[:, 0], arr[:, 1]))
        except ValueError:  # a single chunk size: the slope is not identified
            return None
        dec = self._decode.get(deployment) or ()
        gamma = None
        if len(dec) >= self.min_decode_samples:
            gamma = 1.0 / float(np.mean(np.asarray(dec, dtype=float)))
        return FittedIteration(alpha=line.alpha, beta=line.beta, r_squared=line.r_squared,
                               n_mixed=len(arr), n_sizes=line.n_points, gamma=gamma,
                               n_decode=len(dec))


def _size_means(chunk: np.ndarray, seconds: np.ndarray, bins: int = BINS,
                min_per_bin: int = MIN_PER_BIN) -> tuple[np.ndarray, np.ndarray]:
    """Mean C and mean iteration time per chunk-size bin holding at least `min_per_bin`
    iterations (with fewer than two such bins, the single iterations themselves)."""
    top = float(chunk.max())
    idx = np.minimum((chunk / top * bins).astype(int), bins - 1) if top > 0 else np.zeros(len(chunk), int)
    counts = np.bincount(idx, minlength=bins)
    keep = counts >= min_per_bin
    if keep.sum() < 2:
        return chunk, seconds
    c_mean = np.bincount(idx, weights=chunk, minlength=bins)[keep] / counts[keep]
    s_mean = np.bincount(idx, weights=seconds, minlength=bins)[keep] / counts[keep]
    return c_mean, s_mean
