"""The rule-based policy reproduces the seed defaults."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cadence.contract.actions import Policy, check_decisions
from cadence.contract.tables import STAGES
from cadence.contract.triggers import INCENTIVE_STAGES
from cadence.policies.rules import RulesPolicy


def _cands(stages: list[str], **opt: list[bool]) -> pd.DataFrame:
    n = len(stages)
    cols = {f"opt_in_{c}": opt.get(c, [False] * n) for c in ("email", "push", "sms", "whatsapp")}
    return pd.DataFrame({"stage": stages, **cols})


def test_seed_defaults_per_stage() -> None:
    stages = list(STAGES)
    n = len(stages)
    d = RulesPolicy().decide(_cands(stages, email=[True] * n, push=[True] * n), np.random.default_rng(0))
    check_decisions(d, n, "rules")
    got = d.assign(stage=stages).set_index("stage")
    for s in ("cart_abandon", "checkout_abandon", "browse_abandon", "search_abandon"):
        assert (got.at[s, "channel"], got.at[s, "delay_minutes"]) == ("push", 20), s
    for s in ("follow_up", "birthday", "anniversary", "win_back", "buy_again", "order_status"):
        assert (got.at[s, "channel"], got.at[s, "delay_minutes"]) == ("email", 0), s
    # Incentive flags: cart abandon, browse abandon, price drop carry none.
    for s in stages:
        want = "free_shipping" if s in INCENTIVE_STAGES else "none"
        assert got.at[s, "incentive"] == want, s
    assert {"cart_abandon", "browse_abandon", "price_drop"}.isdisjoint(INCENTIVE_STAGES)
    assert (d["action"] == "send").all() and (d["propensity"] == 1).all()


def test_abandon_without_push_is_email_at_12_hours_and_unreachable_is_held() -> None:
    c = _cands(["cart_abandon", "cart_abandon", "birthday", "cart_abandon"],
               email=[True, False, False, False], sms=[False, True, True, False])
    d = RulesPolicy().decide(c, np.random.default_rng(0))
    assert d.loc[0, ["action", "channel", "delay_minutes"]].tolist() == ["send", "email", 720]
    # Abandon reminders go by push or email only; an SMS-only customer is held.
    assert d.loc[1, "action"] == "hold" and d.loc[1, "channel"] is None
    assert d.loc[2, ["action", "channel"]].tolist() == ["send", "sms"]
    assert d.loc[3, "action"] == "hold"


def test_parameters_are_checked() -> None:
    with pytest.raises(ValueError, match="incentive: 'coupon'"):
        RulesPolicy(incentive="coupon")
    with pytest.raises(ValueError, match="abandon_email_delay: 30"):
        RulesPolicy(abandon_email_delay=30)
    with pytest.raises(ValueError, match="channel_order"):
        RulesPolicy(channel_order=("email",))


def test_is_a_policy_and_keeps_the_index() -> None:
    c = _cands(["birthday"] * 3, email=[True] * 3).set_axis([7, 8, 9])
    assert isinstance(RulesPolicy(), Policy)
    assert RulesPolicy().decide(c, np.random.default_rng(0)).index.tolist() == [7, 8, 9]
