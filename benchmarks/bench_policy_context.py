"""The policy context's cost on a shop: weekly customer-feature snapshots and the as-of join onto the log (issue 22).

Prints the seconds for ``--weeks`` weekly snapshots of the 70 customer
features (:func:`cadence.features.policy_context.customer_snapshots`), with
the query compiled once (the default) and compiled per pass, and for
attaching them to every logged decision (:meth:`PolicyContext.attach`).

Usage: ``python benchmarks/bench_policy_context.py [--data /tmp/shop-ctx] [--weeks 52]``
(``cadence generate --out /tmp/shop-ctx`` makes the default shop: 20,000 customers x 365 days).
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from cadence.features.engine import connect
from cadence.features.policy_context import PolicyContext, customer_snapshots, snapshot_times
from cadence.workflows.features import load_tables
from cadence.workflows.logs import FEATURE_INPUTS, load_log


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default="/tmp/shop-ctx")
    ap.add_argument("--weeks", type=int, default=52)
    ap.add_argument("--per-pass-weeks", type=int, default=8, help="snapshots timed with a compile per pass")
    args = ap.parse_args()
    log = load_log(args.data)
    assert log.candidates is not None
    first = log.candidates["triggered_at"].min().floor("D") + pd.Timedelta(days=7)
    times = snapshot_times(first, first + pd.Timedelta(weeks=args.weeks - 1))
    con = connect()
    tables = load_tables(con, args.data, list(FEATURE_INPUTS))
    t = time.perf_counter()
    snaps = customer_snapshots(con, tables, times)
    once = time.perf_counter() - t
    print(f"{len(times)} weekly snapshots, query compiled once: {once:.1f} s ({once / len(times):.2f} s each), "
          f"{len(snaps):,} rows x {snaps.shape[1]} columns")
    t = time.perf_counter()
    customer_snapshots(con, tables, times[:args.per_pass_weeks], compile_once=False)
    per = time.perf_counter() - t
    print(f"{args.per_pass_weeks} weekly snapshots, compiled per pass: {per:.1f} s ({per / args.per_pass_weeks:.2f} s each)")
    ctx = PolicyContext(customer=snaps)
    t = time.perf_counter()
    out = ctx.attach(log.candidates)
    print(f"as-of join onto {log.n:,} logged decisions: {time.perf_counter() - t:.2f} s "
          f"({out['snapshot_at'].isna().mean():.1%} before their customer's first snapshot)")


if __name__ == "__main__":
    main()
