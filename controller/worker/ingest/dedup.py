"""Drop records whose request_id was already counted, within a bounded horizon.

A producer that retries (a timeout, then a resend) would count a request twice; offsets
cannot catch that, since the retry is a new message. Each partition remembers the last
`max_ids` request_ids it counted (insertion order, oldest forgotten first), so memory is
bounded (about 100 bytes an id) whatever producers send. Records without a request_id are
never de-duplicated.

The memory lives in the worker, not in the ingest table: the table entry is written to its
changelog on every message, and a changelog entry carrying 100,000 ids per message would cost
far more than the duplicates it saves. So after a worker restart or a rebalance, the moved
partitions start with an empty horizon: a retry that straddles the restart can be counted
twice. (A message re-delivered at the same offset after a crash is still counted once: that
is the offset check in demand_window.add_records.)
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np


class RequestDedup:
    def __init__(self, max_ids: int) -> None:
        self.max_ids = max_ids
        self._seen: dict[int, OrderedDict[str, None]] = {}

    def fresh(self, partition: int, ids: Sequence[str | None]) -> np.ndarray:
        """Mask of the records to count; remembers the new ids (a repeat inside `ids` counts once)."""
        keep = np.ones(len(ids), dtype=bool)
        if self.max_ids <= 0:
            return keep
        seen = self._seen.setdefault(partition, OrderedDict())
        for i, rid in enumerate(ids):
            if rid is None:
                continue
            if rid in seen:
                keep[i] = False
            else:
                seen[rid] = None
        while len(seen) > self.max_ids:
            seen.popitem(last=False)
        return keep

    def __len__(self) -> int:
        return sum(len(s) for s in self._seen.values())
