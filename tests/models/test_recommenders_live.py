"""The live blend: the learned blend plus the customer's interactions up to the decision time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import check_no_attributes_set_in_init

from cadence.features.interactions import InteractionData, load_interactions
from cadence.features.purchases import duckdb_tables
from cadence.models.recommenders import (
    LIVE_NAMES,
    CooccurrenceRecommender,
    LiveBlendRecommender,
    PopularityRecommender,
)

AS_OF = pd.Timestamp("2025-04-01", tz="UTC")


def _shop() -> InteractionData:
    """200 customers, 12 products: each views 3 products over the quarter and buys a viewed one 2 days later
    with probability 0.6; popularity says nothing about which."""
    rng = np.random.default_rng(0)
    start = pd.Timestamp("2025-01-01", tz="UTC")
    ev, orders, items = [], [], []
    for c in range(200):
        for j, p in enumerate(rng.choice(12, 3, replace=False)):
            at = (start + pd.Timedelta(days=float(rng.uniform(0, 88)))).floor("s")
            ev.append({"event_id": f"e{c}-{j}", "customer_id": f"c{c}", "product_id": f"p{p}",
                       "event_type": "product_view", "session_id": f"s{c}-{j}", "ts": at})
            if rng.random() < 0.6:
                oid = f"o{c}-{j}"
                orders.append({"order_id": oid, "customer_id": f"c{c}", "revenue": 1.0,
                               "ts": at + pd.Timedelta(days=2)})
                items.append({"order_id": oid, "product_id": f"p{p}"})
    con, t = duckdb_tables({"events": pd.DataFrame(ev), "orders": pd.DataFrame(orders),
                            "order_items": pd.DataFrame(items)})
    return load_interactions(con, t, AS_OF, label_days=45, events_days=90)


DATA = _shop()


def _live(**kw: float) -> LiveBlendRecommender:
    return LiveBlendRecommender([("pop", PopularityRecommender()), ("co", CooccurrenceRecommender())],
                                random_state=0, **{"lookback_days": 45.0, "horizon_days": 7.0, **kw})


def test_scikit_learn_contract_and_fitted_state() -> None:
    est = _live()
    check_no_attributes_set_in_init(type(est).__name__, est)
    before = set(vars(est))
    twin = clone(est)
    assert twin.get_params()["lookback_days"] == 45 and twin.get_params()["co__source"] == "all"
    with pytest.raises(NotFittedError):
        twin.score_pairs_at(["c0"], ["p0"], AS_OF)
    assert twin.fit(DATA) is twin
    fitted = set(vars(twin)) - before
    assert all(a.endswith("_") for a in fitted), sorted(fitted)
    assert twin.feature_names_[-len(LIVE_NAMES):] == list(LIVE_NAMES)
    assert 0 < twin.n_train_positives_ < twin.n_train_pairs_
    assert not hasattr(est, "estimator_")


def test_a_view_since_the_fit_raises_the_products_probability_and_nothing_at_or_after_t_counts() -> None:
    rec = _live().fit(DATA)
    weights = dict(zip(rec.feature_names_, rec.estimator_[-1].coef_[0][-len(rec.feature_names_):], strict=False))
    assert weights["live_log_views"] > 0 or weights["live_view_recency"] > 0  # learned, not fixed
    at = AS_OF + pd.Timedelta(days=30)
    view = pd.DataFrame({"customer_id": ["c1"], "product_id": ["p5"], "kind": ["views"],
                         "ts": [at - pd.Timedelta(hours=1)]})
    products = [f"p{i}" for i in range(12)]
    before = rec.score_pairs_at(["c1"] * 12, products, at)
    after = rec.score_pairs_at(["c1"] * 12, products, at, recent=view)
    assert after[5] > before[5] and int(np.argmax(after)) == 5
    # The same view at or after the decision time, or other customers' views, change nothing.
    late = view.assign(ts=[at, at + pd.Timedelta(days=1)][0])
    np.testing.assert_array_equal(rec.score_pairs_at(["c1"] * 12, products, at, recent=late), before)
    other = view.assign(customer_id="c2")
    np.testing.assert_array_equal(rec.score_pairs_at(["c1"] * 12, products, at, recent=other), before)
    # Per-pair times: the view counts for the pair decided after it only.
    both = rec.score_pairs_at(["c1", "c1"], ["p5", "p5"], [at - pd.Timedelta(hours=2), at], recent=view)
    np.testing.assert_allclose(both, [before[5], after[5]])
    # The same times as a datetime64 index or series (the item selector's form), in UTC or another zone.
    times = pd.DatetimeIndex([at - pd.Timedelta(hours=2), at])
    for form in (times, pd.Series(times, index=[7, 3]), times.tz_convert("Asia/Tokyo")):
        np.testing.assert_array_equal(rec.score_pairs_at(["c1", "c1"], ["p5", "p5"], form, recent=view), both)
    with pytest.raises(ValueError, match="at: expected one time or 2"):
        rec.score_pairs_at(["c1", "c1"], ["p5", "p5"], times[:1], recent=view)
    # A product unknown at fit gets a probability; prepared events score as the frame does.
    fresh = pd.DataFrame({"customer_id": ["c1"], "product_id": ["new"], "kind": ["views"], "ts": [view["ts"][0]]})
    s = rec.score_pairs_at(["c1", "c1"], ["new", "other-new"], at, recent=fresh)
    assert np.isfinite(s).all() and s[0] > s[1]
    np.testing.assert_allclose(rec.score_pairs_at(["c1"], ["new"], at, recent=rec.prepare_recent(fresh)), s[:1])


def test_score_pairs_and_recommend_are_the_scores_as_of_the_fit() -> None:
    rec = _live().fit(DATA)
    out = rec.recommend(["c0", "c3", "nobody"], k=4)
    assert out["score"].between(0, 1).all()
    np.testing.assert_allclose(rec.score_pairs(out["customer_id"].tolist(), out["product_id"].tolist()),
                               out["score"].to_numpy())
    np.testing.assert_allclose(rec.score_pairs_at(out["customer_id"], out["product_id"], AS_OF), out["score"])
    pd.testing.assert_frame_equal(_live().fit(DATA).recommend(["c0", "c3", "nobody"], k=4), out)  # seeded


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match=r"events_days=\.\.\."):
        _live().fit(InteractionData(DATA.as_of, DATA.interactions, DATA.cooccurrence, DATA.bought_together,
                                    DATA.earlier, DATA.labels))
    with pytest.raises(ValueError, match="events_days >= label_days \\+ lookback_days"):
        _live(lookback_days=60).fit(DATA)
    rec = _live().fit(DATA)
    bad = pd.DataFrame({"customer_id": ["c1"], "product_id": ["p1"], "kind": ["wishlist"], "ts": [AS_OF]})
    with pytest.raises(ValueError, match="recent: column 'kind': unknown kind 'wishlist'"):
        rec.score_pairs_at(["c1"], ["p1"], AS_OF, recent=bad)
    with pytest.raises(ValueError, match="recent: missing column 'ts'"):
        rec.score_pairs_at(["c1"], ["p1"], AS_OF, recent=bad.drop(columns="ts"))
    with pytest.raises(ValueError, match="at: expected one time or 1"):
        rec.score_pairs_at(["c1"], ["p1"], [AS_OF, AS_OF])


def test_the_item_selector_scores_at_the_trigger_with_its_own_products() -> None:
    from cadence.policies.items import ItemSelector, trigger_interactions

    sel = ItemSelector(_live(), n_items=3).fit(DATA)
    at = AS_OF + pd.Timedelta(days=20)
    cands = pd.DataFrame({"customer_id": ["c1", "c1"], "stage": ["browse_abandon", "buy_again"],
                          "eligible_at": [at, at], "products": ["p5", "p1|p2|p3|p4|p5"]})
    items = sel.select(cands)
    assert items[0].split("|")[0] == "p5"  # the viewed product is pinned first
    # The due products ranked by the live score at the trigger, which knows c1 just viewed p5.
    due = [f"p{i}" for i in range(1, 6)]
    s = sel.recommender_.score_pairs_at(["c1"] * 5, due, at, recent=trigger_interactions(cands))
    assert items[1].split("|") == [due[i] for i in np.argsort(-s, kind="stable")[:3]]
    assert "p5" in items[1].split("|")


def test_pair_dot_products_equal_the_dense_product() -> None:
    # The co-occurrence component's pair scores (the live blend's default component): (a @ b)[r, c] per pair.
    import scipy.sparse as sp

    from cadence.models.recommenders import _row_dot

    rng = np.random.default_rng(0)
    a = sp.random(40, 30, density=0.2, random_state=1, format="csr")
    b = sp.random(30, 25, density=0.3, random_state=2, format="csr")
    rows, cols = rng.integers(0, 40, 500), rng.integers(0, 25, 500)
    dense = (a @ b).toarray()[rows, cols]
    np.testing.assert_allclose(_row_dot(a, b.T.tocsr(), rows, cols), dense)
    # Duplicate, unsorted entries of a (not canonical) are summed first.
    coo = a.tocoo()
    twice = sp.csr_matrix((np.r_[coo.data, coo.data][::-1], (np.r_[coo.row, coo.row][::-1],
                                                             np.r_[coo.col, coo.col][::-1])), shape=a.shape)
    twice.has_canonical_format = False
    np.testing.assert_allclose(_row_dot(twice, b.T.tocsr(), rows, cols), 2 * dense)
    assert _row_dot(a, b.T.tocsr(), rows[:0], cols[:0]).shape == (0,)


def test_live_features_from_one_index_equal_those_of_each_chunk() -> None:
    # _predict_at sorts the events once for all chunks of queries: each chunk's features must be its own call's.
    import scipy.sparse as sp

    from cadence.models.recommenders import _live_features, _LiveIndex, _unique_inverse

    rng = np.random.default_rng(3)
    n_c, n_p, n = 30, 15, 2000
    cust = np.sort(rng.integers(0, n_c, n))
    sec = 1_000_000 + rng.integers(0, 200 * 86_400, n)
    order = np.lexsort((sec, cust))
    cust, sec = cust[order], sec[order]
    prod, kind = rng.integers(0, n_p + 2, n), rng.integers(0, 3, n).astype(np.int8)
    co = sp.random(n_p, n_p, density=0.3, random_state=4, format="csr")
    bt = sp.random(n_p, n_p, density=0.3, random_state=5, format="csr")
    q = 3000
    q_cust, q_prod = rng.integers(0, n_c, q), rng.integers(0, n_p + 2, q)
    q_t = 1_000_000 + rng.integers(100 * 86_400, 210 * 86_400, q)
    args = {"lookback_s": 90 * 86_400, "recent": 3, "decay_s": 30.0 * 86_400}
    ix = _LiveIndex(cust, prod, kind, sec, n_c, int(q_t.min()), int(q_t.max()), int(q_prod.max()), args["lookback_s"])
    for sl in (slice(0, 1000), slice(1000, 1001), slice(1001, q)):
        own = _live_features(cust, prod, kind, sec, q_cust[sl], q_prod[sl], q_t[sl], n_c, co, bt, **args)
        shared = _live_features(ix, None, None, None, q_cust[sl], q_prod[sl], q_t[sl], n_c, co, bt, **args)
        np.testing.assert_array_equal(shared, own)
    with pytest.raises(ValueError, match="outside the prepared index"):
        _live_features(ix, None, None, None, q_cust[:1], q_prod[:1], q_t[:1] + 400 * 86_400, n_c, co, bt, **args)
    ids = np.asarray([f"c{i}" for i in rng.integers(0, 50, 500)], dtype=object)
    u, inv = _unique_inverse(ids)
    u0, inv0 = np.unique(ids, return_inverse=True)
    np.testing.assert_array_equal(u, u0)
    np.testing.assert_array_equal(inv, inv0)
