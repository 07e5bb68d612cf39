"""Product recommenders fitted point in time on a shop's interactions.

Every recommender follows the scikit-learn contract (``__init__`` stores its
arguments, ``fit(X)`` returns ``self``, fitted state ends in ``_``,
``clone``/``get_params`` work) and is fitted on an
:class:`~cadence.features.interactions.InteractionData` (views, carts,
purchases and search-led views strictly before its ``as_of``, with the item
co-occurrence of :mod:`cadence.features.affinity`). ``recommend(customer_ids,
k, candidates=None, exclude=None)`` returns a tidy table (``customer_id``,
``product_id``, ``rank`` from 1, ``score``).

* :class:`PopularityRecommender`: the products most customers interacted
  with (bought, by default); the same list for everyone.
* :class:`RecentlyViewedRecommender`: the customer's own most recently
  viewed products, the seeds' straw man and the baseline.
* :class:`CooccurrenceRecommender`: products that co-occur in sessions and
  orders with the customer's products (``source="all"``) or are bought with
  their purchases (``source="orders"``, "bought together").
* :class:`ImplicitRecommender`: collaborative filtering from implicit
  feedback with the `implicit` library (ALS, BPR, item-item cosine or BM25).
* :class:`BlendRecommender`: a weighted reciprocal-rank fusion of other
  recommenders within the candidate set.
* :class:`LearnedBlendRecommender`: ranks by a classifier's predicted
  purchase probability on the other recommenders' scores, fitted on a time
  split inside the history.
* :class:`LiveBlendRecommender`: the learned blend plus the customer's
  interactions up to the decision time (:meth:`LiveBlendRecommender.score_pairs_at`),
  learned from decisions sampled inside the history.

:meth:`Recommender.score_pairs` scores arbitrary (customer, product) pairs,
for stages whose candidates differ per recipient
(:class:`cadence.policies.items.ItemSelector`).

What is written by hand, and why
--------------------------------
The models are `implicit`'s (its ALS, BPR and item-kNN fitters); this module
only builds its (customer x product) confidence matrix and scores with the
fitted factors/similarities. Scoring is a matrix product done here rather than
with ``model.recommend`` because the lifecycle stages need a *per-customer*
candidate set (the products that dropped in price, came back or arrived for
this recipient) and a per-customer exclusion list, whereas
``recommend(items=...)`` takes one candidate list for the whole batch; the
shared masking and top-k (:class:`Recommender`) then treats every family the
same. Popularity, recently viewed and co-occurrence are a few lines of
counting that `implicit` does not offer; the co-occurrence itself comes from
:func:`cadence.features.affinity.cooccurrence`. The blend's reciprocal-rank
fusion (Cormack, Clarke & Buettcher 2009) is a formula of one line.

Examples
--------
>>> import pandas as pd
>>> from cadence.features.interactions import load_interactions
>>> from cadence.features.purchases import duckdb_tables
>>> con, t = duckdb_tables({
...     "orders": pd.DataFrame({"order_id": ["o1", "o2", "o3"], "customer_id": ["a", "b", "b"],
...                             "revenue": [1.0] * 3, "ts": pd.to_datetime(["2025-01-02"] * 3, utc=True)}),
...     "order_items": pd.DataFrame({"order_id": ["o1", "o1", "o2", "o3"], "product_id": ["x", "y", "x", "z"]})})
>>> data = load_interactions(con, t, "2025-02-01")
>>> PopularityRecommender().fit(data).recommend(["a"], k=2)[["product_id", "rank"]].values.tolist()
[['x', 1], ['y', 2]]
>>> CooccurrenceRecommender().fit(data).recommend(["b"], k=1, exclude="seen")["product_id"].tolist()
['y']
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, _fit_context, clone
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from cadence.contract.clock import epoch_seconds, utc
from cadence.features.interactions import InteractionData

#: Columns of :meth:`Recommender.recommend`, in order.
RECOMMENDATION_COLUMNS: tuple[str, ...] = ("customer_id", "product_id", "rank", "score")
#: Customers scored at once (bounds the dense (customers x products) score block).
BATCH_CELLS = 4_000_000
Candidates = Sequence[str] | pd.DataFrame | None


def _positions(index: np.ndarray, values: pd.Series | np.ndarray) -> np.ndarray:
    """Position of each value in the sorted id array ``index`` (-1 when absent); a hash look-up, not a search.

    A categorical column is looked up once per category (then by its codes):
    at tens of millions of rows that avoids materialising a string per row.
    """
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.CategoricalDtype):
        cats = pd.Index(index).get_indexer(pd.Index(values.cat.categories.astype(str).to_numpy(dtype=object)))
        codes = values.cat.codes.to_numpy()
        return np.where(codes >= 0, cats[codes], -1)
    return pd.Index(index).get_indexer(pd.Index(_str_objects(values)))


def _str_objects(values: pd.Series | np.ndarray | Sequence[Any]) -> np.ndarray:
    """``values`` as an object array of ``str``; an array that holds only strings already is returned as is.

    (Converting tens of millions of ids that are strings already makes a new string of each.)
    """
    raw = values.to_numpy(dtype=object) if isinstance(values, pd.Series) else \
        values if isinstance(values, np.ndarray) and values.dtype == object else None
    if raw is not None and raw.ndim == 1 and pd.api.types.infer_dtype(raw, skipna=False) == "string":
        return raw
    if isinstance(values, pd.Series):
        return values.astype(str).to_numpy(dtype=object)
    return np.asarray(values).astype(str).astype(object)


def _unique_inverse(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)`` of an object array by hashing: only the distinct ids are sorted.

    (np.unique sorts every value with Python comparisons: minutes at tens of millions of string ids.)
    """
    codes, uniques = pd.factorize(values, sort=False)
    uniques = np.asarray(uniques, dtype=object)
    order = np.argsort(uniques, kind="stable")
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    return uniques[order], rank[codes]


def _sorted_unique(values: pd.Series) -> np.ndarray:
    if isinstance(values.dtype, pd.CategoricalDtype):
        used = np.unique(values.cat.codes.to_numpy())
        used = used[used >= 0]
        return np.sort(np.asarray(values.cat.categories.astype(str).to_numpy(dtype=object)[used], dtype=object))
    # Hash the distinct ids first: sorting only those is far cheaper than np.unique's sort of every row.
    return np.sort(np.asarray(pd.unique(values.astype(str).to_numpy(dtype=object)), dtype=object))


def _pairs(value: Any, name: str) -> pd.DataFrame | np.ndarray | None:
    """``None``, an array of product ids, or a (customer_id, product_id) frame."""
    if value is None:
        return None
    if isinstance(value, pd.DataFrame):
        missing = [c for c in ("customer_id", "product_id") if c not in value.columns]
        if missing:
            raise ValueError(f"{name}: missing column {', '.join(map(repr, missing))}")
        return value[["customer_id", "product_id"]].astype(str)
    if isinstance(value, str):
        raise TypeError(f"{name}: expected product ids or a (customer_id, product_id) frame, got the string {value!r}")
    return np.asarray([str(v) for v in value], dtype=object)


def _top_k(s: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The ``k`` best finite scores of each row: (row, column, score, rank from 1), by row then rank.

    Ties go to the smaller column (products are sorted, so the smaller id).
    A partition finds each row's k-th score in linear time; only the scores
    at or above it are sorted, so the cost does not grow with a full sort of
    every product.
    """
    kth = -np.partition(-s, k - 1, axis=1)[:, k - 1] if k < s.shape[1] else np.full(len(s), -np.inf)
    rr, cc = np.nonzero(np.isfinite(s) & (s >= kth[:, None]))  # row-major: columns ascending within a row
    sc = s[rr, cc]
    order = np.lexsort((-sc, rr))  # stable: equal scores keep the column order
    rr, cc, sc = rr[order], cc[order], sc[order]
    start = np.searchsorted(rr, rr, side="left")
    rank = np.arange(len(rr)) - start + 1
    keep = rank <= k
    return rr[keep], cc[keep], sc[keep], rank[keep]


PAIR_CHUNK = 500_000


def _lookup(m: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``m[rows[i], cols[i]]`` for every i (0 where the matrix holds nothing)."""
    if not len(rows):
        return np.zeros(0)
    return np.asarray(m[rows, cols], dtype=np.float64).ravel()


def _row_dot(a: sp.csr_matrix, b_t: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``(a @ b)[rows[i], cols[i]]`` from ``a`` and ``b``'s transpose, both CSR, without forming ``a @ b``.

    Each pair sums over the entries of its row of ``a`` (a customer's few products), looking ``b`` up at each:
    slicing ``b_t``'s rows instead costs a popular product's every neighbour per pair (hundreds, GBs at 500,000
    pairs). The same terms added in the same (column) order as the sparse product's.
    """
    if not a.has_canonical_format:
        a = a.copy()
        a.sum_duplicates()
    out = np.zeros(len(rows))
    for start in range(0, len(rows), PAIR_CHUNK):
        r, c = rows[start:start + PAIR_CHUNK], cols[start:start + PAIR_CHUNK]
        owner, idx = expand_ranges(a.indptr[r], a.indptr[r + 1])
        v = a.data[idx] * _lookup(b_t, c[owner], a.indices[idx])
        out[start:start + len(r)] = np.bincount(owner, weights=v, minlength=len(r))
    return out


#: Distinct customers whose row of a sparse product is formed at once in :func:`_rows_dot` (bounds its memory).
ROW_CHUNK = 20_000


def _rows_dot(a: sp.csr_matrix, b: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``(a @ b)[rows[i], cols[i]]`` from each distinct row's product, for CSR float64 ``a`` and ``b``.

    :func:`_row_dot` looks ``b`` up once per pair and entry of the pair's row of ``a``; a customer scored for
    dozens of products (a blend's candidates, a stage's pool) repeats that for each. Here each distinct row of
    ``a @ b`` is formed once (a few hundred entries: the customer's products' neighbours) and every pair is one
    sorted search in it. scipy's sparse product adds the same terms in the same (column) order, so the values
    are :func:`_row_dot`'s bit for bit.
    """
    out = np.zeros(len(rows))
    if not len(rows):
        return out
    if not a.has_canonical_format:
        a = a.copy()
        a.sum_duplicates()
    n_cols = np.int64(b.shape[1])
    uniq, inv = np.unique(rows, return_inverse=True)
    order = np.argsort(inv, kind="stable")
    bounds = np.searchsorted(inv[order], np.arange(0, len(uniq) + ROW_CHUNK, ROW_CHUNK))
    for n, start in enumerate(range(0, len(uniq), ROW_CHUNK)):
        sub = (a[uniq[start:start + ROW_CHUNK]] @ b).tocsr()
        sub.sort_indices()
        keys = np.repeat(np.arange(sub.shape[0], dtype=np.int64), np.diff(sub.indptr)) * n_cols + sub.indices
        sel = order[bounds[n]:bounds[n + 1]]
        q = (inv[sel] - start).astype(np.int64) * n_cols + cols[sel]
        at = np.minimum(np.searchsorted(keys, q), max(len(keys) - 1, 0))
        hit = keys[at] == q if len(keys) else np.zeros(len(q), bool)
        out[sel[hit]] = sub.data[at[hit]]
    return out


def _tidy(ids: np.ndarray, rr: np.ndarray, products: np.ndarray, cc: np.ndarray, sc: np.ndarray,
          rank: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": ids[rr], "product_id": products[cc], "rank": rank.astype(np.int64),
                         "score": sc.astype(np.float64)}, columns=list(RECOMMENDATION_COLUMNS))


def _check_recommend_args(customer_ids: Any, k: Any) -> np.ndarray:
    if isinstance(customer_ids, str):
        raise TypeError("customer_ids must be a sequence of ids, not one string")
    if not isinstance(k, Integral) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return np.asarray([str(c) for c in customer_ids], dtype=object)


class Recommender(BaseEstimator):
    """Base class: subclasses write ``_fit(data)`` and ``_scores(rows)``; this class does the rest.

    ``_scores(rows)`` returns a dense ``(len(rows), n_products)`` float array
    for customer rows (``-1``: a customer without interactions before
    ``as_of``); ``-inf`` marks a product the recommender has nothing to say
    about, which is never recommended. The base class indexes customers and
    products, applies candidates and exclusions, takes the top ``k`` (ties:
    the product id) and returns the tidy table.
    """

    #: Subclasses list their parameters' constraints (checked at fit, as in scikit-learn).
    _parameter_constraints: dict[str, list[Any]] = {}

    def _fit(self, data: InteractionData) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _scores(self, rows: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _score_batch(self, ids: np.ndarray, rows: np.ndarray, candidates: Candidates,
                     exclude: Candidates | str) -> np.ndarray:
        # The blend overrides this: it needs the ids and the call's candidates, not only rows.
        return self._scores(rows)

    def _index(self, data: InteractionData) -> None:
        if not isinstance(data, InteractionData):
            raise TypeError(f"X must be an InteractionData (load_interactions), got {type(data).__name__}")
        inter = data.interactions
        if len(inter) == 0:
            raise ValueError(f"interactions: no rows before as_of {data.as_of}")
        self.as_of_ = data.as_of
        parts = [inter["product_id"], data.cooccurrence["other_product_id"], data.bought_together["other_product_id"]]
        self.product_ids_ = np.unique(np.concatenate([_sorted_unique(p) for p in parts])).astype(object)
        self.customer_ids_ = _sorted_unique(inter["customer_id"])
        self.n_features_in_ = len(self.product_ids_)
        ci = _positions(self.customer_ids_, inter["customer_id"])
        pi = _positions(self.product_ids_, inter["product_id"])
        self.user_items_ = sp.csr_matrix((inter["weight"].to_numpy(np.float64), (ci, pi)),
                                         shape=(len(self.customer_ids_), len(self.product_ids_)))

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X: InteractionData, y: None = None) -> Recommender:
        """Fit on the interactions of ``X`` (an :class:`InteractionData`); returns ``self``."""
        self._index(X)
        self._fit(X)
        return self

    def _rows(self, ids: np.ndarray) -> np.ndarray:
        return _positions(self.customer_ids_, pd.Series(ids, dtype=object))

    def _mask(self, value: Any, name: str, ids: np.ndarray) -> tuple[np.ndarray | None, sp.csr_matrix | None]:
        """A global product mask or a (customers x products) sparse mask of ``value``."""
        v = _pairs(value, name)
        if v is None:
            return None, None
        if isinstance(v, np.ndarray):
            pos = np.searchsorted(self.product_ids_, v)
            pos = np.clip(pos, 0, len(self.product_ids_) - 1)
            m = np.zeros(len(self.product_ids_), bool)
            m[pos[self.product_ids_[pos] == v]] = True
            return m, None
        order = np.argsort(ids, kind="stable")
        srt = ids[order]
        cpos = np.searchsorted(srt, v["customer_id"].to_numpy())
        cpos = np.clip(cpos, 0, len(srt) - 1)
        ppos = np.clip(np.searchsorted(self.product_ids_, v["product_id"].to_numpy()), 0, len(self.product_ids_) - 1)
        ok = (srt[cpos] == v["customer_id"].to_numpy()) & (self.product_ids_[ppos] == v["product_id"].to_numpy())
        rows = order[cpos[ok]]
        mat = sp.csr_matrix((np.ones(int(ok.sum()), bool), (rows, ppos[ok])), shape=(len(ids), len(self.product_ids_)))
        return None, mat

    def score_pairs(self, customer_ids: Sequence[str], product_ids: Sequence[str]) -> np.ndarray:
        """The score of each ``(customer_ids[i], product_ids[i])`` pair (``-inf``: nothing to say).

        The same score :meth:`recommend` ranks by, for arbitrary pairs: what a
        lifecycle stage needs when each recipient has their own small
        candidate set (the products that dropped in price, the matches of a
        search). A product unknown at fit scores ``-inf``.
        """
        check_is_fitted(self, "product_ids_")
        c = np.asarray(customer_ids, dtype=object)
        p = np.asarray(product_ids, dtype=object)
        if c.shape != p.shape or c.ndim != 1:
            raise ValueError(f"customer_ids and product_ids must be 1-d and of one length, got {c.shape} and {p.shape}")
        return self.score_positions(self._rows(c), _positions(self.product_ids_, p))

    def score_positions(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """:meth:`score_pairs` by position: ``rows`` into ``customer_ids_``, ``cols`` into ``product_ids_`` (-1: unknown).

        Positions let a caller with millions of pairs hash each id once.
        """
        check_is_fitted(self, "product_ids_")
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        out = np.full(len(rows), -np.inf)
        ok = cols >= 0
        if ok.any():
            out[ok] = self._pair_scores(rows[ok], cols[ok])
        return out

    def _pair_scores(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Pair scores for known products; the default scores each distinct customer's whole row."""
        uniq, inv = np.unique(rows, return_inverse=True)
        out = np.empty(len(rows))
        batch = max(1, BATCH_CELLS // max(len(self.product_ids_), 1))
        order = np.argsort(inv, kind="stable")
        bounds = np.searchsorted(inv[order], np.arange(0, len(uniq) + batch, batch))
        ids = np.where(uniq >= 0, self.customer_ids_[np.maximum(uniq, 0)], "")
        for b, start in enumerate(range(0, len(uniq), batch)):
            sl = slice(start, start + batch)
            s = np.asarray(self._score_batch(ids[sl], uniq[sl], None, None), dtype=np.float64)
            sel = order[bounds[b]:bounds[b + 1]]
            out[sel] = s[inv[sel] - start, cols[sel]]
        return out

    def recommend(self, customer_ids: Sequence[str], k: int = 10, candidates: Candidates = None,
                  exclude: Candidates | str = None) -> pd.DataFrame:
        """The top ``k`` products of each customer, best first.

        Parameters
        ----------
        customer_ids
            Customers to recommend for (unknown ones get what the recommender
            gives a customer without history, possibly nothing).
        k
            Products per customer at most.
        candidates
            Restrict to these products: a sequence of product ids for every
            customer, or a ``(customer_id, product_id)`` frame per customer
            (the stage's candidate set). None: every product seen before ``as_of``.
        exclude
            Products never to recommend: same forms as ``candidates``, or
            ``"seen"`` for each customer's own products with any interaction
            before ``as_of``.

        Returns
        -------
        pandas.DataFrame
            :data:`RECOMMENDATION_COLUMNS`, sorted by the order of
            ``customer_ids`` and then rank; fewer than ``k`` rows for a
            customer when fewer products have a score.
        """
        check_is_fitted(self, "product_ids_")
        if isinstance(customer_ids, str):
            raise TypeError("customer_ids must be a sequence of ids, not one string")
        if not isinstance(k, Integral) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        ids = np.asarray([str(c) for c in customer_ids], dtype=object)
        rows = self._rows(ids)
        cand_all, cand_pairs = self._mask(candidates, "candidates", ids)
        seen = isinstance(exclude, str) and exclude == "seen"
        if isinstance(exclude, str) and not seen:
            raise ValueError(f"exclude: expected 'seen', product ids or a frame, got {exclude!r}")
        excl_all, excl_pairs = (None, None) if seen else self._mask(exclude, "exclude", ids)
        n_p = len(self.product_ids_)
        kk = min(int(k), n_p)
        batch = max(1, BATCH_CELLS // max(n_p, 1))
        out_c, out_p, out_r, out_s = [], [], [], []
        for start in range(0, len(ids), batch):
            sl = slice(start, start + batch)
            r = rows[sl]
            s = np.array(self._score_batch(ids[sl], r, candidates, exclude), dtype=np.float64)
            if cand_all is not None:
                s[:, ~cand_all] = -np.inf
            if cand_pairs is not None:
                s[~cand_pairs[sl].toarray()] = -np.inf
            if excl_all is not None:
                s[:, excl_all] = -np.inf
            if excl_pairs is not None:
                s[excl_pairs[sl].toarray()] = -np.inf
            if seen:
                known = np.flatnonzero(r >= 0)
                sub = self.user_items_[r[known]].tocoo()
                s[known[sub.row], sub.col] = -np.inf
            rr, cc, sc, rank = _top_k(s, kk)
            out_c.append(ids[sl][rr])
            out_p.append(self.product_ids_[cc])
            out_r.append(rank)
            out_s.append(sc)
        if not out_c:
            return pd.DataFrame({c: pd.Series(dtype=t) for c, t in
                                 zip(RECOMMENDATION_COLUMNS, (object, object, "int64", "float64"), strict=True)})
        return pd.DataFrame({"customer_id": np.concatenate(out_c), "product_id": np.concatenate(out_p),
                             "rank": np.concatenate(out_r).astype(np.int64),
                             "score": np.concatenate(out_s)}, columns=list(RECOMMENDATION_COLUMNS))


class PopularityRecommender(Recommender):
    """The products the most customers interacted with before ``as_of``; the same list for everyone.

    Parameters
    ----------
    signal : {'purchases', 'weight'}
        ``'purchases'``: customers who bought the product (ties broken by
        customers with any interaction); ``'weight'``: the summed interaction
        weight.

    Attributes
    ----------
    popularity_ : ndarray, shape (n_products,)
        The score of each product of ``product_ids_``.

    Examples
    --------
    See the module docstring.
    """

    _parameter_constraints: dict[str, list[Any]] = {"signal": [StrOptions({"purchases", "weight"})]}

    def __init__(self, signal: str = "purchases"):
        self.signal = signal

    def _fit(self, data: InteractionData) -> None:
        inter = data.interactions
        pi = _positions(self.product_ids_, inter["product_id"])
        n = len(self.product_ids_)
        anyone = np.bincount(pi, minlength=n).astype(np.float64)
        if self.signal == "purchases":
            buyers = np.bincount(pi, weights=(inter["purchases"].to_numpy() > 0).astype(float), minlength=n)
            # Any-interaction count, scaled below 1, only breaks ties between equal buyer counts.
            self.popularity_ = buyers + anyone / (anyone.max() + 1.0)
        else:
            self.popularity_ = np.bincount(pi, weights=inter["weight"].to_numpy(np.float64), minlength=n)
        self.popularity_[self.popularity_ <= 0] = -np.inf

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.popularity_, (len(rows), len(self.popularity_)))

    def _pair_scores(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return self.popularity_[cols]

    def recommend(self, customer_ids: Sequence[str], k: int = 10, candidates: Candidates = None,
                  exclude: Candidates | str = None) -> pd.DataFrame:
        """As :meth:`Recommender.recommend`; one list computed once when no per-customer set applies."""
        per_customer = isinstance(candidates, pd.DataFrame) or isinstance(exclude, pd.DataFrame) or \
            (isinstance(exclude, str) and exclude == "seen")
        if per_customer or isinstance(customer_ids, str) or len(customer_ids) == 0:
            return super().recommend(customer_ids, k, candidates, exclude)
        ids = np.asarray([str(c) for c in customer_ids], dtype=object)
        one = super().recommend(list(ids[:1]), k, candidates, exclude)
        n = len(one)
        return pd.DataFrame({"customer_id": np.repeat(ids, n), "product_id": np.tile(one["product_id"].to_numpy(), len(ids)),
                             "rank": np.tile(one["rank"].to_numpy(), len(ids)),
                             "score": np.tile(one["score"].to_numpy(), len(ids))}, columns=list(RECOMMENDATION_COLUMNS))


class RecentlyViewedRecommender(Recommender):
    """The customer's own viewed products, most recent view first (the baseline).

    Products the customer never viewed get no score, so a customer with
    fewer than ``k`` viewed products gets fewer than ``k`` recommendations,
    and a customer without history none: "what they last viewed" and nothing else.

    Parameters
    ----------
    max_age_days : float or None
        Only views within this many days before ``as_of`` (None: all).

    Attributes
    ----------
    last_viewed_ : scipy.sparse.csr_matrix, shape (n_customers, n_products)
        Days between 1 January 1970 and the last view, plus one (0: never viewed).
    """

    _parameter_constraints: dict[str, list[Any]] = {"max_age_days": [Interval(Real, 0, None, closed="neither"), None]}

    def __init__(self, max_age_days: float | None = None):
        self.max_age_days = max_age_days

    def _fit(self, data: InteractionData) -> None:
        inter = data.interactions[data.interactions["last_viewed_at"].notna()]
        days = (epoch_seconds(inter["last_viewed_at"]) - epoch_seconds(pd.Series([data.as_of]))[0]) / 86_400.0
        keep = np.ones(len(inter), bool) if self.max_age_days is None else days >= -self.max_age_days
        inter, days = inter[keep], np.asarray(days)[keep]
        ci = _positions(self.customer_ids_, inter["customer_id"])
        pi = _positions(self.product_ids_, inter["product_id"])
        # Stored as days before as_of shifted to be > 0 so sparse zeros mean "never viewed".
        self.last_viewed_ = sp.csr_matrix((days + 1e6, (ci, pi)), shape=self.user_items_.shape)

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        s = np.full((len(rows), len(self.product_ids_)), -np.inf)
        known = np.flatnonzero(rows >= 0)
        sub = self.last_viewed_[rows[known]].tocoo()
        # Score: minus the days since the last view (the most recent is the largest).
        s[known[sub.row], sub.col] = sub.data - 1e6
        return s

    def recommend(self, customer_ids: Sequence[str], k: int = 10, candidates: Candidates = None,
                  exclude: Candidates | str = None) -> pd.DataFrame:
        """As :meth:`Recommender.recommend`; without candidates or exclusions, straight from the sparse views."""
        if candidates is not None or exclude is not None:
            return super().recommend(customer_ids, k, candidates, exclude)
        check_is_fitted(self, "last_viewed_")
        ids = _check_recommend_args(customer_ids, k)
        rows = self._rows(ids)
        known = np.flatnonzero(rows >= 0)
        sub = self.last_viewed_[rows[known]].tocoo()
        rr, cc, sc = known[sub.row], sub.col, sub.data - 1e6
        # Same order as the dense top-k: by customer, best score, then the smaller product.
        o = np.lexsort((cc, -sc, rr))
        rr, cc, sc = rr[o], cc[o], sc[o]
        rank = np.arange(len(rr)) - np.searchsorted(rr, rr, side="left") + 1
        keep = rank <= k
        return _tidy(ids, rr[keep], self.product_ids_, cc[keep], sc[keep], rank[keep])

    def _pair_scores(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        out = np.full(len(rows), -np.inf)
        known = np.flatnonzero(rows >= 0)
        v = _lookup(self.last_viewed_, rows[known], cols[known])
        out[known[v > 0]] = v[v > 0] - 1e6
        return out


def _similarity(table: pd.DataFrame, products: np.ndarray) -> sp.csr_matrix:
    pi = _positions(products, table["product_id"])
    oi = _positions(products, table["other_product_id"])
    return sp.csr_matrix((table["score"].to_numpy(np.float64), (pi, oi)), shape=(len(products), len(products)))


class CooccurrenceRecommender(Recommender):
    """Products that go with the customer's own: ``score(c, j) = sum_i w(c, i) sim(i, j)``.

    ``sim`` is the cosine co-occurrence of :func:`cadence.features.affinity.cooccurrence`
    (the ``neighbours`` kept per product when the data was loaded).

    Parameters
    ----------
    source : {'all', 'orders'}
        ``'all'``: co-occurrence in sessions and orders, seeded by every
        interaction of the customer (weighted by ``weight``); ``'orders'``:
        "bought together", co-occurrence in orders, seeded by the customer's
        purchases (weighted by their count).
    fallback : bool
        Give customers without co-occurring products the popularity ranking
        (scaled below every co-occurrence score), so everyone gets ``k``.

    Attributes
    ----------
    similarity_ : scipy.sparse.csr_matrix, shape (n_products, n_products)
    seeds_ : scipy.sparse.csr_matrix, shape (n_customers, n_products)
    popularity_ : ndarray, shape (n_products,)
    """

    _parameter_constraints: dict[str, list[Any]] = {"source": [StrOptions({"all", "orders"})], "fallback": ["boolean"]}

    def __init__(self, source: str = "all", fallback: bool = True):
        self.source = source
        self.fallback = fallback

    def _fit(self, data: InteractionData) -> None:
        table = data.cooccurrence if self.source == "all" else data.bought_together
        self.similarity_ = _similarity(table, self.product_ids_)
        if self.source == "all":
            self.seeds_ = self.user_items_
        else:
            inter = data.interactions
            ci = _positions(self.customer_ids_, inter["customer_id"])
            pi = _positions(self.product_ids_, inter["product_id"])
            self.seeds_ = sp.csr_matrix((inter["purchases"].to_numpy(np.float64), (ci, pi)), shape=self.user_items_.shape)
            self.seeds_.eliminate_zeros()
        pop = PopularityRecommender().fit(data)
        self.popularity_ = pop.popularity_

    def _fallback(self) -> np.ndarray:
        fin = np.isfinite(self.popularity_)
        # Popularity mapped into (-2, -1), increasing: below every co-occurrence score (> 0), same order.
        pop = np.full(len(self.popularity_), -np.inf)
        if fin.any():
            p = self.popularity_[fin]
            pop[fin] = -1.0 - 1.0 / (1.0 + p)
        return pop

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        s = np.zeros((len(rows), len(self.product_ids_)))
        known = np.flatnonzero(rows >= 0)
        if len(known):
            s[known] = (self.seeds_[rows[known]] @ self.similarity_).toarray()
        s[s <= 0] = -np.inf
        if self.fallback:
            s = np.where(np.isfinite(s), s, self._fallback()[None, :])
        return s

    def recommend(self, customer_ids: Sequence[str], k: int = 10, candidates: Candidates = None,
                  exclude: Candidates | str = None) -> pd.DataFrame:
        """As :meth:`Recommender.recommend`; without candidates or exclusions, from the sparse scores.

        A customer's co-occurrence scores are a few hundred products (their products' neighbours): the
        dense (customers x products) block of the base class is mostly the popularity fallback, of which
        only the best ``2 k`` can reach a top ``k`` (a customer with fewer than ``k`` co-occurring products
        loses fewer than ``k`` of them to those). Same products, ranks and scores as the dense top-k.
        """
        if candidates is not None or exclude is not None:
            return super().recommend(customer_ids, k, candidates, exclude)
        check_is_fitted(self, "similarity_")
        ids = _check_recommend_args(customer_ids, k)
        rows = self._rows(ids)
        n_p = np.int64(len(self.product_ids_))
        kk = min(int(k), int(n_p))
        best = np.zeros(0, np.int64)
        fb = self._fallback()
        if self.fallback:
            fin = np.flatnonzero(np.isfinite(fb))
            best = fin[np.lexsort((fin, -fb[fin]))][:2 * kk].astype(np.int64)  # by score, then the smaller product
        in_best = np.full(int(n_p), -1, np.int64)
        in_best[best] = np.arange(len(best))
        out_r, out_c, out_s, out_k = [], [], [], []
        for start in range(0, len(ids), ROW_CHUNK):
            pos = np.arange(start, min(start + ROW_CHUNK, len(ids)))
            loc = np.flatnonzero(rows[pos] >= 0)
            sub = (self.seeds_[rows[pos[loc]]] @ self.similarity_).tocsr()
            sub.sort_indices()  # columns ascending within a row: the stable sort below breaks ties by product
            lr = loc[np.repeat(np.arange(sub.shape[0]), np.diff(sub.indptr))]
            cc, sc = sub.indices.astype(np.int64), sub.data
            ok = sc > 0
            lr, cc, sc = lr[ok], cc[ok], sc[ok]
            # Only a row's entries at or above a lower bound of its kk-th best score can rank (the kk-th best of
            # its first few entries): ~kk of a row's hundreds are sorted, with the same ranks.
            n_row = np.bincount(lr, minlength=len(pos))
            width = max(4 * kk, 64)
            at = np.searchsorted(lr, np.arange(len(pos)))[:, None] + np.arange(width)[None, :]
            window = np.where(np.arange(width)[None, :] < n_row[:, None], sc[np.minimum(at, max(len(sc) - 1, 0))]
                              if len(sc) else 0.0, -np.inf)
            bound = np.full(len(pos), -np.inf)
            full = np.flatnonzero(n_row >= kk)
            if len(full):
                bound[full] = -np.partition(-window[full], kk - 1, axis=1)[:, kk - 1]
            ok = sc >= bound[lr]
            lr, cc, sc = lr[ok], cc[ok], sc[ok]
            o = np.lexsort((-sc, lr))
            lr, cc, sc = lr[o], cc[o], sc[o]
            rank = np.arange(len(lr)) - np.searchsorted(lr, lr, side="left") + 1
            keep = rank <= kk
            parts = [(lr[keep], cc[keep], sc[keep], rank[keep])]
            if len(best):
                # Popularity below every co-occurrence score (> 0): after a row's co-occurring products, in
                # popularity order, skipping those it already has; at most kk - 1 of the best 2 kk are skipped.
                n_pos = n_row  # a row with fewer than kk kept them all; one with more gets no fill
                taken = np.zeros((len(pos), len(best)), bool)
                b = in_best[cc]
                taken[lr[b >= 0], b[b >= 0]] = True
                free = ~taken
                f_rank = n_pos[:, None] + np.cumsum(free, axis=1)
                fr, fj = np.nonzero(free & (f_rank <= kk))
                parts.append((fr, best[fj], fb[best[fj]], f_rank[fr, fj]))
            r_, c_, s_, k_ = (np.concatenate(x) for x in zip(*parts, strict=True))
            o = np.lexsort((k_, r_))
            out_r.append(pos[r_[o]])
            out_c.append(c_[o])
            out_s.append(s_[o])
            out_k.append(k_[o])
        if not out_r:
            empty = np.zeros(0, np.int64)
            return _tidy(ids, empty, self.product_ids_, empty, np.zeros(0), empty)
        return _tidy(ids, np.concatenate(out_r), self.product_ids_, np.concatenate(out_c), np.concatenate(out_s),
                     np.concatenate(out_k))

    def _pair_scores(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        s = np.zeros(len(rows))
        known = np.flatnonzero(rows >= 0)
        s[known] = _rows_dot(self.seeds_, self.similarity_, rows[known], cols[known])
        s[s <= 0] = -np.inf
        if self.fallback:
            s = np.where(np.isfinite(s), s, self._fallback()[cols])
        return s


class ImplicitRecommender(Recommender):
    """Collaborative filtering from implicit feedback, fitted with the `implicit` library.

    The confidence matrix is ``alpha * weight`` of each (customer, product)
    interaction (Hu, Koren & Volinsky 2008 for ALS). Scores are the fitted
    user factors times the item factors (ALS, BPR) or the user's
    interactions times the item similarity (cosine, BM25).

    Parameters
    ----------
    model : {'als', 'bpr', 'cosine', 'bm25'}
    factors : int
        Latent factors (ALS, BPR).
    regularization : float
    iterations : int
    learning_rate : float
        BPR only.
    alpha : float
        Confidence scale of the interaction weights.
    neighbours : int
        Neighbours per item (cosine, BM25).
    num_threads : int
        `implicit`'s threads. BPR's updates are lock-free across threads, so
        only ``num_threads=1`` (the default) makes a seeded fit reproducible.
    random_state : int or None
        Seed of the factor initialisation and BPR's sampling.
    warm_iterations : int or None
        ALS only, inside :class:`LearnedBlendRecommender`: its second fit (on
        the whole history, after the one before the label split) starts from
        the first fit's factors and runs this many iterations instead of
        ``iterations`` from random ones (None: a fit from scratch). The
        factor fit is most of the blend's time; the earlier split's factors
        are a good start, as only the last ``label_days`` are new.

    Attributes
    ----------
    model_ : implicit model
        The fitted `implicit` estimator.

    Examples
    --------
    >>> import pandas as pd
    >>> from cadence.features.interactions import load_interactions
    >>> from cadence.features.purchases import duckdb_tables
    >>> con, t = duckdb_tables({
    ...     "orders": pd.DataFrame({"order_id": ["o1", "o2"], "customer_id": ["a", "b"], "revenue": [1.0] * 2,
    ...                             "ts": pd.to_datetime(["2025-01-02"] * 2, utc=True)}),
    ...     "order_items": pd.DataFrame({"order_id": ["o1", "o1", "o2"], "product_id": ["x", "y", "x"]})})
    >>> rec = ImplicitRecommender(model="cosine").fit(load_interactions(con, t, "2025-02-01"))
    >>> rec.recommend(["b"], k=1, exclude="seen")["product_id"].tolist()
    ['y']
    """

    _parameter_constraints: dict[str, list[Any]] = {
        "model": [StrOptions({"als", "bpr", "cosine", "bm25"})],
        "factors": [Interval(Integral, 1, None, closed="left")],
        "regularization": [Interval(Real, 0, None, closed="left")],
        "iterations": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "alpha": [Interval(Real, 0, None, closed="neither")],
        "neighbours": [Interval(Integral, 1, None, closed="left")],
        "num_threads": [Interval(Integral, 0, None, closed="left")],
        "random_state": ["random_state"],
        "warm_iterations": [Interval(Integral, 1, None, closed="left"), None],
    }

    def __init__(self, model: str = "als", *, factors: int = 32, regularization: float = 0.05, iterations: int = 15,
                 learning_rate: float = 0.01, alpha: float = 1.0, neighbours: int = 50, num_threads: int = 1,
                 random_state: int | None = None, warm_iterations: int | None = None):
        self.model = model
        self.factors = factors
        self.regularization = regularization
        self.iterations = iterations
        self.learning_rate = learning_rate
        self.alpha = alpha
        self.neighbours = neighbours
        self.num_threads = num_threads
        self.random_state = random_state
        self.warm_iterations = warm_iterations

    def _warm_fit(self, data: InteractionData, previous: ImplicitRecommender) -> ImplicitRecommender:
        """Fit on ``data`` starting from ``previous``'s ALS factors (``warm_iterations`` iterations)."""
        self._validate_params()
        self._index(data)
        rng = np.random.default_rng(int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max)))
        start = []
        for ids, old_ids, old in ((self.customer_ids_, previous.customer_ids_, previous.model_.user_factors),
                                  (self.product_ids_, previous.product_ids_, previous.model_.item_factors)):
            at = _positions(old_ids, ids)
            # Customers and products new since the earlier fit start as implicit starts everything.
            f = rng.random((len(ids), self.factors), dtype=np.float32) * 0.01
            f[at >= 0] = np.asarray(old)[at[at >= 0]]
            start.append(f)
        self._fit(data, start=(start[0], start[1]))
        return self

    def _fit(self, data: InteractionData, start: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        from implicit.als import AlternatingLeastSquares
        from implicit.bpr import BayesianPersonalizedRanking
        from implicit.nearest_neighbours import BM25Recommender, CosineRecommender
        from implicit.utils import ParameterWarning

        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        conf = (self.user_items_ * float(self.alpha)).astype(np.float32).tocsr()
        # implicit warns (and slows down) when BLAS runs its own thread pool under its threads; it checks at
        # construction, so the model is built inside the limit too.
        with threadpool_limits(1, "blas"), warnings.catch_warnings():
            # implicit's item-kNN converts its own COO intermediate to CSR and warns about it.
            warnings.filterwarnings("ignore", category=ParameterWarning)
            m = self._make(AlternatingLeastSquares, BayesianPersonalizedRanking, CosineRecommender, BM25Recommender,
                           seed)
            if start is not None:
                m.user_factors, m.item_factors = start
                m.iterations = int(self.warm_iterations)
            m.fit(conf, show_progress=False)
        self.model_ = m
        self.confidence_ = conf
        if self.model in ("cosine", "bm25"):
            self.similarity_t_ = sp.csr_matrix(m.similarity).T.tocsr()

    def _make(self, als: Any, bpr: Any, cosine: Any, bm25: Any, seed: int) -> Any:
        if self.model == "als":
            return als(factors=self.factors, regularization=self.regularization, iterations=self.iterations,
                       num_threads=self.num_threads, random_state=seed, use_gpu=False)
        if self.model == "bpr":
            return bpr(factors=self.factors, learning_rate=self.learning_rate, regularization=self.regularization,
                       iterations=self.iterations, num_threads=self.num_threads, random_state=seed, use_gpu=False)
        return (cosine if self.model == "cosine" else bm25)(K=self.neighbours, num_threads=self.num_threads)

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        s = np.full((len(rows), len(self.product_ids_)), -np.inf)
        known = np.flatnonzero(rows >= 0)
        if not len(known):
            return s
        r = rows[known]
        if self.model in ("als", "bpr"):
            s[known] = np.asarray(self.model_.user_factors[r]) @ np.asarray(self.model_.item_factors).T
        else:
            sim = (self.confidence_[r] @ self.model_.similarity).toarray()  # as implicit's own scorer
            s[known] = np.where(sim > 0, sim, -np.inf)
        return s

    def recommend(self, customer_ids: Sequence[str], k: int = 10, candidates: Candidates = None,
                  exclude: Candidates | str = None) -> pd.DataFrame:
        """As :meth:`Recommender.recommend`; factor models without candidates use `implicit`'s threaded top-k.

        (``exclude="seen"`` is passed to it as its per-customer filter.)
        """
        seen = isinstance(exclude, str) and exclude == "seen"
        if self.model not in ("als", "bpr") or candidates is not None or not (exclude is None or seen):
            return super().recommend(customer_ids, k, candidates, exclude)
        from implicit.cpu.topk import topk

        check_is_fitted(self, "model_")
        ids = _check_recommend_args(customer_ids, k)
        rows = self._rows(ids)
        known = np.flatnonzero(rows >= 0)
        kk = min(int(k), len(self.product_ids_))
        if not len(known):
            return _tidy(ids, known, self.product_ids_, known, np.zeros(0), known)
        items = np.ascontiguousarray(self.model_.item_factors, dtype=np.float32)
        users = np.ascontiguousarray(np.asarray(self.model_.user_factors)[rows[known]], dtype=np.float32)
        filt = self.user_items_[rows[known]].astype(np.float32).tocsr() if seen else None
        with threadpool_limits(1, "blas"):
            cols, scores = topk(items, users, kk, filter_query_items=filt, num_threads=self.num_threads)
        rr = np.repeat(known, kk)
        cc, sc = cols.ravel().astype(np.int64), scores.ravel().astype(np.float64)
        rank = np.tile(np.arange(1, kk + 1), len(known))
        # implicit pads a short list (everything else filtered) with -1 or the lowest float32.
        ok = (cc >= 0) & (scores.ravel() > np.finfo(np.float32).min)
        return _tidy(ids, rr[ok], self.product_ids_, cc[ok], sc[ok], rank[ok])

    def _pair_scores(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        out = np.full(len(rows), -np.inf)
        known = np.flatnonzero(rows >= 0)
        r, c = rows[known], cols[known]
        if self.model in ("als", "bpr"):
            uf, itf = np.asarray(self.model_.user_factors), np.asarray(self.model_.item_factors)
            for start in range(0, len(r), PAIR_CHUNK):
                sl = slice(start, start + PAIR_CHUNK)
                out[known[sl]] = np.einsum("ij,ij->i", uf[r[sl]], itf[c[sl]])
        else:
            v = _row_dot(self.confidence_, self.similarity_t_, r, c)
            out[known] = np.where(v > 0, v, -np.inf)
        return out


class _Composite(Recommender):
    """Nested parameters (``name__param``) of a recommender built from named component recommenders."""

    recommenders: list[tuple[str, Recommender]]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        out = super().get_params(deep=False)
        if deep:
            for name, est in self.recommenders:
                out[name] = est
                out.update({f"{name}__{k}": v for k, v in est.get_params(deep=True).items()})
        return out

    def set_params(self, **params: Any) -> _Composite:
        own = {k: params.pop(k) for k in list(params) if k in self._get_param_names()}
        super().set_params(**own)
        if params:
            names = dict(self.recommenders)
            nested: dict[str, dict[str, Any]] = {}
            for key, value in params.items():
                name, _, sub = key.partition("__")
                if name not in names:
                    raise ValueError(f"Invalid parameter {key!r} for {type(self).__name__}")
                if sub:
                    nested.setdefault(name, {})[sub] = value
                else:
                    self.recommenders = [(n, value if n == name else e) for n, e in self.recommenders]
            for name, sub_params in nested.items():
                dict(self.recommenders)[name].set_params(**sub_params)
        return self

    def _check_components(self) -> list[str]:
        if not self.recommenders:
            raise ValueError("recommenders: give at least one (name, recommender) pair")
        names = [n for n, _ in self.recommenders]
        if len(set(names)) != len(names):
            raise ValueError(f"recommenders: names must be unique, got {names}")
        return names


class BlendRecommender(_Composite):
    """A weighted reciprocal-rank fusion of other recommenders, within the candidate set.

    ``score(c, j) = sum_m weights[m] / (offset + rank_m(c, j))`` where
    ``rank_m`` is product ``j``'s rank (1 = best) for customer ``c`` among the
    products recommender ``m`` scores (unscored: no contribution). Ranks, not
    raw scores, are combined because the components' scores live on unrelated
    scales; ``offset = 60`` is the value of Cormack, Clarke & Buettcher (2009).
    Ranks are taken after the candidate mask, so the blend ranks within the
    stage's candidate set.

    Parameters
    ----------
    recommenders : list of (str, Recommender)
        The components (unfitted; each is cloned and fitted on the same data).
    weights : list of float or None
        One per component (None: equal weights).
    offset : float
    depth : int
        Each component contributes its top ``depth`` products per customer
        (deeper ranks add less than ``1 / (offset + depth)`` each).

    Attributes
    ----------
    recommenders_ : list of (str, Recommender)
        The fitted clones.
    """

    _parameter_constraints: dict[str, list[Any]] = {
        "recommenders": [list], "weights": [list, None], "offset": [Interval(Real, 0, None, closed="left")],
        "depth": [Interval(Integral, 1, None, closed="left")]}

    def __init__(self, recommenders: list[tuple[str, Recommender]], weights: list[float] | None = None,
                 offset: float = 60.0, depth: int = 100):
        self.recommenders = recommenders
        self.weights = weights
        self.offset = offset
        self.depth = depth

    def _fit(self, data: InteractionData) -> None:
        names = self._check_components()
        if self.weights is not None and len(self.weights) != len(self.recommenders):
            raise ValueError(f"weights: expected {len(self.recommenders)} values, got {len(self.weights)}")
        self.recommenders_ = [(n, clone(e).fit(data)) for n, e in self.recommenders]
        self.weights_ = np.ones(len(names)) if self.weights is None else np.asarray(self.weights, dtype=np.float64)

    def _score_batch(self, ids: np.ndarray, rows: np.ndarray, candidates: Candidates,
                     exclude: Candidates | str) -> np.ndarray:
        total = np.zeros((len(ids), len(self.product_ids_)))
        row = {c: i for i, c in enumerate(ids)}
        for (_, est), w in zip(self.recommenders_, self.weights_, strict=True):
            rec = est.recommend(list(ids), k=self.depth, candidates=candidates, exclude=exclude)
            r = rec["customer_id"].map(row).to_numpy(np.int64)
            # Components were fitted on the same data, so their product index is the blend's.
            c = np.searchsorted(self.product_ids_, rec["product_id"].to_numpy())
            np.add.at(total, (r, c), w / (self.offset + rec["rank"].to_numpy(np.float64)))
        total[total <= 0] = -np.inf
        return total


def default_blend_estimator() -> Any:
    """The learned blend's default classifier: logistic regression on standardised features, missing scores as 0 plus a flag.

    Linear, so scoring tens of millions of (customer, product) pairs costs a
    dot product each; pass a ``HistGradientBoostingClassifier`` for
    interactions between the features at a higher scoring cost.
    """
    return make_pipeline(SimpleImputer(strategy="constant", fill_value=0.0, add_indicator=True,
                                       keep_empty_features=True),
                         StandardScaler(), LogisticRegression(C=1.0, max_iter=500))


class LearnedBlendRecommender(_Composite):
    """Ranks by a classifier's predicted purchase probability, learned point in time on the components' scores.

    The fit is a time split inside the history (``X`` from
    :func:`~cadence.features.interactions.load_interactions` with
    ``label_days``): the components are fitted on the interactions before
    ``label_start`` (``X.earlier``), each sampled customer's candidates are
    the union of the components' top ``depth`` products, and the classifier
    learns which of those pairs were bought in ``[label_start, as_of)``
    (``X.labels``). The components are then refitted on everything before
    ``as_of`` and the classifier scores their pairs: the score is a purchase
    probability, comparable across customers and stages.

    Features of a pair: each component's score (NaN where it has none), the
    product's buyers and customers (log), the customer's products and total
    weight (log), and the customer's own weight and purchases of the product.

    Parameters
    ----------
    recommenders : list of (str, Recommender)
        Components (unfitted; cloned).
    estimator : classifier or None
        Any scikit-learn classifier with ``predict_proba`` that accepts NaN
        (None: :func:`default_blend_estimator`, a logistic regression).
    depth : int
        Candidates per component and customer, at fit and in :meth:`recommend`.
    max_customers : int
        Customers sampled for the fit (seeded).
    random_state : int or None

    Attributes
    ----------
    recommenders_ : list of (str, Recommender)
        Components fitted on all the history before ``as_of``.
    estimator_ : classifier
        Fitted on the earlier split.
    n_train_pairs_, n_train_positives_ : int
    feature_names_ : list of str

    Examples
    --------
    >>> import pandas as pd
    >>> from cadence.features.interactions import load_interactions
    >>> from cadence.features.purchases import duckdb_tables
    >>> orders = pd.DataFrame({"order_id": [f"o{i}" for i in range(6)], "customer_id": list("abcabc"),
    ...     "revenue": [1.0] * 6, "ts": pd.to_datetime(["2025-01-02"] * 3 + ["2025-01-20"] * 3, utc=True)})
    >>> items = pd.DataFrame({"order_id": [f"o{i}" for i in range(6)], "product_id": list("xxyyzy")})
    >>> con, t = duckdb_tables({"orders": orders, "order_items": items})
    >>> data = load_interactions(con, t, "2025-02-01", label_days=20)
    >>> blend = LearnedBlendRecommender([("pop", PopularityRecommender())], random_state=0).fit(data)
    >>> (blend.n_train_pairs_, blend.n_train_positives_)  # 3 customers x {x, y}; a and c bought y later
    (6, 2)
    >>> bool(blend.recommend(["a"], k=2)["score"].between(0, 1).all())  # purchase probabilities
    True
    """

    _parameter_constraints: dict[str, list[Any]] = {
        "recommenders": [list], "estimator": [HasMethods(["fit", "predict_proba"]), None],
        "depth": [Interval(Integral, 1, None, closed="left")],
        "max_customers": [Interval(Integral, 1, None, closed="left")], "random_state": ["random_state"]}

    def __init__(self, recommenders: list[tuple[str, Recommender]], estimator: Any = None, depth: int = 50,
                 max_customers: int = 20_000, random_state: int | None = None):
        self.recommenders = recommenders
        self.estimator = estimator
        self.depth = depth
        self.max_customers = max_customers
        self.random_state = random_state

    def _fit(self, data: InteractionData) -> None:
        names = self._check_components()
        if data.earlier is None or data.labels is None:
            raise ValueError("X: the learned blend needs a time split inside the history; "
                             "load it with load_interactions(..., label_days=...)")
        rng = check_random_state(self.random_state)
        early = data.earlier
        comps = [clone(e).fit(early) for _, e in self.recommenders]
        stats = _PairStats(comps[0], early)
        customers = comps[0].customer_ids_
        if len(customers) > self.max_customers:
            customers = np.sort(rng.choice(customers, self.max_customers, replace=False))
        pairs = pd.concat([c.recommend(list(customers), k=self.depth)[["customer_id", "product_id"]] for c in comps],
                          ignore_index=True).drop_duplicates()
        lab = data.labels[["customer_id", "product_id"]].astype(str)
        key = pd.MultiIndex.from_frame(pairs)
        y = key.isin(pd.MultiIndex.from_frame(lab)).astype(np.int64)
        if y.sum() == 0 or y.sum() == len(y):
            raise ValueError(f"labels: {int(y.sum())} of {len(y)} candidate pairs were bought in "
                             f"[{early.as_of}, {data.as_of}); the blend needs both bought and not bought "
                             "(lengthen label_days or raise depth)")
        rows = comps[0]._rows(pairs["customer_id"].to_numpy(dtype=object))
        cols = _positions(comps[0].product_ids_, pairs["product_id"])
        x = _features(comps, stats, rows, cols)
        # A component that scores nothing (views-only recommender, orders-only data) gives an all-NaN column,
        # which the histogram binning refuses: it is a constant, so 0 says the same.
        self.empty_features_ = np.flatnonzero(np.isnan(x).all(axis=0))
        x[:, self.empty_features_] = 0.0
        est = self.estimator if self.estimator is not None else default_blend_estimator()
        self.estimator_ = clone(est).fit(x, y)
        self.n_train_pairs_ = int(len(y))
        self.n_train_positives_ = int(y.sum())
        self.feature_names_ = [*(f"score_{n}" for n in names), *_PairStats.NAMES]
        self.recommenders_ = [(n, _refit(e, data, c)) for (n, e), c in zip(self.recommenders, comps, strict=True)]
        self.stats_ = _PairStats(self.recommenders_[0][1], data)

    def _predict(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        out = np.empty(len(rows))
        comps = [e for _, e in self.recommenders_]
        scores = _component_scores(comps, rows, cols)
        for start in range(0, len(rows), PAIR_CHUNK):
            sl = slice(start, start + PAIR_CHUNK)
            x = _features(comps, self.stats_, rows[sl], cols[sl], [v[sl] for v in scores])
            x[:, self.empty_features_] = 0.0
            out[sl] = self.estimator_.predict_proba(x)[:, 1]
        return out

    def _pair_scores(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return self._predict(rows, cols)

    def recommend(self, customer_ids: Sequence[str], k: int = 10, candidates: Candidates = None,
                  exclude: Candidates | str = None) -> pd.DataFrame:
        """As :meth:`Recommender.recommend`, ranking the components' top ``depth`` by purchase probability.

        The candidates are generated for all customers at once and scored as
        pairs (no dense customers x products block): the blend never ranks a
        product no component put in its top ``depth``.
        """
        check_is_fitted(self, "estimator_")
        if isinstance(customer_ids, str):
            raise TypeError("customer_ids must be a sequence of ids, not one string")
        if not isinstance(k, Integral) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        ids = np.asarray([str(c) for c in customer_ids], dtype=object)
        uniq = pd.unique(ids)
        depth = max(int(self.depth), int(k))
        # The components' candidates as (customer position, product position) keys, each pair once in the order
        # of its first appearance (the order of a concatenation and drop_duplicates, without hashing strings).
        at = pd.Index(uniq)
        n_p = np.int64(len(self.product_ids_))
        keys = []
        for _, e in self.recommenders_:
            rec = e.recommend(list(uniq), k=depth, candidates=candidates, exclude=exclude)
            # Components were fitted on the same data, so their product index is the blend's.
            u = at.get_indexer(pd.Index(rec["customer_id"].to_numpy(dtype=object)))
            keys.append(u.astype(np.int64) * n_p + _positions(self.product_ids_, rec["product_id"]))
            del rec
        key = np.concatenate(keys)
        key = key[~pd.Series(key).duplicated().to_numpy()]
        if not len(key):
            return pd.DataFrame(
                {c: pd.Series(dtype=t) for c, t in zip(RECOMMENDATION_COLUMNS, (object, object, "int64", "float64"),
                                                       strict=True)})
        order_of, cols = key // n_p, key % n_p
        del key, keys
        p = self._predict(self._rows(uniq)[order_of], cols)
        # Customers in the order given, best first, ties to the smaller product id (as the dense top-k).
        o = np.lexsort((cols, -p, order_of))
        who, cols, p = order_of[o], cols[o], p[o]
        rank = np.arange(len(who)) - np.searchsorted(who, who, side="left") + 1
        keep = rank <= k
        top = pd.DataFrame({"u": who[keep], "product_id": self.product_ids_[cols[keep]], "rank": rank[keep].astype(np.int64),
                            "score": p[keep]})
        if len(uniq) == len(ids):
            # Distinct customers: the list is already in their order.
            return pd.DataFrame({"customer_id": uniq[top["u"].to_numpy()], "product_id": top["product_id"].to_numpy(),
                                 "rank": top["rank"].to_numpy(), "score": top["score"].to_numpy()},
                                columns=list(RECOMMENDATION_COLUMNS))
        # Every position of a customer in customer_ids gets that customer's list.
        pos = pd.DataFrame({"u": pd.Index(uniq).get_indexer(pd.Index(ids)), "at": np.arange(len(ids))})
        out = pos.merge(top, on="u").sort_values(["at", "rank"], kind="stable")
        out.insert(0, "customer_id", uniq[out["u"].to_numpy()])
        return out[list(RECOMMENDATION_COLUMNS)].reset_index(drop=True)


def _refit(est: Recommender, data: InteractionData, earlier: Recommender) -> Recommender:
    """``est`` fitted on the whole history: ALS with ``warm_iterations`` from the earlier split's factors."""
    if isinstance(est, ImplicitRecommender) and est.model == "als" and est.warm_iterations is not None:
        return clone(est)._warm_fit(data, earlier)
    return clone(est).fit(data)


class _PairStats:
    """Item, customer and pair counts of one fitted index (the blend's non-score features)."""

    NAMES: tuple[str, ...] = ("log_item_buyers", "log_item_customers", "log_customer_products",
                              "log_customer_weight", "log_own_weight", "own_purchases")

    def __init__(self, fitted: Recommender, data: InteractionData):
        inter = data.interactions
        pi = _positions(fitted.product_ids_, inter["product_id"])
        ci = _positions(fitted.customer_ids_, inter["customer_id"])
        n_p, n_c = len(fitted.product_ids_), len(fitted.customer_ids_)
        bought = (inter["purchases"].to_numpy() > 0).astype(np.float64)
        self.item_buyers = np.log1p(np.bincount(pi, weights=bought, minlength=n_p))
        self.item_customers = np.log1p(np.bincount(pi, minlength=n_p).astype(np.float64))
        self.customer_products = np.log1p(np.bincount(ci, minlength=n_c).astype(np.float64))
        self.customer_weight = np.log1p(np.bincount(ci, weights=inter["weight"].to_numpy(np.float64), minlength=n_c))
        self.own_weight = fitted.user_items_
        self.own_purchases = sp.csr_matrix((bought, (ci, pi)), shape=(n_c, n_p))
        self.own_purchases.eliminate_zeros()


def _component_scores(comps: list[Recommender], rows: np.ndarray, cols: np.ndarray) -> list[np.ndarray]:
    """Each component's score of every pair (NaN: none), once for a whole call.

    A customer's pairs are spread over the call (a stage's pool, each component's candidates), so the
    chunks of :func:`_features` would repeat a customer's per-row work (the co-occurrence row); the
    scores do not depend on the chunking.
    """
    out = []
    for c in comps:
        v = c.score_positions(rows, cols)
        out.append(np.where(np.isfinite(v), v, np.nan))
    return out


def _features(comps: list[Recommender], stats: _PairStats, rows: np.ndarray, cols: np.ndarray,
              scores: list[np.ndarray] | None = None) -> np.ndarray:
    x = np.full((len(rows), len(comps) + len(_PairStats.NAMES)), np.nan)
    for j, c in enumerate(comps):
        if scores is not None:
            x[:, j] = scores[j]
            continue
        v = c.score_positions(rows, cols)
        x[:, j] = np.where(np.isfinite(v), v, np.nan)
    known_c = rows >= 0
    known_p = cols >= 0
    j = len(comps)
    x[known_p, j] = stats.item_buyers[cols[known_p]]
    x[known_p, j + 1] = stats.item_customers[cols[known_p]]
    x[:, j + 2:] = 0.0
    x[known_c, j + 2] = stats.customer_products[rows[known_c]]
    x[known_c, j + 3] = stats.customer_weight[rows[known_c]]
    both = np.flatnonzero(known_c & known_p)
    x[both, j + 4] = np.log1p(_lookup(stats.own_weight, rows[both], cols[both]))
    x[both, j + 5] = _lookup(stats.own_purchases, rows[both], cols[both])
    return x


# ---------------------------------------------------------------------------------------- live signals
#: Kinds of interaction the live state keeps, by code (search-led views repeat a view, so they are left out).
LIVE_KINDS: tuple[str, ...] = ("views", "carts", "purchases")
_DAY = 86_400


def _kind_codes(kind: pd.Series) -> np.ndarray:
    """Each row's :data:`LIVE_KINDS` code (-1: ``searches``, -2: anything else, null included).

    A categorical column is read through its categories: at tens of millions of events, a string per row
    costs seconds and gigabytes.
    """
    known = pd.Index([*LIVE_KINDS, "searches"])
    if isinstance(kind.dtype, pd.CategoricalDtype):
        cats = known.get_indexer(pd.Index(kind.cat.categories.astype(str).to_numpy(dtype=object)))
        codes = kind.cat.codes.to_numpy()
        at = np.where(codes >= 0, cats[codes], -1)
    else:
        at = known.get_indexer(pd.Index(kind.astype(str).to_numpy(dtype=object)))
        at = np.where(kind.isna().to_numpy(), -1, at)
    out = np.where(at < 0, -2, np.where(at == len(LIVE_KINDS), -1, at)).astype(np.int8)
    return out


def _live_frame(events: pd.DataFrame, name: str) -> pd.DataFrame:
    """Check ``events`` (:data:`~cadence.features.interactions.EVENT_COLUMNS`) and keep the live kinds.

    The frame itself (no copy) when every row is of a live kind.
    """
    if not isinstance(events, pd.DataFrame):
        raise TypeError(f"{name}: expected a DataFrame with columns customer_id, product_id, kind, ts, "
                        f"got {type(events).__name__}")
    missing = [c for c in ("customer_id", "product_id", "kind", "ts") if c not in events.columns]
    if missing:
        raise ValueError(f"{name}: missing column {', '.join(map(repr, missing))}")
    code = _kind_codes(events["kind"])
    if ((code == -2) & events["kind"].notna().to_numpy()).any():
        bad = sorted(set(events["kind"][code == -2].dropna().astype(str)))
        raise ValueError(f"{name}: column 'kind': unknown kind {', '.join(map(repr, bad))}; "
                         f"expected {', '.join(LIVE_KINDS)}")
    if events["ts"].isna().any() or events["customer_id"].isna().any() or events["product_id"].isna().any():
        raise ValueError(f"{name}: customer_id, product_id and ts must not be null")
    live = code >= 0
    return events if live.all() else events.loc[live]


def _first_seen(values: pd.Series) -> pd.Index:
    """The distinct ids of ``values`` as strings, in order of first appearance (categories read once)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes = pd.unique(values.cat.codes.to_numpy())
        codes = codes[codes >= 0]
        return pd.Index(values.cat.categories.astype(str).to_numpy(dtype=object)[codes], dtype=object)
    return pd.Index(pd.unique(values.astype(str).to_numpy(dtype=object)), dtype=object)


class LiveEvents:
    """Interactions as integer arrays sorted by (customer, time), ready for point-in-time look-ups.

    Built by :meth:`LiveBlendRecommender.prepare_recent` (once, for many
    calls of :meth:`LiveBlendRecommender.score_pairs_at`). ``cust`` indexes
    ``customers`` (sorted ids), ``prod`` the recommender's products
    (``len(product_ids_) + i`` for ``extra[i]``, a product unknown at fit),
    ``kind`` :data:`LIVE_KINDS` codes, ``sec`` epoch seconds.
    """

    def __init__(self, customers: np.ndarray, cust: np.ndarray, prod: np.ndarray, kind: np.ndarray, sec: np.ndarray,
                 extra: pd.Index | None = None):
        order = np.lexsort((sec, cust))
        self.extra = pd.Index([], dtype=object) if extra is None else extra
        self.customers = customers
        self.cust, self.prod, self.kind, self.sec = cust[order], prod[order], kind[order], sec[order]
        self.starts = np.searchsorted(self.cust, np.arange(len(customers) + 1))

    @classmethod
    def from_frame(cls, events: pd.DataFrame, products: np.ndarray, extra: pd.Index | None = None) -> LiveEvents:
        """From an events frame; products outside ``products`` get ``len(products) + their position in extra``."""
        customers = _sorted_unique(events["customer_id"]) if len(events) else np.zeros(0, object)
        cust = _positions(customers, events["customer_id"])
        prod = _positions(products, events["product_id"])
        if extra is not None and (prod < 0).any():
            unknown = np.flatnonzero(prod < 0)
            prod[unknown] = len(products) + extra.get_indexer(
                pd.Index(events["product_id"].astype(str).to_numpy(dtype=object)[unknown]))
        kind = _kind_codes(events["kind"])
        ok = prod >= 0
        return cls(customers, cust[ok], prod[ok], kind[ok].astype(np.int8), epoch_seconds(events["ts"])[ok], extra)

    def since(self, start: int, products: np.ndarray, to_products: np.ndarray) -> LiveEvents:
        """The events at or after ``start``, products re-indexed from ``products`` (this index's, then ``extra``)
        to positions in the sorted ``to_products`` (events of a product not in it are dropped).

        The same as :meth:`from_frame` of those events' rows, without a second pass over the frame.
        """
        ids = np.concatenate([np.asarray(products, dtype=object), np.asarray(self.extra, dtype=object)])
        remap = _positions(to_products, ids) if len(ids) else np.zeros(0, np.int64)
        keep = self.sec >= start
        prod = remap[self.prod[keep]] if keep.any() else np.zeros(0, np.int64)
        cust, kind, sec = self.cust[keep], self.kind[keep], self.sec[keep]
        used = np.unique(cust)
        ok = prod >= 0
        return LiveEvents(self.customers[used], np.searchsorted(used, cust)[ok], prod[ok], kind[ok], sec[ok])

    def take(self, customers: np.ndarray, since: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The events of ``customers`` (their position in the result) at or after ``since``."""
        pos = _positions(self.customers, pd.Series(customers, dtype=object))
        known = np.flatnonzero(pos >= 0)
        owner, idx = expand_ranges(self.starts[pos[known]], self.starts[pos[known] + 1])
        keep = self.sec[idx] >= since
        idx = idx[keep]
        return known[owner[keep]], self.prod[idx], self.kind[idx], self.sec[idx]


def expand_ranges(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ranges ``[lo[i], hi[i])``: (i repeated, every index in the range).

    >>> [a.tolist() for a in expand_ranges(np.array([0, 5]), np.array([2, 6]))]
    [[0, 0, 1], [0, 1, 5]]
    """
    n = np.maximum(hi - lo, 0)
    owner = np.repeat(np.arange(len(lo)), n)
    idx = np.repeat(lo - np.cumsum(n) + n, n) + np.arange(int(n.sum()))
    return owner, idx


class _LiveIndex:
    """Events packed and sorted once for the live features of many query chunks (:func:`_live_features`).

    The packing (``base``, ``span``, ``n_prod``) covers every query time and product the caller will ask
    about, so each chunk's look-ups are sorted searches in the same arrays instead of re-sorting the events
    per chunk. Counts and times read from it are integers relative to one base: the features are the same
    whichever queries share a chunk.
    """

    def __init__(self, cust: np.ndarray, prod: np.ndarray, kind: np.ndarray, sec: np.ndarray, n_cust: int,
                 t_min: int, t_max: int, prod_max: int, lookback_s: int):
        self.base = int(t_min) - lookback_s - 1
        self.span = np.int64(int(t_max) - self.base + 2)
        self.n_prod = np.int64(max(int(prod.max(initial=-1)), int(prod_max)) + 1)
        if float(n_cust) * float(self.n_prod) * float(self.span) >= 2.0 ** 62:
            raise ValueError("live features: too many customers x products x seconds in one call; score fewer "
                             "customers at once")
        keep = (sec >= self.base) & (sec < self.base + self.span)
        self.cust, self.prod, self.kind, self.rel = cust[keep], prod[keep], kind[keep], sec[keep] - self.base
        pair = self.cust.astype(np.int64) * self.n_prod + self.prod
        self.by_kind = []
        for j, _ in enumerate(LIVE_KINDS):
            m = self.kind == j
            self.by_kind.append(np.sort(pair[m] * self.span + self.rel[m]))
        del pair
        self.g = self.cust.astype(np.int64) * self.span + self.rel  # already in (customer, time) order
        self.buys = np.flatnonzero(self.kind == LIVE_KINDS.index("purchases"))
        self.gb = self.g[self.buys]


def _live_features(cust: np.ndarray | _LiveIndex, prod: np.ndarray | None, kind: np.ndarray | None,
                   sec: np.ndarray | None, q_cust: np.ndarray, q_prod: np.ndarray, q_t: np.ndarray, n_cust: int,
                   co: sp.csr_matrix, bt: sp.csr_matrix, lookback_s: int, recent: int, decay_s: float) -> np.ndarray:
    """:data:`LIVE_NAMES` of each query (customer, product, time) from events strictly before the time.

    Only events in ``[t - lookback, t)`` count. Customers and products are
    integer keys (``< n_cust``; products ``>= co.shape[0]`` have no
    co-occurrence). Look-ups are sorted searches on packed keys
    (customer, product, seconds), so millions of queries cost a few sorts.
    ``cust`` may be a :class:`_LiveIndex` built once for many calls (then
    ``prod``, ``kind`` and ``sec`` are unused).
    """
    x = np.zeros((len(q_t), len(LIVE_NAMES)))
    if not len(q_t):
        return x
    if isinstance(cust, _LiveIndex):
        ix = cust
        if int(q_t.min()) - lookback_s - 1 < ix.base or int(q_t.max()) - ix.base + 2 > ix.span or \
                int(q_prod.max(initial=-1)) >= ix.n_prod:
            raise ValueError("live features: a query outside the prepared index's times or products")
    else:
        ix = _LiveIndex(cust, prod, kind, sec, n_cust, int(q_t.min()), int(q_t.max()), int(q_prod.max(initial=-1)),
                        lookback_s)
    span, n_prod, base = ix.span, ix.n_prod, ix.base
    prod, rel = ix.prod, ix.rel
    q_rel = q_t.astype(np.int64) - base
    lo_rel = q_rel - lookback_s
    # Pair look-ups, one kind at a time: counts in the window and the last time before t.
    q_pair = q_cust.astype(np.int64) * n_prod + q_prod
    last_any = np.full(len(q_t), -1, np.int64)
    for j, _ in enumerate(LIVE_KINDS):
        g = ix.by_kind[j]
        if not len(g):
            continue
        hi = np.searchsorted(g, q_pair * span + q_rel, side="left")
        lo = np.searchsorted(g, q_pair * span + lo_rel, side="left")
        n = hi - lo
        x[:, j] = np.log1p(n)
        last = np.where(n > 0, g[np.maximum(hi - 1, 0)] - q_pair * span, -1)
        if j == 0:
            x[:, 3] = np.where(n > 0, 1.0 / (1.0 + (q_rel - last) / _DAY), 0.0)
        last_any = np.maximum(last_any, last)
    x[:, 4] = np.where(last_any >= 0, 1.0 / (1.0 + (q_rel - last_any) / _DAY), 0.0)
    if not len(ix.cust):
        return x
    # The customer's latest events: how active, and how their latest products go with this one.
    g = ix.g
    hi = np.searchsorted(g, q_cust.astype(np.int64) * span + q_rel, side="left")
    lo = np.searchsorted(g, q_cust.astype(np.int64) * span + lo_rel, side="left")
    x[:, 5] = np.log1p(hi - lo)
    n_known = co.shape[0]
    q_known = q_prod < n_known
    for r in range(1, recent + 1):
        at = hi - r
        ok = np.flatnonzero((at >= lo) & q_known & (prod[np.maximum(at, 0)] < n_known))
        x[ok, 6] += _lookup(co, prod[at[ok]], q_prod[ok])
    buys = ix.buys
    if not len(buys):
        return x
    gb = ix.gb
    hi = np.searchsorted(gb, q_cust.astype(np.int64) * span + q_rel, side="left")
    lo = np.searchsorted(gb, q_cust.astype(np.int64) * span + lo_rel, side="left")
    for r in range(1, recent + 1):
        at = hi - r
        ok = np.flatnonzero((at >= lo) & q_known & (prod[buys[np.maximum(at, 0)]] < n_known))
        b = buys[at[ok]]
        x[ok, 7] += _lookup(bt, prod[b], q_prod[ok]) * np.exp(-(q_rel[ok] - rel[b]) / decay_s)
    return x


#: The live features of a (customer, product) pair at a decision time ``t`` (events in ``[t - lookback, t)``).
LIVE_NAMES: tuple[str, ...] = ("live_log_views", "live_log_carts", "live_log_purchases", "live_view_recency",
                               "live_recency", "live_log_customer_events", "live_recent_cooccurrence",
                               "live_recent_bought_together")


class LiveBlendRecommender(LearnedBlendRecommender):
    """The learned blend plus the customer's interactions up to the decision time, learned point in time.

    :class:`LearnedBlendRecommender` scores a pair by what its components
    knew at ``as_of``; a message is decided later, when the customer may have
    viewed, carted or bought since. This model adds :data:`LIVE_NAMES`, read
    from the customer's interactions in the ``lookback_days`` strictly
    before the decision time ``t``: views, carts and purchases of the product
    (log counts), the recency ``1 / (1 + days)`` of its last view and of its
    last interaction of any kind, the customer's activity, the co-occurrence
    of the product with the customer's ``recent`` latest interactions and
    its "bought together" score with their latest purchases (decayed with
    ``decay_days``). The classifier learns how much each counts.

    Fit (``X`` from :func:`~cadence.features.interactions.load_interactions`
    with ``label_days`` and ``events_days >= label_days + lookback_days``):
    components fitted before ``label_start`` as in the learned blend;
    decision times are sampled customers' interactions in
    ``[label_start, as_of - horizon_days)`` plus ``delay_hours`` (about when
    an abandonment message is decided); each decision's candidates are the
    components' top ``depth`` and the products of the customer's ``recent``
    latest interactions; a pair is positive when the customer interacted
    with the product (``target="any"``, the default) or bought it
    (``target="purchases"``) in ``[t, t + horizon_days)``. Live features of a training pair
    read only events before its ``t`` and every label lies before ``as_of``.
    The components are then refitted on all the history and the last
    ``lookback_days`` of interactions before ``as_of`` are kept as the live
    state.

    Scoring at a decision time (:meth:`score_pairs_at`): the live state plus
    the ``recent`` interactions the caller knows of between ``as_of`` and the
    decision time (the events since the fit, or at least the trigger's own
    viewed or carted products). :meth:`score_pairs`, :meth:`score_positions`
    and :meth:`recommend` score as of ``as_of`` with the live state alone.

    Parameters
    ----------
    recommenders, estimator, depth, max_customers, random_state
        As :class:`LearnedBlendRecommender`.
    lookback_days : float
        Window of the live features before the decision time.
    horizon_days : float
        A training pair is positive if its ``target`` happens within this long after its decision time.
    delay_hours : float
        A training decision time is this long after a sampled interaction.
    decisions_per_customer : int
        Decision times sampled per customer at fit (seeded).
    recent : int
        The customer's latest interactions (and latest purchases) whose
        co-occurrence counts, and that join the candidates at fit.
    decay_days : float
        Decay of the "bought together" score of a purchase with its age.
    target : {'any', 'purchases'}
        What makes a training pair positive within ``horizon_days``: any
        interaction with the product (a view, cart or purchase: each a
        choice the customer made, about three times the positives of
        purchases alone, so the score is a probability of interest) or a
        purchase. On the synthetic shop with tastes ``'any'`` ranked
        better against the true relevance (a design run on one seed).

    Attributes
    ----------
    recommenders_, estimator_, n_train_pairs_, n_train_positives_, feature_names_
        As :class:`LearnedBlendRecommender` (``feature_names_`` ends with :data:`LIVE_NAMES`).
    n_train_decisions_ : int

    Examples
    --------
    >>> import pandas as pd
    >>> from cadence.features.interactions import load_interactions
    >>> from cadence.features.purchases import duckdb_tables
    >>> ts = pd.to_datetime(["2025-01-02", "2025-01-10", "2025-01-11", "2025-01-20", "2025-01-21", "2025-01-22"],
    ...                     utc=True)
    >>> orders = pd.DataFrame({"order_id": [f"o{i}" for i in range(6)], "customer_id": list("abcabc"),
    ...                        "revenue": [1.0] * 6, "ts": ts})
    >>> items = pd.DataFrame({"order_id": [f"o{i}" for i in range(6)], "product_id": list("xxyyzy")})
    >>> con, t = duckdb_tables({"orders": orders, "order_items": items})
    >>> data = load_interactions(con, t, "2025-02-01", label_days=25, events_days=60)
    >>> rec = LiveBlendRecommender([("pop", PopularityRecommender())], lookback_days=30, horizon_days=14,
    ...                            delay_hours=0, random_state=0).fit(data)
    >>> rec.feature_names_[-1]
    'live_recent_bought_together'
    >>> later = pd.DataFrame({"customer_id": ["a"], "product_id": ["z"], "kind": ["views"],
    ...                       "ts": pd.to_datetime(["2025-03-01"], utc=True)})
    >>> at = pd.Timestamp("2025-03-02", tz="UTC")
    >>> bool((rec.score_pairs_at(["a", "a"], ["x", "z"], at, recent=later) > 0).all())
    True
    """

    _parameter_constraints: dict[str, list[Any]] = {
        **LearnedBlendRecommender._parameter_constraints,
        "lookback_days": [Interval(Real, 0, None, closed="neither")],
        "horizon_days": [Interval(Real, 0, None, closed="neither")],
        "delay_hours": [Interval(Real, 0, None, closed="left")],
        "decisions_per_customer": [Interval(Integral, 1, None, closed="left")],
        "recent": [Interval(Integral, 1, None, closed="left")],
        "decay_days": [Interval(Real, 0, None, closed="neither")],
        "target": [StrOptions({"purchases", "any"})]}

    def __init__(self, recommenders: list[tuple[str, Recommender]], estimator: Any = None, depth: int = 50,
                 max_customers: int = 20_000, random_state: int | None = None, *, lookback_days: float = 90.0,
                 horizon_days: float = 14.0, delay_hours: float = 1.0, decisions_per_customer: int = 10,
                 recent: int = 3, decay_days: float = 30.0, target: str = "any"):
        super().__init__(recommenders, estimator, depth, max_customers, random_state)
        self.lookback_days = lookback_days
        self.horizon_days = horizon_days
        self.delay_hours = delay_hours
        self.decisions_per_customer = decisions_per_customer
        self.recent = recent
        self.decay_days = decay_days
        self.target = target

    def _live_args(self) -> dict[str, Any]:
        return {"lookback_s": int(round(self.lookback_days * _DAY)), "recent": int(self.recent),
                "decay_s": float(self.decay_days) * _DAY}

    def _fit(self, data: InteractionData) -> None:
        names = self._check_components()
        if data.earlier is None or data.labels is None:
            raise ValueError("X: the live blend needs a time split inside the history; "
                             "load it with load_interactions(..., label_days=..., events_days=...)")
        if data.events is None or data.events_since is None:
            raise ValueError("X: the live blend needs the time-stamped interactions; "
                             "load it with load_interactions(..., events_days=...)")
        label_start = data.earlier.as_of
        if data.events_since > label_start - pd.Timedelta(days=float(self.lookback_days)):
            raise ValueError(f"X: events start at {data.events_since}, after label_start - lookback_days "
                             f"({label_start - pd.Timedelta(days=float(self.lookback_days))}); load with "
                             f"events_days >= label_days + lookback_days")
        rng = check_random_state(self.random_state)
        early = data.earlier
        comps = [clone(e).fit(early) for _, e in self.recommenders]
        ref = comps[0]
        stats = _PairStats(ref, early)
        co, bt = _similarity(early.cooccurrence, ref.product_ids_), _similarity(early.bought_together, ref.product_ids_)
        ev = _live_frame(data.events, "events")
        extra = _first_seen(ev["product_id"])
        extra = extra[pd.Index(ref.product_ids_).get_indexer(extra) < 0]
        state = LiveEvents.from_frame(ev, ref.product_ids_, extra)
        del ev
        # Decision times: sampled customers' interactions in [label_start, as_of - horizon), plus the delay.
        lo_s = int(epoch_seconds(pd.Series([label_start]))[0])
        hi_s = int(epoch_seconds(pd.Series([data.as_of]))[0] - self.horizon_days * _DAY)
        delay = int(round(self.delay_hours * 3600))
        cand = np.flatnonzero((state.sec >= lo_s) & (state.sec + delay < hi_s))
        if not len(cand):
            raise ValueError(f"events: no interaction in [{label_start}, as_of - horizon_days) to learn from "
                             "(lengthen label_days or shorten horizon_days)")
        who = np.unique(state.cust[cand])
        if len(who) > self.max_customers:
            who = np.sort(rng.choice(who, self.max_customers, replace=False))
        cand = cand[np.isin(state.cust[cand], who)]
        # Up to decisions_per_customer of each customer's interactions, uniformly (a seeded shuffle, then the first n).
        cand = cand[rng.permutation(len(cand))]
        cand = cand[np.argsort(state.cust[cand], kind="stable")]
        first = np.searchsorted(state.cust[cand], state.cust[cand], side="left")
        cand = cand[np.arange(len(cand)) - first < self.decisions_per_customer]
        d_cust, d_t = state.cust[cand], state.sec[cand] + delay
        # Candidates: the components' top depth of each customer, and the products of their latest interactions.
        ids = state.customers[who]
        top = pd.concat([c.recommend(list(ids), k=self.depth)[["customer_id", "product_id"]] for c in comps],
                        ignore_index=True).drop_duplicates()
        top_c = _positions(state.customers, top["customer_id"])
        top_p = _positions(ref.product_ids_, top["product_id"])
        # Each decision gets its customer's top products.
        by = np.argsort(top_c, kind="stable")
        bounds = np.searchsorted(top_c[by], np.arange(len(state.customers) + 1))
        owner, idx = expand_ranges(bounds[d_cust], bounds[d_cust + 1])
        q_dec, q_prod = owner, top_p[by[idx]]
        # Packed (customer, seconds since the first event) keys: the state is in that order already.
        horizon = int(round(self.horizon_days * _DAY))
        t0 = int(state.sec.min())
        span = np.int64(int(state.sec.max()) - t0 + horizon + delay + 2)
        g = state.cust.astype(np.int64) * span + (state.sec - t0)
        hi = np.searchsorted(g, d_cust.astype(np.int64) * span + (d_t - t0), side="left")
        lo = np.searchsorted(g, d_cust.astype(np.int64) * span + np.maximum(d_t - t0 - self._live_args()["lookback_s"], 0),
                             side="left")
        r_dec, r_idx = expand_ranges(np.maximum(lo, hi - self.recent), hi)
        q_dec = np.concatenate([q_dec, r_dec])
        q_prod = np.concatenate([q_prod, state.prod[r_idx]])
        # Only products the components know: a product new since label_start is in the candidates only when
        # the customer just interacted with it, so its missing scores would stand for "interacted" (a leak of
        # the candidate generation into the features); at scoring, an unknown product's scores count as 0.
        known = q_prod < len(ref.product_ids_)
        q_dec, q_prod = q_dec[known], q_prod[known]
        n_p = np.int64(len(ref.product_ids_) + len(extra))
        key = np.unique(q_dec.astype(np.int64) * n_p + q_prod)
        q_dec, q_prod = key // n_p, key % n_p
        q_cust, q_t = d_cust[q_dec], d_t[q_dec]
        # Label: bought (or, with target="any", viewed, carted or bought) in [t, t + horizon).
        buys = state.kind == LIVE_KINDS.index("purchases") if self.target == "purchases" else state.kind >= 0
        if float(len(state.customers)) * float(n_p) * float(span) >= 2.0 ** 62:
            raise ValueError("events: too many customers x products x seconds to pack; lower max_customers")
        gb = np.sort((state.cust[buys].astype(np.int64) * n_p + state.prod[buys]) * span + (state.sec[buys] - t0))
        qk = (q_cust.astype(np.int64) * n_p + q_prod) * span + (q_t - t0)
        y = (np.searchsorted(gb, qk + horizon, side="left") > np.searchsorted(gb, qk, side="left"))
        y = y.astype(np.int64)
        if y.sum() == 0 or y.sum() == len(y):
            raise ValueError(f"events: {int(y.sum())} of {len(y)} candidate pairs were bought within horizon_days of "
                             "their decision time; the model needs both bought and not bought (lengthen label_days "
                             "or horizon_days)")
        known_p = np.where(q_prod < len(ref.product_ids_), q_prod, -1)
        rows = ref._rows(state.customers[q_cust])
        x = np.hstack([_features(comps, stats, rows, known_p),
                       _live_features(state.cust, state.prod, state.kind, state.sec, q_cust, q_prod, q_t,
                                      len(state.customers), co, bt, **self._live_args())])
        self.empty_features_ = np.flatnonzero(np.isnan(x).all(axis=0))
        x[:, self.empty_features_] = 0.0
        # A product unknown at scoring (new since the fit) gets the median training product's scores and counts:
        # no evidence either way, rather than an extrapolation from zeros.
        self.unknown_product_ = np.nanmedian(x[:, :len(comps) + 2], axis=0)
        est = self.estimator if self.estimator is not None else default_blend_estimator()
        self.estimator_ = clone(est).fit(x, y)
        self.n_train_pairs_ = int(len(y))
        self.n_train_positives_ = int(y.sum())
        self.n_train_decisions_ = int(len(d_t))
        self.feature_names_ = [*(f"score_{n}" for n in names), *_PairStats.NAMES, *LIVE_NAMES]
        as_of_s = int(epoch_seconds(pd.Series([data.as_of]))[0])
        # Every product of the live state was seen before as_of, so it is in product_ids_.
        self.live_ = state.since(as_of_s - self._live_args()["lookback_s"], ref.product_ids_, self.product_ids_)
        # The earlier split's arrays are not needed by the refit (ALS reads only its factors): freed before it,
        # each early component as soon as its refit is done.
        del x, y, state, stats, co, bt, top, top_c, top_p, q_dec, q_prod, q_cust, q_t, gb, qk, g, rows, known_p
        del ref, hi, lo, key, buys, cand, r_dec, r_idx, owner, idx, by, bounds, d_cust, d_t, ids, who, first
        fitted = []
        for (n, e) in self.recommenders:
            fitted.append((n, _refit(e, data, comps[0])))
            comps.pop(0)
        self.recommenders_ = fitted
        self.stats_ = _PairStats(self.recommenders_[0][1], data)
        self.cooccurrence_ = _similarity(data.cooccurrence, self.product_ids_)
        self.bought_together_ = _similarity(data.bought_together, self.product_ids_)

    def _predict_at(self, customers: np.ndarray, cols: np.ndarray, t: np.ndarray,
                    recent: LiveEvents | None) -> np.ndarray:
        """Purchase probability of (customer id, product position, seconds) triples (cols ``>= n``: unknown products)."""
        out = np.empty(len(cols))
        comps = [e for _, e in self.recommenders_]
        n_known = len(self.product_ids_)
        as_of_s = int(epoch_seconds(pd.Series([self.as_of_]))[0])
        uniq, q_cust = _unique_inverse(np.asarray(customers, dtype=object))
        since = int(t.min()) - self._live_args()["lookback_s"] if len(t) else as_of_s
        parts = [self.live_.take(uniq, since)]
        if recent is not None:
            # Only what happened since the fit (the live state holds the rest), by customers being scored.
            parts.append(recent.take(uniq, max(as_of_s, since)))
        cust, prod, kind, sec = (np.concatenate(a) for a in zip(*parts, strict=True))
        order = np.lexsort((sec, cust))
        cust, prod, kind, sec = cust[order], prod[order], kind[order], sec[order]
        rows = self._rows(uniq)[q_cust]
        known_p = np.where(cols < n_known, cols, -1)
        scores = _component_scores(comps, rows, known_p)
        ix = None
        if len(cols):
            ix = _LiveIndex(cust, prod, kind, sec, len(uniq), int(t.min()), int(t.max()), int(cols.max()),
                            self._live_args()["lookback_s"])
            del cust, prod, kind, sec
        for start in range(0, len(cols), PAIR_CHUNK):
            sl = slice(start, start + PAIR_CHUNK)
            x = np.hstack([_features(comps, self.stats_, rows[sl], known_p[sl], [v[sl] for v in scores]),
                           _live_features(ix, None, None, None, q_cust[sl], cols[sl], t[sl], len(uniq),
                                          self.cooccurrence_, self.bought_together_, **self._live_args())])
            x[:, self.empty_features_] = 0.0
            new = np.flatnonzero(cols[sl] >= n_known)
            x[new[:, None], np.arange(len(self.unknown_product_))[None, :]] = self.unknown_product_
            out[sl] = self.estimator_.predict_proba(x)[:, 1]
        return out

    def _predict(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        # As of the fit: the live state alone.
        customers = np.where(rows >= 0, self.customer_ids_[np.maximum(rows, 0)], "\x00unknown")
        t = np.full(len(rows), int(epoch_seconds(pd.Series([self.as_of_]))[0]), np.int64)
        return self._predict_at(customers.astype(object), cols, t, None)

    def prepare_recent(self, recent: pd.DataFrame) -> LiveEvents:
        """``recent`` interactions (see :meth:`score_pairs_at`) indexed once, for many scoring calls.

        Rows before ``as_of`` (the live state holds those) and ``searches``
        rows are dropped.
        """
        check_is_fitted(self, "live_")
        r = _live_frame(recent, "recent")
        r = r.loc[epoch_seconds(r["ts"]) >= int(epoch_seconds(pd.Series([self.as_of_]))[0])]
        extra = pd.Index(pd.unique(r["product_id"].astype(str).to_numpy(dtype=object)))
        extra = extra[pd.Index(self.product_ids_).get_indexer(extra) < 0]
        return LiveEvents.from_frame(r, self.product_ids_, extra)

    def score_pairs_at(self, customer_ids: Sequence[str] | np.ndarray, product_ids: Sequence[str] | np.ndarray, at: Any,
                       recent: pd.DataFrame | LiveEvents | None = None) -> np.ndarray:
        """Purchase probability of each ``(customer_ids[i], product_ids[i])`` pair decided at ``at``.

        Parameters
        ----------
        customer_ids, product_ids
            Aligned 1-d sequences of ids.
        at
            The decision time: one timestamp, or one per pair (UTC). Times
            before ``as_of`` are read as ``as_of`` (the live state holds
            nothing newer, and nothing older is taken back out).
        recent
            The customers' interactions since the fit that the caller knows
            of: a frame with ``customer_id``, ``product_id``, ``kind``
            (``views``, ``carts`` or ``purchases``; ``searches`` rows are
            ignored) and ``ts``, or the same prepared once with
            :meth:`prepare_recent`. E.g. the events since ``as_of``, or at
            least a trigger's own viewed or carted products stamped just
            before ``at``. Rows before ``as_of`` and rows at or after a
            pair's ``at`` are ignored (no look-ahead).

        Returns
        -------
        numpy.ndarray
            Probabilities. A product unknown at fit gets one too (from the
            live features and the customer's, with no component scores).
        """
        check_is_fitted(self, "live_")
        c, p = (v if isinstance(v, np.ndarray) and v.dtype == object and v.ndim == 1
                and pd.api.types.infer_dtype(v, skipna=False) == "string"
                else np.asarray([str(x) for x in v], dtype=object) for v in (customer_ids, product_ids))
        if c.shape != p.shape or c.ndim != 1:
            raise ValueError(f"customer_ids and product_ids must be 1-d and of one length, got {c.shape} and {p.shape}")
        as_of_s = int(epoch_seconds(pd.Series([self.as_of_]))[0])
        if isinstance(at, str | pd.Timestamp) or np.ndim(at) == 0:
            t = np.full(len(c), int(epoch_seconds(pd.Series([utc(at, "at")]))[0]), np.int64)
        elif isinstance(at, pd.Series | pd.Index) and pd.api.types.is_datetime64_any_dtype(at.dtype):
            # From the datetime64 values: np.asarray of tz-aware times makes one Timestamp object per pair (slow).
            t = epoch_seconds(pd.Series(at, copy=False))
        else:
            t = epoch_seconds(pd.Series(pd.to_datetime(np.asarray(at), utc=True)))
        if len(t) != len(c):
            raise ValueError(f"at: expected one time or {len(c)}, got {len(t)}")
        t = np.maximum(np.asarray(t, dtype=np.int64), as_of_s)
        rec = self.prepare_recent(recent) if isinstance(recent, pd.DataFrame) else recent
        if rec is not None and not isinstance(rec, LiveEvents):
            raise TypeError(f"recent: expected a DataFrame or LiveEvents, got {type(rec).__name__}")
        n = len(self.product_ids_)
        cols = _positions(self.product_ids_, p)
        extra = rec.extra if rec is not None else pd.Index([], dtype=object)
        unknown = np.flatnonzero(cols < 0)
        if len(unknown):
            # Unknown products of this call alone come after the prepared ones.
            more = pd.Index(pd.unique(p[unknown]))
            more = more[extra.get_indexer(more) < 0]
            allx = extra.append(more)
            cols[unknown] = n + allx.get_indexer(pd.Index(p[unknown]))
        return self._predict_at(c, cols, t, rec)

__all__ = ["Recommender", "PopularityRecommender", "RecentlyViewedRecommender", "CooccurrenceRecommender",
           "ImplicitRecommender", "BlendRecommender", "LearnedBlendRecommender", "LiveBlendRecommender",
           "LiveEvents", "LIVE_KINDS", "LIVE_NAMES", "RECOMMENDATION_COLUMNS", "expand_ranges"]
