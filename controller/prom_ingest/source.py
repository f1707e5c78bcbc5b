"""The two HTTP sources: a Prometheus server's query API, or engines' /metrics scraped directly.

Either returns the samples of one poll. A source that cannot answer raises `SourceError` with what
went wrong (unreachable, HTTP status, Prometheus' own error); the poll loop retries with backoff
and produces nothing for that interval. Scraping several engines, a target that fails is reported
and left out of this poll (its series get a gap); only when every target fails is it an error.
"""
from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

from .samples import Sample, from_api, from_exposition
from .vllm_metrics import promql_selector


class SourceError(RuntimeError):
    """The source gave no usable answer for this poll."""


@dataclass(frozen=True)
class Poll:
    samples: list[Sample]
    failed: dict[str, str]  # target -> why (direct scraping only)


def _reason(exc: BaseException) -> str:
    return "timed out" if isinstance(exc, asyncio.TimeoutError) else f"{type(exc).__name__}: {exc}"


class PrometheusSource:
    """Instant queries of the raw cumulative histogram series (the ingest takes the deltas itself,
    so resets and gaps are handled the same way as when scraping; `increase()` would extrapolate)."""

    def __init__(self, url: str, matchers: str = "", timeout_s: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.query = promql_selector(matchers)
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    @property
    def name(self) -> str:
        return f"prometheus:{self.url}"

    async def fetch(self, session: aiohttp.ClientSession, t: float) -> Poll:
        q = urllib.parse.urlencode({"query": self.query, "time": f"{t:.3f}"})
        try:
            async with session.get(f"{self.url}/api/v1/query?{q}", timeout=self.timeout) as r:
                text = await r.text()
                status = r.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise SourceError(f"cannot reach Prometheus at {self.url}: {_reason(exc)}") from exc
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        if status != 200 or not isinstance(body, dict) or body.get("status") != "success":
            detail = (f"{body.get('errorType')}: {body.get('error')}" if isinstance(body, dict)
                      else text[:200].strip())
            raise SourceError(f"Prometheus at {self.url} answered HTTP {status}: {detail}")
        try:
            return Poll(from_api(body), {})
        except (KeyError, TypeError, ValueError) as exc:
            raise SourceError(f"Prometheus at {self.url} sent an answer the ingest cannot read: {exc}") from exc


class ScrapeSource:
    """GET each engine's /metrics; samples get an `instance` label (host:port), as Prometheus adds."""

    def __init__(self, urls: Sequence[str], timeout_s: float = 5.0) -> None:
        if not urls:
            raise ValueError("no /metrics endpoints to scrape")
        self.urls = list(urls)
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    @property
    def name(self) -> str:
        return "scrape:" + ",".join(self.urls)[:180]

    async def _one(self, session: aiohttp.ClientSession, url: str) -> list[Sample]:
        async with session.get(url, timeout=self.timeout) as r:
            text = await r.text()
            if r.status != 200:
                raise SourceError(f"HTTP {r.status}: {text[:200].strip()}")
        instance = urllib.parse.urlsplit(url).netloc
        try:
            samples = from_exposition(text)
        except (ValueError, TypeError) as exc:
            raise SourceError(f"not Prometheus text exposition: {exc}") from exc
        return [Sample(s.name, {**s.labels, "instance": instance}, s.value) for s in samples]

    async def fetch(self, session: aiohttp.ClientSession, t: float) -> Poll:
        results = await asyncio.gather(*(self._one(session, u) for u in self.urls), return_exceptions=True)
        samples: list[Sample] = []
        failed: dict[str, str] = {}
        for url, res in zip(self.urls, results, strict=True):
            if isinstance(res, BaseException):
                failed[url] = str(res) if isinstance(res, SourceError) else _reason(res)
            else:
                samples += res
        if len(failed) == len(self.urls):
            raise SourceError("no /metrics endpoint answered: " + "; ".join(f"{u}: {w}" for u, w in failed.items()))
        return Poll(samples, failed)
