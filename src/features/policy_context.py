"""The context a policy decides with: customer features (and model scores) as of each decision.

A trigger is decided at its own time ``t``; the customer's features must be
those of a cutoff at or before ``t``. Computing the 70 feature columns of
:func:`~cadence.features.customer.customer_features` at every trigger's own
time would be one pass per distinct time; instead they are computed on a
**grid of snapshot times** (:func:`snapshot_times`, weekly by default,
:func:`customer_snapshots`) and each decision reads the **latest snapshot at
or before its time** (:func:`as_of_join`). A snapshot at ``s`` reads only
rows strictly before ``s`` (the feature layer's cutoff rule), so with
``s <= t`` a decision reads nothing at or after its own time; the price is
staleness of up to one grid step (a week), and decisions before the first
snapshot of their customer (or of a customer who signed up after the latest
one) get no customer features at all (all null: a missing family, which the
learned policy answers with the rules).

How the snapshots are computed, and why. Each snapshot is one pass of
:func:`~cadence.features.customer.customer_features` over the same
registered tables (the files are read in place, never copied), fetched
through Arrow and stacked. Two alternatives were measured on the default shop
(20,000 customers x 365 days, ``benchmarks/RESULTS.md``): one query that
unions the passes of 8 cutoffs did not finish in 60 s (the SQL of 8 copies
of the feature query is planned as one, and DuckDB recomputes every shared
scan per copy), and restricting each pass to the customers with a decision
in the following week (a semi-join on every table) was slower (0.45 s
against 0.37 s a pass): a pass's cost is fixed overhead plus one scan of
the events, which the semi-join does not remove. A loop of full passes costs
about 0.4 s a week of history on 2 cores.

Model scores (a frame ``customer_id, scored_at, <scores>`` from the models'
scoring step) are joined the same way; :class:`PolicyContext` holds both and
:meth:`PolicyContext.attach` adds their columns to trigger candidates (or to a
messages log's candidates) by ``customer_id`` and ``triggered_at``.

Examples
--------
>>> ts = lambda *s: pd.to_datetime(list(s), utc=True)
>>> snaps = pd.DataFrame({"customer_id": ["a", "a", "b"], "snapshot_at": ts("2025-01-01", "2025-01-08", "2025-01-08"),
...                       "orders_all": [1, 2, 5]})
>>> rows = pd.DataFrame({"customer_id": ["a", "a", "b", "c"],
...                      "triggered_at": ts("2025-01-07", "2025-01-08", "2025-01-07", "2025-01-09")})
>>> j = as_of_join(rows, snaps, time="snapshot_at")
>>> j["orders_all"].tolist(), j["snapshot_at"].dt.day.tolist()
([1.0, 2.0, nan, nan], [1.0, 8.0, nan, nan])
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ibis
import numpy as np
import pandas as pd

from cadence.contract.clock import epoch_seconds
from cadence.contract.triggers import TriggerRules
from cadence.features.customer import DEFAULT_RULES, customer_features, feature_columns
from cadence.features.decision_context import CONTEXT_COLUMNS
from cadence.features.engine import (
    as_of_literal,
    duckdb_sql,
    engine_name,
    fetch_arrow,
    utc_timestamp,
)

#: The time column of :func:`customer_snapshots` (the snapshot's cutoff).
SNAPSHOT_AT = "snapshot_at"
#: The time column of a model-score table (the scoring step's cutoff).
SCORED_AT = "scored_at"
#: The trigger's own decision context (exact at the decision; a snapshot never replaces it).
_DECISION_CONTEXT = frozenset(CONTEXT_COLUMNS)
#: The customer-feature columns a policy reads: every feature of the default windows but
#: ``orders_90d``, which the trigger's decision context has exactly at the decision time (69 columns).
CUSTOMER_COLUMNS: tuple[str, ...] = tuple(c for c in feature_columns() if c != "customer_id"
                                          and c not in _DECISION_CONTEXT)


def snapshot_times(start: Any, end: Any, every: str | pd.Timedelta = "7D") -> pd.DatetimeIndex:
    """Cutoffs ``start, start + every, ...`` up to and including ``end`` (UTC).

    ``start`` is the first decision that should see features (the first
    snapshot reads nothing, so give the time history begins plus a little, or
    the first trigger); ``end`` the last decision time.

    >>> snapshot_times("2025-01-01", "2025-01-20").strftime("%m-%d").tolist()
    ['01-01', '01-08', '01-15']
    """
    lo, hi = utc_timestamp(start), utc_timestamp(end)
    if hi < lo:
        raise ValueError(f"snapshot_times: end {hi} is before start {lo}")
    step = pd.Timedelta(every)
    if step <= pd.Timedelta(0):
        raise ValueError(f"snapshot_times: every must be positive, got {every!r}")
    return pd.date_range(lo, hi, freq=step)


def customer_snapshots(con: Any, tables: Mapping[str, ibis.Table], times: Sequence[Any], *,
                       rules: TriggerRules = DEFAULT_RULES, compile_once: bool = True) -> pd.DataFrame:
    """Customer features at every cutoff of ``times``, stacked: ``customer_id``, :data:`SNAPSHOT_AT`, features.

    One pass of :func:`~cadence.features.customer.customer_features` per
    cutoff on ``con`` (see the module docstring for why a loop); each reads
    only rows strictly before its cutoff. Rows are ordered by cutoff, then
    customer. Columns: ``customer_id``, ``snapshot_at`` and
    :data:`CUSTOMER_COLUMNS` (counts 0 and the rest null for a customer
    without history, as the feature table). ``compile_once`` (DuckDB):
    compile the query once and swap its cutoff per pass (see
    :func:`_templated_pass`); ``False`` builds and compiles every pass.

    >>> from cadence.features.engine import connect, register
    >>> con = connect()
    >>> t = register(con, {"customers": pd.DataFrame({"customer_id": ["a"],
    ...     "signup_at": pd.to_datetime(["2025-01-01"], utc=True)})})
    >>> s = customer_snapshots(con, t, ["2025-01-02", "2025-01-09"])
    >>> s[["customer_id", "tenure_days"]].values.tolist()
    [['a', 1.0], ['a', 8.0]]
    """
    import pyarrow as pa

    cutoffs = sorted({utc_timestamp(t) for t in times})
    if not cutoffs:
        raise ValueError("customer_snapshots: no cutoffs")
    run = _templated_pass(con, tables, rules) if compile_once and engine_name(con) == "duckdb" else None
    parts = []
    for cut in cutoffs:
        part = run(cut) if run is not None else fetch_arrow(con, customer_features(tables, cut, rules=rules))
        stamp = pa.array(np.full(part.num_rows, cut.value // 1000, np.int64), pa.timestamp("us", tz="UTC"))
        parts.append(part.add_column(1, SNAPSHOT_AT, stamp))
    out = pa.concat_tables(parts).to_pandas()
    return out.sort_values([SNAPSHOT_AT, "customer_id"], kind="stable").reset_index(drop=True)


#: The cutoff the feature query is compiled at once (a time no real data has), then replaced per snapshot.
_SENTINEL = pd.Timestamp("1901-02-03 04:05:06.789012", tz="UTC")
_WINDOWS = (30, 90, 365)


def _literal_sql(ts: pd.Timestamp) -> str:
    """How the DuckDB SQL of the feature query spells the timestamp ``ts``."""
    import re

    sql = duckdb_sql(ibis.memtable({"x": [1]}).select(t=as_of_literal(ts)))
    found = re.findall(r"MAKE_TIMESTAMPTZ\([^)]*\)", sql)
    if len(found) != 1:
        raise RuntimeError(f"unexpected SQL for a timestamp literal: {sql}")
    return found[0]


def _templated_pass(con: Any, tables: Mapping[str, ibis.Table], rules: TriggerRules) -> Any:
    """A function cutoff -> features (Arrow) that compiles the feature query once; None when that is not safe.

    Building and compiling the query costs ~0.5 s, as much as running it on
    20,000 customers, and it differs between cutoffs only in four timestamp
    literals (the cutoff and the starts of the 30/90/365-day windows). The
    query is compiled at a sentinel cutoff and the literals are replaced;
    if any sentinel literal is not found exactly where expected the caller
    compiles each pass instead.
    """
    sql = duckdb_sql(customer_features(tables, _SENTINEL, rules=rules, windows=_WINDOWS))
    offsets = (0, *_WINDOWS)
    marks = [_literal_sql(_SENTINEL - pd.Timedelta(days=w)) for w in offsets]
    import re

    if set(re.findall(r"MAKE_TIMESTAMPTZ\([^)]*\)", sql)) != set(marks) or "190" in re.sub(
            r"MAKE_TIMESTAMPTZ\([^)]*\)", "", sql):
        return None

    def run(cut: pd.Timestamp) -> Any:
        q = sql
        for w, m in zip(offsets, marks, strict=True):
            q = q.replace(m, _literal_sql(cut - pd.Timedelta(days=w)))
        return con.raw_sql(q).fetch_arrow_table()

    return run


@dataclass(frozen=True)
class SnapshotIndex:
    """Sorted keys of a snapshot table, for :meth:`lookup` (built once, reused by every decision batch)."""

    customers: pd.Index  # distinct customer ids, code order
    keys: np.ndarray  # (m,) sorted int64 keys code * span + (seconds - lo)
    rows: np.ndarray  # (m,) snapshot row of each key
    codes: np.ndarray  # (m,) customer code of each key
    seconds: np.ndarray  # (m,) snapshot time, epoch seconds (rounded up)
    lo: int
    hi: int

    @classmethod
    def build(cls, snapshots: pd.DataFrame, time: str, by: str = "customer_id") -> SnapshotIndex:
        """Index ``snapshots`` by ``(by, time)``."""
        for col in (by, time):
            if col not in snapshots.columns:
                raise ValueError(f"snapshots: missing column {col!r} (columns: {', '.join(map(str, snapshots.columns))})")
        ids = snapshots[by].astype(str).to_numpy()
        customers = pd.Index(pd.unique(ids))
        code = customers.get_indexer(ids).astype(np.int64)
        t = pd.Series(snapshots[time])
        if t.isna().any():
            raise ValueError(f"snapshots.{time}: {int(t.isna().sum())} rows have no time")
        # Rounded up to whole seconds, decisions rounded down: "at or before" is never loosened.
        ns = np.asarray(pd.to_datetime(t, utc=True).astype("datetime64[ns, UTC]").astype("int64"))
        sec = -((-ns) // 1_000_000_000)
        lo, hi = (int(sec.min()), int(sec.max())) if len(sec) else (0, 0)
        span = hi - lo + 2
        keys = code * span + (sec - lo)
        order = np.argsort(keys, kind="stable")
        return cls(customers, keys[order], order, code[order], sec[order], lo, hi)

    def lookup(self, ids: Any, times: pd.Series) -> np.ndarray:
        """For each (id, time): the row of the latest snapshot of that id at or before that time, or -1."""
        n = len(times)
        if n == 0 or len(self.keys) == 0:
            return np.full(n, -1, np.int64)
        code = self.customers.get_indexer(np.asarray(ids).astype(str)).astype(np.int64)
        sec = epoch_seconds(pd.Series(times).reset_index(drop=True))
        span = self.hi - self.lo + 2
        # Clipped so a key stays inside its customer's block; the checks below restore the truth.
        key = code * span + (np.clip(sec, self.lo - 1, self.hi) - self.lo)
        pos = np.searchsorted(self.keys, key, side="right") - 1
        safe = np.maximum(pos, 0)
        ok = (code >= 0) & (pos >= 0) & (self.codes[safe] == code) & (self.seconds[safe] <= sec)
        return np.where(ok, self.rows[safe], -1)


def as_of_join(rows: pd.DataFrame, snapshots: pd.DataFrame, *, time: str, at: str = "triggered_at",
               by: str = "customer_id", index: SnapshotIndex | None = None) -> pd.DataFrame:
    """The latest snapshot at or before each row's time, per ``by``: one row per row of ``rows``, same index.

    Columns: every column of ``snapshots`` but ``by``, numbers first (including ``time``,
    so a consumer can see how old the context is); all null where no
    snapshot qualifies. ``index`` is ``SnapshotIndex.build(snapshots, time,
    by)``, when the caller keeps one. Counts come back as floats when some
    row has no snapshot (nulls): every numeric column comes back as floats.
    """
    for col in (by, at):
        if col not in rows.columns:
            raise ValueError(f"rows: missing column {col!r} (columns: {', '.join(map(str, rows.columns))})")
    index = index or SnapshotIndex.build(snapshots, time, by)
    hit = index.lookup(rows[by].to_numpy(), rows[at])
    found = hit >= 0
    safe = np.maximum(hit, 0)
    cols = [c for c in snapshots.columns if c != by]
    numeric = [c for c in cols if pd.api.types.is_numeric_dtype(snapshots[c].dtype)
               and not pd.api.types.is_bool_dtype(snapshots[c].dtype)]
    # Numbers gathered into one (k, n) block, so the frame is built without pandas merging
    # 60-odd columns (that took two thirds of the time); all floats, null where no snapshot.
    block = np.empty((len(numeric), len(rows)))
    for j, c in enumerate(numeric):
        col = snapshots[c]
        # Gather first, convert after: converting a whole int column to floats costs a copy of it.
        block[j] = (col.to_numpy() if col.dtype.kind in "fiu" else col.to_numpy(dtype=float, na_value=np.nan))[safe]
    block[:, ~found] = np.nan
    out = pd.DataFrame(block.T, columns=numeric, index=rows.index)
    for c in cols:
        if c in numeric:
            continue
        col = snapshots[c]
        if pd.api.types.is_datetime64_any_dtype(col.dtype):
            out[c] = col.take(safe).where(found).to_numpy() if not found.all() else col.take(safe).to_numpy()
        else:
            out[c] = np.where(found, col.to_numpy(dtype=object)[safe], None)
    return out


@dataclass(frozen=True)
class PolicyContext:
    """Point-in-time context tables a policy reads beside the trigger's own: customer features and model scores.

    ``customer`` is :func:`customer_snapshots`'s frame (``customer_id``,
    :data:`SNAPSHOT_AT`, features); ``scores`` a frame ``customer_id``,
    :data:`SCORED_AT`, one column per score. Either may be None (that family
    is then absent).

    >>> ts = lambda *s: pd.to_datetime(list(s), utc=True)
    >>> ctx = PolicyContext(scores=pd.DataFrame({"customer_id": ["a"], "scored_at": ts("2025-01-01"), "p_alive": [0.9]}))
    >>> rows = pd.DataFrame({"customer_id": ["a", "a"], "triggered_at": ts("2024-12-31", "2025-01-02")})
    >>> ctx.attach(rows)["p_alive"].tolist()
    [nan, 0.9]
    """

    customer: pd.DataFrame | None = None
    scores: pd.DataFrame | None = None

    @functools.cached_property
    def _indexes(self) -> dict[str, tuple[pd.DataFrame, str, SnapshotIndex]]:
        out = {}
        if self.customer is not None:
            out["customer"] = (self.customer, SNAPSHOT_AT, SnapshotIndex.build(self.customer, SNAPSHOT_AT))
        if self.scores is not None:
            out["scores"] = (self.scores, SCORED_AT, SnapshotIndex.build(self.scores, SCORED_AT))
        return out

    def attach(self, rows: pd.DataFrame, at: str = "triggered_at") -> pd.DataFrame:
        """``rows`` with the context columns as of each row's ``at``.

        Context columns already in ``rows`` are replaced, except the
        trigger's own decision context (``orders_90d``, ``sends_7d``, ...:
        exact at the decision, where a snapshot is up to a week old), which
        ``rows`` keep.
        """
        parts = [as_of_join(rows, frame, time=time, at=at, index=index)
                 for frame, time, index in self._indexes.values()]
        parts = [p.drop(columns=[c for c in p.columns if c in _DECISION_CONTEXT and c in rows.columns])
                 for p in parts]
        if not parts:
            return rows
        added = [c for p in parts for c in p.columns]
        base = rows.drop(columns=[c for c in added if c in rows.columns])
        return pd.concat([base, *parts], axis=1)


__all__ = ["CUSTOMER_COLUMNS", "PolicyContext", "SCORED_AT", "SNAPSHOT_AT", "SnapshotIndex", "as_of_join",
           "customer_snapshots", "snapshot_times"]
