"""``feature_tables``: customer features and trigger candidates as of a cutoff, from tables on one engine.

The two feature tables ``cadence features`` writes, as Ibis expressions over
the contract tables on DuckDB or Spark (:mod:`cadence.features.engine`).
Each trigger candidate carries its decision context as of its own
``eligible_at`` (:mod:`cadence.features.decision_context`: time zone,
opt-ins, ``sends_7d``, ``orders_90d``, ``days_since_order``), the same
definition the logged messages get, so a policy scores the file as written.
(Like every float the pipeline writes, ``days_since_order`` is rounded to
:data:`cadence.features.engine.FLOAT_DECIMALS` places in the file.)
Reading a data directory, validating it and writing the files atomically
is the workflow :func:`cadence.workflows.features.build_features`.

On DuckDB a large shop is run in customer buckets: contiguous customer-id
ranges of about :data:`EVENTS_PER_BUCKET` events each, one after another,
streamed into the same files. Every feature and every trigger rule reads one
customer's rows only, except ``buy_again``'s typical repurchase interval,
which is computed once over the whole shop and handed to each bucket, so
the result is the same as one pass. Why: one pass over a million customers
holds tens of millions of sessionised events and spills past the memory
limit; buckets stay in memory (1,000,000 customers, same evening in
``benchmarks/RESULTS.md``: 5 buckets 117.2 s at 3.10 GB peak, one pass 147.5 s at
5.42 GB). When the files are
clustered by customer (as the generator writes them), DuckDB skips the other
buckets' row groups by their statistics; otherwise each bucket scans the files.
Spark partitions the work itself and always runs one pass.

Examples
--------
>>> import tempfile
>>> from cadence.data.io import read_tables
>>> from cadence.features.engine import connect, execute, register
>>> from cadence.synthetic import ShopConfig, generate_shop
>>> shop = generate_shop(ShopConfig(customers=100, days=30, seed=1), tempfile.mkdtemp() + "/s")
>>> con = connect()
>>> ft = feature_tables(con, register(con, read_tables(shop)), "2025-01-20")
>>> cands = execute(con, next(ft.parts("trigger_candidates")), sort_by=ft.sort_by["trigger_candidates"])
>>> bool((cands["eligible_at"] < ft.as_of).all())
True
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import ibis
import pandas as pd

from cadence.contract.triggers import TriggerRules
from cadence.features.engine import engine_name, fetch_arrow, utc_timestamp

OUTPUTS: tuple[str, ...] = ("customer_features", "trigger_candidates")
#: Events per customer bucket on DuckDB (the 1,000,000-customer shop: 5 buckets, 3.2 GB peak).
EVENTS_PER_BUCKET = 8_000_000

Build = Callable[[Mapping[str, ibis.Table]], ibis.Table]


@dataclass(frozen=True)
class FeatureTables:
    """Both feature tables (:data:`OUTPUTS`) as Ibis expressions on one backend, built bucket by bucket.

    ``ranges`` are the customer buckets' id ranges (``[(None, None)]``: one
    pass); :meth:`parts` builds an output's expression for each bucket, in
    customer order, only when it is asked for (a bucket's cached tables live
    as long as its expression), and ``sort_by`` is the output's row order.
    """

    con: Any
    as_of: pd.Timestamp
    ranges: tuple[tuple[str | None, str | None], ...]
    sort_by: Mapping[str, tuple[str, ...]]
    tables: Mapping[str, ibis.Table] = field(repr=False)
    builds: Mapping[str, Build] = field(repr=False)

    def parts(self, name: str) -> Iterator[ibis.Table]:
        """The expressions of output ``name``, one per customer bucket, each built when the next is asked for."""
        if name not in self.builds:
            raise ValueError(f"output: {name!r} is not one of {OUTPUTS}")
        for lo, hi in self.ranges:
            yield self.builds[name](in_range(self.tables, lo, hi))


def feature_tables(con: Any, tables: Mapping[str, ibis.Table], as_of: str | pd.Timestamp, *,
                   since: str | pd.Timestamp | None = None, rules: TriggerRules | None = None,
                   repurchase_days: pd.DataFrame | None = None, buckets: int | None = None) -> FeatureTables:
    """Customer features and trigger candidates (with their decision context) of ``tables`` as of ``as_of``.

    Parameters
    ----------
    con
        The backend the tables are on (:func:`cadence.features.engine.connect`).
    tables
        The contract tables by name, on ``con``.
    as_of
        The cutoff (required): nothing at or after it is read. Naive values are UTC.
    since
        Only trigger candidates eligible at or after this (all history by default).
    repurchase_days
        Repurchase intervals from a fitted model (``product_id``, ``interval_days``).
    buckets
        Customer buckets (DuckDB only; by default one per
        :data:`EVENTS_PER_BUCKET` events). The tables do not depend on it.
        With more than one, ``buy_again``'s typical repurchase interval is
        computed here, once over the whole shop.
    """
    from cadence.features.customer import customer_features
    from cadence.features.decision_context import with_decision_context
    from cadence.features.triggers import trigger_candidates, typical_repurchase_days

    cutoff = utc_timestamp(as_of)
    rules = rules or TriggerRules()
    ranges = tuple(customer_ranges(con, tables, buckets))
    typical = None
    if len(ranges) > 1:  # buy_again's fallback interval is the one input that mixes customers
        expr = typical_repurchase_days(tables, cutoff, rules)
        # Not to_arrow: rounding the intervals could move buy_again's times by a second.
        typical = None if expr is None else fetch_arrow(con, expr).to_pandas()

    def candidates(t: Mapping[str, ibis.Table]) -> ibis.Table:
        # Each candidate carries its decision context as of its own eligible_at (what a policy scores).
        return with_decision_context(trigger_candidates(con, t, cutoff, rules=rules, since=since,
                                                        repurchase_days=repurchase_days, typical_days=typical),
                                     t, at="eligible_at")

    builds: dict[str, Build] = {"customer_features": lambda t: customer_features(t, cutoff, rules=rules),
                                "trigger_candidates": candidates}
    sort_by = {"customer_features": ("customer_id",), "trigger_candidates": ("customer_id", "eligible_at", "stage")}
    return FeatureTables(con, cutoff, ranges, sort_by, tables, builds)


def customer_ranges(con: Any, tables: Mapping[str, ibis.Table],
                    buckets: int | None = None) -> list[tuple[str | None, str | None]]:
    """Contiguous customer-id ranges ``[lo, hi)`` with about equal numbers of customers.

    One range, ``(None, None)``, on Spark, for a shop of fewer than
    :data:`EVENTS_PER_BUCKET` events, or when ``buckets`` is 1. The first
    range has no lower end and the last no upper end, so every id falls in
    exactly one.

    >>> from cadence.features.engine import connect, register
    >>> con = connect()
    >>> t = register(con, {"customers": pd.DataFrame({"customer_id": list("abcdef")})})
    >>> customer_ranges(con, t, buckets=3)
    [(None, 'b'), ('b', 'd'), ('d', None)]
    """
    if engine_name(con) != "duckdb":
        return [(None, None)]
    if buckets is None:
        n_events = int(tables["events"].count().execute()) if "events" in tables else 0
        buckets = -(-n_events // EVENTS_PER_BUCKET)
    if buckets <= 1:
        return [(None, None)]
    ids = tables["customers"].select("customer_id")
    qs = [i / buckets for i in range(1, buckets)]
    row = con.raw_sql(f"SELECT quantile_disc(customer_id, {qs}) FROM ({ibis.to_sql(ids, dialect='duckdb')})").fetchone()
    cuts = sorted({c for c in (row[0] if row and row[0] else []) if c is not None})
    edges: list[str | None] = [None, *cuts, None]
    return [(lo, hi) for lo, hi in zip(edges[:-1], edges[1:], strict=True)]


def in_range(tables: Mapping[str, ibis.Table], lo: str | None, hi: str | None) -> dict[str, ibis.Table]:
    """``tables`` with every table that has a ``customer_id`` cut to ``lo <= customer_id < hi``.

    Tables keyed otherwise (order lines, order status, the catalogue) are
    left whole: they reach customers through joins with the cut tables.
    """
    out = {}
    for name, t in tables.items():
        if "customer_id" in t.columns:
            if lo is not None:
                t = t.filter(t.customer_id >= lo)
            if hi is not None:
                t = t.filter(t.customer_id < hi)
        out[name] = t
    return out
