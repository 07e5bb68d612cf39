"""Off-policy estimators of item-selection rules: exact expectations by enumeration, intervals, bad input."""

from __future__ import annotations

from itertools import combinations
from math import comb

import numpy as np
import pandas as pd
import pytest

from cadence.evaluation.items import (
    candidate_pairs,
    evaluate_item_rules,
    exact_set_weights,
    item_rows,
    pi_weights,
    rule_weights,
    top_within_candidates,
)


def _all_sets(m: int, k: int) -> tuple[list[str], str]:
    cands = [f"P{i}" for i in range(m)]
    return ["|".join(s) for s in combinations(cands, k)], "|".join(cands)


@pytest.mark.parametrize(("m", "k"), [(2, 1), (4, 2), (5, 3), (12, 3), (12, 1), (7, 6)])
def test_pi_weights_average_one_under_uniform_logging(m: int, k: int) -> None:
    sets, cands = _all_sets(m, k)
    assert len(sets) == comb(m, k)
    for target in (sets[0], sets[len(sets) // 2], sets[-1]):
        w = pi_weights([target] * len(sets), sets, [cands] * len(sets))
        assert w.mean() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize(("m", "k"), [(4, 2), (6, 3), (12, 3)])
def test_pi_is_unbiased_for_additive_rewards_and_exact_set_for_any(m: int, k: int) -> None:
    rng = np.random.default_rng(m * 10 + k)
    sets, cands = _all_sets(m, k)
    item_value = dict(zip(cands.split("|"), rng.random(m), strict=True))
    additive = np.array([sum(item_value[p] for p in s.split("|")) for s in sets])
    nonlinear = np.log1p(additive) ** 2
    target = sets[3]
    w = pi_weights([target] * len(sets), sets, [cands] * len(sets))
    # Expectation over the uniform logging = average over all sets.
    assert (w * additive).mean() == pytest.approx(sum(item_value[p] for p in target.split("|")))
    we = exact_set_weights([target] * len(sets), sets, [1 / comb(m, k)] * len(sets))
    assert (we * nonlinear).mean() == pytest.approx(np.log1p(sum(item_value[p] for p in target.split("|"))) ** 2)
    assert we.mean() == pytest.approx(1.0)


def test_pi_weight_is_one_when_every_candidate_was_shown() -> None:
    assert pi_weights(["a|b"], ["b|a"], ["a|b"]).tolist() == [1.0]


def test_pi_weights_refuse_targets_outside_candidates_or_of_the_wrong_size() -> None:
    with pytest.raises(ValueError, match="target items: row 0 must be 2 distinct products of its item_candidates"):
        pi_weights(["a|z"], ["a|b"], ["a|b|c"])
    with pytest.raises(ValueError, match="row 0 must be 2"):
        pi_weights(["a"], ["a|b"], ["a|b|c"])
    with pytest.raises(ValueError, match="messages: items: row 0 shows \\['z'\\] outside its item_candidates"):
        pi_weights(["a|b"], ["a|z"], ["a|b|c"])


def _log(n: int = 6) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": [f"c{i % 3}" for i in range(n)], "stage": ["birthday"] * n,
                         "action": ["send"] * n, "items": ["x"] * n, "items_propensity": [1 / 3] * n,
                         "item_candidates": ["x|y|z"] * n, "converted_order_id": [None] * n,
                         "clicked_at": pd.NaT})


@pytest.mark.parametrize("column", ["items_propensity", "item_candidates", "items"])
def test_item_rows_names_the_missing_column(column: str) -> None:
    with pytest.raises(ValueError, match=f"messages: missing column '{column}'"):
        item_rows(_log().drop(columns=column))


def test_item_rows_keeps_sent_messages_with_items_on_recommendation_stages() -> None:
    log = _log()
    log.loc[0, "action"] = "hold"
    log.loc[1, "stage"] = "order_status"
    log.loc[2, "items"] = None
    assert len(item_rows(log)) == 3
    log.loc[3, "items_propensity"] = np.nan
    with pytest.raises(ValueError, match="messages: items_propensity: missing on 1 sent message"):
        item_rows(log)
    log.loc[3, "items_propensity"] = 2.0
    with pytest.raises(ValueError, match="messages: items_propensity: expected probabilities"):
        item_rows(log)


def test_top_within_candidates_ranks_and_breaks_ties_by_candidate_order() -> None:
    row, pos, ids = candidate_pairs(pd.Series(["a|b|c|d", "e|f", None]))
    score = np.array([0.0, np.inf * -1, 0.0, 5.0, np.nan, np.nan])
    out = top_within_candidates(row, pos, ids, score, 3, np.array([2, 1, 2]))
    assert out.tolist() == ["a|d", "e", None]


def test_evaluate_item_rules_recovers_a_known_additive_truth_with_paired_differences() -> None:
    # A uniform 3-of-12 log with an additive click-through: rule "good" shows the three best items.
    rng = np.random.default_rng(0)
    n, m, k = 20_000, 12, 3
    cands = [f"P{i:02d}" for i in range(m)]
    value = np.linspace(0.01, 0.12, m)
    shown = np.argsort(rng.random((n, m)), axis=1)[:, :k]
    y = rng.random(n) < value[shown].sum(axis=1)
    log = pd.DataFrame({"customer_id": [f"c{i % 5000}" for i in range(n)], "stage": "price_drop", "action": "send",
                        "items": ["|".join(cands[j] for j in sorted(s)) for s in shown],
                        "items_propensity": 1 / comb(m, k), "item_candidates": "|".join(cands),
                        "converted_order_id": np.where(y, "o", None), "clicked_at": pd.NaT})
    rows = item_rows(log)
    targets = {"good": ["|".join(cands[-k:])] * n, "bad": ["|".join(cands[:k])] * n}
    out = evaluate_item_rules(rows, targets, estimators=("pi", "exact"), baseline="bad", n_bootstrap=200).set_index(
        ["estimator", "rule"])
    truth = {"good": value[-k:].sum(), "bad": value[:k].sum()}
    truth["good - bad"] = truth["good"] - truth["bad"]
    for rule, v in truth.items():
        assert out.loc[("pi", rule), "lower"] <= v <= out.loc[("pi", rule), "upper"], rule
    assert out.loc[("pi", "good - bad"), "lower"] > 0
    assert out.loc[("pi", "good - bad"), "estimate"] == pytest.approx(
        out.loc[("pi", "good"), "estimate"] - out.loc[("pi", "bad"), "estimate"])
    # The exact-set estimator is unbiased too, with a far wider interval.
    width = out["upper"] - out["lower"]
    assert width[("exact", "good")] > 3 * width[("pi", "good")]
    assert rule_weights(rows, targets["good"], "pi").mean() == pytest.approx(1.0, abs=0.05)


def test_evaluate_item_rules_bad_arguments() -> None:
    rows = item_rows(_log())
    with pytest.raises(ValueError, match="baseline: 'nope'"):
        evaluate_item_rules(rows, {"x": ["x"] * 6}, baseline="nope")
    with pytest.raises(ValueError, match="metric: expected one of"):
        evaluate_item_rules(rows, {"x": ["x"] * 6}, metrics=("revenue",))
    with pytest.raises(ValueError, match="target items: 2 sets for 6 logged rows"):
        evaluate_item_rules(rows, {"x": ["x"] * 2})
