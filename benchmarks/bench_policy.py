"""Benchmark: batch scoring of the policy learner against today's learned policy, in one run.

Target (issue 22): batch scoring -- a greedy decision and its propensity for
every row of a DataFrame -- at >= 100,000 decisions per second on 2 cores;
the baseline is today's learned policy (``UpliftPolicy(learner="t")``).

Scored, each on ``--rows`` rows, best and median of ``--repeats``:

* ``learner, experiment table``: :class:`~cadence.policies.learner.PolicyLearner`
  (epsilon 0.05) fitted on a three-arm experiment table (numbers, categories,
  missing values), ``decide`` on the table's rows: action, propensity;
* ``learner, shop rows``: the shop's configuration (49 actions, allowed mask,
  epsilon 0.05) on a shop's logged trigger candidates: ``shop_context``,
  ``allowed_actions`` and ``decide``;
* ``UpliftPolicy(learner=...).decide`` for ``"t"`` (today's) and ``"dr"`` (the
  learner inside) on the same candidates (greedy, propensity 1);
* the same two through the serving wrapper
  (:class:`~cadence.deployment.serving.PolicyModel`, epsilon 0.05, in process,
  no MLflow): what ``benchmarks/bench_export.py`` measured at 62,209/s.

Run: ``.venv/bin/python benchmarks/bench_policy.py [--rows 100000]``
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def experiment_table(n: int, seed: int = 0) -> pd.DataFrame:
    """A three-arm experiment log with every kind of column (uniform arms)."""
    rng = np.random.default_rng(seed)
    recency = np.where(rng.random(n) < 0.2, np.nan, rng.exponential(90.0, n))
    table = pd.DataFrame({
        "recency": recency, "orders": rng.poisson(2.0, n), "aov": rng.lognormal(4.0, 0.4, n),
        "open_rate": np.where(rng.random(n) < 0.15, np.nan, rng.beta(2, 5, n)),
        "segment": pd.Series(rng.choice(["new", "regular", "vip", None], n), dtype=object),
        "device": rng.choice(["mobile", "desktop", "tablet"], n),
        "region": pd.Categorical(rng.choice(["north", "south", "east", "west"], n)),
        "arm": rng.choice(["control", "discount", "free_shipping"], n),
    })
    lift = np.where(table["arm"] == "discount", 5.0 * np.isnan(recency), 0.0) + np.where(
        table["arm"] == "free_shipping", 10.0 * np.nan_to_num(table["open_rate"].to_numpy()), 0.0)
    table["revenue"] = rng.random(n) * 20 + lift
    return table


def rate(fn: Callable[[], Any], rows: int, repeats: int) -> tuple[float, float]:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return rows / min(times), rows / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--customers", type=int, default=5000)
    ap.add_argument("--days", type=int, default=180)
    args = ap.parse_args()

    from cadence.deployment.serving import PolicyModel
    from cadence.policies.learned import UpliftPolicy, allowed_actions, shop_context
    from cadence.policies.learner import PolicyLearner
    from cadence.policies.rules import opt_in_matrix
    from cadence.synthetic import ShopConfig, generate_shop
    from cadence.workflows.logs import load_log

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"load average {os.getloadavg()[0]:.2f} at start")
    results: list[tuple[str, float, float]] = []

    # A generic experiment table.
    table = experiment_table(30_000)
    context = ["recency", "orders", "aov", "open_rate", "segment", "device", "region"]
    t = time.perf_counter()
    learner = PolicyLearner(epsilon=0.05).fit(table[context], table["revenue"], action=table["arm"],
                                              pscore=np.full(len(table), 1 / 3))
    print(f"learner fitted on the 30,000-row experiment table in {time.perf_counter() - t:.1f} s")
    rows = experiment_table(args.rows, seed=1)[context]
    rng = np.random.default_rng(0)
    results.append(("learner, experiment table (3 actions)",
                    *rate(lambda: learner.decide(rows, rng=rng), args.rows, args.repeats)))

    # A shop's trigger candidates.
    root = Path(tempfile.mkdtemp(prefix="cadence-bench-policy-"))
    log = load_log(generate_shop(ShopConfig(customers=args.customers, days=args.days, seed=0), root / "shop"))
    reps = -(-args.rows // log.n)
    cands = pd.concat([log.candidates] * reps, ignore_index=True).head(args.rows)
    policies = {}
    for kind in ("t", "dr"):
        t = time.perf_counter()
        policies[kind] = UpliftPolicy(learner=kind, context=("trigger",)).fit(log)
        print(f"UpliftPolicy(learner={kind!r}) fitted on {log.n:,} logged rows in {time.perf_counter() - t:.1f} s")
    shop_learner = policies["dr"].learner_
    assert shop_learner is not None
    # The fitted shop learner with exploration on (epsilon is read when deciding, not fitting).
    explorer = copy.deepcopy(shop_learner).set_params(epsilon=0.05)

    def shop_decide() -> pd.DataFrame:
        allowed = allowed_actions(cands["stage"].to_numpy(), opt_in_matrix(cands))
        return explorer.decide(shop_context(cands), allowed=allowed, rng=rng)

    results.append(("learner, shop rows (49 actions, mask, epsilon 0.05)", *rate(shop_decide, args.rows, args.repeats)))
    for kind, pol in policies.items():
        results.append((f"UpliftPolicy(learner={kind!r}).decide",
                        *rate(lambda pol=pol: pol.decide(cands, rng), args.rows, args.repeats)))
    for kind, pol in policies.items():
        model = PolicyModel(pol, epsilon=0.05)
        results.append((f"PolicyModel(UpliftPolicy(learner={kind!r}), epsilon=0.05).predict",
                        *rate(lambda model=model: model.predict(None, cands), args.rows, args.repeats)))

    base = dict((name, best) for name, best, _ in results)["UpliftPolicy(learner='t').decide"]
    print(f"\n{args.rows:,} rows per batch, best / median of {args.repeats}:")
    for name, best, median in results:
        print(f"  {name:<62} {best:>10,.0f} / {median:>10,.0f} decisions/s  ({best / base:.2f}x today's decide)")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
