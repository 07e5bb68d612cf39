"""Offline estimates against the synthetic world's truth over many seeds (issues 5 and 6).

Prints, side by side per target policy and estimator: interval coverage of
the true value (OPE) or true lift (replay), bias and RMSE. The CI tests run
the same harness on the rule-based targets; this script adds the learned
policy, which takes longer.

Usage: ``python benchmarks/coverage_policies.py [--seeds 20] [--customers 3000] [--days 180]
[--interval normal|bootstrap]``
(``--first-seed``, ``--no-replay``, ``--no-ope`` and ``--save runs.parquet`` split a run
over processes: the per-seed rows of several saves concatenate into one
:func:`coverage_summary`).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from cadence.policies.learned import UpliftPolicy
from cadence.policies.orchestrator import OrchestratedPolicy, OrchestratorConfig
from cadence.policies.rules import RulesPolicy
from cadence.studies.ope_coverage import coverage_summary, ope_coverage, replay_coverage


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--customers", type=int, default=3000)
    ap.add_argument("--days", type=int, default=180)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--no-replay", action="store_true", help="only the OPE part")
    ap.add_argument("--no-ope", action="store_true", help="only the replay part")
    ap.add_argument("--interval", default="normal", choices=["normal", "bootstrap"],
                    help="the replay lifts' intervals (simulate's interval=)")
    ap.add_argument("--save", help="write the OPE per-seed rows to this parquet file")
    args = ap.parse_args()
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    pd.set_option("display.width", 200)

    if not args.no_ope:
        t0 = time.perf_counter()
        ope = ope_coverage(seeds, {
            "rules": lambda log: RulesPolicy(),
            "rules-no-incentive": lambda log: RulesPolicy(incentive="none"),
            "rules-percent-60min": lambda log: RulesPolicy(incentive="percent_code", abandon_push_delay=60),
            "learned": lambda log: UpliftPolicy().fit(log),
        }, customers=args.customers, days=args.days, progress=True)
        print(f"\nOPE vs truth, {args.seeds} seeds x {args.customers} customers x {args.days} days "
              f"({time.perf_counter() - t0:.0f} s):")
        print(coverage_summary(ope).to_string(index=False))
        if args.save:
            ope.to_parquet(args.save)
    if args.no_replay:
        return

    cap = OrchestratorConfig(max_per_7d=3)
    for name, make in (("rules, capped 3/7d", lambda log: OrchestratedPolicy(RulesPolicy(), cap)),
                       ("learned, capped 3/7d", lambda log: OrchestratedPolicy(UpliftPolicy().fit(log), cap))):
        t0 = time.perf_counter()
        runs = replay_coverage(seeds, make, customers=args.customers, days=args.days, progress=True,
                               interval=args.interval)
        err = runs["lift"] - runs["true_lift"]
        g = runs.assign(err=err).groupby(["metric", "estimator"])
        table = pd.DataFrame({"coverage": g["covered"].mean(), "bias": g["err"].mean(),
                              "rmse": g["err"].apply(lambda e: float(np.sqrt((e**2).mean()))),
                              "mean_true_lift": g["true_lift"].mean()})
        print(f"\nReplay lift over the logged policy vs true lift: {name} ({time.perf_counter() - t0:.0f} s):")
        print(table.to_string())


if __name__ == "__main__":
    main()
