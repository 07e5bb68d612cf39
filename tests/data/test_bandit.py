"""The logged-bandit type: the fields a shop's log adds (groups, candidates, several rewards), its constructors.

The bad inputs of the estimators' fields (action, reward, pscore, n_actions,
context, action_names) are tabled in tests/evaluation/test_ope.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from cadence.data.bandit import LoggedBandit, split_customers

REWARDS = pd.DataFrame({"open": [1.0, 0.0, 1.0, 0.0], "conversion": [0.0, 0.0, 1.0, 0.0]})
SHOP: dict[str, Any] = {
    "action": np.array([0, 1, 2, 1]),
    "pscore": np.array([0.5, 0.25, 0.25, 0.25]),
    "n_actions": 3,
    "groups": np.array([0, 1, 0, 2]),
    "candidates": pd.DataFrame({"stage": ["a", "b", "a", "b"]}),
    "rewards": REWARDS,
}

SHOP_CASES: list[tuple[dict[str, Any], str]] = [
    ({"reward": np.ones(4)}, "reward: give reward or rewards (with metric), not both"),
    ({"rewards": None}, "reward: expected a reward per row (reward, or rewards with metric)"),
    ({"rewards": None, "reward": np.ones(4), "metric": "open"},
     "metric: 'open' names a column of rewards, but no rewards were given"),
    ({"metric": "revenue"}, "metric: 'revenue' is not one of ('open', 'conversion')"),
    ({"rewards": REWARDS.iloc[:3]}, "rewards: expected 4 rows like action, got 3"),
    ({"rewards": REWARDS.to_numpy()}, "rewards: expected a DataFrame, got ndarray"),
    ({"rewards": REWARDS[[]]}, "rewards: expected at least one column"),
    ({"rewards": REWARDS.assign(open=[1.0, np.nan, 0.0, 0.0])}, "rewards.open: 1 rows are not finite"),
    ({"rewards": REWARDS.assign(open=list("abcd"))}, "rewards.open: expected numbers, got dtype object"),
    ({"groups": np.array([0, 1, 2])}, "groups: expected 4 rows like action, got 3"),
    ({"groups": np.zeros((4, 1), dtype=int)}, "groups: expected a 1-d array (n,), got shape (4, 1)"),
    ({"groups": np.array(["a", "b", "a", "c"])},
     "groups: expected integer codes, got dtype <U1 (from_frame codes any labels)"),
    ({"groups": np.array([0, -1, 0, -2])}, "groups: 2 rows are negative"),
    ({"candidates": pd.DataFrame({"stage": ["a"]})}, "candidates: expected 4 rows like action, got 1"),
]


@pytest.mark.parametrize(("change", "message"), SHOP_CASES)
def test_shop_fields_reject_bad_input(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as err:
        LoggedBandit(**{**SHOP, **change})
    assert str(err.value) == message


def test_reward_is_one_metric_of_rewards() -> None:
    log = LoggedBandit(**SHOP)
    assert log.metric == "open" and log.reward.tolist() == [1.0, 0.0, 1.0, 0.0]  # the first by default
    conv = log.for_metric("conversion")
    assert conv.metric == "conversion" and conv.reward.tolist() == [0.0, 0.0, 1.0, 0.0]
    assert conv.groups is log.groups or np.array_equal(conv.groups, log.groups)
    assert log.reward.tolist() == [1.0, 0.0, 1.0, 0.0]  # frozen: for_metric returns a new log
    with pytest.raises(ValueError, match=r"^metric: 'revenue' is not one of \('open', 'conversion'\)$"):
        log.for_metric("revenue")
    plain = LoggedBandit(action=np.array([0]), reward=np.array([1.0]), pscore=np.array([1.0]), n_actions=1)
    with pytest.raises(ValueError, match="^metric: 'open' names a column of rewards, but no rewards were given$"):
        plain.for_metric("open")


def test_stored_arrays_are_read_only() -> None:
    log = LoggedBandit(**SHOP)
    for arr in (log.action, log.reward, log.pscore, log.groups):
        assert not arr.flags.writeable
    assert SHOP["groups"].flags.writeable  # the caller's array is untouched


def test_subset_keeps_every_field_aligned() -> None:
    log = LoggedBandit(**SHOP).for_metric("conversion")
    sub = log.subset(np.array([False, True, True, False]))
    assert sub.n == 2 and sub.metric == "conversion"
    assert sub.action.tolist() == [1, 2] and sub.pscore.tolist() == [0.25, 0.25]
    assert sub.reward.tolist() == [0.0, 1.0] and sub.groups.tolist() == [1, 0]  # codes kept
    assert sub.candidates["stage"].tolist() == ["b", "a"] and sub.candidates.index.tolist() == [0, 1]
    assert sub.rewards["open"].tolist() == [0.0, 1.0]
    plain = LoggedBandit(action=np.array([0, 1]), reward=np.array([1.0, 2.0]), pscore=np.array([0.5, 0.5]),
                         n_actions=2, context=np.array([[1.0], [2.0]]))
    one = plain.subset(np.array([1]))
    assert (one.reward.tolist(), one.context.tolist(), one.groups) == ([2.0], [[2.0]], None)


def test_from_frame_reads_several_rewards_and_groups() -> None:
    df = pd.DataFrame({"act": ["send", "hold", "send"], "p": [0.8, 0.2, 0.8], "customer": ["z", "a", "z"],
                       "open": [1, 0, 1], "conversion": [0.0, 0.0, 1.0]})
    log = LoggedBandit.from_frame(df, action="act", reward=["open", "conversion"], pscore="p", groups="customer")
    assert log.metric == "open" and log.reward.tolist() == [1.0, 0.0, 1.0]
    assert list(log.rewards.columns) == ["open", "conversion"] and log.groups.tolist() == [1, 0, 1]
    conv = LoggedBandit.from_frame(df, action="act", reward=["open", "conversion"], pscore="p", metric="conversion")
    assert conv.reward.tolist() == [0.0, 0.0, 1.0] and conv.groups is None
    for kwargs, message in [
        ({"reward": ["open", "nope"]}, "reward: column 'nope' not in frame"),
        ({"reward": []}, "reward: expected at least one reward column"),
        ({"groups": "nope"}, "groups: column 'nope' not in frame"),
        ({"groups": "g"}, "groups: 1 rows missing"),
    ]:
        with pytest.raises(ValueError) as err:
            LoggedBandit.from_frame(df.assign(g=["x", None, "y"]), **{"action": "act", "reward": "open",
                                                                      "pscore": "p", **kwargs})
        assert str(err.value) == message


def test_split_customers_needs_groups() -> None:
    fit, held = split_customers(LoggedBandit(**SHOP), share=0.5, seed=0)
    assert (fit ^ held).all() and fit[0] == fit[2]  # one customer's rows stay together
    plain = LoggedBandit(action=np.array([0]), reward=np.array([1.0]), pscore=np.array([1.0]), n_actions=1)
    with pytest.raises(ValueError, match=r"^groups: split_customers needs the log's groups"):
        split_customers(plain)
