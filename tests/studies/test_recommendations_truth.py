"""The recommendation truth study on a tiny shop: PI weights, coverage of a clearly better rule, model vs baselines."""

from __future__ import annotations

import tempfile
import warnings

import numpy as np
import pandas as pd
import pytest

from cadence.evaluation.items import evaluate_item_rules, item_rows, rule_weights
from cadence.studies.recommendations import (
    ItemRulePolicy,
    choose_items,
    differences,
    recommendation_study,
    true_per_message,
)
from cadence.synthetic import (
    RandomizedLoggingPolicy,
    ShopConfig,
    Tastes,
    generate_shop,
    true_relevance,
)

# Static tastes (no complements): the oracle's items clearly convert more. The default item effect keeps the
# response close enough to additive in the items for the pseudo-inverse estimator (a strong effect biases it).
CFG = ShopConfig(customers=600, days=180, seed=3, tastes=Tastes(complement_share=0.0))
# Strong tastes for the model comparison.
STRONG = ShopConfig(customers=600, days=180, seed=3, tastes=Tastes(taste_scale=3.0, complement_share=0.0,
                                                                   item_effect=1.0))
START = pd.Timestamp(CFG.start, tz="UTC") + pd.Timedelta(days=90)


def _oracle(c: np.ndarray, p: np.ndarray, t: np.ndarray) -> np.ndarray:
    return np.asarray(true_relevance(CFG, c, p, pd.to_datetime(t, unit="s", utc=True)), dtype=float)


@pytest.fixture(scope="module")
def later_rows() -> pd.DataFrame:
    with tempfile.TemporaryDirectory() as tmp:
        messages = pd.read_parquet(generate_shop(CFG, f"{tmp}/shop") / "messages.parquet")
    rows = item_rows(messages)
    return rows.loc[pd.to_datetime(rows["triggered_at"], utc=True) >= START].reset_index(drop=True)


def test_pi_weights_average_one_and_pi_covers_the_truth_of_a_clearly_better_rule(later_rows: pd.DataFrame) -> None:
    rows = later_rows
    k = np.fromiter((len(s.split("|")) for s in rows["items"]), np.int64, len(rows))
    oracle = choose_items(_oracle, rows["customer_id"], rows["triggered_at"], rows["item_candidates"], k)
    w = rule_weights(rows, oracle, "pi")
    assert abs(w.mean() - 1) < 4 * w.std() / np.sqrt(len(w))
    est = evaluate_item_rules(rows, {"oracle": oracle}, n_bootstrap=300).iloc[0]
    policy = ItemRulePolicy(_oracle, START, RandomizedLoggingPolicy.for_shop(CFG), "item-oracle")
    truth = true_per_message(policy, CFG, int(START.timestamp()))
    logged = true_per_message(RandomizedLoggingPolicy.for_shop(CFG), CFG, int(START.timestamp()))
    assert truth["messages"] == logged["messages"] == len(rows)  # the same sends, only the items differ
    assert truth["conversion"] > 1.3 * logged["conversion"]  # clearly better
    assert est["lower"] <= truth["conversion"] <= est["upper"]


def test_study_truth_model_beats_popularity_and_ndcg_orders_the_rules() -> None:
    warnings.filterwarnings("ignore")
    study = recommendation_study([STRONG.seed], lambda s: STRONG, model="als", ndcg_rows=300, n_bootstrap=100)
    truth = study["truth"].set_index("rule")["conversion"]
    assert truth["model"] > truth["popularity"]
    assert truth["model_views"] > truth["logging"]
    ndcg = study["ndcg"].set_index("rule")["ndcg10"]
    assert ndcg["oracle"] == pytest.approx(1.0)
    assert ndcg["model"] > ndcg["popularity"]
    per_seed, summary = differences(study, "conversion", "pi")
    assert set(summary["difference"]) == {"model - recently_viewed", "model - popularity"}
    assert per_seed["covered"].dtype == bool
