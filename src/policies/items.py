"""Which products each message shows: per-stage item selection on a fitted recommender.

:class:`ItemSelector` fills a message's ``items`` (``|``-joined product ids,
best first) for every trigger candidate
(:func:`cadence.features.triggers.trigger_candidates`), following the
stage's rule (:data:`STAGE_RULES`):

* ``browse_abandon``, ``cart_abandon``: the viewed or carted products (the
  trigger's ``products``, in its order), then products similar to them (item
  co-occurrence neighbours) ranked by predicted interest;
* ``checkout_abandon``: the cart itself;
* ``search_abandon``: products matching the trigger's ``query`` above the
  matcher's relevance floor (none for an unrelated query), ranked by
  predicted interest;
* ``price_drop``, ``back_in_stock``, ``new_arrivals``: the trigger's products,
  then the products that dropped in price, came back in stock or arrived in
  the ``change_days`` before the trigger, ranked by predicted interest;
* ``buy_again``: the due products, ranked by predicted interest;
* ``follow_up`` (without the order's own products), ``birthday``,
  ``anniversary``, ``win_back``: the recommender's top products;
* ``order_status``: none (transactional).

"Predicted interest" is the recommender's score of the (customer, product)
pair (:meth:`~cadence.models.recommenders.Recommender.score_pairs`), a
purchase probability for the learned blend. A recommender with live signals
(:class:`~cadence.models.recommenders.LiveBlendRecommender`) scores at each
trigger's ``eligible_at`` with its fitted state plus the trigger's own
viewed or carted products (:func:`trigger_interactions`). Everything the selector knows
was fitted before ``as_of`` (interactions, co-occurrence, catalogue changes,
the products the matcher indexes); a trigger only adds its own context.
Selection is vectorised: triggers become (trigger, product) pairs, scored
at once and cut to ``n_items`` by one sort, in chunks of 200,000 triggers
(the pairs of a million triggers would not fit in a few GB; the items are
those of one call).

Examples
--------
>>> import pandas as pd
>>> from cadence.features.interactions import load_interactions
>>> from cadence.features.purchases import duckdb_tables
>>> from cadence.models.recommenders import PopularityRecommender
>>> orders = pd.DataFrame({"order_id": ["o1", "o2"], "customer_id": ["a", "b"], "revenue": [1.0, 1.0],
...                        "ts": pd.to_datetime(["2025-01-02", "2025-01-03"], utc=True)})
>>> items = pd.DataFrame({"order_id": ["o1", "o1", "o2"], "product_id": ["x", "y", "x"]})
>>> con, t = duckdb_tables({"orders": orders, "order_items": items})
>>> sel = ItemSelector(PopularityRecommender(), n_items=2).fit(load_interactions(con, t, "2025-02-01"))
>>> cands = pd.DataFrame({"customer_id": ["a", "b"], "stage": ["birthday", "browse_abandon"],
...                       "eligible_at": pd.to_datetime(["2025-01-20"] * 2, utc=True), "products": [None, "y"]})
>>> sel.select(cands).tolist()
['x|y', 'y|x']
"""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Integral, Real
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, clone
from sklearn.utils._param_validation import HasMethods, Interval
from sklearn.utils.validation import check_is_fitted

from cadence.contract.clock import epoch_seconds
from cadence.contract.tables import STAGES
from cadence.features.affinity import SearchMatcher
from cadence.features.interactions import InteractionData
from cadence.models.recommenders import expand_ranges

#: Each stage's selection rule (see the module docstring).
STAGE_RULES: Mapping[str, str] = {
    "browse_abandon": "trigger_then_similar", "cart_abandon": "trigger_then_similar",
    "checkout_abandon": "trigger", "search_abandon": "search",
    "price_drop": "trigger_then_changed", "back_in_stock": "trigger_then_changed",
    "new_arrivals": "trigger_then_changed", "buy_again": "trigger_ranked",
    "follow_up": "top_without_trigger", "birthday": "top", "anniversary": "top", "win_back": "top",
    "order_status": "none",
}
#: Columns :meth:`ItemSelector.select` reads (``query`` only for search abandonment).
SELECT_COLUMNS: tuple[str, ...] = ("customer_id", "stage", "eligible_at", "products")
_CHANGE_STAGES = ("price_drop", "back_in_stock", "new_arrivals")
_PINNED, _RANKED = 0, 1
_CHUNK = 200_000  # triggers selected at once: bounds the (trigger, product) pairs held in memory


def _split(products: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``|``-joined ids -> (row, position in the list, id) of every listed product."""
    s = products.where(products.notna(), "").astype(str)
    s = s[s != ""]
    if not len(s):
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, object)
    lists = s.str.split("|")
    n = lists.str.len().to_numpy()
    rows = np.repeat(s.index.to_numpy(np.int64), n)
    pos = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
    ids = np.asarray([p for lst in lists.to_numpy() for p in lst], dtype=object)
    keep = ids != ""
    return rows[keep], pos[keep], ids[keep]


#: Stages whose trigger products the customer just interacted with, and how (the rest name other products).
TRIGGER_KINDS: Mapping[str, str] = {"browse_abandon": "views", "cart_abandon": "carts", "checkout_abandon": "carts"}


def trigger_interactions(candidates: pd.DataFrame) -> pd.DataFrame:
    """The interactions a trigger row itself reports, one second before its ``eligible_at``.

    A browse abandonment's ``products`` were just viewed, a cart or checkout
    abandonment's just carted (:data:`TRIGGER_KINDS`): what a model with
    live signals (:meth:`~cadence.models.recommenders.LiveBlendRecommender.score_pairs_at`)
    can know at serving from the trigger row alone. Columns ``customer_id``,
    ``product_id``, ``kind``, ``ts``.

    >>> cands = pd.DataFrame({"customer_id": ["a", "b"], "stage": ["cart_abandon", "birthday"],
    ...                       "eligible_at": pd.to_datetime(["2025-01-20"] * 2, utc=True), "products": ["x|y", None]})
    >>> trigger_interactions(cands)[["customer_id", "product_id", "kind"]].values.tolist()
    [['a', 'x', 'carts'], ['a', 'y', 'carts']]
    """
    stages = candidates["stage"].astype(str).to_numpy(dtype=object)
    kind = pd.Series(stages).map(TRIGGER_KINDS).to_numpy(dtype=object)
    live = pd.notna(kind)
    products = pd.Series(candidates["products"].to_numpy(dtype=object)).where(live)
    row, _, ids = _split(products)
    ts = pd.Series(pd.to_datetime(candidates["eligible_at"], utc=True).to_numpy(), dtype="datetime64[ns, UTC]")
    return pd.DataFrame({"customer_id": candidates["customer_id"].astype(str).to_numpy(dtype=object)[row],
                         "product_id": ids, "kind": kind[row],
                         "ts": (ts.iloc[row] - pd.Timedelta(seconds=1)).reset_index(drop=True)})


class ItemSelector(BaseEstimator):
    """Choose each message's products by stage, on a recommender fitted before ``as_of``.

    Parameters
    ----------
    recommender : Recommender
        Scores predicted interest (unfitted; cloned and fitted on ``X``).
    matcher : SearchMatcher or None
        Matches search queries to products (None: :class:`SearchMatcher`
        with its defaults); fitted on the ``products`` given to :meth:`fit`.
    n_items : int or mapping of stage to int
        Products per message at most (a mapping gives some stages their own
        count; stages it omits get 3).
    n_similar : int
        Co-occurrence neighbours considered per viewed or carted product.
    match_depth : int
        Matches per query considered (ranked by interest among them).
    change_days : float
        Price drops, restocks and arrivals this many days before a trigger
        form its pool.
    pool_size : int
        At most the latest ``pool_size`` changes in that window. Each is
        scored for the recipient, so a change stage costs triggers x
        ``pool_size`` pair scores (at 200 a million-customer run spent most
        of its selection time there).

    Attributes
    ----------
    recommender_ : Recommender
    matcher_ : SearchMatcher or None
        None without ``products`` (search abandonment then gets no items).
    product_ids_ : ndarray of str
        The products the selector can show: the recommender's, and the
        catalogue's created before ``as_of``.
    neighbours_ : scipy.sparse.csr_matrix, shape (n_products, n_products)
        Co-occurrence similarity, ``n_similar`` neighbours per product.
    changes_ : dict of stage to (seconds, product position)
        Each change stage's events before ``as_of``, in time order.
    as_of_ : pandas.Timestamp
    """

    _parameter_constraints: dict[str, list[Any]] = {
        "recommender": [HasMethods(["fit", "score_positions", "recommend"])],
        "matcher": [HasMethods(["fit", "match_frame"]), None],
        "n_items": [Interval(Integral, 1, None, closed="left"), dict],
        "n_similar": [Interval(Integral, 1, None, closed="left")],
        "match_depth": [Interval(Integral, 1, None, closed="left")],
        "change_days": [Interval(Real, 0, None, closed="neither")],
        "pool_size": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, recommender: Any, *, matcher: SearchMatcher | None = None,
                 n_items: int | Mapping[str, int] = 3, n_similar: int = 20, match_depth: int = 20,
                 change_days: float = 14.0, pool_size: int = 50):
        self.recommender = recommender
        self.matcher = matcher
        self.n_items = n_items
        self.n_similar = n_similar
        self.match_depth = match_depth
        self.change_days = change_days
        self.pool_size = pool_size

    # ------------------------------------------------------------------ fit
    def fit(self, X: InteractionData, products: pd.DataFrame | None = None,
            product_changes: pd.DataFrame | None = None) -> ItemSelector:
        """Fit the recommender on ``X`` and index what the stages need, all before ``X.as_of``.

        Parameters
        ----------
        X
            :class:`~cadence.features.interactions.InteractionData`.
        products
            The catalogue (``product_id``, ``created_at`` and the matcher's
            fields): search matches and new arrivals. Products created at or
            after ``as_of`` are ignored.
        product_changes
            ``product_id``, ``ts``, ``price``, ``in_stock``: price drops and
            restocks (needs ``products``' ``price`` for the first change).
            Changes at or after ``as_of`` are ignored.
        """
        self._validate_params()
        if not isinstance(X, InteractionData):
            raise TypeError(f"X must be an InteractionData (load_interactions), got {type(X).__name__}")
        if isinstance(self.n_items, dict):
            bad = {k: v for k, v in self.n_items.items() if k not in STAGES or not isinstance(v, int) or v < 1}
            if bad:
                raise ValueError(f"n_items: expected stages mapped to positive integers, got {bad}")
        as_of = X.as_of
        self.as_of_ = as_of
        self.recommender_ = clone(self.recommender).fit(X)
        rec_ids = np.asarray(self.recommender_.product_ids_, dtype=object)
        catalogue = None
        if products is not None:
            catalogue = self._check(products, "products", ("product_id", "created_at"))
            catalogue = catalogue[pd.to_datetime(catalogue["created_at"], utc=True) < as_of]
        extra = [] if catalogue is None else [catalogue["product_id"].astype(str).to_numpy(dtype=object)]
        self.product_ids_ = np.unique(np.concatenate([rec_ids, *extra])).astype(object)
        self.recommender_cols_ = pd.Index(rec_ids).get_indexer(pd.Index(self.product_ids_))
        self.neighbours_ = self._neighbours(X.cooccurrence)
        self.matcher_ = None
        if catalogue is not None and len(catalogue):
            self.matcher_ = clone(self.matcher if self.matcher is not None else SearchMatcher()).fit(
                catalogue.reset_index(drop=True))
        self.changes_ = self._changes(catalogue, product_changes, as_of)
        return self

    @staticmethod
    def _check(frame: pd.DataFrame, name: str, columns: tuple[str, ...]) -> pd.DataFrame:
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"{name} must be a pandas DataFrame, got {type(frame).__name__}")
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValueError(f"{name}: missing column {', '.join(map(repr, missing))}")
        return frame

    def _codes(self, ids: np.ndarray | pd.Series) -> np.ndarray:
        return pd.Index(self.product_ids_).get_indexer(pd.Index(np.asarray(ids, dtype=object).astype(str)))

    def _neighbours(self, co: pd.DataFrame) -> sp.csr_matrix:
        n = len(self.product_ids_)
        a, b = self._codes(co["product_id"]), self._codes(co["other_product_id"])
        score = co["score"].to_numpy(np.float64)
        ok = (a >= 0) & (b >= 0)
        a, b, score = a[ok], b[ok], score[ok]
        order = np.lexsort((b, -score, a))
        a, b, score = a[order], b[order], score[order]
        rank = np.arange(len(a)) - np.searchsorted(a, a, side="left")
        keep = rank < self.n_similar
        return sp.csr_matrix((score[keep], (a[keep], b[keep])), shape=(n, n))

    def _changes(self, catalogue: pd.DataFrame | None, changes: pd.DataFrame | None,
                 as_of: pd.Timestamp) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
        if catalogue is not None:
            code = self._codes(catalogue["product_id"])
            out["new_arrivals"] = self._sorted(epoch_seconds(catalogue["created_at"]), code)
        if changes is not None:
            ch = self._check(changes, "product_changes", ("product_id", "ts", "price", "in_stock"))
            ch = ch[pd.to_datetime(ch["ts"], utc=True) < as_of]
            ch = ch.assign(product_id=ch["product_id"].astype(str), _s=epoch_seconds(ch["ts"]))
            ch = ch.sort_values(["product_id", "_s"], kind="stable")
            same = ch["product_id"].eq(ch["product_id"].shift())
            prev_price = ch["price"].shift().where(same)
            if catalogue is not None and "price" in catalogue.columns:
                base = catalogue.assign(product_id=catalogue["product_id"].astype(str)).set_index("product_id")["price"]
                prev_price = prev_price.fillna(ch["product_id"].map(base))
            prev_stock = ch["in_stock"].astype(bool).shift(fill_value=True).where(same, True)
            drop = (ch["price"] < prev_price).to_numpy()
            restock = (ch["in_stock"].astype(bool) & ~prev_stock).to_numpy()
            code = self._codes(ch["product_id"])
            s = ch["_s"].to_numpy(np.int64)
            out["price_drop"] = self._sorted(s[drop], code[drop])
            out["back_in_stock"] = self._sorted(s[restock], code[restock])
        for stage in _CHANGE_STAGES:
            out.setdefault(stage, empty)
        return out

    @staticmethod
    def _sorted(seconds: np.ndarray, code: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ok = code >= 0
        seconds, code = np.asarray(seconds, np.int64)[ok], code[ok]
        order = np.lexsort((code, seconds))
        return seconds[order], code[order]

    # ------------------------------------------------------------------ select
    def _n_items(self, stages: np.ndarray) -> np.ndarray:
        n = self.n_items
        if isinstance(n, Mapping):
            return pd.Series(stages).map(lambda s: n.get(s, 3)).to_numpy(np.int64)
        return np.full(len(stages), int(n), np.int64)

    def select(self, candidates: pd.DataFrame) -> pd.Series:
        """The products each candidate's message shows: ``|``-joined ids, best first (``""``: none).

        Parameters
        ----------
        candidates
            :data:`SELECT_COLUMNS` (and ``query`` when a row is
            ``search_abandon``), as :func:`~cadence.features.triggers.trigger_candidates` returns.

        Returns
        -------
        pandas.Series
            Named ``items``, on ``candidates``' index.
        """
        check_is_fitted(self, "recommender_")
        cand = self._check(candidates, "candidates", SELECT_COLUMNS)
        stages = cand["stage"].astype(str).to_numpy(dtype=object)
        unknown = sorted(set(pd.unique(stages)) - set(STAGE_RULES))
        if unknown:
            raise ValueError(f"candidates: column 'stage' has unknown stages {unknown}")
        if len(cand) <= _CHUNK:
            return self._select(cand, None)
        # In chunks of triggers: every pair of a chunk lives at once (tens of millions at a million triggers).
        # The top-product depth is the whole call's, so a chunk ranks exactly what one call would.
        follow = np.flatnonzero(pd.Series(stages).map(STAGE_RULES).to_numpy(dtype=object) == "top_without_trigger")
        fr = _split(pd.Series(cand["products"].to_numpy()[follow], index=np.arange(len(follow))))[0]
        extra = int(np.bincount(fr).max()) if len(fr) else 0
        top = np.isin(pd.Series(stages).map(STAGE_RULES).to_numpy(dtype=object), ["top", "top_without_trigger"])
        k_top = int(self._n_items(stages[top]).max()) + extra if top.any() else None
        parts = [self._select(cand.iloc[i:i + _CHUNK], k_top) for i in range(0, len(cand), _CHUNK)]
        return pd.concat(parts).rename("items")

    def _select(self, cand: pd.DataFrame, k_top: int | None) -> pd.Series:
        stages = cand["stage"].astype(str).to_numpy(dtype=object)
        rule = pd.Series(stages).map(STAGE_RULES).to_numpy(dtype=object)
        if (rule == "search").any() and "query" not in cand.columns:
            raise ValueError("candidates: missing column 'query' (search_abandon rows match it)")
        n = len(cand)
        try:
            eligible = epoch_seconds(cand["eligible_at"])
        except (TypeError, ValueError) as err:
            raise ValueError(f"candidates: column 'eligible_at' must hold timestamps ({err})") from None
        trig_row, trig_pos, trig_ids = _split(pd.Series(cand["products"].to_numpy(), index=np.arange(n)))
        # Products a trigger names that the selector never saw still get shown: they extend the index for this call.
        trig_code = self._codes(trig_ids)
        new_ids = pd.unique(trig_ids[trig_code < 0])
        universe = np.concatenate([self.product_ids_, np.asarray(new_ids, dtype=object)])
        rec_cols = np.concatenate([self.recommender_cols_, np.full(len(new_ids), -1)])
        if len(new_ids):
            trig_code[trig_code < 0] = len(self.product_ids_) + pd.Index(new_ids).get_indexer(pd.Index(trig_ids[trig_code < 0]))
        cust_rows = self.recommender_._rows(cand["customer_id"].astype(str).to_numpy(dtype=object))

        rows, codes, prio, key1, key2 = [], [], [], [], []

        def add(r: np.ndarray, c: np.ndarray, p: int, k1: np.ndarray, k2: np.ndarray) -> None:
            rows.append(r.astype(np.int64))
            codes.append(c.astype(np.int64))
            prio.append(np.full(len(r), p, np.int8))
            key1.append(np.asarray(k1, np.float64))
            key2.append(np.asarray(k2, np.float64))

        trig_rule = rule[trig_row]
        # The trigger's own products, in its order.
        pinned = np.isin(trig_rule, ["trigger_then_similar", "trigger", "trigger_then_changed"])
        add(trig_row[pinned], trig_code[pinned], _PINNED, trig_pos[pinned], np.zeros(int(pinned.sum())))
        scored_r, scored_c, scored_k2 = [], [], []
        ranked = trig_rule == "trigger_ranked"
        scored_r.append(trig_row[ranked])
        scored_c.append(trig_code[ranked])
        scored_k2.append(trig_pos[ranked].astype(np.float64))
        # Similar products: co-occurrence neighbours of the viewed or carted ones.
        sim = (trig_rule == "trigger_then_similar") & (trig_code < len(self.product_ids_))
        src_r, src_c = trig_row[sim], trig_code[sim]
        ip = self.neighbours_.indptr
        owner, idx = expand_ranges(ip[src_c], ip[src_c + 1])
        scored_r.append(src_r[owner])
        scored_c.append(self.neighbours_.indices[idx])
        scored_k2.append(-self.neighbours_.data[idx])
        # Search matches above the floor.
        srch = np.flatnonzero(rule == "search")
        if len(srch) and self.matcher_ is not None:
            m = self.matcher_.match_frame(cand["query"].to_numpy()[srch].tolist(), k=self.match_depth)
            scored_r.append(srch[m["query_index"].to_numpy()])
            scored_c.append(self._codes(m["product_id"]))
            scored_k2.append(-m["score"].to_numpy(np.float64))
        # Changes in the window before the trigger.
        for stage in _CHANGE_STAGES:
            at = np.flatnonzero(stages == stage)
            t, c = self.changes_[stage]
            if not len(at) or not len(t):
                continue
            hi = np.searchsorted(t, eligible[at], side="right")
            lo = np.maximum(np.searchsorted(t, eligible[at] - self.change_days * 86_400.0, side="right"),
                            hi - self.pool_size)
            owner, idx = expand_ranges(lo, hi)
            scored_r.append(at[owner])
            scored_c.append(c[idx])
            scored_k2.append(-t[idx].astype(np.float64))  # ties: the latest change first
        sr, sc, sk2 = (np.concatenate(x) for x in (scored_r, scored_c, scored_k2))
        if hasattr(self.recommender_, "score_pairs_at"):
            # A recommender with live signals scores at the decision time, knowing the trigger's own session.
            ids = cand["customer_id"].astype(str).to_numpy(dtype=object)
            when = pd.to_datetime(eligible, unit="s", utc=True)
            interest = self.recommender_.score_pairs_at(ids[sr], universe[sc], when[sr],
                                                        recent=trigger_interactions(cand))
        else:
            interest = self.recommender_.score_positions(cust_rows[sr], rec_cols[sc])
        # Unscored products (unknown to the recommender) go after every scored one.
        add(sr, sc, _RANKED, np.where(np.isfinite(interest), -interest, np.inf), sk2)
        # Top products: the recommender's own ranking, once per customer.
        top = np.flatnonzero(np.isin(rule, ["top", "top_without_trigger"]))
        if len(top):
            follow = rule[trig_row] == "top_without_trigger"
            extra = int(np.bincount(trig_row[follow]).max()) if follow.any() else 0
            ids = cand["customer_id"].astype(str).to_numpy(dtype=object)[top]
            uniq, inv = np.unique(ids, return_inverse=True)
            k = int(self._n_items(stages[top]).max()) + extra if k_top is None else k_top
            rec = self.recommender_.recommend(list(uniq), k=k)
            rc = np.searchsorted(uniq, rec["customer_id"].to_numpy(dtype=object))
            per = np.bincount(rc, minlength=len(uniq))
            rec_start = np.concatenate([[0], np.cumsum(per)[:-1]])
            # Every trigger row of a customer gets that customer's list.
            owner, idx = expand_ranges(rec_start[inv], rec_start[inv] + per[inv])
            r = top[owner]
            add(r, self._codes(rec["product_id"].to_numpy(dtype=object)[idx]), _RANKED,
                rec["rank"].to_numpy(np.float64)[idx], np.zeros(len(idx)))
        r, c = np.concatenate(rows).astype(np.int64), np.concatenate(codes).astype(np.int64)
        p, k1, k2 = np.concatenate(prio), np.concatenate(key1), np.concatenate(key2)
        excluded = rule[trig_row] == "top_without_trigger"  # follow-up: not what was just bought
        if excluded.any():
            keep = ~np.isin(r * len(universe) + c, trig_row[excluded] * len(universe) + trig_code[excluded])
            r, c, p, k1, k2 = r[keep], c[keep], p[keep], k1[keep], k2[keep]
        return pd.Series(self._cut(r, c, p, k1, k2, self._n_items(stages), universe, n), index=cand.index,
                         name="items", dtype=object)

    @staticmethod
    def _cut(r: np.ndarray, c: np.ndarray, p: np.ndarray, k1: np.ndarray, k2: np.ndarray, n_items: np.ndarray,
             universe: np.ndarray, n: int) -> np.ndarray:
        out = np.full(n, "", dtype=object)
        if not len(r):
            return out
        # The order of lexsort((c, k2, k1, p, r)) with two keys: the floats replaced by their ranks (one sort
        # each of fewer values) and packed with the integers into int64 (a third less time than five keys).
        u1, rank1 = np.unique(k1, return_inverse=True)
        u2, rank2 = np.unique(k2, return_inverse=True)
        order = np.lexsort((rank2.astype(np.int64) * (int(c.max()) + 1) + c,
                            (r * 2 + p.astype(np.int64)) * len(u1) + rank1))
        r, c = r[order], c[order]
        # The first occurrence of a product in a row wins (a pinned product is not repeated as a similar one).
        keep = ~pd.Series(r * len(universe) + c).duplicated().to_numpy()  # a hash, not another sort
        r, c = r[keep], c[keep]
        rank = np.arange(len(r)) - np.searchsorted(r, r, side="left")
        ok = rank < n_items[r]
        r, c, rank = r[ok], c[ok], rank[ok]
        width = int(rank.max()) + 1 if len(rank) else 0
        grid = np.full((n, width), None, dtype=object)
        grid[r, rank] = universe[c]
        for j in range(width):
            col = grid[:, j]
            has = col != None  # noqa: E711 - elementwise comparison of an object array
            if j == 0:
                out[has] = col[has]
            else:
                out[has] = out[has] + "|" + col[has]
        return out


__all__ = ["ItemSelector", "STAGE_RULES", "SELECT_COLUMNS", "TRIGGER_KINDS", "trigger_interactions"]
