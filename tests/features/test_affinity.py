"""Item–item co-occurrence (hand-computed, cutoff, engines) and the search matcher's contract."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import InvalidParameterError

from cadence.features.affinity import SearchMatcher, baskets, cooccurrence
from cadence.features.engine import execute, register
from cadence.workflows.features import load_tables

AS_OF = pd.Timestamp("2025-03-01T00:00Z")


def utc(*values: str) -> pd.Series:
    return pd.Series(pd.to_datetime(list(values), utc=True, format="ISO8601"))


def shop() -> dict[str, pd.DataFrame]:
    """Sessions S1 {x, y}, S2 {x, y, z}, an auto-session {x, z}; order o1 {x, y}; later rows leak-bait."""
    events = pd.DataFrame({
        "event_id": [f"e{i}" for i in range(10)],
        "customer_id": ["a", "a", "b", "b", "b", "b", "c", "c", "c", "c"],
        "ts": utc("2025-02-01T10:00", "2025-02-01T10:01",
                  "2025-02-02T10:00", "2025-02-02T10:01", "2025-02-02T10:02", "2025-02-02T10:03",
                  "2025-02-03T10:00", "2025-02-03T10:10",
                  "2025-03-01T00:00", "2025-03-01T00:01"),
        "event_type": ["product_view", "add_to_cart", "product_view", "product_view", "search", "add_to_cart",
                       "product_view", "product_view", "product_view", "product_view"],
        "product_id": ["x", "y", "x", "y", None, "z", "x", "z", "y", "z"],
        "session_id": pd.Series(["S1", "S1", "S2", "S2", "S2", "S2", None, None, None, None], dtype=object),
    })
    orders = pd.DataFrame({"order_id": ["o1", "o2"], "customer_id": ["a", "a"],
                           "ts": utc("2025-02-01T10:05", "2025-03-01"), "revenue": [1.0, 1.0]})
    items = pd.DataFrame({"order_id": ["o1", "o1", "o2", "o2"], "product_id": ["x", "y", "y", "z"]})
    return {"events": events, "orders": orders, "order_items": items}


def run(con: Any, frames: dict[str, pd.DataFrame], **kw: Any) -> pd.DataFrame:
    return execute(con, cooccurrence(register(con, frames), AS_OF, **kw), sort_by=["product_id", "other_product_id"])


def as_dict(df: pd.DataFrame) -> dict[tuple[str, str], float]:
    return {(p, o): s for p, o, s in df[["product_id", "other_product_id", "score"]].itertuples(index=False)}


def test_cosine_scores_by_hand(duck: Any) -> None:
    # Baskets before as_of: S1 {x,y}, S2 {x,y,z}, c's auto-session {x,z}, o1 {x,y}.
    # n(x)=4, n(y)=3, n(z)=2; n(x,y)=3, n(x,z)=2, n(y,z)=1.
    got = as_dict(run(duck, shop()))
    expected = {("x", "y"): 3 / math.sqrt(12), ("x", "z"): 2 / math.sqrt(8), ("y", "z"): 1 / math.sqrt(6)}
    expected |= {(b, a): s for (a, b), s in expected.items()}
    assert got == pytest.approx(expected, abs=1e-6)


def test_top_k_keeps_best_first(duck: Any) -> None:
    df = run(duck, shop(), top_k=1)
    assert df[["product_id", "other_product_id"]].values.tolist() == [["x", "y"], ["y", "x"], ["z", "x"]]


def test_min_count_drops_rare_pairs(duck: Any) -> None:
    got = as_dict(run(duck, shop(), min_count=2))
    assert set(got) == {("x", "y"), ("y", "x"), ("x", "z"), ("z", "x")}


def test_rows_at_as_of_are_not_read(duck: Any) -> None:
    frames = shop()
    ev, items = frames["events"], frames["order_items"]
    # Only the rows at/after as_of: e8/e9 and order o2 would make {y, z} baskets.
    frames["events"] = ev[ev["event_id"].isin(["e8", "e9"])]
    frames["order_items"] = items[items["order_id"] == "o2"]
    assert run(duck, frames).empty


def test_sessionisation_splits_loose_events(duck: Any) -> None:
    frames = shop()
    # 40 minutes between c's two views: two baskets, so (x, z) only co-occurs in S2.
    frames["events"].loc[7, "ts"] = pd.Timestamp("2025-02-03T10:40Z")
    got = as_dict(run(duck, frames))
    assert got[("x", "z")] == pytest.approx(1 / math.sqrt(4 * 2), abs=1e-6)


def test_baskets_from_orders_only(duck: Any) -> None:
    frames = shop()
    del frames["events"]
    b = execute(duck, baskets(register(duck, frames), AS_OF), sort_by=["basket", "product_id"])
    assert b.values.tolist() == [["o:o1", "x"], ["o:o1", "y"]]


@pytest.mark.parametrize(("kw", "message"), [
    ({"top_k": 0}, "top_k must be a positive integer"),
    ({"min_count": 0}, "min_count must be a positive integer"),
])
def test_bad_arguments(duck: Any, kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cooccurrence(register(duck, shop()), AS_OF, **kw)


def test_needs_events_or_orders(duck: Any) -> None:
    with pytest.raises(ValueError, match="needs an events table, or orders and order_items"):
        cooccurrence(register(duck, {"orders": shop()["orders"]}), AS_OF)


def test_missing_column_is_named(duck: Any) -> None:
    frames = shop()
    frames["events"] = frames["events"].drop(columns=["event_type"])
    with pytest.raises(ValueError, match="^events: missing column 'event_type'"):
        cooccurrence(register(duck, frames), AS_OF)


def test_duckdb_and_spark_agree_on_synthetic_shop(small_shop: Any, duck: Any, spark_con: Any) -> None:
    out = {}
    for name, con in (("duckdb", duck), ("spark", spark_con)):
        t = load_tables(con, small_shop, ["events", "orders", "order_items"])
        out[name] = execute(con, cooccurrence(t, "2025-04-15", top_k=5), sort_by=["product_id", "other_product_id"])
    assert len(out["duckdb"]) > 100
    pd.testing.assert_frame_equal(out["duckdb"], out["spark"], check_dtype=False, rtol=1e-6)


# ---------------------------------------------------------------- search matching
PRODUCTS = pd.DataFrame({
    "product_id": ["p1", "p2", "p3", "p4"],
    "title": ["burr grinder", "espresso machine", "green tea", "garden hose"],
    "category": ["coffee", "coffee", "tea", "garden"],
})


def test_match_tfidf() -> None:
    m = SearchMatcher().fit(PRODUCTS)
    assert m.match(["grinder", "espreso machine", "teas", "ps5", ""], k=5) == [["p1"], ["p2"], ["p3"], [], []]


def test_match_orders_best_first_and_truncates() -> None:
    m = SearchMatcher(threshold=0.0).fit(PRODUCTS)
    res = m.match(["coffee grinder"], k=2)[0]
    assert res[0] == "p1" and res[1] == "p2" and len(res) == 2


def test_threshold_hides_weak_matches() -> None:
    assert SearchMatcher(threshold=0.99).fit(PRODUCTS).match(["grinder"]) == [[]]


def bag(texts: list[str]) -> np.ndarray:
    vocab = ["coffee", "tea", "garden", "grinder"]
    return np.array([[t.count(w) for w in vocab] for t in texts], dtype=float)


def test_match_with_embedding_function() -> None:
    m = SearchMatcher(embed=bag, threshold=0.5).fit(PRODUCTS)
    assert m.vectorizer_ is None
    # p2's text is only "coffee" (cosine 1); p1's also says "grinder" (cosine 0.71).
    assert m.match(["coffee", "garden", "sofa"]) == [["p2", "p1"], ["p4"], []]
    assert m.scores(["coffee"])[0] == pytest.approx([math.sqrt(0.5), 1.0, 0.0, 0.0])


def test_synthetic_titles_find_themselves(small_shop: Any) -> None:
    products = pd.read_parquet(small_shop / "products.parquet")
    m = SearchMatcher().fit(products)
    titles = products["title"].drop_duplicates().head(50).tolist()
    by_id = products.set_index("product_id")["title"]
    assert [by_id[m.match([t], k=1)[0][0]] for t in titles] == titles


def test_estimator_contract() -> None:
    m = SearchMatcher(threshold=0.3, ngram_range=(2, 3))
    assert m.get_params()["threshold"] == 0.3
    assert not [k for k in vars(m) if k.endswith("_")]
    fitted = m.fit(PRODUCTS)
    assert fitted is m
    c = clone(m)
    assert c.get_params() == m.get_params() and not hasattr(c, "vectors_")
    with pytest.raises(NotFittedError):
        c.match(["tea"])


@pytest.mark.parametrize(("params", "X", "error", "message"), [
    ({"threshold": 2.0}, PRODUCTS, InvalidParameterError, "threshold"),
    ({"analyzer": "bpe"}, PRODUCTS, InvalidParameterError, "analyzer"),
    ({}, PRODUCTS.drop(columns=["category"]), ValueError, "products: missing column 'category'"),
    ({}, PRODUCTS.iloc[:0], ValueError, "products: no rows to index"),
    ({}, PRODUCTS.to_numpy(), TypeError, "X must be a pandas DataFrame"),
    ({"embed": lambda texts: np.ones(len(texts))}, PRODUCTS, ValueError, r"embed must return an array of shape"),
])
def test_bad_fit_input(params: dict[str, Any], X: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        SearchMatcher(**params).fit(X)


@pytest.mark.parametrize(("queries", "k", "error", "message"), [
    ("tea", 5, TypeError, "queries must be a sequence of strings"),
    (["tea"], 0, ValueError, "k must be a positive integer"),
])
def test_bad_match_input(queries: Any, k: int, error: type[Exception], message: str) -> None:
    m = SearchMatcher().fit(PRODUCTS)
    with pytest.raises(error, match=message):
        m.match(queries, k=k)
