"""How much can the customer's features be worth in the observable world? The truth's oracle headroom (issue 22).

For each seed, re-runs the world of ``ObservableResponse(**weights)`` (default
:data:`~cadence.synthetic.REALISED_RESPONSE`) under
constant actions (hold; send with each incentive:
:func:`cadence.studies.policy_context.action_values`) and prints the true
net revenue per trigger of the cross-fitted oracle decision rule that reads
the stage and each information set
(:func:`~cadence.studies.policy_context.feature_headroom`): the stage only,
the traits the seven trigger columns reveal (frequency, recency), all five
observable traits, and the hidden response type too. Then the paired
differences over seeds with 95% t-intervals: ``observable - trigger`` is
the most the customer family (engagement, tenure, browsing) can add in this
world with noise-free labels, the ceiling any learner of that form works under.

Usage: ``python benchmarks/policy_context_headroom.py [--seeds 10] [--customers 3000] [--days 180]
[--columns] [--weights '{"segment_weights": {...}, "deal_weights": {...}}']``
(``--columns``: also the oracle that reads the shop's own encoded trigger and core customer
columns instead of the world's exact traits, :func:`~cadence.studies.policy_context.with_logged_columns`).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd

from cadence.evaluation.intervals import t_interval
from cadence.studies.policy_context import (
    INFORMATION_SETS,
    action_values,
    feature_headroom,
    with_logged_columns,
    world,
)
from cadence.synthetic import REALISED_RESPONSE, ObservableResponse


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--customers", type=int, default=3000)
    ap.add_argument("--days", type=int, default=180)
    ap.add_argument("--columns", action="store_true",
                    help="also the oracle reading the shop's measured columns (generates each shop and its context)")
    ap.add_argument("--weights", default="", help="ObservableResponse keyword arguments as JSON (default: REALISED_RESPONSE; '{}' for the "
                         "hidden-traits world)")
    args = ap.parse_args()
    response = ObservableResponse(**json.loads(args.weights)) if args.weights else REALISED_RESPONSE
    t0 = time.perf_counter()
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        cfg = world(seed, args.customers, args.days, response)
        values, sets = action_values(cfg), dict(INFORMATION_SETS)
        if args.columns:
            values, measured = with_logged_columns(values, cfg)
            sets.update(measured)
        h = feature_headroom(values, sets, seed=seed)
        rows.append({"seed": seed, **h})
        print(f"seed {seed}: " + ", ".join(f"{k} {v:.4f}" for k, v in h.items()), flush=True)
    tab = pd.DataFrame(rows).set_index("seed")
    print(f"\n{len(tab)} seeds, {args.customers:,} customers x {args.days} days, {response}, "
          f"{time.perf_counter() - t0:.0f} s")
    print("\nOracle true net revenue per trigger, mean over seeds")
    print(tab.mean().round(4).to_string())
    print("\nPaired differences, 95% t-interval across seeds")
    for a, b in (("trigger traits", "stage"), ("observable traits", "trigger traits"), ("hidden", "observable traits"),
                 ("observable traits", "hold"), ("trigger traits", "hold"),
                 ("trigger + core columns", "trigger columns"), ("trigger columns", "trigger traits")):
        if a not in tab or b not in tab:
            continue
        d = (tab[a] - tab[b]).to_numpy()
        lo, hi, _ = t_interval(d, 0.05)
        print(f"{a} - {b}: {np.mean(d):+.4f} [{lo:+.4f}, {hi:+.4f}], sd {np.std(d, ddof=1):.4f}, "
              f"{int((d > 0).sum())}/{len(d)} seeds > 0")


if __name__ == "__main__":
    main()
