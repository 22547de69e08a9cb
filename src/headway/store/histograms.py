"""Histograms: bucket counters that only grow (Prometheus semantics).

``slot_wait`` per limit (requests that waited at all; those granted at once
are the limit's grants minus these) and ``claim_latency`` per work pool. Each
bucket (``core.events.bucket_of``) counts its observations and their total.

A claim's latency is counted in the transaction that claims
(:meth:`Histograms.observe`); slot waits, observed at every contended grant,
are buffered with the slot events and written in their batch
(``Events.observe_later``, ``store/event_buffer.py``). The events part holds
this one and is what callers use: its readers write the buffered observations
first.
"""

from __future__ import annotations

from collections.abc import Sequence

from headway.core.events import HISTOGRAM_BOUNDS, Histogram, bucket_of
from headway.store.db import Database, Tx
from headway.store.event_buffer import Observations
from headway.store.queries import events as q


class Histograms:
    """Writing and reading the histograms' buckets (through ``store.events``)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def observe(self, tx: Tx, metric: str, labels: Sequence[str], value: float) -> None:
        """Count one observation of ``value`` in the histogram ``metric`` of each label."""
        le = bucket_of(value)
        self.write_observations(tx, {(metric, label, le): (1, value) for label in labels})

    def write_observations(self, tx: Tx, summed: Observations) -> None:
        """Add ``summed`` (per bucket: how many, and their total) to the histograms."""
        if not summed:
            return
        tx.executemany(
            q.ADD_TO_HISTOGRAM_BUCKET,
            [
                {"m": metric, "l": label, "le": le, "c": count, "v": total}
                for (metric, label, le), (count, total) in summed.items()
            ],
        )

    def read_histograms(self, metric: str) -> list[Histogram]:
        """Every label's histogram of ``metric``, by label, as written so far.

        Observations this process still buffers are not in it:
        ``Events.read_histograms`` writes them first.
        """
        with self.db.read() as tx:
            rows = tx.execute(q.SELECT_HISTOGRAM_BUCKETS, {"m": metric})
        counts: dict[str, dict[float, tuple[int, float]]] = {}
        for label, le, count, total in rows:
            counts.setdefault(label, {})[float(le)] = (int(count), float(total))
        out = []
        for label, by_bound in counts.items():
            running, buckets = 0, []
            for le in HISTOGRAM_BOUNDS:
                running += by_bound.get(le, (0, 0.0))[0]
                buckets.append((le, running))
            total = sum(t for _, t in by_bound.values())
            out.append(Histogram(label, tuple(buckets), running, total))
        return out


__all__ = ["Histograms"]
