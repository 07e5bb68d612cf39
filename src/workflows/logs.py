"""A data directory's messages log: read whole (:func:`load_log`) or in customer partitions for the replay (:func:`replay_log`).

The path-reading edge of :mod:`cadence.features.logged` (the log from
tables) and :mod:`cadence.simulation.replay` (the walk, whole or by
partition). Only the columns a logged decision needs are read
(:data:`LOG_SKIP_COLUMNS` are left on disk).

The learned policy reads more than the log's own decision context: the
customer's features and the models' scores as of each trigger
(:mod:`cadence.policies.context`). :func:`load_context` computes them from
the data directory on a weekly grid
(:class:`~cadence.features.policy_context.PolicyContext`) and
``load_log(data_dir, context=ctx)`` attaches them to the log's candidates;
the same ``ctx`` feeds a policy in the world re-run or the replay through
:class:`~cadence.policies.context.WithContext`.

Examples
--------
>>> import tempfile
>>> from cadence.synthetic import ShopConfig, generate_shop
>>> log = load_log(generate_shop(ShopConfig(customers=200, days=40, seed=1), tempfile.mkdtemp() + "/s"))
>>> log.n == len(log.candidates) == len(log.rewards)
True
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cadence.contract.actions import Policy
from cadence.data.bandit import LoggedBandit
from cadence.data.io import PathLike, read_table, table_path, table_paths
from cadence.features.logged import log_from_tables
from cadence.features.policy_context import PolicyContext

if TYPE_CHECKING:  # the replay (and the models it imports) loads only when a replay runs
    from cadence.simulation.replay import Engine, LogPart

#: The tables a log is built from.
LOG_TABLES: tuple[str, ...] = ("messages", "customers", "orders")
#: Columns the log readers leave unread: large, and no part of a decision's context, action or outcome.
LOG_SKIP_COLUMNS: dict[str, tuple[str, ...]] = {
    "messages": ("message_id", "items", "policy_id"), "customers": ("email", "name"), "orders": ("order_id",)}


def _read_log_table(path: Path, table: str) -> pd.DataFrame:
    if path.suffix == ".csv":
        return read_table(path, table)
    import pyarrow.dataset as ds

    names = ds.dataset(path, format="parquet").schema.names
    return read_table(path, table, columns=[c for c in names if c not in LOG_SKIP_COLUMNS.get(table, ())])


def log_tables(data_dir: PathLike) -> dict[str, pd.DataFrame]:
    """The :data:`LOG_TABLES` of a data directory, without :data:`LOG_SKIP_COLUMNS`.

    What :func:`~cadence.features.logged.log_from_tables`,
    :func:`~cadence.simulation.sequences.sequence_lift` and
    :func:`~cadence.simulation.sequences.sequence_paths` take. A missing
    table raises :class:`~cadence.data.io.DataDirError`, naming it.
    """
    return {name: _read_log_table(path, name) for name, path in table_paths(data_dir, list(LOG_TABLES)).items()}


def load_log(data_dir: PathLike, context: PolicyContext | None = None) -> LoggedBandit:
    """A data directory's messages log as a :class:`~cadence.data.bandit.LoggedBandit` (tables of :func:`log_tables`).

    With ``context`` (:func:`load_context`), its columns as of each
    trigger are added to ``log.candidates`` (:meth:`PolicyContext.attach`).
    """
    t = log_tables(data_dir)
    log = log_from_tables(t["messages"], t["customers"], t["orders"])
    return log if context is None else with_context(log, context)


def with_context(log: LoggedBandit, context: PolicyContext) -> LoggedBandit:
    """``log`` with ``context``'s columns as of each trigger added to its candidates."""
    import dataclasses

    if log.candidates is None:
        raise ValueError("log.candidates: missing (a messages log has them, load_log)")
    return dataclasses.replace(log, candidates=context.attach(log.candidates), reward=None if log.rewards is not None else log.reward)


#: The tables customer features read.
FEATURE_INPUTS: tuple[str, ...] = ("customers", "orders", "order_items", "events", "messages", "products")
#: The last context :func:`load_context` computed, by its inputs: one process often needs the same one twice
#: (an export, then its promotion; a test, then the command it checks), and it takes minutes on a large shop.
_LAST_CONTEXT: dict[tuple[Any, ...], PolicyContext] = {}


def _files_key(data_dir: PathLike) -> tuple[Any, ...]:
    """The data directory and every file of the tables the context reads, with size and modification time."""
    found = []
    for name in FEATURE_INPUTS:
        path = table_path(data_dir, name)
        files = [] if path is None else [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        found.append((name, tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files)))
    return (str(Path(data_dir).resolve()), tuple(found))


def load_context(data_dir: PathLike, *, families: Sequence[str] = ("customer", "scores"),
                 start: Any = None, end: Any = None, every: str = "7D", refit_days: float | None = 28.0,
                 scorer: Any = None, engine: str = "duckdb") -> PolicyContext:
    """The customer features and model scores of a data directory on a grid of times, for :meth:`PolicyContext.attach`.

    Parameters
    ----------
    data_dir
        A contract data directory.
    families
        ``"customer"`` (:func:`~cadence.features.policy_context.customer_snapshots`)
        and/or ``"scores"`` (:func:`~cadence.workflows.scores.score_snapshots`).
    start, end
        The grid's first and last time; by default midnight a week after the first
        logged trigger (features of the first week would read an almost
        empty history) and the last logged trigger.
    every
        Grid step (a pandas offset, ``"7D"``): the most a decision's context
        can be out of date.
    refit_days
        Refit the scoring models every ``refit_days`` days of the grid
        (:func:`~cadence.workflows.scores.score_snapshots`; ``None``: one fit
        at ``start``); a fit reads only orders before its time.
    scorer
        A :class:`~cadence.models.scores.CustomerScorer` with the scoring
        settings (defaults otherwise).

    With the default ``scorer``, the last context computed is kept and
    returned again for the same arguments while no file of the tables it
    reads has changed (size and modification time); do not modify its
    frames.
    """
    from cadence.features.engine import connect, utc_timestamp
    from cadence.features.policy_context import customer_snapshots, snapshot_times
    from cadence.policies.context import check_families
    from cadence.workflows.features import load_tables
    from cadence.workflows.scores import score_snapshots

    fams = check_families(families)
    key = None if scorer is not None else (_files_key(data_dir), fams, start, end, every, refit_days, engine)
    if key is not None and key in _LAST_CONTEXT:
        return _LAST_CONTEXT[key]
    if start is None or end is None:
        path = table_path(data_dir, "messages")
        if path is None:
            raise ValueError("messages: missing table (give start and end for the context grid)")
        trig = read_table(path, "messages", columns=["triggered_at"])["triggered_at"]
        # Midnight: a grid of whole days (any time of day works; whole days read more simply).
        start = start if start is not None else (trig.min() + pd.Timedelta(days=7)).floor("D")
        end = end if end is not None else trig.max()
    times = snapshot_times(utc_timestamp(start), utc_timestamp(end), every)
    con = connect(engine)
    names = [n for n in FEATURE_INPUTS if table_path(data_dir, n) is not None]
    tables = load_tables(con, data_dir, names)
    customer = customer_snapshots(con, tables, times) if "customer" in fams else None
    scores = None
    if "scores" in fams:
        scores = score_snapshots(con, {k: tables[k] for k in ("orders", "order_items") if k in tables}, times,
                                 refit_days=refit_days, scorer=scorer)
    ctx = PolicyContext(customer=customer, scores=scores)
    if key is not None:
        _LAST_CONTEXT.clear()
        _LAST_CONTEXT[key] = ctx
    return ctx


def replay_log(data_dir: PathLike, policy: Policy, *, engine: Engine = "process", workers: int | None = None,
               seed: int = 0, progress: bool = False, spark: Any = None) -> pd.DataFrame:
    """:func:`~cadence.simulation.replay.replay_decisions` on a data directory's log, rows ``0..n-1`` as :func:`load_log`'s.

    With Parquet ``messages``, ``customers`` and ``orders`` (and the
    in-process engine) the log is never loaded whole: one streaming pass
    splits each table by customer hash
    (:func:`~cadence.simulation.replay.customer_partition`, the partitions
    the in-memory walk uses) into a temporary folder, and each worker reads
    and walks one partition (:func:`~cadence.simulation.replay.replay_parts`).
    Otherwise the log is loaded whole. The decisions are the same either way.
    """
    from cadence.simulation.replay import partition_count, replay_decisions, replay_parts

    paths = [table_path(data_dir, t) for t in LOG_TABLES]
    if engine != "process" or not all(p is not None and p.suffix != ".csv" for p in paths):
        return replay_decisions(load_log(data_dir), policy, engine=engine, workers=workers, seed=seed,
                                progress=progress, spark=spark)
    workers = workers or os.cpu_count() or 1
    import pyarrow.dataset as ds

    n = ds.dataset(table_path(data_dir, "messages"), format="parquet").count_rows()
    n_parts = partition_count(n, workers)
    with tempfile.TemporaryDirectory(prefix="cadence-replay-") as tmp:
        folder = Path(tmp)
        split_log(data_dir, n_parts, folder)
        loads = [functools.partial(read_log_part, folder, p) for p in range(n_parts)]
        return replay_parts(loads, policy, workers=workers, seed=seed, progress=progress)


def split_log(data_dir: PathLike, parts: int, out: Path) -> int:
    """Write each log table's rows to ``out/<table>-<p>.arrow`` by customer partition; return the messages rows.

    One streaming pass per table (Arrow batches, only the columns the log
    needs); messages get ``_row``, their row number in the table.
    """
    import pyarrow as pa
    import pyarrow.dataset as ds

    from cadence.simulation.replay import customer_partition

    n_rows = 0
    for table in LOG_TABLES:
        data = ds.dataset(table_path(data_dir, table), format="parquet")
        cols = [c for c in data.schema.names if c not in LOG_SKIP_COLUMNS.get(table, ())]
        writers: dict[int, Any] = {}
        row = 0
        opts = pa.ipc.IpcWriteOptions(compression="lz4")
        for batch in data.to_batches(columns=cols, batch_size=1 << 19):
            if batch.num_rows == 0:
                continue
            batch = batch.replace_schema_metadata(None)
            if table == "messages":
                batch = batch.append_column("_row", pa.array(np.arange(row, row + batch.num_rows)))
            row += batch.num_rows
            b = customer_partition(batch.column("customer_id").to_numpy(zero_copy_only=False), parts)
            order = np.argsort(b, kind="stable")
            ends = np.cumsum(np.bincount(b, minlength=parts))
            batch = batch.take(pa.array(order))
            for p in np.flatnonzero(np.bincount(b, minlength=parts)):
                if p not in writers:
                    writers[p] = pa.ipc.new_file(str(out / f"{table}-{p}.arrow"), batch.schema, options=opts)
                lo = 0 if p == 0 else int(ends[p - 1])
                writers[p].write_batch(batch.slice(lo, int(ends[p]) - lo))
        for w in writers.values():
            w.close()
        if table == "messages":
            n_rows = row
    return n_rows


def _read_split(folder: Path, table: str, p: int) -> pd.DataFrame | None:
    import pyarrow as pa

    path = folder / f"{table}-{p}.arrow"
    if not path.exists():
        return None
    with pa.memory_map(str(path)) as src:
        return pa.ipc.open_file(src).read_all().to_pandas()


def read_log_part(folder: Path, p: int) -> LogPart | None:
    """Partition ``p`` of a log :func:`split_log` wrote to ``folder``; ``None`` when it has no messages."""
    from cadence.simulation.replay import LogPart

    msgs = _read_split(folder, "messages", p)
    if msgs is None:
        return None
    customers = _read_split(folder, "customers", p)
    orders = _read_split(folder, "orders", p)
    if customers is None:
        customers = pd.DataFrame({"customer_id": pd.Series([], dtype=object)})
    if orders is None:
        orders = pd.DataFrame({"customer_id": pd.Series([], dtype=object),
                               "ts": pd.Series([], dtype="datetime64[us, UTC]")})
    rows = msgs.pop("_row").to_numpy()
    return LogPart(msgs, customers, orders, rows)


__all__ = ["FEATURE_INPUTS", "LOG_SKIP_COLUMNS", "LOG_TABLES", "load_context", "load_log", "log_tables", "read_log_part",
           "replay_log", "split_log", "with_context"]
