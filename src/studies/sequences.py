"""A sequence's estimated step lifts against the world's true ones, over seeds.

For each seed: generate a shop whose logging policy randomises follow-ups,
estimate the lift of each step of the sequence from the log
(:func:`cadence.simulation.sequences.sequence_lift`), and re-run the world
under the hold, single-message and sequence versions (every other stage
under the logging policy, as in the log) for the true lifts per trigger of
the stage. Only this study reads the truth; the estimator never does.

Examples
--------
>>> from cadence.policies.sequences import CART_ABANDON
>>> t = sequence_coverage(CART_ABANDON, seeds=[1], customers=600, days=60, n_boot=50)
>>> sorted(t.columns)[:3]
['covered', 'estimate', 'lower']
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from cadence.policies.sequences import Sequence
from cadence.simulation.sequences import STEP_PAIRS, sequence_lift, sequence_versions
from cadence.studies.ope_coverage import true_values
from cadence.synthetic.config import ShopConfig
from cadence.synthetic.logging_policy import RandomizedLoggingPolicy
from cadence.synthetic.world import generate_shop
from cadence.workflows.logs import log_tables

_STEPS = {label: (a, b) for label, a, b in STEP_PAIRS}


def true_versions(seq: Sequence, cfg: ShopConfig) -> dict[str, dict[str, float]]:
    """True value per trigger of ``seq.stage`` of the hold, single and sequence versions."""
    versions = sequence_versions(seq, RandomizedLoggingPolicy.for_shop(cfg))
    return {name: true_values(policy, cfg, seq.stage) for name, policy in versions.items()}


def sequence_coverage(seq: Sequence, seeds: Iterable[int], *, customers: int = 10_000, days: int = 180,
                      followup: float = 0.5, n_boot: int = 500, progress: bool = False) -> pd.DataFrame:
    """One row per seed, step and metric: estimate, interval, truth, and whether it covered."""
    rows = []
    seeds = list(seeds)
    with tempfile.TemporaryDirectory() as tmp:
        for seed in tqdm(seeds, desc="seeds", disable=not progress):
            cfg = ShopConfig(customers=customers, days=days, seed=seed, logging_followup=followup)
            shop = generate_shop(cfg, Path(tmp) / f"s{seed}")
            est = sequence_lift(log_tables(shop), seq, n_boot=n_boot, seed=seed)
            truth = true_versions(seq, cfg)
            for r in est.itertuples(index=False):
                a, b = _STEPS[str(r.step)]
                for m in ("conversion", "net_revenue"):
                    true = truth[a][m] - truth[b][m]
                    lo, hi = getattr(r, f"{m}_lower"), getattr(r, f"{m}_upper")
                    rows.append({"seed": seed, "step": r.step, "metric": m, "estimate": getattr(r, m),
                                 "lower": lo, "upper": hi, "truth": true, "covered": lo <= true <= hi,
                                 "matched_" + a: est.attrs["matched"][a]})
    return pd.DataFrame(rows)


def coverage_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Coverage, bias, RMSE, mean interval width and mean true lift per step and metric."""
    runs = runs.assign(error=runs["estimate"] - runs["truth"], width=runs["upper"] - runs["lower"])
    g = runs.groupby(["step", "metric"], sort=False)
    return pd.DataFrame({
        "seeds": g.size(), "coverage": g["covered"].mean(), "bias": g["error"].mean(),
        "rmse": g["error"].apply(lambda e: float((e ** 2).mean() ** 0.5)), "mean width": g["width"].mean(),
        "mean true lift": g["truth"].mean(),
    }).reset_index()
