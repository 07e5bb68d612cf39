"""Benchmark: churn model on 1,000,000 customers -- snapshots, fit, score.

Target: fit <= 120 s and <= 8 GB peak RSS, score 1M customers <= 10 s, on 2 cores.

Generating a 1M-customer synthetic shop takes minutes, so the order history
is drawn here directly from the BG/NBD-like process the shop uses (Poisson
purchases with Gamma rates, dropout after each purchase with a Beta
probability) over 365 days: ~3-4M orders. The timed steps are

1. :func:`cadence.features.purchases.stacked_snapshots` at three cutoffs before ``as_of`` (training rows),
   and :func:`~cadence.features.purchases.purchase_snapshots` at ``as_of`` (scoring rows);
2. ``TimeToNextPurchase(family=...).fit`` -- lifelines on a seeded
   ``max_samples`` subsample (200,000 rows by default; see the estimator);
3. ``churn_risk`` at 30/60/90 days and ``expected_next_order`` for every
   customer at ``as_of``.

Run::

    .venv/bin/python benchmarks/bench_survival.py
    .venv/bin/python benchmarks/bench_survival.py --customers 100000 --family auto
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import pandas as pd

from cadence.features import purchases
from cadence.models.survival import TimeToNextPurchase


def synthetic_orders(n: int, days: int, seed: int) -> pd.DataFrame:
    """Orders of ``n`` customers over ``days`` days from a BG/NBD-like process."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2025-01-01", tz="UTC").value // 10**9
    birth = (rng.random(n) ** 1.3 * days * 0.8 * 86_400).astype(np.int64)
    rate = rng.gamma(0.9, 0.011 * 2, n)  # purchases per day while alive
    p_drop = rng.beta(1.0, 3.0, n)
    # First purchase at signup, then Poisson purchases until the geometric dropout.
    k = rng.poisson(rate * (days * 86_400 - birth) / 86_400)
    cust = np.repeat(np.arange(n), k)
    t = birth[cust] + (rng.random(len(cust)) * (days * 86_400 - birth[cust])).astype(np.int64)
    order = np.lexsort((t, cust))
    cust, t = cust[order], t[order]
    first = np.r_[True, cust[1:] != cust[:-1]]
    rank = np.arange(len(cust)) - np.maximum.accumulate(np.where(first, np.arange(len(cust)), 0))
    keep = rank < rng.geometric(p_drop)[cust]
    cust = np.r_[np.arange(n), cust[keep]]
    t = np.r_[birth, t[keep]]
    ids = np.char.add("C", np.char.zfill(np.arange(n).astype(str), 7))
    return pd.DataFrame(
        {
            "order_id": np.arange(len(cust)).astype(str),
            "customer_id": ids[cust],
            "ts": pd.to_datetime((start + t) * 10**9, utc=True),
            "revenue": rng.gamma(2.0, 20.0, len(cust)),
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--family", default="weibull")
    ap.add_argument("--max-samples", type=int, default=200_000)
    args = ap.parse_args()

    t0 = time.perf_counter()
    orders = synthetic_orders(args.customers, 365, seed=0)
    t_gen = time.perf_counter() - t0
    as_of = pd.Timestamp("2025-10-01", tz="UTC")
    cutoffs = [as_of - pd.Timedelta(d, "D") for d in (180, 120, 60)]

    t0 = time.perf_counter()
    con, t = purchases.duckdb_tables({"orders": orders})
    train = purchases.fetch_frame(con, purchases.stacked_snapshots(t, cutoffs, until=as_of), ["as_of", "customer_id"])
    # Scoring rows see only the past: their follow-up is censored at the horizon.
    t = {"orders": t["orders"].filter(t["orders"].ts < as_of)}
    now = purchases.fetch_frame(con, purchases.purchase_snapshots(t, as_of, horizon_days=90), ["customer_id"])
    t_snap = time.perf_counter() - t0

    t0 = time.perf_counter()
    model = TimeToNextPurchase(family=args.family, max_samples=args.max_samples).fit(train, train)
    t_fit = time.perf_counter() - t0

    t0 = time.perf_counter()
    risks = [model.churn_risk(now, h) for h in (30, 60, 90)]
    t_risk = time.perf_counter() - t0
    t0 = time.perf_counter()
    nxt = model.expected_next_order(now)
    t_next = time.perf_counter() - t0
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6

    print(f"customers            {args.customers:,}  orders {len(orders):,}  (generated in {t_gen:.1f} s)")
    print(f"training rows        {len(train):,} (3 cutoffs; fit on {model.n_rows_:,})  scoring rows {len(now):,}")
    print(f"snapshots            {t_snap:6.1f} s")
    print(f"fit ({model.family_:<11})     {t_fit:6.1f} s   (target <= 120 s incl. snapshots: {t_snap + t_fit:.1f} s)")
    print(f"score churn 30/60/90 {t_risk:6.2f} s")
    print(f"expected_next_order  {t_next:6.2f} s   (target <= 10 s for scoring: {t_risk + t_next:.2f} s)")
    print(f"peak RSS             {peak_gb:6.2f} GB  (target <= 8 GB)")
    print(f"mean churn risk 30/60/90: {[round(float(r.mean()), 3) for r in risks]}, "
          f"median days to next order {float(np.nanmedian(nxt['median_days'])):.0f}")


if __name__ == "__main__":
    main()
