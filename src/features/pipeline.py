"""``build_features``: customer features and trigger candidates as of a cutoff, written atomically.

Validates the input against the data contract first (so bad data stops with
the validation message, not an error deep in SQL), runs the feature
expressions on the chosen engine and writes ``customer_features.parquet``
and ``trigger_candidates.parquet`` into the output folder in one atomic swap.
Each trigger candidate carries its decision context as of its own
``eligible_at`` (:mod:`cadence.features.decision_context`: time zone,
opt-ins, ``sends_7d``, ``orders_90d``, ``days_since_order``), the same
definition the logged messages get, so a policy scores the file as written.
(Like every float the pipeline writes, ``days_since_order`` is rounded to
:data:`cadence.features.engine.FLOAT_DECIMALS` places in the file.)

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
>>> # build_features("data/raw/demo-shop", "2025-10-01", "data/processed/features-2025-10-01")
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ibis
import pandas as pd

from cadence.contract.triggers import TriggerRules
from cadence.data.io import PathLike, atomic_path, list_tables
from cadence.features.engine import (
    Engine,
    connect,
    engine_name,
    fetch_arrow,
    utc_timestamp,
    write_parquet,
    write_parquet_parts,
)

OUTPUTS: tuple[str, ...] = ("customer_features", "trigger_candidates")
#: Events per customer bucket on DuckDB (the 1,000,000-customer shop: 5 buckets, 3.2 GB peak).
EVENTS_PER_BUCKET = 8_000_000


@dataclass
class FeatureRun:
    """What :func:`build_features` wrote and how long each part took."""

    out_dir: Path
    as_of: pd.Timestamp
    engine: str
    rows: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    buckets: int = 1


def build_features(data_dir: PathLike, as_of: str | pd.Timestamp, out_dir: PathLike, *,
                   engine: Engine = "duckdb", since: str | pd.Timestamp | None = None,
                   rules: TriggerRules | None = None, validate: bool = True,
                   spark_master: str | None = None, repurchase_days: pd.DataFrame | None = None,
                   buckets: int | None = None, progress: bool = False) -> FeatureRun:
    """Compute both feature tables for ``data_dir`` as of ``as_of`` and write them to ``out_dir``.

    Parameters
    ----------
    data_dir
        A data directory of contract tables.
    as_of
        The cutoff (required): nothing at or after it is read. Naive values are UTC.
    out_dir
        Folder for ``customer_features.parquet`` and ``trigger_candidates.parquet``
        (replaced as a whole, atomically).
    engine
        ``"duckdb"`` (default) or ``"spark"``; both give identical tables.
    since
        Only trigger candidates eligible at or after this (all history by default).
    validate
        Check the whole contract first (reads every table into memory; turn
        off only for data validated upstream, e.g. at benchmark scale).
    repurchase_days
        Repurchase intervals from a fitted model (``product_id``, ``interval_days``).
    buckets
        Customer buckets run one after another (DuckDB only; by default one
        per :data:`EVENTS_PER_BUCKET` events). The output does not depend on it.
    progress
        Show a progress bar: one step per output and customer bucket.
    """
    from tqdm.auto import tqdm

    from cadence.data.validate import check_dir
    from cadence.features.customer import customer_features
    from cadence.features.decision_context import with_decision_context
    from cadence.features.engine import load_tables
    from cadence.features.triggers import trigger_candidates, typical_repurchase_days

    cutoff = utc_timestamp(as_of)
    run = FeatureRun(Path(out_dir), cutoff, engine)
    t0 = time.perf_counter()
    if validate:
        check_dir(data_dir)
        run.seconds["validate"] = time.perf_counter() - t0
    con = connect(engine, spark_master=spark_master)
    tables = load_tables(con, data_dir, list(list_tables(data_dir)))
    rules = rules or TriggerRules()
    ranges = customer_ranges(con, tables, buckets)
    run.buckets = len(ranges)
    typical = None
    if len(ranges) > 1:  # buy_again's fallback interval is the one input that mixes customers
        expr = typical_repurchase_days(tables, cutoff, rules)
        # Not to_arrow: rounding the intervals could move buy_again's times by a second.
        typical = None if expr is None else fetch_arrow(con, expr).to_pandas()
    Build = Callable[[Mapping[str, ibis.Table]], ibis.Table]

    def parts(build: Build) -> Iterator[ibis.Table]:
        for lo, hi in ranges:
            yield build(in_range(tables, lo, hi))
            bar.update()  # the part has been written when the writer asks for the next one

    def write(name: str, build: Build, sort_by: list[str]) -> None:
        t0 = time.perf_counter()
        bar.set_description(name)
        path = tmp / f"{name}.parquet"
        if len(ranges) == 1:
            run.rows[name] = write_parquet(con, build(tables), path, sort_by)
            bar.update()
        else:
            run.rows[name] = write_parquet_parts(con, parts(build), path, sort_by)
        run.seconds[name] = time.perf_counter() - t0

    with tqdm(total=len(OUTPUTS) * len(ranges), desc="features", unit="part", disable=not progress) as bar, \
            atomic_path(out_dir) as tmp:
        tmp.mkdir()
        write("customer_features", lambda t: customer_features(t, cutoff, rules=rules), ["customer_id"])
        # Each candidate carries its decision context as of its own eligible_at (what a policy scores).
        write("trigger_candidates", lambda t: with_decision_context(trigger_candidates(
            con, t, cutoff, rules=rules, since=since, repurchase_days=repurchase_days, typical_days=typical),
            t, at="eligible_at"), ["customer_id", "eligible_at", "stage"])
    return run


def customer_ranges(con: Any, tables: Mapping[str, ibis.Table],
                    buckets: int | None = None) -> list[tuple[str | None, str | None]]:
    """Contiguous customer-id ranges ``[lo, hi)`` with about equal numbers of customers.

    One range, ``(None, None)``, on Spark, for a shop of fewer than
    :data:`EVENTS_PER_BUCKET` events, or when ``buckets`` is 1. The first
    range has no lower end and the last no upper end, so every id falls in
    exactly one.

    >>> from cadence.features.engine import register
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
