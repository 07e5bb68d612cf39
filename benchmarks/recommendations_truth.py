"""Truth study of item recommendations (issue #24): model-based vs recently viewed and popularity.

Over ``--seeds`` shops with latent tastes, prints the true conversions per message of each
item rule on the later half of the window (same sends, only the items differ), the paired
differences ``model - baseline`` across seeds with 95% intervals, the per-seed coverage of
the pseudo-inverse (and exact-set) offline estimate, and NDCG@10 against the true relevance.

    .venv/bin/python benchmarks/recommendations_truth.py --seeds 10 --customers 3000
"""

from __future__ import annotations

import argparse
import time
import warnings

import pandas as pd

from cadence.studies.recommendations import MODELS, differences, recommendation_study
from cadence.synthetic import ShopConfig, Tastes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--customers", type=int, default=3000)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--model", choices=MODELS, default="live_blend")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    pd.set_option("display.width", 200)
    t0 = time.perf_counter()
    parts = []
    for seed in range(1, args.seeds + 1):
        parts.append(recommendation_study([seed], lambda s: ShopConfig(customers=args.customers, days=args.days,
                                                                       seed=s, tastes=Tastes()), model=args.model))
        truth = parts[-1]["truth"].set_index("rule")["conversion"].round(4).to_dict()
        print(f"seed {seed} done at {time.perf_counter() - t0:.0f} s: {truth}", flush=True)
    study = {key: pd.concat([p[key] for p in parts], ignore_index=True) for key in parts[0]}
    print(f"# {args.seeds} seeds x {args.customers} customers x {args.days} days, model={args.model}, "
          f"{time.perf_counter() - t0:.0f} s")
    truth = study["truth"]
    print("\n## true per message on recommendation stages, later half (mean over seeds)")
    print(truth.groupby("rule")[["conversion", "click", "relevance", "messages"]].mean().round(4).to_string())
    for metric in ("conversion", "click"):
        for est in ("pi", "exact"):
            summary = pd.concat([differences(study, metric, est, model=m)[1] for m in ("model", "model_views")])
            print(f"\n## {metric}: true paired differences (95% t-interval over seeds), coverage of the {est} estimate")
            print(summary.round(4).to_string(index=False))
    per_seed = pd.concat([differences(study, "conversion", "pi", model=m)[0] for m in ("model", "model_views")])
    print("\n## per seed, conversion, pi")
    print(per_seed.round(4).to_string(index=False))
    print("\n## NDCG@10 against the true relevance (mean over seeds)")
    print(study["ndcg"].groupby("rule")["ndcg10"].agg(["mean", "std"]).round(4).to_string())
    print("\n## seconds per seed (mean)")
    print(study["timing"].drop(columns="seed").mean().round(1).to_string())


if __name__ == "__main__":
    main()
