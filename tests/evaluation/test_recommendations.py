"""Offline evaluation of recommenders: the metrics by hand, the intervals, and which model wins on a synthetic shop."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from cadence.evaluation.recommendations import (
    COMPARISON_COLUMNS,
    compare_recommenders,
    plot_recommenders,
    ranking_metrics,
    stage_ranking_metrics,
    time_split,
)
from cadence.features.engine import connect
from cadence.models.recommenders import (
    BlendRecommender,
    CooccurrenceRecommender,
    ImplicitRecommender,
    PopularityRecommender,
    RecentlyViewedRecommender,
)
from cadence.synthetic import ShopConfig, generate_shop
from cadence.workflows.features import load_tables


def test_metrics_by_hand() -> None:
    recs = pd.DataFrame({"customer_id": ["a"] * 3 + ["b"] * 2, "product_id": ["x", "y", "z", "x", "y"],
                         "rank": [1, 2, 3, 1, 2], "score": [3.0, 2.0, 1.0, 2.0, 1.0]})
    bought = pd.DataFrame({"customer_id": ["a", "a", "b", "c"], "order_id": ["o1", "o2", "o3", "o4"],
                           "product_id": ["y", "w", "q", "x"]})
    got = ranking_metrics(recs, bought, k=3).set_index("customer_id")
    # a bought y (rank 2) and w (not listed): hit, recall 1/2, NDCG (1/log2 3) / (1 + 1/log2 3).
    assert got.loc["a", "hit_rate"] == 1.0 and got.loc["a", "recall"] == 0.5
    assert got.loc["a", "ndcg"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    # b missed; c has no list at all: both 0.
    assert got.loc[["b", "c"], ["hit_rate", "recall", "ndcg"]].to_numpy().sum() == 0.0
    # k cuts the list: at k=1 a's hit at rank 2 no longer counts.
    assert ranking_metrics(recs, bought, k=1).set_index("customer_id").loc["a", "hit_rate"] == 0.0
    per_order = ranking_metrics(recs, bought, k=3, unit="order")
    assert per_order["order_id"].tolist() == ["o1", "o2", "o3", "o4"]
    assert per_order["hit_rate"].tolist() == [1.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"k": 0}, ValueError, "k must be a positive integer"),
    ({"unit": "session"}, ValueError, "unit: expected 'customer' or 'order'"),
])
def test_bad_metric_arguments(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    recs = pd.DataFrame({"customer_id": ["a"], "product_id": ["x"], "rank": [1]})
    bought = pd.DataFrame({"customer_id": ["a"], "product_id": ["x"]})
    with pytest.raises(error, match=message):
        ranking_metrics(recs, bought, **{"k": 3, **kwargs})


@pytest.fixture(scope="module")
def split() -> Any:
    """A 2,000-customer, 180-day shop (200 products): fit before 1 May 2025, judge the next 60 days."""
    import tempfile

    out = Path(tempfile.mkdtemp()) / "shop"
    generate_shop(ShopConfig(customers=2000, days=180, seed=1), out)
    con = connect()
    tables = load_tables(con, out, ["events", "orders", "order_items"])
    return time_split(con, tables, "2025-05-01", 60)


def _recommenders() -> dict[str, Any]:
    return {
        "recent": RecentlyViewedRecommender(),
        "popular": PopularityRecommender(),
        "cooccurrence": CooccurrenceRecommender(),
        "bought_together": CooccurrenceRecommender(source="orders"),
        "als": ImplicitRecommender("als", random_state=0),
        "bm25": ImplicitRecommender("bm25"),
        "blend": BlendRecommender([("als", ImplicitRecommender("als", random_state=0)),
                                   ("bm25", ImplicitRecommender("bm25")), ("popular", PopularityRecommender())]),
    }


def test_collaborative_filtering_beats_recently_viewed_and_popularity(split: Any) -> None:
    """Measured on this shop (seed 1): hit rate@10 recent 0.546, popular 0.576, ALS 0.648, BM25 item-kNN 0.699,
    blend 0.695; session co-occurrence 0.466 and bought-together 0.373 do *not* beat the baselines (the world's
    purchases follow category affinity and popularity, with no complementary pairs yet). Seeds 2 and 3 gave the
    same ordering, every CF-minus-baseline paired 95% interval above 0."""
    data, bought = split
    for baseline in ("recent", "popular"):
        table = compare_recommenders(_recommenders(), data, bought, k=10, baseline=baseline, n_bootstrap=500)
        hit = table[table.metric == "hit_rate"].set_index("recommender")
        for winner in ("als", "bm25", "blend"):
            assert hit.loc[winner, "diff_lower"] > 0, (winner, baseline, hit.loc[winner].to_dict())
        # Session co-occurrence and bought-together lose to both baselines here: the interval says so, not a guess.
        assert hit.loc["bought_together", "diff_upper"] < 0
    assert hit.loc["als", "n_customers"] == hit.loc["als", "n_units"] > 400


def test_comparison_table_and_intervals(split: Any) -> None:
    data, bought = split
    recs = {"recent": RecentlyViewedRecommender(), "als": ImplicitRecommender("als", random_state=0)}
    table = compare_recommenders(recs, data, bought, k=5, unit="order", n_bootstrap=200, random_state=3)
    assert list(table.columns) == list(COMPARISON_COLUMNS)
    assert len(table) == 6 and (table["k"] == 5).all()
    assert (table["lower"] <= table["value"]).all() and (table["value"] <= table["upper"]).all()
    base = table[table.recommender == "recent"]
    assert (base[["diff", "diff_lower", "diff_upper"]].to_numpy() == 0).all()
    # Orders are the units, customers the clusters: several orders per customer in 60 days.
    assert (table["n_units"] > table["n_customers"]).all()
    again = compare_recommenders(recs, data, bought, k=5, unit="order", n_bootstrap=200, random_state=3)
    pd.testing.assert_frame_equal(table, again)
    fig = plot_recommenders(table, what="diff")
    assert [t.name for t in fig.data] == ["recent", "als"]
    assert list(fig.data[1].x) == ["hit_rate@5", "recall@5", "ndcg@5"]


def test_clustered_intervals_are_wider_than_row_intervals_would_be(split: Any) -> None:
    """Orders of one customer share the customer's list: resampling whole customers widens the interval."""
    data, bought = split
    recs = {"als": ImplicitRecommender("als", random_state=0)}
    table = compare_recommenders(recs, data, bought, k=10, unit="order", n_bootstrap=2000, random_state=1)
    fitted = ImplicitRecommender("als", random_state=0).fit(data)
    customers = sorted(set(bought["customer_id"]) & set(data.interactions["customer_id"]))
    per = ranking_metrics(fitted.recommend(customers, k=10), bought[bought.customer_id.isin(customers)], 10,
                          unit="order")
    iid_se = per["hit_rate"].std(ddof=1) / np.sqrt(len(per))
    clustered_se = table.set_index("metric").loc["hit_rate", "std_error"]
    # Measured 1.10 (2,000 resamples: about 1.6% Monte Carlo error); a row bootstrap would give about 1.00.
    assert clustered_se > 1.05 * iid_se


def test_bad_comparison_inputs(split: Any) -> None:
    data, bought = split
    recs = {"popular": PopularityRecommender()}
    early = bought.assign(ts=data.as_of - pd.Timedelta(days=1))
    with pytest.raises(ValueError, match="purchases: column 'ts' has rows before as_of"):
        compare_recommenders(recs, data, early)
    with pytest.raises(ValueError, match="baseline: 'nope' is not one of"):
        compare_recommenders(recs, data, bought, baseline="nope")
    with pytest.raises(ValueError, match="purchases: no customer to judge"):
        compare_recommenders(recs, data, bought[bought.customer_id == "nobody"])
    with pytest.raises(ValueError, match="horizon_days must be a positive number"):
        time_split(None, {}, data.as_of, 0)


# ---------------------------------------------------------------- per stage
def test_stage_metrics_by_hand() -> None:
    cands = pd.DataFrame({"customer_id": ["a", "a", "b", "c", "d"],
                          "stage": ["browse_abandon", "price_drop", "browse_abandon", "price_drop", "price_drop"],
                          "eligible_at": pd.to_datetime(["2025-03-01", "2025-03-20", "2025-03-01", "2025-03-01",
                                                         "2025-03-01"], utc=True)}, index=[10, 11, 12, 13, 14])
    bought = pd.DataFrame({"customer_id": ["a", "a", "b", "c"], "product_id": ["x", "w", "z", "q"],
                           "ts": pd.to_datetime(["2025-03-02", "2025-03-21", "2025-03-03", "2025-03-30"], utc=True)})
    sel = {"base": pd.Series(["y|x", "w", "z|y", "q", "q"], index=cands.index),
           "other": pd.Series(["x", "v", "", "q", ""], index=cands.index)}
    t = stage_ranking_metrics(sel, cands, bought, k=2, horizon_days=7, n_bootstrap=100)
    got = t.set_index(["stage", "recommender", "metric"])
    # browse: a bought x (base rank 2, other rank 1), b bought z (base rank 1, other nothing).
    assert got.loc[("browse_abandon", "base", "hit_rate"), "value"] == 1.0
    assert got.loc[("browse_abandon", "other", "hit_rate"), "value"] == 0.5
    assert got.loc[("browse_abandon", "base", "ndcg"), "value"] == pytest.approx((1 / math.log2(3) + 1) / 2)
    assert got.loc[("browse_abandon", "other", "hit_rate"), "diff"] == -0.5
    # price drop: only a's trigger of 20 March has a purchase within 7 days (c bought 29 days later, d nothing).
    assert got.loc[("price_drop", "base", "hit_rate"), "n_units"] == 1
    assert got.loc[("price_drop", "other", "recall"), "value"] == 0.0
    assert list(t.columns) == ["stage", *COMPARISON_COLUMNS]
    assert (t["lower"] <= t["value"]).all() and (t["value"] <= t["upper"]).all()


def test_stage_metrics_bad_input() -> None:
    cands = pd.DataFrame({"customer_id": ["a"], "stage": ["browse_abandon"],
                          "eligible_at": pd.to_datetime(["2025-03-01"], utc=True)})
    bought = pd.DataFrame({"customer_id": ["a"], "product_id": ["x"], "ts": pd.to_datetime(["2025-03-02"], utc=True)})
    with pytest.raises(ValueError, match="purchases: missing column 'ts'"):
        stage_ranking_metrics({"s": pd.Series(["x"])}, cands, bought.drop(columns=["ts"]))
    with pytest.raises(ValueError, match=r"selections\['s'\]: expected a Series on candidates' index"):
        stage_ranking_metrics({"s": pd.Series(["x"], index=[5])}, cands, bought)
    with pytest.raises(ValueError, match="baseline: 'nope'"):
        stage_ranking_metrics({"s": pd.Series(["x"])}, cands, bought, baseline="nope")
