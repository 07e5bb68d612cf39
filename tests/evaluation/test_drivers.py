"""Decision drivers: shuffling a column the policy reads moves decisions; one it ignores moves none."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cadence.evaluation.drivers import decision_drivers, drivers_figure
from cadence.policies.rules import decisions_frame


class SignPolicy:
    """Sends by e-mail when ``a > 0``; with ``b > 1`` through push instead. Ignores ``c``."""

    policy_id = "sign"

    def decide(self, candidates: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        a = candidates["a"].to_numpy()
        b = candidates["b"].to_numpy()
        n = len(candidates)
        return decisions_frame(a > 0, np.where(b > 1, 1, 0), np.zeros(n, np.int64), np.zeros(n, np.int64),
                               np.ones(n), candidates.index)


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 4000
    return pd.DataFrame({"customer_id": rng.integers(0, 1000, n).astype(str), "a": rng.normal(size=n),
                         "b": rng.normal(size=n), "c": rng.normal(size=n)})


def test_shares_match_their_true_values(rows: pd.DataFrame) -> None:
    d = decision_drivers(SignPolicy(), rows, n_repeats=2).set_index("feature")
    # Shuffling a flips the sign with probability 1/2; c is never read.
    assert d.loc["a", "lower"] <= 0.5 <= d.loc["a", "upper"]
    assert d.loc["c", "changed"] == 0.0
    # b changes the channel only for sent rows (P(a>0) = 1/2) whose b crosses 1: 2 p (1 - p), p = P(b > 1).
    p = 0.15865525393145707
    truth = 0.5 * 2 * p * (1 - p)
    assert d.loc["b", "lower"] <= truth <= d.loc["b", "upper"]
    assert list(d.index[:2]) == ["a", "b"]  # sorted by share


def test_groups_are_shuffled_together(rows: pd.DataFrame) -> None:
    d = decision_drivers(SignPolicy(), rows, columns={"a and c": ["a", "c"], "c": ["c"]}).set_index("feature")
    assert d.loc["a and c", "changed"] > 0.3 and d.loc["c", "changed"] == 0.0


def test_sample_and_bad_input(rows: pd.DataFrame) -> None:
    assert decision_drivers(SignPolicy(), rows, columns=["a"], sample=500)["rows"].iloc[0] == 500
    with pytest.raises(ValueError, match="candidates: no column"):
        decision_drivers(SignPolicy(), rows, columns=["zzz"])
    with pytest.raises(ValueError, match="n_repeats"):
        decision_drivers(SignPolicy(), rows, n_repeats=0)


def test_figure_has_one_bar_per_feature(rows: pd.DataFrame) -> None:
    fig = drivers_figure(decision_drivers(SignPolicy(), rows), top=2)
    assert list(fig.data[0].y) == ["b", "a"]
