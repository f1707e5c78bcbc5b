"""Reading request traces into columnar numpy chunks, ready to replay as telemetry.

Formats: the Azure LLM inference CSVs (2023: `TIMESTAMP,ContextTokens,GeneratedTokens` with 7
fractional digits and CRLF; 2024: the same columns with `+00:00` timestamps, sometimes without
a fraction) and any other CSV or JSONL trace through a column mapping (timestamps as ISO strings
or epoch seconds).

Traces can hold tens of millions of rows, so everything streams in chunks of `chunk_rows`
records. Each chunk is converted with vectorised numpy fast paths; only a chunk that fails is
re-parsed row by row, to name the file and line of the bad row (or to skip and count it).

The pipeline (`read_trace`): read each source -> tag query types (fixed per source or a column)
-> merge sources in time order -> classify untagged rows by token-length rules -> loop -> speed
up and rebase event time -> scale the arrival rate (seeded duplication/thinning) -> limit.
"""
from __future__ import annotations

import csv
import datetime as dt
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import structlog

from schemas.telemetry import MAX_TOKENS

from controller.worker.windows.demand_window import LengthRule, classify

log = structlog.get_logger()

TsFormat = Literal["auto", "iso", "epoch"]
FileFormat = Literal["auto", "csv", "jsonl"]
_ID = re.compile(r"^[A-Za-z0-9_.:/+@-]{1,200}$")  # schemas._base.Id
_MAX_ERRORS_KEPT = 20
BUNDLED_DIR = Path(__file__).resolve().parent / "traces"


class TraceError(ValueError):
    """A trace cannot be read: the message names the file and, for a bad row, its line."""


# ---------------------------------------------------------------------------------------------
# descriptions of what to read


@dataclass(frozen=True)
class Columns:
    """Which columns hold what. The defaults are the Azure LLM inference trace columns."""

    ts: str = "TIMESTAMP"
    input_tokens: str = "ContextTokens"
    output_tokens: str = "GeneratedTokens"
    query_type: str | None = None
    ts_format: TsFormat = "auto"

    _KEYS = {"ts": "ts", "time": "ts", "timestamp": "ts", "input": "input_tokens",
             "in": "input_tokens", "output": "output_tokens", "out": "output_tokens",
             "type": "query_type", "query_type": "query_type", "ts_format": "ts_format"}

    @classmethod
    def parse(cls, spec: str) -> Columns:
        """`ts=time,input=prompt_tokens,output=completion_tokens[,type=kind][,ts_format=epoch]`."""
        kw: dict[str, Any] = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            key, sep, value = part.partition("=")
            name = cls._KEYS.get(key.strip().lower())
            if not sep or name is None or not value.strip():
                raise TraceError(f"bad column mapping {part!r} in {spec!r}: expected KEY=COLUMN "
                                 f"with KEY one of ts, input, output, type, ts_format")
            kw[name] = value.strip()
        if kw.get("ts_format", "auto") not in ("auto", "iso", "epoch"):
            raise TraceError(f"ts_format must be auto, iso or epoch, not {kw['ts_format']!r}")
        return cls(**kw)


AZURE = Columns()


@dataclass(frozen=True)
class TraceSource:
    """One trace file; `query_type` tags every row of it (else the type column or the rules)."""

    path: Path
    query_type: str | None = None
    columns: Columns = AZURE
    format: FileFormat = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        if self.query_type is not None and not _ID.match(self.query_type):
            raise TraceError(f"query type {self.query_type!r} is not a valid id "
                             f"(letters, digits and _.:/+@- only)")

    @property
    def file_format(self) -> Literal["csv", "jsonl"]:
        if self.format != "auto":
            return self.format
        return "jsonl" if self.path.suffix.lower() in (".jsonl", ".ndjson", ".json") else "csv"


def parse_type_spec(spec: str, columns: Columns = AZURE) -> TraceSource:
    """`code=path/to/trace.csv` -> a source whose rows are all of query type `code`."""
    qt, sep, path = spec.partition("=")
    if not sep or not qt.strip() or not path.strip():
        raise TraceError(f"bad trace type {spec!r}: expected QUERY_TYPE=FILE")
    return TraceSource(Path(path.strip()), query_type=qt.strip(), columns=columns)


_RANGE = re.compile(r"^(\d*)\.\.(\d*)$")


def parse_rule(spec: str) -> LengthRule:
    """`code:in=1000..,out=..48` -> LengthRule (inclusive bounds; either end may be open)."""
    qt, sep, body = spec.partition(":")
    qt = qt.strip()
    if not sep or not _ID.match(qt):
        raise TraceError(f"bad rule {spec!r}: expected TYPE:in=MIN..MAX,out=MIN..MAX")
    kw: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in body.split(","))):
        key, _, rng = part.partition("=")
        m = _RANGE.match(rng.strip())
        side = {"in": "input", "input": "input", "out": "output", "output": "output"}.get(key.strip())
        if side is None or m is None:
            raise TraceError(f"bad rule part {part!r} in {spec!r}: expected in=MIN..MAX or out=MIN..MAX")
        if m.group(1):
            kw[f"min_{side}"] = int(m.group(1))
        if m.group(2):
            kw[f"max_{side}"] = int(m.group(2))
    return LengthRule(query_type=qt, **kw)


def bundled_sources() -> list[TraceSource]:
    """The bundled Azure 2023 excerpt: code and conversation (see controller/replay/traces/README.md)."""
    return [TraceSource(BUNDLED_DIR / "AzureLLMInferenceTrace_code.csv", query_type="code"),
            TraceSource(BUNDLED_DIR / "AzureLLMInferenceTrace_conv.csv", query_type="conversation")]


@dataclass(frozen=True)
class TraceOptions:
    """How to turn sources into a replay stream (see `read_trace`)."""

    rules: tuple[LengthRule, ...] = ()
    default_type: str | None = None  # with rules: type of rows no rule matches
    scale: float = 1.0  # arrival-rate multiplier: 3.5 = each request 3 or 4 times
    jitter_s: float = 0.05  # duplicates land up to this long after their original (output time)
    speed: float = 1.0  # divide inter-arrival times by this
    loop: int = 1  # repeat the trace this many times back to back
    start: float | None = None  # rebase: first record at this epoch (None keeps trace time)
    seed: int = 0
    limit: int | None = None  # stop after this many output records
    skip_malformed: bool = False
    chunk_rows: int = 65_536

    def __post_init__(self) -> None:
        if not (self.scale > 0 and math.isfinite(self.scale)):
            raise TraceError(f"scale must be a positive number, not {self.scale}")
        if not (self.speed > 0 and math.isfinite(self.speed)):
            raise TraceError(f"speed must be a positive finite number, not {self.speed}")
        if self.loop < 1:
            raise TraceError(f"loop must be >= 1, not {self.loop}")
        if self.start is not None and not (self.start >= 0 and math.isfinite(self.start)):
            raise TraceError(f"start must be a non-negative epoch, not {self.start}")
        if self.jitter_s < 0 or self.chunk_rows < 1 or (self.limit is not None and self.limit < 0):
            raise TraceError("jitter_s and limit must be >= 0, chunk_rows >= 1")


@dataclass
class ReadStats:
    """What reading did: rows kept and skipped (with the first error messages), records out."""

    rows: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)
    per_file: dict[str, int] = field(default_factory=dict)
    records_out: int = 0

    def skip(self, where: str, reason: str) -> None:
        self.skipped += 1
        if len(self.errors) < _MAX_ERRORS_KEPT:
            self.errors.append(f"{where}: {reason}")


# ---------------------------------------------------------------------------------------------
# chunks


@dataclass
class Chunk:
    """Records in columns: ts (float64 epoch s), tokens (int64), query_type (object: str|None)."""

    ts: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    query_type: np.ndarray

    def __len__(self) -> int:
        return len(self.ts)

    def take(self, idx: np.ndarray | slice) -> Chunk:
        return Chunk(self.ts[idx], self.input_tokens[idx], self.output_tokens[idx], self.query_type[idx])

    @staticmethod
    def concat(chunks: Sequence[Chunk]) -> Chunk:
        if len(chunks) == 1:
            return chunks[0]
        return Chunk(*(np.concatenate([getattr(c, f) for c in chunks])
                       for f in ("ts", "input_tokens", "output_tokens", "query_type")))

    @staticmethod
    def empty() -> Chunk:
        return Chunk(np.empty(0), np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, object))


# ---------------------------------------------------------------------------------------------
# parsing


def _parse_ts_one(v: Any, fmt: TsFormat) -> float:
    if isinstance(v, bool):
        raise ValueError(f"timestamp {v!r} is not a time")
    if isinstance(v, (int, float)) and fmt != "iso":
        t = float(v)
    elif fmt == "epoch":
        try:
            t = float(str(v).strip())
        except ValueError:
            raise ValueError(f"timestamp {v!r} is not epoch seconds") from None
    else:
        s = str(v).strip()
        if len(s) < 19:
            raise ValueError(f"timestamp {s!r} is not YYYY-MM-DD HH:MM:SS[.f][+HH:MM]")
        s = s[:-1] + "+00:00" if s.endswith("Z") else s
        try:
            d = dt.datetime.fromisoformat(s)
        except ValueError:
            raise ValueError(f"timestamp {s!r} is not YYYY-MM-DD HH:MM:SS[.f][+HH:MM]") from None
        t = (d if d.tzinfo else d.replace(tzinfo=dt.UTC)).timestamp()
    if not (math.isfinite(t) and t >= 0):
        raise ValueError(f"timestamp {v!r} is not a non-negative finite time")
    return t


def _parse_int_one(v: Any, name: str, lo: int) -> int:
    if isinstance(v, bool):
        raise ValueError(f"{name} {v!r} is not an integer")
    if isinstance(v, float):
        if not v.is_integer():
            raise ValueError(f"{name} {v!r} is not an integer")
        n = int(v)
    else:
        try:
            n = int(str(v).strip())
        except ValueError:
            raise ValueError(f"{name} {v!r} is not an integer") from None
    if not lo <= n <= MAX_TOKENS:
        raise ValueError(f"{name} {n} is outside [{lo}, {MAX_TOKENS}]")
    return n


def _parse_qt_one(v: Any) -> str | None:
    if v is None or (isinstance(v, str) and not v.strip()):
        return None
    s = str(v).strip()
    if not _ID.match(s):
        raise ValueError(f"query type {s!r} is not a valid id (letters, digits and _.:/+@- only)")
    return s


def _ts_vector(raw: list[Any], fmt: TsFormat) -> np.ndarray:
    """Fast path: epoch numbers, or naive/UTC ISO strings via numpy. Raises on anything odd."""
    if fmt == "epoch":
        if any(isinstance(v, bool) for v in raw):
            raise ValueError("boolean timestamp")
        t = np.asarray(raw, dtype=str).astype(np.float64)  # str(float) round-trips exactly
    else:
        s = np.asarray(raw, dtype=str)
        utc_z, utc_off = np.char.endswith(s, "Z"), np.char.endswith(s, "+00:00")
        if utc_z.any() or utc_off.any():
            s = np.where(utc_z, np.char.rstrip(s, "Z"), s)
            s = np.where(utc_off, np.char.replace(s, "+00:00", ""), s)
        lens = np.char.str_len(s)
        # only plain 'YYYY-MM-DD[ T]HH:MM:SS[.f...]' here; other offsets go row by row
        if (lens < 19).any() or (np.char.rfind(s, "+") >= 0).any() or (np.char.rfind(s, "-") > 7).any():
            raise ValueError("not plain UTC ISO timestamps")
        d = s.astype("datetime64[ns]")
        if np.isnat(d).any():
            raise ValueError("NaT")
        t = d.astype(np.int64) / 1e9
    if not (np.isfinite(t).all() and (t >= 0).all()):
        raise ValueError("negative or non-finite timestamps")
    return t


def _int_vector(raw: list[Any], lo: int) -> np.ndarray:
    if all(type(v) is int for v in raw):
        a = np.asarray(raw, dtype=np.int64)
    else:
        a = np.asarray(raw, dtype=str).astype(np.int64)
    if ((a < lo) | (a > MAX_TOKENS)).any():
        raise ValueError("tokens out of range")
    return a


def _qt_vector(raw: list[Any] | None, n: int, fixed: str | None) -> np.ndarray:
    out = np.full(n, fixed, dtype=object)
    if raw is None:
        return out
    vals = np.asarray([None if v is None or v == "" else v for v in raw], dtype=object)
    present = vals != None  # noqa: E711  (elementwise)
    for u in set(vals[present].tolist()):
        if not isinstance(u, str) or not _ID.match(u):
            raise ValueError("bad query type")
    out[present] = vals[present]
    return out


@dataclass
class _Rows:
    """Raw values of up to chunk_rows rows plus their line numbers."""

    lines: list[int] = field(default_factory=list)
    ts: list[Any] = field(default_factory=list)
    inp: list[Any] = field(default_factory=list)
    out: list[Any] = field(default_factory=list)
    qt: list[Any] | None = None
    bad: dict[int, str] = field(default_factory=dict)  # row index -> why (found while splitting)

    def add_bad(self, line: int, reason: str) -> None:
        self.bad[len(self.lines)] = reason
        self.lines.append(line)
        for col in (self.ts, self.inp, self.out, self.qt):
            if col is not None:
                col.append(None)


class _Converter:
    """Turns raw rows into a Chunk: vectorised first, row by row when that fails."""

    def __init__(self, src: TraceSource, stats: ReadStats, skip_malformed: bool) -> None:
        self.src, self.stats, self.skip_malformed = src, stats, skip_malformed
        self.fmt: TsFormat = src.columns.ts_format
        self.last_ts = -math.inf
        self.name = str(src.path)

    def _decide_fmt(self, first: Any) -> None:
        """`auto` becomes epoch or iso from the first good timestamp of the file."""
        if self.fmt == "auto" and first is not None:
            if isinstance(first, (int, float)) and not isinstance(first, bool):
                self.fmt = "epoch"
            else:
                try:
                    float(str(first))
                    self.fmt = "epoch"
                except ValueError:
                    self.fmt = "iso"

    def convert(self, rows: _Rows) -> Chunk:
        n = len(rows.lines)
        if n == 0:
            return Chunk.empty()
        self._decide_fmt(next((v for k, v in enumerate(rows.ts) if k not in rows.bad), None))
        if not rows.bad:
            try:
                chunk = Chunk(_ts_vector(rows.ts, self.fmt), _int_vector(rows.inp, 1),
                              _int_vector(rows.out, 0), _qt_vector(rows.qt, n, self.src.query_type))
                if chunk.ts[0] >= self.last_ts and (np.diff(chunk.ts) >= 0).all():
                    self.last_ts = float(chunk.ts[-1])
                    return chunk
            except (ValueError, TypeError, OverflowError):
                pass
        return self._slow(rows)

    def _slow(self, rows: _Rows) -> Chunk:
        """Row by row, in line order: the first bad row raises (or is skipped and counted)."""
        c = self.src.columns
        ts, inp, out, qt = [], [], [], []
        for k, line in enumerate(rows.lines):
            try:
                if k in rows.bad:
                    raise ValueError(rows.bad[k])
                t = _parse_ts_one(rows.ts[k], self.fmt)
                i = _parse_int_one(rows.inp[k], c.input_tokens, 1)
                o = _parse_int_one(rows.out[k], c.output_tokens, 0)
                q = _parse_qt_one(rows.qt[k]) if rows.qt is not None else None
                if t < self.last_ts:
                    raise ValueError(f"timestamp goes back in time by {self.last_ts - t:.6f} s "
                                     f"(traces must be sorted by time)")
            except (ValueError, TypeError, OverflowError) as exc:
                self.malformed(line, str(exc))
                continue
            self.last_ts = t
            ts.append(t)
            inp.append(i)
            out.append(o)
            qt.append(q if q is not None else self.src.query_type)
        return Chunk(np.asarray(ts, np.float64), np.asarray(inp, np.int64), np.asarray(out, np.int64),
                     np.asarray(qt, dtype=object))

    def malformed(self, line: int, reason: str) -> None:
        where = f"{self.name}:{line}"
        if not self.skip_malformed:
            raise TraceError(f"{where}: {reason} (use skip_malformed to skip bad rows)")
        self.stats.skip(where, reason)


def _csv_rows(src: TraceSource, chunk_rows: int) -> Iterator[_Rows]:
    c = src.columns
    with open(src.path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise TraceError(f"{src.path}: empty file (expected a header line)")
        names = [h.strip() for h in header]

        def col(name: str) -> int:
            if name not in names:
                raise TraceError(f"{src.path}:1: no column {name!r} in header {names} "
                                 f"(map columns with --columns ts=...,input=...,output=...)")
            return names.index(name)

        its, iin, iout = col(c.ts), col(c.input_tokens), col(c.output_tokens)
        iqt = col(c.query_type) if c.query_type else None
        need = len(names)
        rows = _Rows(qt=[] if iqt is not None else None)
        for rec in reader:
            if not rec:
                continue  # blank line
            if len(rec) != need:
                rows.add_bad(reader.line_num, f"{len(rec)} fields, header has {need}")
                continue
            rows.lines.append(reader.line_num)
            rows.ts.append(rec[its])
            rows.inp.append(rec[iin])
            rows.out.append(rec[iout])
            if iqt is not None:
                rows.qt.append(rec[iqt])  # type: ignore[union-attr]
            if len(rows.lines) >= chunk_rows:
                yield rows
                rows = _Rows(qt=[] if iqt is not None else None)
        if rows.lines:
            yield rows


def _jsonl_rows(src: TraceSource, chunk_rows: int) -> Iterator[_Rows]:
    c = src.columns
    keys = (c.ts, c.input_tokens, c.output_tokens)
    rows = _Rows(qt=[] if c.query_type else None)
    with open(src.path, encoding="utf-8-sig") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                rows.add_bad(line_no, f"not JSON: {exc}")
                continue
            if not isinstance(obj, dict):
                rows.add_bad(line_no, "not a JSON object")
                continue
            missing = [k for k in keys if obj.get(k) is None]
            if missing:
                rows.add_bad(line_no, f"missing {missing}")
                continue
            rows.lines.append(line_no)
            rows.ts.append(obj[c.ts])
            rows.inp.append(obj[c.input_tokens])
            rows.out.append(obj[c.output_tokens])
            if c.query_type:
                rows.qt.append(obj.get(c.query_type))  # type: ignore[union-attr]
            if len(rows.lines) >= chunk_rows:
                yield rows
                rows = _Rows(qt=[] if c.query_type else None)
    if rows.lines:
        yield rows


def read_source(src: TraceSource, *, chunk_rows: int = 65_536, skip_malformed: bool = False,
                stats: ReadStats | None = None) -> Iterator[Chunk]:
    """Stream one trace file as time-ordered chunks (raises TraceError on bad or unsorted rows)."""
    stats = stats if stats is not None else ReadStats()
    if not src.path.is_file():
        raise TraceError(f"{src.path}: no such trace file")
    conv = _Converter(src, stats, skip_malformed)
    raw = _jsonl_rows if src.file_format == "jsonl" else _csv_rows
    key = str(src.path)
    for rows in raw(src, chunk_rows):
        chunk = conv.convert(rows)
        stats.rows += len(chunk)
        stats.per_file[key] = stats.per_file.get(key, 0) + len(chunk)
        if len(chunk):
            yield chunk


# ---------------------------------------------------------------------------------------------
# stream transforms


def merge(streams: Sequence[Iterator[Chunk]]) -> Iterator[Chunk]:
    """K-way merge of time-ordered chunk streams; equal timestamps keep stream order (stable)."""
    if len(streams) == 1:
        yield from streams[0]
        return
    its = list(streams)
    bufs = [Chunk.empty() for _ in its]
    done = [False] * len(its)

    def pull(k: int) -> None:
        c = next(its[k], None)
        if c is None:
            done[k] = True
        else:
            bufs[k] = Chunk.concat([bufs[k], c]) if len(bufs[k]) else c

    while True:
        for k in range(len(its)):
            while not done[k] and not len(bufs[k]):
                pull(k)
        live = [k for k in range(len(its)) if not done[k]]
        # rows strictly before the earliest last-timestamp of unfinished streams are final
        horizon = min((float(bufs[k].ts[-1]) for k in live), default=math.inf)
        parts = []
        for k, b in enumerate(bufs):
            cut = int(np.searchsorted(b.ts, horizon, side="left"))
            if cut:
                parts.append(b.take(slice(0, cut)))
                bufs[k] = b.take(slice(cut, None))
        if parts:
            out = Chunk.concat(parts)
            yield out.take(np.argsort(out.ts, kind="stable"))
        elif not live:
            return
        else:  # the earliest buffers hold only `horizon`: read further to see past it
            for k in live:
                if float(bufs[k].ts[-1]) == horizon:
                    pull(k)


def _classified(stream: Iterable[Chunk], rules: Sequence[LengthRule], default: str | None) -> Iterator[Chunk]:
    for c in stream:
        todo = np.asarray([q is None for q in c.query_type], dtype=bool)
        if todo.any():
            got = classify(c.input_tokens[todo], c.output_tokens[todo], rules, default)  # type: ignore[arg-type]
            qt = c.query_type.copy()
            qt[todo] = got
            c = Chunk(c.ts, c.input_tokens, c.output_tokens, qt)
        yield c


def _looped(make: Callable[[bool], Iterator[Chunk]], times: int) -> Iterator[Chunk]:
    """Repeat the stream; pass i is shifted by i * (span + mean gap) so the rate stays the same."""
    first = last = None
    n = 0
    for c in make(True):
        first = float(c.ts[0]) if first is None else first
        last, n = float(c.ts[-1]), n + len(c)
        yield c
    if first is None or last is None or times == 1:
        return
    span = last - first
    period = span + (span / (n - 1) if n > 1 and span > 0 else 1.0)
    for i in range(1, times):
        for c in make(False):
            yield Chunk(c.ts + i * period, c.input_tokens, c.output_tokens, c.query_type)


def retime(c: Chunk, t0: float, speed: float = 1.0, start: float | None = None) -> Chunk:
    """Speed up (divide time since t0 by `speed`) and rebase (t0 moves to `start`)."""
    if speed == 1.0 and (start is None or start == t0):
        return c
    base = t0 if start is None else start
    return Chunk(base + (c.ts - t0) / speed, c.input_tokens, c.output_tokens, c.query_type)


def _retimed(stream: Iterable[Chunk], speed: float, start: float | None) -> Iterator[Chunk]:
    t0: float | None = None
    for c in stream:
        t0 = float(c.ts[0]) if t0 is None else t0
        yield retime(c, t0, speed, start)


def _scaled(stream: Iterable[Chunk], scale: float, jitter_s: float, seed: int) -> Iterator[Chunk]:
    """Each request emitted floor(scale) or floor(scale)+1 times (seeded); copies after the first
    are jittered later by up to jitter_s and held back until no later input can precede them."""
    if scale == 1.0:
        yield from stream
        return
    rng = np.random.default_rng(seed)
    whole, frac = int(math.floor(scale)), scale - math.floor(scale)
    held = Chunk.empty()
    for c in stream:
        reps = np.full(len(c), whole, dtype=np.int64)
        if frac > 0:
            reps += rng.random(len(c)) < frac
        idx = np.repeat(np.arange(len(c)), reps)
        out = c.take(idx)
        # copy number within each original: 0 for the first copy (kept on time)
        copy_no = np.arange(len(idx)) - np.repeat(np.cumsum(reps) - reps, reps)
        dup = copy_no > 0
        if dup.any() and jitter_s > 0:
            ts = out.ts.copy()
            ts[dup] += rng.uniform(0.0, jitter_s, int(dup.sum()))
            out = Chunk(ts, out.input_tokens, out.output_tokens, out.query_type)
        allc = Chunk.concat([held, out]) if len(held) else out
        allc = allc.take(np.argsort(allc.ts, kind="stable"))
        safe = int(np.searchsorted(allc.ts, float(c.ts[-1]), side="right"))
        held = allc.take(slice(safe, None))
        if safe:
            yield allc.take(slice(0, safe))
    if len(held):
        yield held


def _limited(stream: Iterable[Chunk], limit: int | None) -> Iterator[Chunk]:
    if limit is None:
        yield from stream
        return
    left = limit
    for c in stream:
        if left <= 0:
            return
        if len(c) > left:
            c = c.take(slice(0, left))
        left -= len(c)
        yield c


def read_trace(sources: Sequence[TraceSource], opts: TraceOptions = TraceOptions(),
               stats: ReadStats | None = None) -> Iterator[Chunk]:
    """The whole pipeline, streaming. `stats` (rows read/skipped) covers the first loop pass."""
    if not sources:
        raise TraceError("no trace files given")
    stats = stats if stats is not None else ReadStats()

    def make(first_pass: bool) -> Iterator[Chunk]:
        st = stats if first_pass else ReadStats()
        merged = merge([read_source(s, chunk_rows=opts.chunk_rows, skip_malformed=opts.skip_malformed,
                                    stats=st) for s in sources])
        if opts.rules or opts.default_type:
            merged = _classified(merged, opts.rules, opts.default_type)
        return merged

    stream = _looped(make, opts.loop)
    stream = _retimed(stream, opts.speed, opts.start)
    stream = _scaled(stream, opts.scale, opts.jitter_s, opts.seed)
    for c in _limited(stream, opts.limit):
        stats.records_out += len(c)
        yield c
    if stats.skipped:
        log.warning("trace.rows_skipped", skipped=stats.skipped, first_errors=stats.errors[:3])
    log.info("trace.read", rows=stats.rows, skipped=stats.skipped, records_out=stats.records_out)


def count_rows(path: Path) -> int:
    """Data rows of a trace file (lines minus a CSV header), fast; for progress estimates."""
    n, last = 0, b"\n"
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            n += block.count(b"\n")
            last = block[-1:]
    n += last != b"\n"
    is_csv = TraceSource(path).file_format == "csv"
    return max(n - (1 if is_csv else 0), 0)
