"""Send-time model against the synthetic world's truth (issue 9).

1. On one shop (``--customers`` x ``--days``), the share of customers whose
   learned best hour lands in their true best 3-hour window, by history
   length, beside the shop curve's share and chance; with and without
   sessions as evidence, and the fit time; then the ceiling on the same
   sends: an oracle that knows every true parameter but the hour.
2. Over ``--seeds`` seeds (smaller shops), the true conversions and net
   revenue per trigger of the fixed-delay rules against the same rules with
   learned send times (model fitted on the first half of each shop's days),
   as mean paired gains with 95% t intervals.

Usage: ``python benchmarks/send_time.py [--customers 4000] [--days 365] [--seeds 20]``
(``--seeds 0`` runs part 1 only; ``--browse-at-preferred-hour 0.5 --use-sessions``
runs the world variant whose browsing follows the preferred hour, with a
model that reads sessions).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from cadence.studies.send_time import (
    best_hour_accuracy,
    oracle_best_hour_accuracy,
    send_time_gain,
    send_time_truth,
)
from cadence.synthetic import ShopConfig, generate_shop
from cadence.workflows.send_time import fit_send_time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--customers", type=int, default=4000)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--seed-customers", type=int, default=2000)
    ap.add_argument("--seed-days", type=int, default=180)
    ap.add_argument("--browse-at-preferred-hour", type=float, default=0.0,
                    help="world variant: share of browsing sessions at the preferred hour (default 0)")
    ap.add_argument("--use-sessions", action="store_true", help="the policies' model also reads sessions")
    args = ap.parse_args()
    world = {"browse_at_preferred_hour": args.browse_at_preferred_hour}
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 20)
    with tempfile.TemporaryDirectory() as tmp:
        shop = generate_shop(ShopConfig(customers=args.customers, days=args.days, seed=0, **world), Path(tmp) / "shop")
        for sessions in (False, True):
            t0 = time.perf_counter()
            # A cutoff after every record: the whole history.
            model = fit_send_time(shop, pd.Timestamp("2100-01-01", tz="UTC"), use_sessions=sessions)
            dt = time.perf_counter() - t0
            print(f"\n{args.customers} customers x {args.days} days, sessions {'on' if sessions else 'off'}: "
                  f"fit {dt:.1f} s, bandwidth {model.bandwidth_} h, lift {model.lift_:.3f}, "
                  f"session lift {model.session_lift_:.3f}, {model.n_iter_} EM iterations")
            print(best_hour_accuracy(model, shop).round(3).to_string(index=False))
        print("\nceiling: the oracle's Bayes decision on the same sends")
        print(oracle_best_hour_accuracy(shop).round(3).to_string(index=False))
    if not args.seeds:
        return
    t0 = time.perf_counter()
    runs = send_time_truth(range(args.seeds), customers=args.seed_customers, days=args.seed_days, progress=True,
                           world=world, use_sessions=args.use_sessions)
    print(f"\nTrue value, {args.seeds} seeds x {args.seed_customers} customers x {args.seed_days} days "
          f"({time.perf_counter() - t0:.0f} s); in-window accuracy per seed: "
          f"mean {runs['accuracy'].mean():.3f}, min {runs['accuracy'].min():.3f}")
    print(send_time_gain(runs).to_string(index=False, float_format=lambda x: f"{x:.5g}"))


if __name__ == "__main__":
    main()
