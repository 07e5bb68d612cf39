"""The recommender comparison of ``cadence evaluate --recommenders``, the report and the demo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cadence.reporting.recommendations import offline_table, ranking_figure, ranking_table
from cadence.synthetic import ShopConfig, generate_shop
from cadence.synthetic.config import Tastes
from cadence.workflows.recommendations import (
    DEFAULT_RECOMMENDER,
    RECOMMENDERS,
    RecommenderComparison,
    compare_recommenders_named,
    make_recommender,
)


@pytest.fixture(scope="module")
def tastes_shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = ShopConfig(customers=800, days=120, seed=4, tastes=Tastes())
    return Path(generate_shop(cfg, tmp_path_factory.mktemp("recs") / "shop"))


@pytest.fixture(scope="module")
def comparison(tastes_shop: Path) -> RecommenderComparison:
    return compare_recommenders_named(tastes_shop, names=["recently_viewed", "popularity", "live_blend"],
                                      holdout_days=40, n_bootstrap=100)


def test_ranking_per_stage_with_intervals(comparison: RecommenderComparison) -> None:
    r = comparison.ranking
    assert comparison.as_of < comparison.until
    assert set(r["recommender"]) == {"recently_viewed", "popularity", "live_blend"}
    assert set(r["metric"]) == {"hit_rate", "recall", "ndcg"} and (r["k"] == 10).all()
    assert {"birthday", "browse_abandon", "follow_up"} <= set(r["stage"])
    assert "order_status" not in set(r["stage"])  # a transactional message recommends nothing
    assert (r["lower"] <= r["value"] + 1e-12).all() and (r["value"] <= r["upper"] + 1e-12).all()
    base = r[r["recommender"] == "recently_viewed"]
    assert (base["diff"] == 0).all()
    # Checkout abandonment shows the cart whatever the recommender: the same value for all.
    co = r[(r["stage"] == "checkout_abandon") & (r["metric"] == "ndcg")]
    assert len(co) == 3 and co["value"].nunique() == 1
    # The birthday's items are each recommender's own top products: they differ.
    bd = r[(r["stage"] == "birthday") & (r["metric"] == "ndcg")]
    assert bd["value"].nunique() > 1


def test_offline_value_of_item_rules_where_the_log_randomised_items(comparison: RecommenderComparison) -> None:
    o = comparison.offline
    assert o is not None and comparison.offline_note == ""
    assert set(o["metric"]) == {"conversion", "click"} and set(o["estimator"]) == {"pi"}
    assert {"popularity - recently_viewed", "live_blend - recently_viewed"} <= set(o["rule"])
    assert (o["lower"] <= o["estimate"]).all() and (o["estimate"] <= o["upper"]).all()
    t = offline_table(comparison)
    assert t is not None and len(t) == len(o)


def test_no_randomised_items_no_offline_value(tmp_path: Path) -> None:
    shop = generate_shop(ShopConfig(customers=500, days=90, seed=5), tmp_path / "plain")
    comp = compare_recommenders_named(shop, names=["recently_viewed", "popularity"], holdout_days=30,
                                      n_bootstrap=50)
    assert comp.offline is None and "item_candidates" in comp.offline_note
    assert offline_table(comp) is None


def test_tables_and_figure(comparison: RecommenderComparison) -> None:
    t = ranking_table(comparison)
    assert list(t.columns) == ["stage", "recommender", "triggers", "hit_rate@10", "recall@10", "ndcg@10",
                               "ndcg - recently_viewed"]
    assert (t.loc[t["recommender"] == "recently_viewed", "ndcg - recently_viewed"] == "").all()
    fig = ranking_figure(comparison)
    assert [tr.name for tr in fig.data] == ["recently_viewed", "popularity", "live_blend"]
    assert np.isfinite(np.asarray(fig.data[0].y, dtype=float)).all()


def test_bad_names_and_a_short_holdout(tastes_shop: Path) -> None:
    with pytest.raises(ValueError, match="recommenders: expected names of"):
        compare_recommenders_named(tastes_shop, names=["recent"])
    with pytest.raises(ValueError, match="shorter than the 7-day horizon"):
        compare_recommenders_named(tastes_shop, holdout_days=5)
    with pytest.raises(ValueError, match="recommender: expected one of"):
        make_recommender("nope")
    assert DEFAULT_RECOMMENDER in RECOMMENDERS


def test_a_shop_without_order_lines_is_named(tmp_path: Path) -> None:
    (tmp_path / "bare").mkdir()
    pd.DataFrame({"order_id": ["o"], "customer_id": ["c"], "revenue": [1.0],
                  "ts": pd.to_datetime(["2025-01-01"], utc=True)}).to_parquet(tmp_path / "bare" / "orders.parquet")
    with pytest.raises(ValueError, match="no table order_items"):
        compare_recommenders_named(tmp_path / "bare")
