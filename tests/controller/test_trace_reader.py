"""Trace reading: formats, column mapping, merge, rules, rate/time transforms, bad rows, bundle."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from controller.worker.windows.demand_window import LengthRule
from controller.replay.trace_reader import (AZURE, BUNDLED_DIR, Chunk, Columns, ReadStats, TraceError,
                                     TraceOptions, TraceSource, bundled_sources, count_rows,
                                     parse_rule, parse_type_spec, read_source, read_trace)


def _epoch(s: str) -> float:
    d = dt.datetime.fromisoformat(s)
    return (d if d.tzinfo else d.replace(tzinfo=dt.UTC)).timestamp()


def _all(sources, opts: TraceOptions = TraceOptions(), stats: ReadStats | None = None) -> Chunk:
    return Chunk.concat(list(read_trace(sources, opts, stats)) or [Chunk.empty()])


def _write(path: Path, text: str, newline: str = "\n") -> Path:
    path.write_bytes(text.replace("\n", newline).encode())
    return path


AZ2023 = ("TIMESTAMP,ContextTokens,GeneratedTokens\n"
          "2023-11-16 18:17:03.9799600,4808,10\n"
          "2023-11-16 18:17:04.0319600,3180,8\n"
          "2023-11-16 18:17:04.0781490,110,27")  # CRLF and no newline at the end, like upstream


def test_azure_2023_format(tmp_path: Path) -> None:
    p = _write(tmp_path / "code.csv", AZ2023, "\r\n")
    c = _all([TraceSource(p, query_type="code")])
    assert len(c) == 3
    assert c.ts[0] == pytest.approx(_epoch("2023-11-16 18:17:03.979960"), abs=1e-6)
    assert c.ts[2] - c.ts[0] == pytest.approx(0.098189, abs=1e-6)
    assert c.input_tokens.tolist() == [4808, 3180, 110]
    assert c.output_tokens.tolist() == [10, 8, 27]
    assert c.query_type.tolist() == ["code"] * 3
    assert count_rows(p) == 3


def test_azure_2024_format_with_offsets_and_missing_fraction(tmp_path: Path) -> None:
    p = _write(tmp_path / "conv_1week.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n"
               "2024-05-10 00:00:00+00:00,100,1\n"
               "2024-05-10 00:00:00.009930+00:00,200,2\n"
               "2024-05-10 00:00:01+00:00,300,3\n")
    c = _all([TraceSource(p)])
    t0 = _epoch("2024-05-10 00:00:00+00:00")
    np.testing.assert_allclose(c.ts - t0, [0.0, 0.00993, 1.0], atol=1e-6)
    assert c.query_type.tolist() == [None, None, None]  # untyped: the controller classifies


def test_non_utc_offsets_are_converted(tmp_path: Path) -> None:
    p = _write(tmp_path / "tz.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n"
               "2024-05-10T02:00:00+02:00,1,1\n2024-05-10T00:00:01Z,1,1\n")
    c = _all([TraceSource(p)])
    assert c.ts.tolist() == [_epoch("2024-05-10T00:00:00+00:00"), _epoch("2024-05-10T00:00:01+00:00")]


def test_column_mapping_csv_epoch_seconds_and_type_column(tmp_path: Path) -> None:
    p = _write(tmp_path / "router.csv", "kind,t,prompt,completion,extra\n"
               "chat,1700000000.5,10,20,x\n,1700000001,30,0,y\ncode,1700000002.25,50,5,z\n")
    cols = Columns.parse("ts=t,input=prompt,output=completion,type=kind")
    c = _all([TraceSource(p, columns=cols)])
    assert c.ts.tolist() == [1700000000.5, 1700000001.0, 1700000002.25]
    assert c.input_tokens.tolist() == [10, 30, 50] and c.output_tokens.tolist() == [20, 0, 5]
    assert c.query_type.tolist() == ["chat", None, "code"]
    with pytest.raises(TraceError, match="bad column mapping"):
        Columns.parse("ts=t,weird=x")
    with pytest.raises(TraceError, match=r"router.csv:1: no column 'TIMESTAMP'"):
        _all([TraceSource(p)])
    bad = _write(tmp_path / "epoch.csv", "t,i,o\n1700000000,1,1\nyesterday,1,1\n")
    with pytest.raises(TraceError, match=r"epoch.csv:3: timestamp 'yesterday' is not epoch seconds"):
        _all([TraceSource(bad, columns=Columns.parse("ts=t,input=i,output=o"))])


def test_jsonl_with_iso_and_epoch(tmp_path: Path) -> None:
    cols = Columns(ts="time", input_tokens="in", output_tokens="out", query_type="qt")
    iso = _write(tmp_path / "a.jsonl", "\n".join(json.dumps(r) for r in [
        {"time": "2024-05-10T00:00:00Z", "in": 5, "out": 6, "qt": "chat"},
        {"time": "2024-05-10T00:00:02.5Z", "in": 7.0, "out": 8, "qt": None}]) + "\n\n")
    ep = _write(tmp_path / "b.jsonl", json.dumps({"time": 1715299201, "in": 9, "out": 1}) + "\n")
    c = _all([TraceSource(iso, columns=cols), TraceSource(ep, columns=cols, query_type="code")])
    t0 = _epoch("2024-05-10T00:00:00+00:00")
    assert (c.ts - t0).tolist() == [0.0, 1.0, 2.5]
    assert c.input_tokens.tolist() == [5, 9, 7]
    assert c.query_type.tolist() == ["chat", "code", None]


def test_merge_is_time_ordered_and_stable(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    paths, expect = [], []
    for k in range(3):
        ts = np.sort(rng.integers(0, 500, 400)).astype(float) + 1_700_000_000  # many ties
        paths.append(_write(tmp_path / f"t{k}.csv", "t,i,o\n" + "".join(
            f"{t},{k + 1},{j + 1}\n" for j, t in enumerate(ts))))
        expect += [(t, k) for t in ts]
    cols = Columns.parse("ts=t,input=i,output=o")
    c = _all([TraceSource(p, columns=cols) for p in paths], TraceOptions(chunk_rows=37))
    assert len(c) == 1200
    assert (np.diff(c.ts) >= 0).all()
    assert list(zip(c.ts.tolist(), (c.input_tokens - 1).tolist(), strict=True)) == sorted(expect)


def test_rules_classify_untyped_only(tmp_path: Path) -> None:
    untyped = _write(tmp_path / "u.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n"
                     "2024-01-01 00:00:00,5000,10\n2024-01-01 00:00:01,100,500\n"
                     "2024-01-01 00:00:02,100,10\n")
    typed = _write(tmp_path / "t.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2024-01-01 00:00:01.5,5000,10\n")
    rules = (parse_rule("code:in=1000..,out=..48"), parse_rule("chat:out=100.."))
    assert rules[0] == LengthRule("code", min_input=1000, max_output=48)
    c = _all([TraceSource(untyped), parse_type_spec(f"batch={typed}")],
             TraceOptions(rules=rules, default_type="conversation"))
    assert c.query_type.tolist() == ["code", "chat", "batch", "conversation"]
    with pytest.raises(TraceError, match="bad rule"):
        parse_rule("code:tokens=1..2")
    with pytest.raises(TraceError, match="QUERY_TYPE=FILE"):
        parse_type_spec("just-a-path.csv")


@pytest.fixture(scope="module")
def bundled() -> Chunk:
    return _all(bundled_sources())


def test_scale_duplicates_and_thins_deterministically(bundled: Chunk) -> None:
    n = len(bundled)
    doubled = _all(bundled_sources(), TraceOptions(scale=2))
    assert len(doubled) == 2 * n
    assert doubled.input_tokens.sum() == 2 * bundled.input_tokens.sum()
    half = _all(bundled_sources(), TraceOptions(scale=0.5, seed=7))
    assert abs(len(half) - n / 2) < 4 * np.sqrt(n / 4)  # binomial, 4 sigma
    again = _all(bundled_sources(), TraceOptions(scale=0.5, seed=7))
    other = _all(bundled_sources(), TraceOptions(scale=0.5, seed=8))
    assert np.array_equal(half.ts, again.ts) and not np.array_equal(half.ts, other.ts)
    x35 = _all(bundled_sources(), TraceOptions(scale=3.5, jitter_s=0.05, seed=3, chunk_rows=500))
    assert 3 * n <= len(x35) <= 4 * n and abs(len(x35) / n - 3.5) < 0.05
    assert (np.diff(x35.ts) >= 0).all()  # jittered copies stay in time order across chunks
    assert x35.ts.max() <= bundled.ts.max() + 0.05 and x35.ts.min() == bundled.ts.min()


def test_speed_loop_rebase_and_limit(bundled: Chunk) -> None:
    n, t0, span = len(bundled), bundled.ts[0], bundled.ts[-1] - bundled.ts[0]
    fast = _all(bundled_sources(), TraceOptions(speed=10, start=1_000_000.0))
    assert fast.ts[0] == 1_000_000.0
    np.testing.assert_allclose(np.diff(fast.ts), np.diff(bundled.ts) / 10, atol=1e-6)
    looped = _all(bundled_sources(), TraceOptions(loop=3))
    assert len(looped) == 3 * n and (np.diff(looped.ts) >= 0).all()
    period = span + span / (n - 1)  # back to back, one mean gap between passes
    np.testing.assert_allclose(looped.ts[n:2 * n] - bundled.ts, period, atol=1e-5)
    assert looped.ts[0] == t0 and looped.input_tokens[2 * n:].tolist() == bundled.input_tokens.tolist()
    assert len(_all(bundled_sources(), TraceOptions(loop=3, limit=5000))) == 5000


def test_malformed_rows_name_file_and_line(tmp_path: Path) -> None:
    p = _write(tmp_path / "bad.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n"
               "2023-11-16 18:17:03.9799600,4808,10\n"
               "2023-11-16 18:17:04.0319600,lots,8\n"       # line 3
               "2023-11-16 18:17:04.1,1,2,3\n"               # line 4: extra field
               "not a time,5,5\n"                            # line 5
               "2023-11-16 18:17:05.0,0,5\n"                 # line 6: zero input tokens
               "2023-11-16 18:17:01.0,5,5\n"                 # line 7: back in time
               "2023-11-16 18:17:06.0,7,7\n", "\r\n")
    with pytest.raises(TraceError, match=r"bad.csv:3: ContextTokens 'lots' is not an integer"):
        _all([TraceSource(p)])
    stats = ReadStats()
    c = _all([TraceSource(p)], TraceOptions(skip_malformed=True), stats)
    assert c.input_tokens.tolist() == [4808, 7]
    assert stats.skipped == 5 and stats.rows == 2
    assert [re.search(r":(\d+):", e).group(1) for e in stats.errors] == ["3", "4", "5", "6", "7"]
    assert "goes back in time" in stats.errors[-1]
    j = _write(tmp_path / "bad.jsonl", '{"t": 1, "i": 1, "o": 1}\n{oops\n{"t": 2, "i": 1}\n')
    cols = Columns.parse("ts=t,input=i,output=o")
    with pytest.raises(TraceError, match=r"bad.jsonl:2: not JSON"):
        _all([TraceSource(j, columns=cols)])
    stats = ReadStats()
    assert len(_all([TraceSource(j, columns=cols)], TraceOptions(skip_malformed=True), stats)) == 1
    assert stats.skipped == 2 and "bad.jsonl:3: missing ['o']" in stats.errors[1]


def test_bundled_trace_and_attribution(bundled: Chunk) -> None:
    assert len(bundled) == 1966 + 4481
    assert (np.diff(bundled.ts) >= 0).all()
    assert {q: int((bundled.query_type == q).sum()) for q in ("code", "conversation")} == {
        "code": 1966, "conversation": 4481}
    readme = (BUNDLED_DIR / "README.md").read_text()
    for needle in ("CC BY 4.0", "Microsoft", "https://github.com/Azure/AzurePublicDataset",
                   "b469a113cedca53ddc3bdea71a143dc4b7d8700c", "Splitwise", "ISCA 2024",
                   "LICENSE-CC-BY-4.0.txt", "1,966 / 8,819", "4,481 / 19,366", "before `2023-11-16 18:31:00`"):
        assert needle in readme, needle
    assert "Attribution 4.0 International" in (BUNDLED_DIR / "LICENSE-CC-BY-4.0.txt").read_text()
    for src in bundled_sources():
        digest = hashlib.sha256(src.path.read_bytes()).hexdigest()
        assert digest in readme, src.path.name  # README's checksums describe the shipped files
        assert src.path.read_bytes().startswith(b"TIMESTAMP,ContextTokens,GeneratedTokens\r\n")
    total = sum(p.stat().st_size for p in BUNDLED_DIR.iterdir())
    assert total < 300_000


def test_one_source_streams_in_chunks() -> None:
    chunks = list(read_source(bundled_sources()[1], chunk_rows=1000))
    assert [len(c) for c in chunks] == [1000] * 4 + [481]
    assert AZURE.ts == "TIMESTAMP"


def test_options_are_validated() -> None:
    for bad in ({"scale": 0}, {"speed": float("inf")}, {"loop": 0}, {"start": -1.0}):
        with pytest.raises(TraceError):
            TraceOptions(**bad)
    with pytest.raises(TraceError, match="not a valid id"):
        TraceSource(Path("x.csv"), query_type="has space")
    with pytest.raises(TraceError, match="no such trace file"):
        _all([TraceSource(Path("/nonexistent/x.csv"))])
