"""The truth's headroom for the customer's features in the observable world (issue 22)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cadence.studies.policy_context import (
    HEADROOM_ACTIONS,
    ConstantAction,
    action_values,
    feature_headroom,
    with_logged_columns,
    world,
)
from cadence.synthetic import ObservableResponse, ShopConfig

#: The response type hangs on engagement and browsing only: what the customer family shows, the trigger's columns not.
DECISIVE = ObservableResponse(segment_weights={"persuadable": {"engagement": 2.5, "browsing": 2.0},
                                               "annoyed": {"engagement": -2.5, "browsing": -1.0}}, deal_weights={})


CFG = world(4, 800, 120, DECISIVE)


@pytest.fixture(scope="module")
def values() -> pd.DataFrame:
    return action_values(CFG)


def test_action_values_are_the_truth_of_each_constant_action(values: pd.DataFrame) -> None:
    assert list(values.filter(like="v_").columns) == [f"v_{a}" for a in HEADROOM_ACTIONS]
    assert len(values) > 1000 and values["customer"].nunique() > 100
    seg = values.filter(like="segment_").to_numpy()
    assert (seg.sum(axis=1) == 1).all()
    # Sending moves persuadables up and the annoyed down (the world's segment effects), on average.
    gain = values["v_none"] - values["v_hold"]
    assert gain[values["segment_persuadable"] == 1].mean() > 0 > gain[values["segment_annoyed"] == 1].mean()
    with pytest.raises(ValueError, match="observable_response is None"):
        action_values(ShopConfig(customers=50, days=30))


def test_the_traits_only_the_customer_family_shows_are_worth_something_here(values: pd.DataFrame) -> None:
    h = feature_headroom(values, seed=4)
    assert h["perfect"] >= h["hidden"] >= h["observable traits"] > h["trigger traits"] + 0.05
    # The same oracle reading nothing but noise gains nothing out of sample.
    noisy = values.assign(frequency=np.random.default_rng(0).normal(size=len(values)))
    h0 = feature_headroom(noisy, {"stage": (), "noise": ("frequency",)}, seed=4)
    assert h0["noise"] < h0["stage"] + 0.02


def test_the_constant_action_holds_without_an_opt_in_and_keeps_incentives_to_their_stages() -> None:
    c = pd.DataFrame({"stage": ["cart_abandon", "birthday", "cart_abandon"],
                      "opt_in_email": [False, True, False], "opt_in_push": [False, False, True],
                      "opt_in_sms": [False, True, False], "opt_in_whatsapp": [False] * 3})
    d = ConstantAction("percent_code").decide(c, np.random.default_rng(0))
    assert d["action"].tolist() == ["hold", "send", "send"]
    assert d["channel"].tolist()[1:] == ["email", "push"]
    assert d["incentive"].tolist()[1:] == ["percent_code", "none"]  # birthday carries incentives, cart_abandon not
    assert (ConstantAction().decide(c, np.random.default_rng(0))["action"] == "hold").all()


def test_the_shops_measured_columns_join_every_logged_trigger(values: pd.DataFrame) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the scoring models' notes on a small shop
        joined, sets = with_logged_columns(values, CFG)
    # Every marketing trigger of the world is a logged row (transactional ones are not logged).
    assert 0.9 * len(values) <= len(joined) <= len(values)
    assert {"sends_7d", "orders_90d", "stage"} <= set(joined.columns) and "open_rate" in sets["trigger + core columns"]
    assert "open_rate" not in sets["trigger columns"] and not joined[list(sets["trigger + core columns"])].isna().any().any()
    h = feature_headroom(joined, {"stage": (), **sets}, seed=4)
    assert h["trigger columns"] > h["stage"] - 0.05


def test_in_the_realised_world_the_shops_own_columns_are_worth_something() -> None:
    # REALISED_RESPONSE (the study's default world): response types read the history before each trigger,
    # so an oracle reading the shop's measured core customer columns beats one reading the trigger's seven.
    import warnings

    cfg = world(5, 1500, 150)
    assert cfg.observable_response is not None and cfg.observable_response.basis == "realised"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        joined, sets = with_logged_columns(action_values(cfg), cfg)
    h = feature_headroom(joined, {"stage": (), **sets}, seed=5)
    print(f"\nrealised world, oracle value per trigger: {h}")
    assert h["trigger + core columns"] > h["trigger columns"] + 0.04
