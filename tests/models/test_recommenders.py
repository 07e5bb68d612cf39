"""Recommenders: the scikit-learn contract, recommend's candidates/exclusions, reproducible seeds."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import check_no_attributes_set_in_init

from cadence.features.interactions import InteractionData, load_interactions
from cadence.features.purchases import duckdb_tables
from cadence.models.recommenders import (
    RECOMMENDATION_COLUMNS,
    BlendRecommender,
    CooccurrenceRecommender,
    ImplicitRecommender,
    LearnedBlendRecommender,
    PopularityRecommender,
    RecentlyViewedRecommender,
    Recommender,
)

AS_OF = pd.Timestamp("2025-03-01", tz="UTC")


def _data() -> InteractionData:
    """Four customers, five products: x is the bestseller, x and y go together, c only viewed w and v."""
    ts = pd.to_datetime(["2025-01-05"] * 6, utc=True)
    orders = pd.DataFrame({"order_id": [f"o{i}" for i in range(6)], "customer_id": ["a", "b", "b", "d", "d", "a"],
                           "revenue": [1.0] * 6, "ts": ts})
    items = pd.DataFrame({"order_id": ["o0", "o0", "o1", "o2", "o3", "o3", "o4", "o5"],
                          "product_id": ["x", "y", "x", "z", "x", "y", "z", "x"]})
    events = pd.DataFrame({"event_id": ["e1", "e2", "e3"], "customer_id": ["c", "c", "a"],
                           "event_type": ["product_view"] * 3, "product_id": ["w", "v", "z"],
                           "session_id": ["s1", "s2", "s3"],
                           "ts": pd.to_datetime(["2025-02-01", "2025-02-10", "2025-02-20"], utc=True)})
    con, t = duckdb_tables({"orders": orders, "order_items": items, "events": events})
    return load_interactions(con, t, AS_OF)


DATA = _data()
FAMILIES: list[Recommender] = [
    PopularityRecommender(), PopularityRecommender(signal="weight"), RecentlyViewedRecommender(),
    RecentlyViewedRecommender(max_age_days=30.0), CooccurrenceRecommender(), CooccurrenceRecommender(source="orders"),
    ImplicitRecommender("als", factors=4, random_state=0), ImplicitRecommender("bpr", factors=4, random_state=0),
    ImplicitRecommender("cosine"), ImplicitRecommender("bm25"),
    BlendRecommender([("pop", PopularityRecommender()), ("recent", RecentlyViewedRecommender())]),
]


def _name(est: Recommender) -> str:
    return f"{type(est).__name__}({', '.join(f'{k}={v}' for k, v in est.get_params(deep=False).items())})"


@pytest.mark.parametrize("est", FAMILIES, ids=_name)
def test_scikit_learn_contract(est: Recommender) -> None:
    check_no_attributes_set_in_init(type(est).__name__, est)
    before = set(vars(est))
    twin = clone(est)
    assert twin.get_params(deep=False).keys() == est.get_params(deep=False).keys()
    with pytest.raises(NotFittedError):
        twin.recommend(["a"], k=2)
    assert twin.fit(DATA) is twin
    fitted = set(vars(twin)) - before
    assert fitted and all(a.endswith("_") for a in fitted), sorted(fitted)
    assert twin.as_of_ == AS_OF
    # Fitting a clone leaves the original unfitted (clone copies parameters only).
    assert not hasattr(est, "product_ids_")


@pytest.mark.parametrize("est", FAMILIES, ids=_name)
def test_recommend_returns_a_tidy_ranked_table(est: Recommender) -> None:
    out = clone(est).fit(DATA).recommend(["a", "b", "c", "d", "stranger"], k=3)
    assert list(out.columns) == list(RECOMMENDATION_COLUMNS)
    assert out["rank"].dtype == np.int64 and out["score"].dtype == np.float64
    for _, g in out.groupby("customer_id"):
        assert g["rank"].tolist() == list(range(1, len(g) + 1))
        assert len(g) <= 3 and g["product_id"].is_unique
        assert (np.diff(g["score"].to_numpy()) <= 0).all()
    assert set(out["product_id"]) <= {"v", "w", "x", "y", "z"}


def test_popularity_ranks_by_buyers_for_everyone() -> None:
    out = PopularityRecommender().fit(DATA).recommend(["a", "stranger"], k=3)
    # x: 3 buyers (a, b, d); y and z: 2 each, z first because a also viewed it (3 customers touched z, 2 y).
    assert out.groupby("customer_id")["product_id"].apply(list).to_dict() == {
        "a": ["x", "z", "y"], "stranger": ["x", "z", "y"]}


def test_recently_viewed_is_the_customers_own_views_newest_first() -> None:
    rec = RecentlyViewedRecommender().fit(DATA)
    out = rec.recommend(["c", "b", "stranger"], k=5)
    assert out[["customer_id", "product_id"]].values.tolist() == [["c", "v"], ["c", "w"]]
    assert out["score"].round(6).tolist() == [-19.0, -28.0]  # minus days since the view
    recent = RecentlyViewedRecommender(max_age_days=20.0).fit(DATA).recommend(["c"], k=5)
    assert recent["product_id"].tolist() == ["v"]


def test_bought_together_recommends_the_complement() -> None:
    rec = CooccurrenceRecommender(source="orders", fallback=False).fit(DATA)
    # b bought x and z; x was bought with y (orders o0, o3): y, and nothing else co-occurs in an order.
    assert rec.recommend(["b"], k=5, exclude="seen")["product_id"].tolist() == ["y"]
    with_fallback = CooccurrenceRecommender(source="orders").fit(DATA).recommend(["b"], k=3, exclude="seen")
    # Then the popularity order among the products b has not touched (b bought x and z): v, w (ties by id).
    assert with_fallback["product_id"].tolist() == ["y", "v", "w"]


def test_candidates_and_exclusions() -> None:
    rec = PopularityRecommender().fit(DATA)
    assert rec.recommend(["a"], k=5, candidates=["y", "z", "nope"])["product_id"].tolist() == ["z", "y"]
    per_customer = pd.DataFrame({"customer_id": ["a", "b"], "product_id": ["z", "y"]})
    got = rec.recommend(["a", "b"], k=5, candidates=per_customer)
    assert got[["customer_id", "product_id"]].values.tolist() == [["a", "z"], ["b", "y"]]
    assert rec.recommend(["a"], k=5, exclude=["x"])["product_id"].tolist()[0] == "z"
    # a bought x and y and viewed z: "seen" leaves only products a never touched.
    assert set(rec.recommend(["a"], k=5, exclude="seen")["product_id"]) <= {"v", "w"}
    excl = pd.DataFrame({"customer_id": ["b"], "product_id": ["x"]})
    got = rec.recommend(["a", "b"], k=1, exclude=excl)
    assert got[["customer_id", "product_id"]].values.tolist() == [["a", "x"], ["b", "z"]]


def test_blend_ranks_within_the_candidate_set() -> None:
    blend = BlendRecommender([("pop", PopularityRecommender()), ("recent", RecentlyViewedRecommender())],
                             weights=[1.0, 2.0]).fit(DATA)
    # c viewed v and w (recent ranks 1 and 2, weight 2) which nobody bought: they outrank the bestseller.
    assert blend.recommend(["c"], k=3)["product_id"].tolist() == ["v", "w", "x"]
    assert blend.recommend(["c"], k=3, candidates=["x", "w"])["product_id"].tolist() == ["w", "x"]


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda r: r.recommend("a", k=2), TypeError, "customer_ids must be a sequence"),
    (lambda r: r.recommend(["a"], k=0), ValueError, "k must be a positive integer"),
    (lambda r: r.recommend(["a"], k=2, exclude="bought"), ValueError, "exclude: expected 'seen'"),
    (lambda r: r.recommend(["a"], k=2, candidates=pd.DataFrame({"product_id": ["x"]})), ValueError,
     "candidates: missing column 'customer_id'"),
    (lambda r: r.recommend(["a"], k=2, candidates="x"), TypeError, "candidates: expected product ids"),
])
def test_bad_recommend_arguments_are_named(call: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        call(PopularityRecommender().fit(DATA))


def test_bad_fit_input_and_parameters_are_named() -> None:
    with pytest.raises(TypeError, match="X must be an InteractionData"):
        PopularityRecommender().fit(pd.DataFrame())
    with pytest.raises(ValueError, match="signal"):
        PopularityRecommender(signal="views").fit(DATA)
    with pytest.raises(ValueError, match="names must be unique"):
        BlendRecommender([("p", PopularityRecommender()), ("p", PopularityRecommender())]).fit(DATA)
    with pytest.raises(ValueError, match="weights: expected 2 values"):
        BlendRecommender([("p", PopularityRecommender()), ("r", RecentlyViewedRecommender())], weights=[1.0]).fit(DATA)


def test_blend_nested_parameters() -> None:
    blend = BlendRecommender([("cf", ImplicitRecommender("als")), ("pop", PopularityRecommender())])
    params = blend.get_params()
    assert params["cf__factors"] == 32 and params["pop__signal"] == "purchases"
    blend.set_params(cf__factors=8, offset=10.0)
    assert blend.recommenders[0][1].factors == 8 and blend.offset == 10.0
    assert clone(blend).get_params()["cf__factors"] == 8
    with pytest.raises(ValueError, match="Invalid parameter 'nope__x'"):
        blend.set_params(nope__x=1)


@pytest.mark.parametrize("model", ["als", "bpr"])
def test_seeded_factor_models_are_reproducible(model: str) -> None:
    ids = ["a", "b", "c", "d"]
    one = ImplicitRecommender(model, factors=4, random_state=7).fit(DATA).recommend(ids, k=5)
    two = ImplicitRecommender(model, factors=4, random_state=7).fit(DATA).recommend(ids, k=5)
    pd.testing.assert_frame_equal(one, two)


class _Fixed(Recommender):
    """Scores from a fixed (customers x products) matrix with ties and -inf: the top-k selection alone."""

    def __init__(self, seed: int = 0):
        self.seed = seed

    def _fit(self, data: InteractionData) -> None:
        rng = np.random.default_rng(self.seed)
        s = rng.integers(0, 3, (len(self.customer_ids_), len(self.product_ids_))).astype(float)
        s[rng.random(s.shape) < 0.3] = -np.inf
        self.table_ = s

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        return self.table_[rows]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("k", [1, 2, 4, 5, 9])
def test_top_k_matches_a_full_stable_sort(seed: int, k: int) -> None:
    rec = _Fixed(seed).fit(DATA)
    got = rec.recommend(list(rec.customer_ids_), k=k)
    for i, c in enumerate(rec.customer_ids_):
        row = rec.table_[i]
        order = [j for j in np.argsort(-row, kind="stable") if np.isfinite(row[j])][:k]
        g = got[got.customer_id == c]
        assert g["product_id"].tolist() == list(rec.product_ids_[order])
        assert g["score"].tolist() == list(row[order])


# ---------------------------------------------------------------- pair scores and the learned blend
@pytest.mark.parametrize("est", FAMILIES, ids=_name)
def test_pair_scores_are_the_scores_recommend_ranks_by(est: Recommender) -> None:
    rec = clone(est).fit(DATA)
    ids = ["a", "b", "c", "d", "stranger"]
    full = rec.recommend(ids, k=len(rec.product_ids_))
    got = rec.score_pairs(full["customer_id"].tolist(), full["product_id"].tolist())
    np.testing.assert_allclose(got, full["score"].to_numpy(), rtol=1e-5, atol=1e-6)  # float32 factors
    # Pairs recommend leaves out score -inf; an unknown product too.
    listed = set(zip(full["customer_id"], full["product_id"], strict=True))
    rest = [(c, p) for c in ids for p in [*rec.product_ids_, "unknown"] if (c, p) not in listed]
    if rest:
        assert np.isneginf(rec.score_pairs([c for c, _ in rest], [p for _, p in rest])).all()


def _label_data() -> InteractionData:
    """Sixty customers over two months; the fit learns from what they bought in the last 30 days."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(60):
        for j in range(6):
            day = int(rng.integers(1, 59))
            # Customers of the first half buy x-y-z, the second half u-v-w: repeat buyers of their own group.
            group = "xyz" if i < 30 else "uvw"
            rows.append((f"o{i}-{j}", f"c{i}", group[int(rng.integers(0, 3))],
                         pd.Timestamp("2025-01-01", tz="UTC") + pd.Timedelta(days=day)))
    orders = pd.DataFrame({"order_id": [r[0] for r in rows], "customer_id": [r[1] for r in rows],
                           "revenue": 1.0, "ts": [r[3] for r in rows]})
    items = pd.DataFrame({"order_id": [r[0] for r in rows], "product_id": [r[2] for r in rows]})
    con, t = duckdb_tables({"orders": orders, "order_items": items})
    return load_interactions(con, t, AS_OF, label_days=30)


LABELLED = _label_data()


def _learned(**kw: Any) -> LearnedBlendRecommender:
    return LearnedBlendRecommender([("pop", PopularityRecommender()), ("co", CooccurrenceRecommender()),
                                    ("recent", RecentlyViewedRecommender())], random_state=0, **kw)


def test_learned_blend_scikit_learn_contract() -> None:
    est = _learned()
    check_no_attributes_set_in_init(type(est).__name__, est)
    before = set(vars(est))
    twin = clone(est)
    assert twin.get_params()["pop__signal"] == "purchases" and twin.get_params(deep=False)["depth"] == 50
    with pytest.raises(NotFittedError):
        twin.recommend(["c0"], k=2)
    assert twin.fit(LABELLED) is twin
    fitted = set(vars(twin)) - before
    assert all(a.endswith("_") for a in fitted), sorted(fitted)
    assert not hasattr(est, "estimator_")
    assert twin.feature_names_[:3] == ["score_pop", "score_co", "score_recent"]
    assert 0 < twin.n_train_positives_ < twin.n_train_pairs_
    twin.set_params(co__source="orders", depth=5)
    assert twin.recommenders[1][1].source == "orders" and twin.depth == 5


def test_learned_blend_ranks_by_purchase_probability() -> None:
    rec = _learned().fit(LABELLED)
    out = rec.recommend([f"c{i}" for i in range(60)], k=3)
    assert out["score"].between(0, 1).all()
    # Each group's customers get their own group's products first (they rebuy within the group).
    first = out[out["rank"] == 1].set_index("customer_id")["product_id"]
    assert first[[f"c{i}" for i in range(30)]].isin(list("xyz")).mean() >= 0.9
    assert first[[f"c{i}" for i in range(30, 60)]].isin(list("uvw")).mean() >= 0.9
    np.testing.assert_allclose(rec.score_pairs(out["customer_id"].tolist(), out["product_id"].tolist()),
                               out["score"].to_numpy())
    again = _learned().fit(LABELLED).recommend([f"c{i}" for i in range(60)], k=3)
    pd.testing.assert_frame_equal(out, again)  # seeded


def test_learned_blend_needs_a_time_split_with_both_outcomes() -> None:
    with pytest.raises(ValueError, match=r"load_interactions\(\.\.\., label_days=\.\.\.\)"):
        _learned().fit(DATA)
    nobody = InteractionData(LABELLED.as_of, LABELLED.interactions, LABELLED.cooccurrence,
                             LABELLED.bought_together, LABELLED.earlier, LABELLED.labels.iloc[:0])
    with pytest.raises(ValueError, match="labels: 0 of .* candidate pairs were bought"):
        _learned().fit(nobody)
    with pytest.raises(ValueError, match="earlier and labels come together"):
        InteractionData(LABELLED.as_of, LABELLED.interactions, LABELLED.cooccurrence, LABELLED.bought_together,
                        LABELLED.earlier, None)


@pytest.mark.parametrize("est", [ImplicitRecommender("als", factors=4, random_state=0),
                                 ImplicitRecommender("bpr", factors=4, random_state=0), RecentlyViewedRecommender()],
                         ids=_name)
@pytest.mark.parametrize("exclude", [None, "seen"])
def test_fast_paths_match_the_dense_top_k(est: Recommender, exclude: str | None) -> None:
    rec = clone(est).fit(DATA)
    ids = ["a", "b", "c", "d", "stranger", "a"]
    fast = rec.recommend(ids, k=3, exclude=exclude)
    dense = Recommender.recommend(rec, ids, k=3, exclude=exclude)
    pd.testing.assert_frame_equal(fast[["customer_id", "product_id", "rank"]], dense[["customer_id", "product_id", "rank"]])
    np.testing.assert_allclose(fast["score"], dense["score"], rtol=1e-5, atol=1e-6)


def test_warm_als_refit_starts_from_the_earlier_factors() -> None:
    """warm_iterations: the blend's second ALS fit starts from the earlier split's factors (fewer iterations)."""
    als = ImplicitRecommender("als", factors=4, iterations=10, random_state=0, warm_iterations=2)
    rec = LearnedBlendRecommender([("pop", PopularityRecommender()), ("als", als)], random_state=0).fit(LABELLED)
    final = rec.recommenders_[1][1]
    assert final.model_.iterations == 2 and list(final.customer_ids_) == sorted(final.customer_ids_)
    early = ImplicitRecommender("als", factors=4, iterations=10, random_state=0).fit(LABELLED.earlier)
    # Two more iterations from the earlier factors stay close to them; a fresh 2-iteration fit would not start there.
    both = np.isin(final.product_ids_, early.product_ids_)
    moved = np.abs(final.model_.item_factors[both] - early.model_.item_factors).max()
    assert np.isfinite(final.model_.user_factors).all() and len(final.customer_ids_) >= len(early.customer_ids_)
    assert moved < np.abs(early.model_.item_factors).max()
    # It ranks each group's customers within their own group, as a cold fit does.
    first = final.recommend([f"c{i}" for i in range(60)], k=1).set_index("customer_id")["product_id"]
    cold = ImplicitRecommender("als", factors=4, iterations=10, random_state=0).fit(LABELLED)
    ref = cold.recommend([f"c{i}" for i in range(60)], k=1).set_index("customer_id")["product_id"]
    own = np.array([p in ("xyz" if i < 30 else "uvw") for i, p in enumerate(first)])
    cold_own = np.array([p in ("xyz" if i < 30 else "uvw") for i, p in enumerate(ref)])
    assert cold_own.mean() >= 0.9 and own.mean() >= 0.9
    with pytest.raises(ValueError, match="warm_iterations"):
        ImplicitRecommender(warm_iterations=0).fit(LABELLED)


def _random_data(seed: int, n_products: int = 40, n_pairs: int = 150) -> InteractionData:
    """60 customers, 40 products, random weights and a sparse co-occurrence with tied scores."""
    rng = np.random.default_rng(seed)
    n = 400
    c = rng.integers(0, 60, n)
    p = rng.integers(0, n_products, n)
    inter = pd.DataFrame({"customer_id": [f"c{i:02d}" for i in c], "product_id": [f"p{i:02d}" for i in p]})
    inter = inter.drop_duplicates().reset_index(drop=True)
    m = len(inter)
    purchases = rng.integers(0, 2, m)
    inter = inter.assign(views=rng.integers(0, 3, m), carts=0, purchases=purchases, searches=0,
                         weight=rng.integers(1, 4, m).astype(float) + purchases,
                         last_at=AS_OF - pd.Timedelta(days=1), last_viewed_at=AS_OF - pd.Timedelta(days=1))
    a, b = rng.integers(0, n_products, n_pairs), rng.integers(0, n_products, n_pairs)
    co = pd.DataFrame({"product_id": [f"p{i:02d}" for i in a], "other_product_id": [f"p{i:02d}" for i in b],
                       "score": rng.choice([0.1, 0.2, 0.5], n_pairs)})
    co = co[co["product_id"] != co["other_product_id"]].drop_duplicates(["product_id", "other_product_id"])
    return InteractionData(AS_OF, inter, co, co)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("k", [1, 5, 40])
@pytest.mark.parametrize("source", ["all", "orders"])
@pytest.mark.parametrize("fallback", [True, False])
def test_cooccurrence_sparse_top_k_is_the_dense_one(seed: int, k: int, source: str, fallback: bool) -> None:
    # The sparse path (the co-occurring products, then at most 2k popular ones) must give the dense ranking exactly.
    rec = CooccurrenceRecommender(source=source, fallback=fallback).fit(_random_data(seed))
    ids = [*rec.customer_ids_[::2], "stranger", rec.customer_ids_[0]]
    fast = rec.recommend(ids, k=k)
    dense = Recommender.recommend(rec, ids, k=k)
    pd.testing.assert_frame_equal(fast, dense)


@pytest.mark.parametrize("k", [1, 3, 20])
def test_cooccurrence_sparse_top_k_with_rows_longer_than_its_window(k: int) -> None:
    # Customers with hundreds of co-occurring products: only those above a bound from the row's first entries
    # are sorted, which must not change the ranking.
    rec = CooccurrenceRecommender().fit(_random_data(2, n_products=400, n_pairs=20_000))
    assert np.diff((rec.seeds_ @ rec.similarity_).tocsr().indptr).max() > 100
    fast = rec.recommend(list(rec.customer_ids_), k=k)
    pd.testing.assert_frame_equal(fast, Recommender.recommend(rec, list(rec.customer_ids_), k=k))


def test_pair_products_per_row_are_the_per_pair_ones_bit_for_bit() -> None:
    import scipy.sparse as sp

    from cadence.models.recommenders import _row_dot, _rows_dot

    rng = np.random.default_rng(0)
    a = sp.random(300, 50, density=0.1, random_state=1, format="csr")
    b = sp.random(50, 60, density=0.2, random_state=2, format="csr")
    rows, cols = rng.integers(0, 300, 5000), rng.integers(0, 60, 5000)
    np.testing.assert_array_equal(_rows_dot(a, b, rows, cols), _row_dot(a, b.T.tocsr(), rows, cols))
    np.testing.assert_allclose(_rows_dot(a, b, rows, cols), (a @ b).toarray()[rows, cols])
    assert _rows_dot(a, b, rows[:0], cols[:0]).shape == (0,)
