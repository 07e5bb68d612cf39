"""Check offline policy estimates against the synthetic world's truth, over many seeds.

For each seed: generate a shop under the randomised logging policy, fit the
policies that learn on half of the customers, estimate every policy on the
other half's log (:func:`cadence.evaluation.offline.evaluate`, which never
reads ``_truth/``), then re-run the world under each policy
(:func:`~cadence.synthetic.world.simulate_truth`) for its true value per
trigger. :func:`coverage_summary` gives each estimator's coverage, bias and
RMSE. This is a test harness: it reads the truth, estimators do not.

Examples
--------
>>> from cadence.policies.rules import RulesPolicy
>>> runs = ope_coverage([1], {"rules": lambda log: RulesPolicy()}, customers=300, days=60,
...                     metrics=("conversion",), reward_model=False)
>>> sorted(runs.columns)[:3]
['covered', 'estimator', 'lower']
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from cadence.contract.actions import Policy
from cadence.data.bandit import LoggedBandit
from cadence.evaluation.intervals import IntervalKind
from cadence.evaluation.offline import evaluate
from cadence.features.logged import METRICS
from cadence.synthetic.config import ShopConfig
from cadence.synthetic.world import generate_shop, simulate_truth
from cadence.workflows.logs import load_log

PolicyFactory = Callable[[LoggedBandit], Policy]


def true_values(policy: Policy, cfg: ShopConfig, stage: str = "all") -> dict[str, float]:
    """The policy's true value per trigger (of ``stage``, or all) for every metric of :data:`METRICS`."""
    row = simulate_truth(policy, cfg).set_index("stage").loc[stage]
    return {m: float(row[m] / row["triggers"]) for m in METRICS}


def ope_coverage(seeds: Iterable[int], factories: dict[str, PolicyFactory], *, customers: int = 2000,
                 days: int = 180, metrics: Sequence[str] = ("conversion", "net_revenue"),
                 reward_model: bool = True, progress: bool = False,
                 n_refit: int | None = 20) -> pd.DataFrame:
    """One row per (seed, metric, policy, estimator): estimate, interval, truth, covered.

    ``n_refit`` is passed to :func:`~cadence.evaluation.offline.evaluate`
    (refits of the reward model behind the direct method's interval).
    """
    from cadence.data.bandit import split_customers

    rows = []
    for seed in tqdm(list(seeds), desc="seeds", disable=not progress):
        cfg = ShopConfig(customers=customers, days=days, seed=seed)
        with tempfile.TemporaryDirectory() as tmp:
            log = load_log(generate_shop(cfg, Path(tmp) / "shop"))
        fit_rows, eval_rows = split_customers(log, 0.5, seed)
        train, test = log.subset(fit_rows), log.subset(eval_rows)
        policies = {name: make(train) for name, make in factories.items()}
        est = evaluate(test, policies, metrics=metrics, reward_model=reward_model, seed=seed, n_refit=n_refit)
        truth = {name: true_values(p, cfg) for name, p in policies.items()}
        est = est[est["policy"] != "logging"].copy()
        est["truth"] = [truth[p][m] for p, m in zip(est["policy"], est["metric"], strict=True)]
        est["seed"] = seed
        rows.append(est)
    out = pd.concat(rows, ignore_index=True)
    out["covered"] = (out["lower"] <= out["truth"]) & (out["truth"] <= out["upper"])
    return out[["seed", "metric", "policy", "estimator", "value", "lower", "upper", "truth", "covered"]]


def coverage_summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (metric, policy, estimator): seeds, coverage, bias, RMSE, mean interval width."""
    err = runs["value"] - runs["truth"]
    g = runs.assign(err=err, sq=err**2, width=runs["upper"] - runs["lower"]).groupby(
        ["metric", "policy", "estimator"], sort=False)
    return pd.DataFrame({
        "seeds": g.size(),
        "coverage": g["covered"].mean(),
        "bias": g["err"].mean(),
        "rmse": np.sqrt(g["sq"].mean()),
        "mean_width": g["width"].mean(),
    }).reset_index()


def replay_coverage(seeds: Iterable[int], make_candidate: PolicyFactory, *, customers: int = 2000,
                    days: int = 180, progress: bool = False, interval: IntervalKind = "normal") -> pd.DataFrame:
    """Replay lift of a candidate over the logged policy against the true lift, per seed.

    The candidate is built (and fitted, if it learns) on half of the
    customers and replayed on the other half. One row per (seed, metric,
    estimator) for conversion and net revenue per trigger: estimated lift
    with its interval (``interval``: :func:`~cadence.simulation.replay.simulate`'s),
    the true lift (the world re-run under the candidate minus the world under
    the logging policy), covered.
    """
    from cadence.data.bandit import split_customers
    from cadence.simulation.replay import simulate
    from cadence.synthetic.logging_policy import RandomizedLoggingPolicy

    rows = []
    for seed in tqdm(list(seeds), desc="seeds", disable=not progress):
        cfg = ShopConfig(customers=customers, days=days, seed=seed)
        with tempfile.TemporaryDirectory() as tmp:
            log = load_log(generate_shop(cfg, Path(tmp) / "shop"))
        fit_rows, eval_rows = split_customers(log, 0.5, seed)
        candidate = make_candidate(log.subset(fit_rows))
        est = simulate(log.subset(eval_rows), candidate, None, workers=1, seed=seed,
                       metrics=("conversion", "net_revenue"), by_stage=False, interval=interval)["estimates"]
        if hasattr(candidate, "reset"):
            candidate.reset()
        truth_c = true_values(candidate, cfg)
        truth_b = true_values(RandomizedLoggingPolicy.for_shop(cfg), cfg)
        for _, r in est[est["policy"] == "candidate"].iterrows():
            true_lift = truth_c[r["metric"]] - truth_b[r["metric"]]
            rows.append({"seed": seed, "metric": r["metric"], "estimator": r["estimator"], "lift": r["lift"],
                         "lower": r["lift_lower"], "upper": r["lift_upper"], "true_lift": true_lift,
                         "covered": r["lift_lower"] <= true_lift <= r["lift_upper"]})
    return pd.DataFrame(rows)
