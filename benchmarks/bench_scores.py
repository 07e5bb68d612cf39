"""Benchmark: customer scores at one cutoff (``cadence features --scores``) and at 52 weekly times.

Times, on a generated shop (default: ``cadence generate --out /tmp/shop-scores``,
20,000 customers x 365 days, seed 0):

* ``one cutoff``: :func:`cadence.workflows.scores.write_scores` at ``--as-of``
  (read the orders, fit every model on the orders before it, score at it,
  write ``customer_scores.parquet``): the part ``--scores`` adds to
  ``cadence features``;
* ``cadence features --scores``: the whole command (validation, features,
  scores) in a fresh process, and without ``--scores`` for the difference;
* ``52 weekly times``: :func:`cadence.workflows.scores.score_snapshots` at
  52 weekly times starting ``--first``, fitted once at the first time, and
  refitted every 91 days (4 fits, the default);

each ``--repeats`` times (median and min printed), in one process after an
untimed warm-up (imports, Ibis's DuckDB backend). Run::

    .venv/bin/cadence generate --out /tmp/shop-scores --quiet
    .venv/bin/python benchmarks/bench_scores.py --shop /tmp/shop-scores
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from cadence.features.engine import connect
from cadence.models.scores import ScoreWarning
from cadence.workflows.features import load_tables
from cadence.workflows.scores import score_snapshots, write_scores


def _timed(fn: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


def _line(label: str, times: list[float], extra: str = "") -> None:
    print(f"{label:<44} median {statistics.median(times):6.2f} s  min {min(times):6.2f} s  (n={len(times)}){extra}")


def _load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shop", default="/tmp/shop-scores")
    ap.add_argument("--as-of", default="2025-10-01")
    ap.add_argument("--first", default="2025-01-06", help="first of the 52 weekly scoring times")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only-weekly", action="store_true", help="time only the 52 weekly times")
    ap.add_argument("--skip-cli", action="store_true", help="do not time the cadence features command")
    args = ap.parse_args()
    warnings.simplefilter("ignore", ScoreWarning)  # an early fit's missing models are part of what is timed
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; load average before: {_load()}")
    out = Path(tempfile.mkdtemp(prefix="bench-scores-"))
    try:
        write_scores(args.shop, args.as_of, out / "warm")  # warm-up: imports, backend, lifelines
        if not args.only_weekly:
            times, run = _timed(lambda: write_scores(args.shop, args.as_of, out / "one"), args.repeats)
            _line(f"one cutoff ({run.rows:,} customers)", times, f"  failures: {run.failures or 'none'}")

        if not args.skip_cli and not args.only_weekly:
            cli = str(Path(sys.executable).with_name("cadence"))
            for flag in ([], ["--scores"]):
                def command(flag: list[str] = flag) -> None:
                    subprocess.run([cli, "features", args.shop, "--as-of", args.as_of, "--out", str(out / "cli"),
                                    "--quiet", *flag], check=True, capture_output=True)
                _line(f"cadence features {' '.join(flag)}".strip(), _timed(command, args.repeats)[0])

        con = connect()
        tables = load_tables(con, args.shop, ["orders", "order_items"])
        weekly = [pd.Timestamp(args.first, tz="UTC") + pd.Timedelta(7 * k, "D") for k in range(52)]
        for refit in (None, 91.0):
            times, df = _timed(lambda refit=refit: score_snapshots(con, tables, weekly, refit_days=refit),
                               args.repeats)
            label = "52 weekly times, one fit" if refit is None else f"52 weekly times, refit every {refit:g} d"
            _line(f"{label} ({len(df):,} rows)", times)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    print(f"load average after: {_load()}")


if __name__ == "__main__":
    main()
