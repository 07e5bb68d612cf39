"""``cadence features``: a data directory's customer features and trigger candidates, written atomically.

The path-reading edge of :mod:`cadence.features.pipeline`: validates the
data directory against the contract first (so bad data stops with the
validation message, not an error deep in SQL), has the engine read its
tables in place (:func:`load_tables`), computes both feature tables with
:func:`~cadence.features.pipeline.feature_tables` and writes
``customer_features.parquet`` and ``trigger_candidates.parquet`` into the
output folder in one atomic swap, bucket by bucket on a large shop. With
``scores=True`` the same swap also holds ``customer_scores.parquet``: the
models of :class:`cadence.models.scores.CustomerScorer` fitted on the
orders before ``as_of`` and scored at ``as_of``
(:mod:`cadence.workflows.scores`).

Examples
--------
>>> import tempfile
>>> from cadence.synthetic import ShopConfig, generate_shop
>>> d = tempfile.mkdtemp()
>>> shop = generate_shop(ShopConfig(customers=100, days=30, seed=1), d + "/shop")
>>> run = build_features(shop, "2025-01-20", d + "/features")
>>> sorted(p.name for p in run.out_dir.glob("*.parquet"))
['customer_features.parquet', 'trigger_candidates.parquet']
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ibis
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cadence.contract.triggers import TriggerRules
from cadence.data.io import (
    PARQUET_OPTIONS,
    PathLike,
    atomic_path,
    list_tables,
    read_table,
    table_path,
)
from cadence.features.engine import Engine, connect, register, write_parquet, write_parquet_parts
from cadence.features.pipeline import OUTPUTS, feature_tables
from cadence.workflows.scores import SCORES_FILE, compute_scores


@dataclass
class FeatureRun:
    """What :func:`build_features` wrote and how long each part took."""

    out_dir: Path
    as_of: pd.Timestamp
    engine: str
    rows: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    buckets: int = 1
    #: Score models that could not be fitted (their columns are NaN) and why (``scores=True`` only).
    score_failures: dict[str, str] = field(default_factory=dict)


def load_tables(con: Any, data_dir: PathLike, tables: Sequence[str]) -> dict[str, ibis.Table]:
    """Register the data directory's tables with the backend, by name.

    CSV tables are read through pandas (with the contract's types) and
    uploaded; Parquet files and folders are read in place by the engine.
    Missing tables raise ``FileNotFoundError`` naming them.
    """
    out: dict[str, ibis.Table] = {}
    missing = []
    for name in tables:
        p = table_path(data_dir, name)
        if p is None:
            missing.append(name)
            continue
        if p.suffix == ".csv":
            out[name] = register(con, {name: read_table(p, name)})[name]
        else:
            src = str(p / "*.parquet") if p.is_dir() else str(p)
            out[name] = con.read_parquet(src, table_name=name)
    if missing:
        raise FileNotFoundError(f"{Path(data_dir)}: no table {', '.join(missing)}")
    return out


def build_features(data_dir: PathLike, as_of: str | pd.Timestamp, out_dir: PathLike, *,
                   engine: Engine = "duckdb", since: str | pd.Timestamp | None = None,
                   rules: TriggerRules | None = None, validate: bool = True,
                   spark_master: str | None = None, repurchase_days: pd.DataFrame | None = None,
                   buckets: int | None = None, progress: bool = False, scores: bool = False) -> FeatureRun:
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
        per :data:`~cadence.features.pipeline.EVENTS_PER_BUCKET` events). The
        output does not depend on it.
    progress
        Show a progress bar: one step per output and customer bucket.
    scores
        Also write ``customer_scores.parquet`` (columns
        :data:`cadence.models.scores.SCORE_TABLE_COLUMNS`, one row per
        customer with an order before ``as_of``), from models fitted on the
        orders before ``as_of``, in the same atomic swap.
    """
    from tqdm.auto import tqdm

    from cadence.data.validate import check_dir

    t0 = time.perf_counter()
    seconds = {}
    if validate:
        check_dir(data_dir)
        seconds["validate"] = time.perf_counter() - t0
    con = connect(engine, spark_master=spark_master)
    tables = load_tables(con, data_dir, list(list_tables(data_dir)))
    ft = feature_tables(con, tables, as_of, since=since, rules=rules, repurchase_days=repurchase_days,
                        buckets=buckets)
    run = FeatureRun(Path(out_dir), ft.as_of, engine, seconds=seconds, buckets=len(ft.ranges))

    def parts(name: str) -> Iterator[ibis.Table]:
        for part in ft.parts(name):
            yield part
            bar.update()  # the part has been written when the writer asks for the next one

    with tqdm(total=len(OUTPUTS) * len(ft.ranges), desc="features", unit="part", disable=not progress) as bar, \
            atomic_path(out_dir) as tmp:
        tmp.mkdir()
        for name in OUTPUTS:
            t0 = time.perf_counter()
            bar.set_description(name)
            path = tmp / f"{name}.parquet"
            if len(ft.ranges) == 1:
                run.rows[name] = write_parquet(con, next(ft.parts(name)), path, ft.sort_by[name])
                bar.update()
            else:
                run.rows[name] = write_parquet_parts(con, parts(name), path, ft.sort_by[name])
            run.seconds[name] = time.perf_counter() - t0
        if scores:
            t0 = time.perf_counter()
            bar.set_description("customer_scores")
            df, run.score_failures = compute_scores(con, tables, ft.as_of)
            pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp / SCORES_FILE,
                           **PARQUET_OPTIONS)  # type: ignore[arg-type]
            run.rows["customer_scores"] = len(df)
            run.seconds["customer_scores"] = time.perf_counter() - t0
    return run


__all__ = ["FeatureRun", "build_features", "load_tables"]
