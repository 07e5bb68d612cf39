"""The randomised-holdout readout against the synthetic shop's true response model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cadence.data.io import read_table
from cadence.evaluation.holdout import holdout_lift
from cadence.synthetic import ShopConfig, generate_shop, load_truth


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    shop = generate_shop(ShopConfig(customers=6_000, days=240, seed=21, chunk_size=3_000),
                         tmp_path_factory.mktemp("h") / "shop")
    messages = read_table(shop / "messages.parquet", "messages")
    return messages.merge(load_truth(shop)["messages"], on="message_id")


def _true_lift(m: pd.DataFrame) -> float:
    """Average effect of the logged send decision over randomised candidates (weighted like the estimator)."""
    sent = m[(m["action"] == "send") & (m["propensity"] < 1)]
    w = 1 / sent["propensity"]
    return float(np.sum(w * (sent["p_convert"] - sent["p_convert_hold"])) / w.sum())


def test_intervals_cover_the_true_effect_of_sending(logged: pd.DataFrame) -> None:
    est = holdout_lift(logged).set_index("stage")
    covered = []
    for stage, g in [*logged.groupby("stage"), ("all", logged)]:
        if stage == "order_status":
            continue  # transactional: never held out, so no readout
        truth = _true_lift(g)
        covered.append(est.loc[stage, "lift_lower"] <= truth <= est.loc[stage, "lift_upper"])
    # 13 nominal-95% intervals: all but at most two should cover (binomial tail < 3%).
    assert sum(covered) >= len(covered) - 2, covered


def test_transactional_stage_has_no_randomised_rows(logged: pd.DataFrame) -> None:
    est = holdout_lift(logged)
    assert "order_status" not in set(est["stage"])  # propensity 1 rows carry no randomisation


def test_missing_column_is_named() -> None:
    with pytest.raises(ValueError, match="messages: missing column 'propensity'"):
        holdout_lift(pd.DataFrame({"stage": [], "action": [], "converted_order_id": []}))
