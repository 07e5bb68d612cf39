"""decision_rows: the one join of trigger candidates, customer features and scores (tables in, table out)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cadence.features.decision_rows import decision_rows
from cadence.synthetic import ShopConfig, generate_shop
from cadence.workflows.features import build_features


@pytest.fixture(scope="module")
def features(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, pd.DataFrame]:
    root = tmp_path_factory.mktemp("decision-rows")
    shop = generate_shop(ShopConfig(customers=300, days=60, seed=4), root / "shop")
    run = build_features(shop, "2025-02-25", root / "features")
    return (pd.read_parquet(Path(run.out_dir) / "trigger_candidates.parquet"),
            pd.read_parquet(Path(run.out_dir) / "customer_features.parquet"))


def test_every_candidate_once_in_order_with_its_customers_row(features: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    trig, feats = features
    trig = trig.sample(frac=1.0, random_state=0).set_index(np.arange(len(trig)) * 7)  # any order, any index
    some = feats.sample(frac=0.8, random_state=1)  # customers without features get nulls
    scores = pd.DataFrame({"customer_id": feats["customer_id"].iloc[::2], "p_alive": 0.5})
    rows = decision_rows(trig, some, scores)
    assert len(rows) == len(trig) and rows.index.equals(pd.RangeIndex(len(trig)))
    pd.testing.assert_frame_equal(rows[list(trig.columns)], trig.reset_index(drop=True))
    # The trigger's own orders_90d (as of the trigger) is kept; the rest of the features follow.
    assert list(rows.columns) == [*trig.columns, *[c for c in feats.columns if c not in trig.columns], "p_alive"]
    lacking = ~rows["customer_id"].isin(some["customer_id"])
    cols = [c for c in feats.columns if c not in trig.columns]
    expected = some.set_index("customer_id").loc[rows.loc[~lacking, "customer_id"], cols].reset_index(drop=True)
    got = rows.loc[~lacking, cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)  # ints may come back as floats (nulls)
    assert lacking.any() and rows.loc[lacking, "orders_30d"].isna().all()
    assert rows["p_alive"].notna().to_numpy().tolist() == rows["customer_id"].isin(scores["customer_id"]).tolist()


@pytest.mark.parametrize(("table", "frame", "message"), [
    ("trigger_candidates", pd.DataFrame({"stage": ["birthday"]}), "trigger_candidates.customer_id: missing column"),
    ("customer_features", pd.DataFrame({"recency_days": [1.0]}), "customer_features.customer_id: missing column"),
    ("customer_features", pd.DataFrame({"customer_id": ["C-SECRET", "C-SECRET"], "recency_days": [1.0, 2.0]}),
     "customer_features.customer_id: 1 duplicate ids"),
    ("customer_scores", pd.DataFrame({"customer_id": [None], "p_alive": [0.5]}), "customer_scores.customer_id: 1 missing ids"),
])
def test_bad_tables(table: str, frame: pd.DataFrame, message: str) -> None:
    good = {"trigger_candidates": pd.DataFrame({"customer_id": ["C-SECRET"], "stage": ["birthday"]}),
            "customer_features": None, "customer_scores": None}
    good[table] = frame
    with pytest.raises(ValueError, match=message) as err:
        decision_rows(**good)
    assert "C-SECRET" not in str(err.value)


def test_tables_are_not_changed(features: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    trig, feats = features
    before = trig.copy(), feats.copy()
    decision_rows(trig, feats)
    pd.testing.assert_frame_equal(trig, before[0])
    pd.testing.assert_frame_equal(feats, before[1])
