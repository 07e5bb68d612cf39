"""Does the learned policy gain from the customer's features and scores? True net revenue over many seeds (issue 22).

Runs :func:`cadence.studies.policy_context.policy_context_study` on the
observable-response world and prints: each policy's mean true net revenue
per trigger; the paired true differences (full context against the
seven-column version, the rules, and each one-family-dropped variant) with
95% t-intervals across seeds; and how often the offline estimates (replay,
doubly robust, and both matched on the replayed fatigue:
:mod:`cadence.simulation.carryover`) of ``full - trigger`` and ``full - rules`` cover the true
difference, and the true difference of the very decisions the replay made
(``replayed_diff``, ``coverage_replayed``: the estimators' own coverage, the
policies' re-run states aside).

Usage: ``python benchmarks/policy_context_truth.py [--seeds 10] [--customers 3000] [--days 180]
[--scores dr|dm] [--customer-columns core|all] [--learner dr|linear] [--min-rows 300] [--families full trigger]
[--first-seed 0] [--save runs.parquet] [--load a.parquet b.parquet]``
(``--save``/``--load`` split a run over processes and join the per-seed rows).
"""

from __future__ import annotations

import argparse
import time
import warnings

import pandas as pd

from cadence.studies.policy_context import VARIANTS, policy_context_study, summarise


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--customers", type=int, default=3000)
    ap.add_argument("--days", type=int, default=180)
    ap.add_argument("--scores", default="dr", choices=["dr", "dm", "ips"])
    ap.add_argument("--customer-columns", default="core", choices=["core", "all"])
    ap.add_argument("--learner", default="dr", choices=["dr", "linear"], help="the learned policies' design")
    ap.add_argument("--min-rows", type=int, default=300, help="randomised sends a stage needs to be modelled")
    ap.add_argument("--families", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                    help="the learned variants to fit (default all; full and trigger for the offline comparisons)")
    ap.add_argument("--save", help="write the per-seed rows to this parquet file")
    ap.add_argument("--load", nargs="+", help="summarise saved per-seed rows instead of running")
    args = ap.parse_args()
    pd.set_option("display.width", 200)
    t0 = time.perf_counter()
    if args.load:
        runs = pd.concat([pd.read_parquet(p) for p in args.load], ignore_index=True)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the scoring models' convergence notes, per seed
            runs = policy_context_study(range(args.first_seed, args.first_seed + args.seeds),
                                        customers=args.customers, days=args.days, scores=args.scores,
                                        customer_columns=args.customer_columns, learner=args.learner, min_rows=args.min_rows,
                                        families=tuple(args.families), progress=True)
        # The settings travel with the rows, so a --load summary states what was run, not this call's defaults.
        runs = runs.assign(settings=f"{args.customers:,} customers x {args.days} days, learner={args.learner!r}, "
                                    f"min_rows={args.min_rows}, "
                                    f"scores={args.scores!r}, customer_columns={args.customer_columns!r}")
        if args.save:
            runs.to_parquet(args.save)
    settings = "; ".join(pd.unique(runs["settings"])) if "settings" in runs else "settings not recorded"
    tables = summarise(runs.drop(columns="settings", errors="ignore"))
    print(f"\n{runs['seed'].nunique()} seeds, {settings}, {time.perf_counter() - t0:.0f} s")
    print("\nTrue net revenue per trigger (judged customers), mean and sd over seeds")
    print(tables["values"].round(4).to_string(index=False))
    print("\nTrue paired differences (policy - reference), 95% t-interval across seeds")
    print(tables["differences"].round(4).to_string(index=False))
    if len(tables["coverage"]):
        print("\nOffline estimates of the differences: coverage of the true difference")
        print(tables["coverage"].round(4).to_string(index=False))


if __name__ == "__main__":
    main()
