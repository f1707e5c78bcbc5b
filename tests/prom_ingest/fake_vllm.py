"""A stand-in vLLM engine for the ingest tests: vLLM's metric names and buckets on a real /metrics port.

The names, label (`model_name`, plus `engine` in v1) and buckets follow vLLM's v1 Prometheus logger
(vllm-project/vllm docs/design/metrics.md; token buckets from its build_1_2_5_buckets). The engine
records a request when the test calls `observe` (a real engine does so when the request finishes).
`Traffic` drives engines with Poisson arrivals of known rates per query type and keeps the truth.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from tests.prometheus_server import free_port


def build_1_2_5_buckets(max_value: int) -> list[float]:
    out, exp = [], 0
    while True:
        for m in (1, 2, 5):
            v = m * 10**exp
            if v > max_value:
                return out
            out.append(float(v))
        exp += 1


TOKEN_BUCKETS = build_1_2_5_buckets(32_768)
TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                20.0, 40.0, 80.0, 160.0, 640.0, 2560.0]
E2E_BUCKETS = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
               480.0, 960.0, 1920.0, 7680.0]


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


class FakeVllm:
    """One engine's /metrics on 127.0.0.1:<free port>; `restart()` zeroes every counter (a pod restart),
    `down = True` answers 503 (a failed scrape)."""

    def __init__(self, model_name: str, extra_labels: dict[str, str] | None = None) -> None:
        self.model_name = model_name
        self.extra = dict(extra_labels or {})
        self.registry = CollectorRegistry()
        self.port = free_port()
        self._lock = threading.Lock()
        self.down = False
        self._make()
        metrics = make_wsgi_app(self.registry)

        def app(environ, start_response):  # noqa: ANN001, ANN202
            if self.down:
                start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
                return [b"engine restarting"]
            return metrics(environ, start_response)

        self._server = make_server("127.0.0.1", self.port, app, ThreadingWSGIServer, handler_class=_Quiet)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _make(self) -> None:
        names = ["model_name", "engine", *self.extra]
        r = self.registry
        self.prompt = Histogram("vllm:request_prompt_tokens", "Number of prefill tokens processed.", names,
                                buckets=TOKEN_BUCKETS, registry=r)
        self.generation = Histogram("vllm:request_generation_tokens", "Number of generation tokens processed.",
                                    names, buckets=TOKEN_BUCKETS, registry=r)
        self.ttft = Histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
                              names, buckets=TTFT_BUCKETS, registry=r)
        self.e2e = Histogram("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.",
                             names, buckets=E2E_BUCKETS, registry=r)
        self.success = Counter("vllm:request_success", "Count of successfully processed requests.",
                               [*names, "finished_reason"], registry=r)
        self.running = Gauge("vllm:num_requests_running", "Number of requests in model execution batches.",
                             names, registry=r)
        self._collectors = [self.prompt, self.generation, self.ttft, self.e2e, self.success, self.running]
        lv = (self.model_name, "0", *self.extra.values())
        for h in (self.prompt, self.generation, self.ttft, self.e2e, self.running):
            h.labels(*lv)  # series exist from the start, at zero, as on a real engine
        self._lv = lv

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def observe(self, input_tokens: int, output_tokens: int, ttft_s: float, latency_s: float) -> None:
        with self._lock:
            self.prompt.labels(*self._lv).observe(input_tokens)
            self.generation.labels(*self._lv).observe(output_tokens)
            self.ttft.labels(*self._lv).observe(ttft_s)
            self.e2e.labels(*self._lv).observe(latency_s)
            self.success.labels(*self._lv, "stop").inc()

    def restart(self) -> None:
        with self._lock:
            for c in self._collectors:
                self.registry.unregister(c)
            self._make()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


#: query type -> (input token range, output token range), drawn log-uniformly; the bundled
#: classification rule (code: input >= 1000 and output <= 48) separates them
LENGTHS = {"code": ((1100, 6000), (3, 40)), "conversation": ((40, 950), (60, 700))}


def draw(rng: np.random.Generator, qt: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    (a, b), (c, d) = LENGTHS[qt]
    inp = np.rint(np.exp(rng.uniform(np.log(a), np.log(b), n))).astype(int)
    out = np.rint(np.exp(rng.uniform(np.log(c), np.log(d), n))).astype(int)
    return inp, out


@dataclass
class Truth:
    ts: list[float] = field(default_factory=list)
    query_type: list[str] = field(default_factory=list)
    engine: list[str] = field(default_factory=list)
    input_tokens: list[int] = field(default_factory=list)
    output_tokens: list[int] = field(default_factory=list)

    def count(self, qt: str, t0: float = -np.inf, t1: float = np.inf) -> int:
        ts, q = np.asarray(self.ts), np.asarray(self.query_type)
        return int(((q == qt) & (ts >= t0) & (ts < t1)).sum()) if len(ts) else 0


def feed(engine: FakeVllm, truth: Truth, rng: np.random.Generator, qt: str, n: int, t: float) -> None:
    """Observe n requests of `qt` on `engine` now (event time `t` in the truth)."""
    inp, out = draw(rng, qt, n)
    for i, o in zip(inp, out, strict=True):
        engine.observe(int(i), int(o), 0.05 + i / 20_000, 0.05 + i / 20_000 + o * 0.02)
        truth.ts.append(t)
        truth.query_type.append(qt)
        truth.engine.append(engine.model_name)
        truth.input_tokens.append(int(i))
        truth.output_tokens.append(int(o))


class Traffic(threading.Thread):
    """Poisson arrivals at `rates` (query type -> requests/s) on `engines` (query type -> engine), in
    wall time, until `stop()`; each arrival is observed at once and kept in `truth`."""

    def __init__(self, engines: dict[str, FakeVllm], rates: dict[str, float], seed: int, tick_s: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.engines, self.rates, self.tick_s = engines, rates, tick_s
        self.rng = np.random.default_rng(seed)
        self.truth = Truth()
        self._stop_evt = threading.Event()

    def run(self) -> None:
        while not self._stop_evt.is_set():
            now = time.time()
            for qt, rate in self.rates.items():
                n = int(self.rng.poisson(rate * self.tick_s))
                if n:
                    feed(self.engines[qt], self.truth, self.rng, qt, n, now)
            self._stop_evt.wait(self.tick_s)

    def stop(self) -> None:
        self._stop_evt.set()
        self.join(5)
