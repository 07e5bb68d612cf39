"""Customer scores for decisions: at many weekly times (a policy's training) or at one cutoff (``customer_scores.parquet``).

The wiring around :class:`cadence.models.scores.CustomerScorer`:

* :func:`score_snapshots` scores customers at many times on tables already
  on an engine (what a learned policy trains on), the models fitted at
  ``fit_at`` and refitted every ``refit_days`` (a quarter by default);
* :func:`write_scores` reads a data directory, fits the models on the
  orders before ``as_of``, scores at ``as_of`` and writes
  ``customer_scores.parquet`` atomically next to the feature files
  (``cadence features ... --scores`` does the same inside its own atomic
  write, :func:`cadence.workflows.features.build_features`).

Examples
--------
A full run on a generated shop takes a few seconds, so the example here
only shows where the scores go (``tests/test_cli_scores.py`` runs it):

>>> SCORES_FILE
'customer_scores.parquet'
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.base import clone

from cadence.contract.clock import utc
from cadence.data.io import (
    PARQUET_OPTIONS,
    OutputError,
    PathLike,
    atomic_path,
    is_own_output,
    list_tables,
    write_table,
)
from cadence.features.engine import connect, register
from cadence.models.scores import CustomerScorer, ScoreInputError, ScoreWarning, scoring_times

#: File name of the scores next to the feature files.
SCORES_FILE = "customer_scores.parquet"
#: Days between refits of :func:`score_snapshots` (a quarter: 13 weekly times).
REFIT_DAYS = 91.0
#: Tables the scores read (``order_items`` when the data has it).
SCORE_INPUTS: tuple[str, ...] = ("orders", "order_items")


@dataclass
class ScoresRun:
    """What :func:`write_scores` (or ``build_features(..., scores=True)``) wrote.

    Attributes
    ----------
    path : Path
        The ``customer_scores.parquet`` written.
    as_of : Timestamp
        Fit cutoff and scoring time.
    rows : int
        Customers scored (those with an order before ``as_of``).
    seconds : float
        Fit and scoring time.
    failures : dict
        Models that could not be fitted (their columns are NaN) and why.
    """

    path: Path
    as_of: pd.Timestamp
    rows: int
    seconds: float
    failures: dict[str, str] = field(default_factory=dict)


def score_snapshots(con: Any, tables: Mapping[str, Any], times: Sequence[Any], *, fit_at: Any = None,
                    refit_days: float | None = REFIT_DAYS, scorer: CustomerScorer | None = None) -> pd.DataFrame:
    """Customer scores at every time of ``times``, each from models fitted at or before it.

    Parameters
    ----------
    con : ibis backend
        The engine ``tables`` live on (pandas frames are uploaded to it).
    tables : mapping of str to ibis.Table or DataFrame
        ``orders`` and, optionally, ``order_items`` (may reach past the last
        time: at each time only the orders before it are read).
    times : sequence of timestamp-like
        Scoring times (e.g. weekly); sorted and de-duplicated.
    fit_at : timestamp-like, optional
        Fit cutoff of the first (or only) fit; the first time by default.
        Must not be after the first time.
    refit_days : float or None, default :data:`REFIT_DAYS` (91)
        Refit the models at the first time ``refit_days`` or more after the
        start of the current fit's block of times; that time and the ones
        after it (until the next refit) are scored by a fit at that time.
        None: one fit at ``fit_at`` for every time. The default refits each
        quarter: a model fitted at the first of a year's weekly times knows
        almost nothing (on the default shop, fitted on 2025-01-06, no product
        has the three repurchase gaps an interval needs, so every
        ``repurchase_due_days`` would be NaN), and four fits cost little more
        than one (``benchmarks/bench_scores.py``, ``benchmarks/RESULTS.md``).
    scorer : CustomerScorer, optional
        The settings (it is cloned, not fitted in place); defaults.

    Returns
    -------
    DataFrame
        :data:`cadence.models.scores.SCORE_TABLE_COLUMNS`, sorted by
        ``scored_at``, ``customer_id``.

    Examples
    --------
    A first fit after the first time would let later orders into earlier scores:

    >>> score_snapshots(connect(), {}, ["2024-03-01", "2024-03-08"], fit_at="2024-03-05")
    Traceback (most recent call last):
    ...
    ValueError: fit_at (2024-03-05 00:00:00+00:00) is after the first scoring time (2024-03-01 00:00:00+00:00): those scores would read later orders
    """
    ts = scoring_times(times, "times")
    first = ts[0] if fit_at is None else utc(fit_at, "fit_at")
    if first > ts[0]:
        raise ValueError(f"fit_at ({first}) is after the first scoring time ({ts[0]}): those scores would read "
                         "later orders")
    if refit_days is not None and not refit_days > 0:
        raise ValueError(f"refit_days must be > 0 days, got {refit_days}")
    frames = {k: v for k, v in tables.items() if isinstance(v, pd.DataFrame)}
    t = {**tables, **register(con, frames)} if frames else dict(tables)
    template = scorer if scorer is not None else CustomerScorer()
    blocks: list[list[pd.Timestamp]] = [[ts[0]]]
    for when in ts[1:]:
        if refit_days is not None and when - blocks[-1][0] >= pd.Timedelta(refit_days, "D"):
            blocks.append([when])
        else:
            blocks[-1].append(when)
    parts = []
    for i, block in enumerate(blocks):
        model = clone(template).fit(t, as_of=first if i == 0 else block[0])
        parts.append(model.scores(t, block))
    return pd.concat(parts, ignore_index=True)


def _write_file(df: pd.DataFrame, out_dir: Path) -> Path:
    """``df`` as ``out_dir/customer_scores.parquet``, atomically; a new folder gets the output marker."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    if out_dir.is_dir():
        if any(out_dir.iterdir()) and not is_own_output(out_dir):
            raise OutputError(f"output folder {str(out_dir)!r} is not empty and not a cadence output "
                              "(no .cadence-output marker); choose the features folder or a new one")
        write_table(table, out_dir / SCORES_FILE)
    else:
        with atomic_path(out_dir) as tmp:
            tmp.mkdir()
            pq.write_table(table, tmp / SCORES_FILE, **PARQUET_OPTIONS)  # type: ignore[arg-type]
    return out_dir / SCORES_FILE


def compute_scores(con: Any, tables: Mapping[str, Any], as_of: Any,
                   scorer: CustomerScorer | None = None) -> tuple[pd.DataFrame, dict[str, str]]:
    """Scores at ``as_of`` from models fitted on the orders before it, and the models that failed.

    The step ``write_scores`` and ``cadence features --scores`` share; the
    :class:`~cadence.models.scores.ScoreWarning` of a failed model is
    returned in the dict instead of raised.
    """
    cut = utc(as_of, "as_of")
    inputs = {k: tables[k] for k in SCORE_INPUTS if k in tables}
    if "orders" not in inputs:
        raise ScoreInputError("orders: missing table (customer scores need it)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ScoreWarning)
        model = clone(scorer if scorer is not None else CustomerScorer()).fit(inputs, as_of=cut)
    return model.scores(inputs, cut), dict(model.failures_)


def write_scores(data_dir: PathLike, as_of: Any, out_dir: PathLike, *, engine: str = "duckdb",
                 scorer: CustomerScorer | None = None) -> ScoresRun:
    """Fit on ``data_dir``'s orders before ``as_of``, score at ``as_of``, write ``out_dir/customer_scores.parquet``.

    The file is replaced atomically (written next to it, then renamed);
    ``out_dir`` is created (with the output marker) when missing, and must
    otherwise be a Cadence output, e.g. the folder ``cadence features``
    wrote. Nothing at or after ``as_of`` is read.

    Parameters
    ----------
    data_dir : path
        A contract data directory (``orders``; ``order_items`` for
        ``repurchase_due_days``).
    as_of : timestamp-like
        Fit cutoff and scoring time (exclusive); naive values are UTC.
    out_dir : path
        The folder of the feature files.
    engine : {'duckdb', 'spark'}
    scorer : CustomerScorer, optional

    Returns
    -------
    ScoresRun
    """
    from cadence.workflows.features import load_tables

    t0 = time.perf_counter()
    cut = utc(as_of, "as_of")
    con = connect(engine)  # type: ignore[arg-type]
    present = set(list_tables(data_dir))
    tables = load_tables(con, data_dir, [n for n in SCORE_INPUTS if n == "orders" or n in present])
    df, failures = compute_scores(con, tables, cut, scorer)
    path = _write_file(df, Path(out_dir))
    return ScoresRun(path, cut, len(df), time.perf_counter() - t0, failures)


__all__ = ["REFIT_DAYS", "score_snapshots", "write_scores", "compute_scores", "ScoresRun", "SCORES_FILE", "SCORE_INPUTS"]
