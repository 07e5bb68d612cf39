"""The served model fills ``items`` per send with the shop's item selector (in process, no MLflow store)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cadence.deployment.items import ServedItems, item_packages, pseudonyms
from cadence.deployment.serving import PolicyModel
from cadence.policies.items import STAGE_RULES
from cadence.policies.rules import RulesPolicy
from cadence.synthetic import ShopConfig, generate_shop
from cadence.workflows.recommendations import fit_selector, fit_served_items, shop_tables

KEY = "0123456789abcdef"


@pytest.fixture(scope="module")
def small_shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(generate_shop(ShopConfig(customers=600, days=90, seed=2), tmp_path_factory.mktemp("items") / "shop"))


@pytest.fixture(scope="module")
def as_of() -> pd.Timestamp:
    return pd.Timestamp("2025-03-01", tz="UTC")


@pytest.fixture(scope="module")
def served(small_shop: Path, as_of: pd.Timestamp) -> ServedItems:
    return fit_served_items(small_shop, as_of, recommender="popularity", n_items=3, key=KEY)


@pytest.fixture(scope="module")
def rows(small_shop: Path, as_of: pd.Timestamp) -> pd.DataFrame:
    """Trigger candidates of the two weeks after ``as_of`` as the pipeline writes them (products, query)."""
    from cadence.features.triggers import trigger_candidates
    from cadence.workflows.features import load_tables

    shop = shop_tables(small_shop)
    tables = {**shop.tables, **load_tables(shop.con, small_shop, ["customers", "products", "product_changes"])}
    cand = trigger_candidates(shop.con, tables, as_of + pd.Timedelta(days=14), since=as_of).to_pandas()
    cand["eligible_at"] = pd.to_datetime(cand["eligible_at"], utc=True)
    return cand.assign(timezone="UTC", opt_in_email=True, opt_in_push=True, opt_in_sms=False,
                       opt_in_whatsapp=False).reset_index(drop=True)


def test_sends_get_the_selectors_items(served: ServedItems, rows: pd.DataFrame, small_shop: Path,
                                       as_of: pd.Timestamp) -> None:
    out = PolicyModel(RulesPolicy(), epsilon=0.0, items=served).predict(None, rows)
    send = (out["action"] == "send").to_numpy()
    assert send.sum() > 50 and {"birthday", "browse_abandon"} <= set(rows.loc[send, "stage"])
    # The same selector fitted on the raw ids chooses the same items (popularity has no randomness).
    plain = fit_selector(shop_tables(small_shop), as_of, "popularity", n_items=3)
    expected = plain.select(rows).where(lambda s: s != "", None).to_numpy(object)
    shows = rows["stage"].map(STAGE_RULES).ne("none").to_numpy()
    fell = out["reason"].str.startswith("items fallback: ").to_numpy()
    ok = send & shows & ~fell
    assert ok.sum() > 50
    assert out.loc[ok, "items"].tolist() == expected[ok].tolist()
    # Every such send shows at most n_items products, and the items differ from the trigger's (what was served before).
    assert out.loc[ok, "items"].str.split("|").str.len().max() <= 3
    assert (out.loc[ok, "items"] != rows.loc[ok, "products"].fillna("")).mean() > 0.3
    assert out.loc[~send, "items"].isna().all()


def test_fallbacks_keep_the_trigger_products_and_say_why(served: ServedItems) -> None:
    t = "2025-03-05T10:00:00Z"
    frame = pd.DataFrame({"customer_id": ["C0000001", "C0000002", "C0000003", "C0000004"],
                          "stage": ["search_abandon", "search_abandon", "order_status", "birthday"],
                          "triggered_at": [t] * 4, "timezone": ["UTC"] * 4,
                          "opt_in_email": [True] * 4, "opt_in_push": [True] * 4, "opt_in_sms": [False] * 4,
                          "opt_in_whatsapp": [False] * 4,
                          "products": ["P000001", None, "P000002|P000003", None],
                          "query": [None, 7, None, None]})
    out = PolicyModel(RulesPolicy(), epsilon=0.0, items=served).predict(None, frame)
    assert (out["action"] == "send").all()
    assert out["reason"].tolist()[:2] == ["items fallback: missing query"] * 2  # absent, and not text
    assert out["items"].tolist()[:3] == ["P000001", None, "P000002|P000003"]  # the order's own items stay
    assert out["reason"].iloc[2] == "" and out["reason"].iloc[3] == ""
    assert len(out["items"].iloc[3].split("|")) == 3  # a birthday gets the top products


def test_same_row_same_items_in_any_batch(served: ServedItems, rows: pd.DataFrame) -> None:
    model = PolicyModel(RulesPolicy(), epsilon=0.0, items=served)
    whole = model.predict(None, rows)
    picked = rows.sample(40, random_state=1)
    alone = pd.concat([model.predict(None, rows.loc[[i]]) for i in picked.index])
    assert alone["items"].tolist() == whole.loc[picked.index, "items"].tolist()


def test_the_pickled_selector_holds_no_raw_customer_id(served: ServedItems, small_shop: Path) -> None:
    blob = pickle.dumps(PolicyModel(RulesPolicy(), items=served))
    ids = pd.read_parquet(small_shop / "customers.parquet")["customer_id"].astype(str)
    assert not [c for c in ids.head(200) if c.encode() in blob]
    # ... but their pseudonyms are there: the selector does know the customers.
    assert sum(p.encode() in blob for p in pseudonyms(ids.head(200), KEY)) > 20


def test_item_packages_are_what_loading_needs(small_shop: Path, as_of: pd.Timestamp) -> None:
    als = fit_served_items(small_shop, as_of, recommender="als", key=KEY)
    need = item_packages(als)
    assert {"implicit", "sklearn", "scipy"} <= need
    assert "pyspark" not in need and "plotly" not in need and "lifelines" not in need


def test_pseudonyms_depend_on_the_key() -> None:
    ids = pd.Series(["C1", "C2"])
    assert list(pseudonyms(ids, KEY)) != list(pseudonyms(ids, "f" * 16))
    with pytest.raises(ValueError, match="key: expected 16 characters"):
        pseudonyms(ids, "short")
    assert np.all(pseudonyms(pd.Series([None, ""]), KEY) == pseudonyms(pd.Series(["", ""]), KEY))
