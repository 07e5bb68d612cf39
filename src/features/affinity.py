"""Product affinity: item–item co-occurrence and search-to-product matching.

:func:`cooccurrence` is an Ibis expression (DuckDB or Spark) over the
baskets seen before ``as_of``; :class:`SearchMatcher` is an sklearn-style
estimator that maps free-text queries to products (TF-IDF by default, any
embedding function otherwise). Recommendation stages (browse, search
abandon, follow-up...) use both.

Examples
--------
>>> import pandas as pd
>>> products = pd.DataFrame({"product_id": ["p1", "p2"], "title": ["burr grinder", "green tea"],
...                          "category": ["coffee", "tea"]})
>>> SearchMatcher().fit(products).match(["grinder", "quantum physics"])
[['p1'], []]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from numbers import Integral, Real
from typing import Any

import ibis
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, _fit_context
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion
from sklearn.preprocessing import normalize
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from cadence.contract.triggers import TriggerRules
from cadence.features.customer import DEFAULT_RULES, AsOf, require_columns, sessionised_events
from cadence.features.engine import as_of_literal

Embed = Callable[[list[str]], np.ndarray]
#: Event types that put a product into a session's basket.
BASKET_EVENTS: tuple[str, ...] = ("product_view", "add_to_cart", "purchase")


# ---------------------------------------------------------------- co-occurrence
def baskets(tables: Mapping[str, ibis.Table], as_of: AsOf, *, rules: TriggerRules = DEFAULT_RULES) -> ibis.Table:
    """Distinct ``(basket, product_id)`` pairs before ``as_of``.

    A basket is a session (products viewed, carted or bought in it, keyed
    ``s:<customer>/<session>``) or an order (its lines, keyed
    ``o:<order_id>``). Rows at or after ``as_of`` are not read.
    """
    cutoff = as_of_literal(as_of)
    events = require_columns(tables, "events")
    orders = require_columns(tables, "orders")
    items = require_columns(tables, "order_items")
    parts = []
    if events is not None:
        ev = sessionised_events(events, cutoff, rules)
        ev = ev.filter(ev.event_type.isin(BASKET_EVENTS) & ev.product_id.notnull())
        key = ibis.literal("s:").concat(ev.customer_id).concat("/").concat(ev.sess)
        parts.append(ev.select(basket=key, product_id=ev.product_id))
    if orders is not None and items is not None:
        if "order_id" not in orders.columns:
            raise ValueError("orders: missing column 'order_id' (needed for order baskets)")
        o = orders.filter(orders.ts < cutoff).select(o_id=orders.order_id)
        lines = items.join(o, items.order_id == o.o_id)
        parts.append(lines.select(basket=ibis.literal("o:").concat(lines.order_id), product_id=lines.product_id))
    if not parts:
        raise ValueError("cooccurrence needs an events table, or orders and order_items")
    # A one-table union is the table itself, so distinct is applied explicitly.
    return (ibis.union(*parts, distinct=False) if len(parts) > 1 else parts[0]).distinct()


def cooccurrence(tables: Mapping[str, ibis.Table], as_of: AsOf, *, top_k: int = 20, min_count: int = 1,
                 rules: TriggerRules = DEFAULT_RULES) -> ibis.Table:
    """For each product, the ``top_k`` products most often in the same basket.

    The score is the cosine (Ochiai) similarity of basket memberships,
    ``n(i, j) / sqrt(n(i) * n(j))`` with ``n(i)`` the number of baskets
    holding ``i`` and ``n(i, j)`` those holding both; it lies in (0, 1] and,
    unlike a raw count, does not rank bestsellers next to everything.
    Baskets are sessions and orders before ``as_of`` (see :func:`baskets`).

    Parameters
    ----------
    tables
        ``events`` and/or ``orders`` + ``order_items`` as Ibis tables.
    as_of
        Cutoff; rows at or after it are not read.
    top_k
        Neighbours kept per product, best first (ties: more shared baskets,
        then ``other_product_id``).
    min_count
        Pairs seen in fewer baskets are dropped (1 keeps all).
    rules
        Sessionisation of events without ``session_id``.

    Returns
    -------
    ibis.Table
        ``product_id``, ``other_product_id`` (never equal), ``score``.

    Examples
    --------
    >>> import pandas as pd
    >>> from cadence.features.engine import connect, execute, register
    >>> con = connect("duckdb")
    >>> t = register(con, {
    ...     "orders": pd.DataFrame({"order_id": ["o1", "o2"], "customer_id": ["a", "b"],
    ...                             "ts": pd.to_datetime(["2025-01-01", "2025-01-02"], utc=True),
    ...                             "revenue": [1.0, 1.0]}),
    ...     "order_items": pd.DataFrame({"order_id": ["o1", "o1", "o2"], "product_id": ["x", "y", "x"]})})
    >>> execute(con, cooccurrence(t, "2025-02-01"), sort_by=["product_id"]).values.tolist()
    [['x', 'y', 0.707107], ['y', 'x', 0.707107]]
    """
    if not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    if not isinstance(min_count, int) or min_count < 1:
        raise ValueError(f"min_count must be a positive integer, got {min_count!r}")
    b = baskets(tables, as_of, rules=rules)
    # view(): a self-join needs distinct table references or Ibis merges the two sides.
    left = b.select(l_basket=b.basket, product_id=b.product_id)
    rb = b.view()
    other = rb.select(o_basket=rb.basket, other_product_id=rb.product_id)
    pairs = left.join(other, (left.l_basket == other.o_basket) & (left.product_id != other.other_product_id))
    co = pairs.group_by(["product_id", "other_product_id"]).aggregate(n_ij=pairs.count())
    co = co.filter(co.n_ij >= min_count)
    n = b.group_by("product_id").aggregate(n_i=b.count())
    nv = n.view()
    n_j = nv.select(j_pid=nv.product_id, n_j=nv.n_i)
    co = co.join(n, "product_id").join(n_j, co.other_product_id == n_j.j_pid)
    co = co.select("product_id", "other_product_id", "n_ij",
                   score=co.n_ij.cast("float64") / (co.n_i.cast("float64") * co.n_j.cast("float64")).sqrt())
    rank = ibis.row_number().over(group_by=co.product_id,
                                  order_by=[ibis.desc(co.score), ibis.desc(co.n_ij), co.other_product_id])
    co = co.mutate(rk=rank)
    return co.filter(co.rk < top_k).select("product_id", "other_product_id", "score")


# ---------------------------------------------------------------- search matching
class SearchMatcher(BaseEstimator):
    """Match search queries to products by text similarity, with a relevance floor.

    By default products are represented by TF-IDF over their text fields:
    character n-grams within words (so plurals and typos still match) joined
    with word unigrams (so a shared whole word counts more than shared
    letters), weighted ``1 - word_weight`` and ``word_weight``. No model is
    downloaded. Pass ``embed`` to use any embedding model instead (a
    sentence encoder, say). Scores are cosine similarities.

    Parameters
    ----------
    embed
        ``embed(texts) -> array (n_texts, dim)``; None uses TF-IDF.
    fields
        Product columns joined (with spaces) into the product's text.
    threshold
        The relevance floor: minimum cosine similarity for a product to be
        returned, so an unrelated query matches nothing. With the default
        TF-IDF, 0.35 sits in the gap between the synthetic catalogue's
        matches (typos and plurals such as "espreso" or "serums" score about
        0.45 against "bold espresso" and "premium serum") and unrelated
        queries ("printer ink" scores 0.24 against "premium grinder",
        "wedding dress" 0.21 against "deluxe yoga"); see the hand-written
        table in ``tests/features/test_search_table.py``. Text overlap cannot
        separate everything; an embedding model is the better tool there.
    relative_threshold
        Also drop products scoring below this fraction of the query's best
        score (0: off); "matcha tea" then keeps the matcha, not every tea.
    analyzer, ngram_range
        ``"char_wb+word"`` (the default) or one of ``TfidfVectorizer``'s
        analyzers; ``ngram_range`` applies to the character n-grams (ignored
        with ``embed``).
    word_weight
        Share of the word unigrams in ``"char_wb+word"``.

    Attributes
    ----------
    product_ids_ : ndarray of str, shape (n_products,)
    vectorizer_ : TfidfVectorizer, FeatureUnion or None
        The fitted vectorizer (None with ``embed``).
    vectors_ : ndarray or sparse matrix, shape (n_products, dim)
        L2-normalised product vectors.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> products = pd.DataFrame({"product_id": ["p1", "p2"], "title": ["burr grinder", "green tea"],
    ...                          "category": ["coffee", "tea"]})
    >>> SearchMatcher().fit(products).match(["grinders", "tea"], k=1)
    [['p1'], ['p2']]
    >>> vocab = ["coffee", "tea"]
    >>> bag = lambda texts: np.array([[t.count(w) for w in vocab] for t in texts])
    >>> SearchMatcher(embed=bag, threshold=0.5).fit(products).match(["tea please", "cake"])
    [['p2'], []]
    """

    _parameter_constraints: dict[str, list[Any]] = {
        "embed": [callable, None],
        "fields": [tuple, list],
        "threshold": [Interval(Real, -1, 1, closed="both")],
        "relative_threshold": [Interval(Real, 0, 1, closed="both")],
        "analyzer": [StrOptions({"char_wb+word", "word", "char", "char_wb"})],
        "ngram_range": [tuple],
        "word_weight": [Interval(Real, 0, 1, closed="both")],
    }

    def __init__(self, *, embed: Embed | None = None, fields: Sequence[str] = ("title", "category"),
                 threshold: float = 0.35, relative_threshold: float = 0.0, analyzer: str = "char_wb+word",
                 ngram_range: tuple[int, int] = (3, 4), word_weight: float = 0.25):
        self.embed = embed
        self.fields = fields
        self.threshold = threshold
        self.relative_threshold = relative_threshold
        self.analyzer = analyzer
        self.ngram_range = ngram_range
        self.word_weight = word_weight

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: pd.DataFrame, y: None = None) -> SearchMatcher:
        """Index the products of ``X`` (``product_id`` plus the ``fields`` columns)."""
        if not isinstance(X, pd.DataFrame):
            raise TypeError(f"X must be a pandas DataFrame of products, got {type(X).__name__}")
        missing = [c for c in ("product_id", *self.fields) if c not in X.columns]
        if missing:
            raise ValueError(f"products: missing column {', '.join(repr(c) for c in missing)}")
        if len(X) == 0:
            raise ValueError("products: no rows to index")
        texts = X[list(self.fields)].fillna("").astype(str).agg(" ".join, axis=1).tolist()
        self.product_ids_ = X["product_id"].astype(str).to_numpy()
        if self.embed is None:
            self.vectorizer_: Any = self._vectorizer()
            self.vectors_ = normalize(self.vectorizer_.fit_transform(texts))
        else:
            self.vectorizer_ = None
            self.vectors_ = self._embed(texts)
        return self

    def _vectorizer(self) -> Any:
        if self.analyzer != "char_wb+word":
            return TfidfVectorizer(analyzer=self.analyzer, ngram_range=self.ngram_range, sublinear_tf=True)
        char = TfidfVectorizer(analyzer="char_wb", ngram_range=self.ngram_range, sublinear_tf=True)
        word = TfidfVectorizer(analyzer="word", sublinear_tf=True)
        # Weights multiply each block; squared, they are the blocks' shares of the cosine.
        return FeatureUnion([("char", char), ("word", word)], transformer_weights={
            "char": float(np.sqrt(1.0 - self.word_weight)), "word": float(np.sqrt(self.word_weight))})

    def _embed(self, texts: list[str]) -> np.ndarray:
        assert self.embed is not None
        v = np.asarray(self.embed(texts), dtype=float)
        if v.ndim != 2 or v.shape[0] != len(texts):
            raise ValueError(f"embed must return an array of shape ({len(texts)}, dim), got {v.shape}")
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        # Zero vectors (no known tokens) stay zero and so never match.
        return np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)

    def scores(self, queries: Sequence[str]) -> np.ndarray:
        """Cosine similarity of each query to each product, shape (n_queries, n_products)."""
        check_is_fitted(self, "vectors_")
        qs = [str(q) for q in queries]
        if not qs:
            return np.zeros((0, len(self.product_ids_)))
        if self.vectorizer_ is not None:
            sim = normalize(self.vectorizer_.transform(qs)) @ self.vectors_.T
            return np.asarray(sim.toarray())
        return np.asarray(self._embed(qs) @ self.vectors_.T)

    def match(self, queries: Sequence[str], k: int = 5) -> list[list[str]]:
        """Up to ``k`` product ids per query, best first; ``[]`` when none reaches the floor.

        Ties keep the products' order in the fitted frame.
        """
        if isinstance(queries, str):
            raise TypeError("queries must be a sequence of strings, not one string")
        if not isinstance(k, Integral) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        table = self.match_frame(queries, k=k)
        out: list[list[str]] = [[] for _ in queries]
        for q, pid in zip(table["query_index"].to_numpy(), table["product_id"].to_numpy(), strict=True):
            out[q].append(str(pid))
        return out

    def match_frame(self, queries: Sequence[str], k: int = 5, *, batch: int = 2_000) -> pd.DataFrame:
        """The matches of many queries as one table: ``query_index``, ``product_id``, ``score``, ``rank`` (from 1).

        Distinct queries are scored once (triggers repeat the same few
        searches), in batches of ``batch``; a query without a product at or
        above the floor has no row. Rows are sorted by query, then rank.
        """
        if isinstance(queries, str):
            raise TypeError("queries must be a sequence of strings, not one string")
        if not isinstance(k, Integral) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        check_is_fitted(self, "vectors_")
        qs = pd.Series([("" if q is None or (isinstance(q, float) and np.isnan(q)) else str(q)) for q in queries],
                       dtype=object)
        codes, uniq = pd.factorize(qs)
        kk = min(int(k), len(self.product_ids_))
        parts_q, parts_p, parts_s, parts_r = [], [], [], []
        for start in range(0, len(uniq), batch):
            sim = self.scores(list(uniq[start:start + batch]))
            best = sim.max(axis=1, initial=0.0)
            floor = np.maximum(self.threshold, self.relative_threshold * best)[:, None]
            sim = np.where((sim >= floor) & (sim > 0), sim, -np.inf)
            order = np.argsort(-sim, axis=1, kind="stable")[:, :kk]
            top = np.take_along_axis(sim, order, axis=1)
            rr, cc = np.nonzero(np.isfinite(top))
            parts_q.append(rr + start)
            parts_p.append(order[rr, cc])
            parts_s.append(top[rr, cc])
            parts_r.append(cc + 1)
        uq = np.concatenate(parts_q) if parts_q else np.zeros(0, np.int64)
        up, us, ur = (np.concatenate(x) if x else np.zeros(0, np.int64) for x in (parts_p, parts_s, parts_r))
        # Expand the distinct queries' matches back to every query that asked them.
        q_order = np.argsort(codes, kind="stable")
        q_codes = codes[q_order]
        lo = np.searchsorted(uq, q_codes, side="left")
        hi = np.searchsorted(uq, q_codes, side="right")
        n = hi - lo
        rows = np.repeat(q_order, n)
        src = np.repeat(lo - np.cumsum(n) + n, n) + np.arange(int(n.sum()))
        out = pd.DataFrame({"query_index": rows.astype(np.int64), "product_id": self.product_ids_[up[src]],
                            "score": np.asarray(us, dtype=np.float64)[src], "rank": ur[src].astype(np.int64)})
        return out.sort_values(["query_index", "rank"], kind="stable").reset_index(drop=True)


__all__ = ["baskets", "cooccurrence", "SearchMatcher", "BASKET_EVENTS"]
