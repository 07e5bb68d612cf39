"""Off-policy estimates against the world's true policy values, over 20 seeds.

The direct method's refit interval (``n_refit``) costs a reward-model fit per
refit; its 20-seed coverage on this shop is measured by
``benchmarks/coverage_policies.py`` (RESULTS.md). Here it runs without refits,
whose context-only interval is known to under-cover.
"""

from __future__ import annotations

import pandas as pd
import pytest

from cadence.policies.rules import RulesPolicy
from cadence.studies.ope_coverage import coverage_summary, ope_coverage

TARGETS = {
    "rules": lambda log: RulesPolicy(),
    "rules-no-incentive": lambda log: RulesPolicy(incentive="none"),
    "rules-percent-60min": lambda log: RulesPolicy(incentive="percent_code", abandon_push_delay=60),
}


pytestmark = pytest.mark.slow  # 20 seeds of 3,000-customer shops


@pytest.fixture(scope="module")
def summary() -> pd.DataFrame:
    runs = ope_coverage(range(20), TARGETS, customers=3000, days=180, n_refit=None)
    s = coverage_summary(runs)
    with pd.option_context("display.width", 200):
        print("\nOPE against truth, 20 seeds (value per trigger):\n" + s.to_string(index=False))
    return s


@pytest.mark.parametrize("estimator", ["IPS", "SNIPS", "DR", "SwitchDR(tau=50)"])
def test_intervals_cover_the_true_value_in_90_percent_of_seeds(summary: pd.DataFrame, estimator: str) -> None:
    got = summary[summary["estimator"] == estimator]
    assert got["policy"].nunique() == 3 and (got["seeds"] == 20).all()
    low = got[got["coverage"] < 0.9]
    assert low.empty, low.to_string()


def test_direct_method_without_refits_under_covers(summary: pd.DataFrame) -> None:
    # Known and documented (DirectMethod docstring): without refits its interval ignores the
    # reward model's error. Asserted so that a change shows up here.
    dm = summary[summary["estimator"] == "DM"]
    assert (dm["coverage"] < 0.9).all()
    assert (dm["mean_width"] < summary[summary["estimator"] == "DR"]["mean_width"].to_numpy()).all()
