"""Each customer's model scores at a time: churn risk, P(alive), expected purchases, CLV, repurchase due.

What a send policy reads about a customer besides their features: the
fitted models' view of them at the moment of a decision. One estimator,
:class:`CustomerScorer`, fits the three model families of Cadence on the
history before a *fit cutoff* and scores customers at one or many *scoring
times* at or after it:

================================  ===============================================================
column                            meaning (at ``scored_at``, from orders before it)
================================  ===============================================================
``churn_risk_30d/60d/90d``        P(no purchase in the next 30/60/90 days), survival model
                                  :class:`~cadence.models.survival.TimeToNextPurchase`
                                  (``S(e + h) / S(e)`` given ``e`` days without a purchase);
                                  a longer window can only hold more chances to buy, so
                                  ``churn_risk_30d >= churn_risk_60d >= churn_risk_90d``
``p_alive``                       P(still a customer), count model of :mod:`cadence.models.btyd`
``expected_purchases_90d``        expected repeat purchases in the next 90 days, same model
``clv_365d``                      discounted expected spend over the next 365 days (count model
                                  and Gamma-Gamma, monthly discounting)
``repurchase_due_days``           days from ``scored_at`` until the customer's earliest predicted
                                  repurchase of a consumable product they bought: their last order
                                  of it plus its interval (:class:`~cadence.models.repurchase.
                                  RepurchaseInterval`, personal where they bought it twice).
                                  Negative when overdue; a product more than ``lapsed_after``
                                  intervals overdue has lapsed and no longer counts; NaN when no
                                  consumable is left. **Per customer, not per trigger product**:
                                  a ``buy_again`` trigger's own product may be due later.
================================  ===============================================================

"Consumable" is what the data shows, never the synthetic truth: a product
with at least ``min_history`` repurchase gaps before the fit cutoff (the
products :class:`~cadence.models.repurchase.RepurchaseInterval` gives an
interval of their own).

Who gets a row. One row per scoring time and customer with at least one
order before it. Customers who never bought get no row: every model here
starts a customer's clock at the first purchase, so their churn risk or
P(alive) is not defined (a join on the scores leaves them missing, which a
policy reads as "no purchase history").

Honesty. A score at time ``t`` reads a model fitted only on orders before
the fit cutoff (refused unless the cutoff is at or before ``t``) and
inputs computed only from orders before ``t`` (the feature layer's
:func:`~cadence.features.purchases.stacked_snapshots`,
:func:`~cadence.features.purchases.rfm_summary` and
:func:`~cadence.features.purchases.last_product_purchases`), so orders at or
after ``t`` change no score at ``t``.

Model choices (measured on the default synthetic shop, 20,000 customers x
365 days, fit at 2025-07-01 or 2025-09-01):

* the survival family defaults to ``weibull_cure``: ``auto`` chose it too,
  but its cross-validation over the three cure families took 67 s against
  7 s for the fit alone;
* a consumable lapses one interval after it was due (``lapsed_after=1``):
  against the world's scheduled replenishments at 2025-10-01 the earliest
  due date over every consumable ever bought is mostly a product the
  customer left long ago (Spearman 0.07 with the true days to the next
  replenishment, AUC 0.45 for "due within 30 days"); without the lapsed
  ones it is 0.31 and 0.79 (NaN for 61 % of the buyers of a consumable);
* the count model defaults to MBG/NBD, not BG/NBD: BG/NBD's P(alive) is 1
  for every one-time buyer (41 % of the customers), so it hardly ranks them
  (Spearman correlation with the true alive flag 0.14, MBG/NBD 0.44,
  Pareto/NBD 0.45); ``count_model='bgnbd'`` gives the classic one.

A model that cannot be fitted (no repeat buyer for Gamma-Gamma, no
``order_items`` for repurchase intervals, ...) leaves its columns NaN; the
reason is in ``failures_`` and a :class:`ScoreWarning` says so.

Examples
--------
>>> import pandas as pd
>>> days = pd.to_datetime(["2024-01-01", "2024-01-20", "2024-02-10", "2024-01-05", "2024-03-01",
...                        "2024-01-10", "2024-01-30", "2024-02-20", "2024-03-10"], utc=True)
>>> orders = pd.DataFrame({"order_id": [str(i) for i in range(9)], "ts": days, "revenue": [10.0] * 9,
...                        "customer_id": ["a", "a", "a", "b", "b", "c", "c", "c", "c"]})
>>> items = pd.DataFrame({"order_id": orders["order_id"], "product_id": ["p"] * 9})
>>> scorer = CustomerScorer(survival_family="weibull").fit({"orders": orders, "order_items": items},
...                                                       as_of="2024-03-15")
>>> s = scorer.scores({"orders": orders, "order_items": items}, ["2024-03-15", "2024-04-15"])
>>> s.columns.tolist() == ["customer_id", "scored_at", *SCORE_COLUMNS]
True
>>> len(s), bool((s["churn_risk_30d"] >= s["churn_risk_90d"]).all())
(6, True)
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from numbers import Integral, Real
from typing import Any, ClassVar

import ibis
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from cadence.contract.clock import DAY_S, epoch_seconds, utc
from cadence.features.engine import as_of_literal, connect, fetch_arrow, register
from cadence.features.purchases import (
    fetch_frame,
    last_product_purchases,
    purchase_gaps,
    rfm_summary,
    stacked_snapshots,
)
from cadence.models.btyd import BetaGeoModel, GammaGammaModel, ModifiedBetaGeoModel, ParetoNBDModel
from cadence.models.clv import record_warnings
from cadence.models.repurchase import RepurchaseInterval
from cadence.models.survival import DEFAULT_FEATURES, PARAMETRIC_FAMILIES, TimeToNextPurchase

#: The score columns, in order (other layers code against these names).
SCORE_COLUMNS: tuple[str, ...] = ("churn_risk_30d", "churn_risk_60d", "churn_risk_90d", "p_alive",
                                  "expected_purchases_90d", "clv_365d", "repurchase_due_days")
#: Columns of :meth:`CustomerScorer.scores` (and of ``customer_scores.parquet``), in order.
SCORE_TABLE_COLUMNS: tuple[str, ...] = ("customer_id", "scored_at", *SCORE_COLUMNS)
#: Churn-risk horizons (days) of the ``churn_risk_<h>d`` columns.
CHURN_HORIZONS: tuple[int, ...] = (30, 60, 90)
#: Horizon (days) of ``expected_purchases_90d`` and of ``clv_365d``.
PURCHASES_HORIZON_DAYS = 90
CLV_HORIZON_DAYS = 365
#: Count models ``count_model`` may name.
COUNT_MODELS: dict[str, type] = {"mbgnbd": ModifiedBetaGeoModel, "bgnbd": BetaGeoModel, "pareto_nbd": ParetoNBDModel}
#: Columns each input table must have (``order_id`` only with ``order_items``).
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "orders": ("customer_id", "ts", "revenue"),
    "order_items": ("order_id", "product_id"),
}
#: The BTYD models' time unit (weeks, as ``cadence fit btyd``), in days.
_UNIT_DAYS = 7.0
_SNAPSHOT_COLUMNS = ["customer_id", "as_of", *DEFAULT_FEATURES]
_FAILURES = (ValueError, ArithmeticError, np.linalg.LinAlgError)

Tables = Mapping[str, "ibis.Table | pd.DataFrame"]


class ScoreInputError(ValueError):
    """Input the scores cannot use: a missing table or column, no order before the cutoff, a time before the fit.

    The message is one line naming the table and column (never a value of the data).
    """

    __module__ = "cadence.models.scores"


class ScoreWarning(UserWarning):
    """A model of the scorer could not be fitted; its score columns are NaN (the message says why)."""

    # Doctests import this file under another module name; the public path lets
    # pytest-xdist's controller rebuild the warning a worker reports.
    __module__ = "cadence.models.scores"


def _check_columns(name: str, columns: Sequence[str], needed: Sequence[str]) -> None:
    missing = [c for c in needed if c not in columns]
    if missing:
        raise ScoreInputError(f"{name}: missing column {', '.join(map(repr, missing))} (customer scores need it; "
                         f"columns: {', '.join(map(str, columns))})")


def scoring_tables(tables: Tables) -> tuple[Any, dict[str, ibis.Table]]:
    """``(backend, tables)``: the scorer's inputs checked and on one engine.

    ``orders`` is required, ``order_items`` optional (without it there are
    no repurchase intervals). Ibis tables stay on their backend; pandas
    frames are uploaded to it (to a new embedded DuckDB when every table is
    pandas). A missing table or column raises one :class:`ScoreInputError` line naming
    both.

    Examples
    --------
    >>> import pandas as pd
    >>> scoring_tables({"orders": pd.DataFrame({"customer_id": ["a"], "revenue": [1.0]})})
    Traceback (most recent call last):
    ...
    cadence.models.scores.ScoreInputError: orders: missing column 'ts' (customer scores need it; columns: customer_id, revenue)
    """
    if not isinstance(tables, Mapping):
        raise TypeError(f"customer scores take a mapping of tables (orders, order_items), got {type(tables).__name__}")
    if tables.get("orders") is None:
        raise ScoreInputError("orders: missing table (customer scores need it)")
    needed = {name: cols for name, cols in REQUIRED_COLUMNS.items() if tables.get(name) is not None}
    if "order_items" in needed:
        needed["orders"] = (*needed["orders"], "order_id")
    for name, cols in needed.items():
        t = tables[name]
        _check_columns(name, list(t.columns), cols)
    ts = tables["orders"]["ts"]
    if isinstance(ts, pd.Series) and not isinstance(ts.dtype, pd.DatetimeTZDtype):
        raise ScoreInputError("orders: column 'ts' must be timezone-aware (the contract stores UTC)")
    backends = [t.get_backend() for name, t in tables.items() if name in needed and isinstance(t, ibis.Table)]
    con = backends[0] if backends else connect("duckdb")
    frames = {name: tables[name] for name in needed if isinstance(tables[name], pd.DataFrame)}
    out = {name: tables[name] for name in needed if isinstance(tables[name], ibis.Table)}
    out.update(register(con, frames))
    return con, out


def scoring_times(at: Any, name: str = "at") -> list[pd.Timestamp]:
    """One time or many as sorted, distinct UTC timestamps; an empty set is an error naming ``name``.

    >>> scoring_times(["2025-02-01", "2025-01-01", "2025-02-01"])[0]
    Timestamp('2025-01-01 00:00:00+0000', tz='UTC')
    """
    values = [at] if isinstance(at, (str, pd.Timestamp)) or not isinstance(at, Sequence | pd.Index | np.ndarray) \
        else list(at)
    times = sorted({utc(v, name) for v in values})
    if not times:
        raise ScoreInputError(f"{name}: no scoring time")
    return times


def _fit_or_note(make: Any, key: str, failures: dict[str, str], notes: list[str]) -> Any:
    """``make()``, or None with the reason in ``failures`` (one model failing loses only its columns)."""
    try:
        return record_warnings(make, notes)
    except _FAILURES as e:
        failures[key] = f"{type(e).__name__}: {e}"
        return None


class CustomerScorer(BaseEstimator):
    """Fit the churn, BTYD and repurchase models before a cutoff; score customers at later times.

    Parameters
    ----------
    survival_family : str, default 'weibull_cure'
        Family of :class:`~cadence.models.survival.TimeToNextPurchase`
        (``'auto'`` cross-validates the cure families: ~10x slower).
    count_model : {'mbgnbd', 'bgnbd', 'pareto_nbd'}, default 'mbgnbd'
        Model of ``p_alive``, ``expected_purchases_90d`` and ``clv_365d``
        (see the module notes for why MBG/NBD).
    n_cutoffs : int, default 6
        Survival training snapshots, at cutoffs spread evenly (whole days)
        over the most recent ``recent`` share of the history before the fit
        cutoff, each followed up to it (as ``cadence fit churn``).
    recent : float, default 0.5
    min_history : int, default 3
        Repurchase gaps a product needs to count as consumable
        (:class:`~cadence.models.repurchase.RepurchaseInterval`).
    discount_rate : float, default 0.01
        Monthly discount rate of ``clv_365d`` (12 periods of 365/12 days).
    lapsed_after : float or None, default 1.0
        A consumable more than this many of its intervals overdue no longer
        counts for ``repurchase_due_days``; None: it always counts.
    max_samples : int or None, default 200_000
        Survival training rows kept (a seeded sample beyond it).
    random_state : int or None, default 0

    Attributes
    ----------
    as_of_ : Timestamp
        The fit cutoff: every model read only orders before it.
    training_cutoffs_ : list of Timestamp
    survival_ : TimeToNextPurchase or None
    count_model_ : fitted count model or None
    spend_model_ : GammaGammaModel or None
    repurchase_ : RepurchaseInterval or None
    consumables_ : ndarray of str
        Products with an interval of their own.
    failures_ : dict
        Model key (``survival``, ``count``, ``spend``, ``repurchase``) -> why it was not fitted.
    notes_ : tuple of str
        Data-quality and convergence warnings raised while fitting (counts, never ids).

    Examples
    --------
    >>> CustomerScorer(count_model="bgnbd").get_params()["count_model"]
    'bgnbd'
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "survival_family": [StrOptions({"auto", *PARAMETRIC_FAMILIES, "cox"})],
        "count_model": [StrOptions(set(COUNT_MODELS))],
        "n_cutoffs": [Interval(Integral, 1, None, closed="left")],
        "recent": [Interval(Real, 0, 1, closed="right")],
        "min_history": [Interval(Integral, 1, None, closed="left")],
        "discount_rate": [Interval(Real, 0, None, closed="left")],
        "lapsed_after": [Interval(Real, 0, None, closed="left"), None],
        "max_samples": [Interval(Integral, 10, None, closed="left"), None],
        "random_state": ["random_state"],
    }

    def __init__(self, survival_family: str = "weibull_cure", count_model: str = "mbgnbd", n_cutoffs: int = 6,
                 recent: float = 0.5, min_history: int = 3, discount_rate: float = 0.01,
                 lapsed_after: float | None = 1.0, max_samples: int | None = 200_000,
                 random_state: int | None = 0) -> None:
        self.survival_family = survival_family
        self.count_model = count_model
        self.n_cutoffs = n_cutoffs
        self.recent = recent
        self.min_history = min_history
        self.discount_rate = discount_rate
        self.lapsed_after = lapsed_after
        self.max_samples = max_samples
        self.random_state = random_state

    def _training_cutoffs(self, first: pd.Timestamp, as_of: pd.Timestamp) -> list[pd.Timestamp]:
        """``n_cutoffs`` cutoffs ``as_of - k * step`` over the last ``recent`` share of the history.

        Recent cutoffs because a snapshot's covariates only mean at a cutoff
        what they mean at ``as_of`` once the history behind them is about as
        long (the rule of :func:`cadence.workflows.fitting.training_cutoffs`).
        """
        step = max(int((as_of - first.floor("D")).days * self.recent) // (self.n_cutoffs + 1), 1)
        return [as_of - pd.Timedelta(step * k, "D") for k in range(self.n_cutoffs, 0, -1)]

    def fit(self, X: Tables, y: None = None, *, as_of: Any) -> CustomerScorer:
        """Fit every model on the orders before ``as_of``.

        Parameters
        ----------
        X : mapping of str to ibis.Table or DataFrame
            ``orders`` (``customer_id``, ``ts``, ``revenue``; ``order_id``
            with order lines) and optionally ``order_items`` (``order_id``,
            ``product_id``); see :func:`scoring_tables`.
        y : None
        as_of : timestamp-like
            The fit cutoff (exclusive, required): nothing at or after it is read.

        Returns
        -------
        self
        """
        self._validate_params()
        con, t = scoring_tables(X)
        cut = utc(as_of, "as_of")
        orders = t["orders"]
        past = orders.filter(orders.ts < as_of_literal(cut))
        first = fetch_arrow(con, past.aggregate(first=past.ts.min())).column("first")[0].as_py()
        if first is None:
            raise ScoreInputError(f"orders: no order before as_of={cut}: nothing to fit the customer scores on")
        failures: dict[str, str] = {}
        notes: list[str] = []
        self.training_cutoffs_ = self._training_cutoffs(utc(first, "first order"), cut)
        train = fetch_frame(con, stacked_snapshots(t, self.training_cutoffs_, cut), ["as_of", "customer_id"])
        survival = TimeToNextPurchase(family=self.survival_family, max_samples=self.max_samples,  # type: ignore[arg-type]
                                      random_state=self.random_state)
        self.survival_ = _fit_or_note(lambda: survival.fit(train, train), "survival", failures, notes)
        rfm = fetch_frame(con, rfm_summary(t, cut, time_unit="W"), ["customer_id"]).set_index("customer_id")
        self.count_model_ = _fit_or_note(lambda: COUNT_MODELS[self.count_model]().fit(rfm), "count", failures, notes)
        self.spend_model_ = _fit_or_note(lambda: GammaGammaModel().fit(rfm), "spend", failures, notes)
        self.repurchase_ = None
        if "order_items" not in t:
            failures["repurchase"] = "order_items: missing table (repurchase intervals need it)"
        else:
            gaps = fetch_frame(con, purchase_gaps(t, cut), ["customer_id", "product_id", "day"])
            if gaps.empty:
                failures["repurchase"] = f"no repeat purchase of a product before {cut}"
            else:
                model = RepurchaseInterval(min_history=self.min_history)
                self.repurchase_ = _fit_or_note(lambda: model.fit(gaps), "repurchase", failures, notes)
        self.consumables_ = (np.asarray(self.repurchase_.product_intervals_["product_id"], dtype=object)
                             if self.repurchase_ is not None else np.array([], dtype=object))
        if self.repurchase_ is not None and not len(self.consumables_):
            failures["repurchase"] = f"no product with {self.min_history} repurchase gaps before {cut}"
        self.failures_ = failures
        self.notes_ = tuple(notes)
        self.as_of_ = cut
        for key, why in failures.items():
            warnings.warn(f"CustomerScorer: the {key} model was not fitted ({why}); its scores are NaN",
                          ScoreWarning, stacklevel=2)
        return self

    # -- scoring ------------------------------------------------------------

    def scores(self, X: Tables, at: Any) -> pd.DataFrame:
        """Score every customer with an order before each time of ``at``.

        Parameters
        ----------
        X : mapping of str to ibis.Table or DataFrame
            The same tables as for :meth:`fit` (may hold later orders: at
            each time only the orders before it are read).
        at : timestamp-like or sequence of them
            Scoring times, each at or after the fit cutoff ``as_of_``.

        Returns
        -------
        DataFrame
            :data:`SCORE_TABLE_COLUMNS`: ``customer_id`` (str), ``scored_at``
            (UTC), the :data:`SCORE_COLUMNS` (float64); sorted by
            ``scored_at``, ``customer_id``.
        """
        check_is_fitted(self, "as_of_")
        times = scoring_times(at)
        if times[0] < self.as_of_:
            raise ScoreInputError(f"at: {times[0]} is before the fit cutoff {self.as_of_}: a score there would read a "
                             "model fitted on later orders; fit at or before the first scoring time")
        con, t = scoring_tables(X)
        end = times[-1]
        orders = t["orders"]
        t = {**t, "orders": orders.filter(orders.ts < as_of_literal(end))}
        # Covariates read the orders before each time; the follow-up these snapshots also carry is dropped.
        snap = fetch_frame(con, stacked_snapshots(t, times, end + pd.Timedelta(1, "s")).select(
            *_SNAPSHOT_COLUMNS, "last_purchase_at"), ["as_of", "customer_id"])
        # ... and so must the entry time: a training snapshot caps it below its follow-up's end (or the next
        # purchase), which at a time inside a day can read later orders or fall below zero (a purchase the
        # same morning). Days since the last purchase day's midpoint, as there, but never capped; the same
        # number at midnight times.
        since = (snap["as_of"].astype("datetime64[ns, UTC]").astype("int64").to_numpy() / 10**9
                 - epoch_seconds(snap["last_purchase_at"]).astype(float)) / DAY_S
        snap["elapsed_days"] = np.maximum(since - 0.5, 0.0)
        rfm = pd.concat([fetch_frame(con, rfm_summary(t, when, time_unit="W"), ["customer_id"]).assign(as_of=when)
                         for when in times], ignore_index=True)
        key = pd.MultiIndex.from_arrays([snap["as_of"], snap["customer_id"]])
        # The same customers (an order before the time) on the same purchase-day grid, in the snapshots' order.
        rows = rfm.set_index(["as_of", "customer_id"]).reindex(key)
        n = len(snap)
        out = pd.DataFrame({"customer_id": snap["customer_id"].astype(object),
                            "scored_at": snap["as_of"].astype("datetime64[ns, UTC]")})
        nan = np.full(n, np.nan)
        for h in CHURN_HORIZONS:
            out[f"churn_risk_{h}d"] = self.survival_.churn_risk(snap, float(h)) if self.survival_ is not None and n \
                else nan
        count, spend = self.count_model_, self.spend_model_
        out["p_alive"] = count.conditional_probability_alive(rows) if count is not None and n else nan
        out["expected_purchases_90d"] = count.conditional_expected_purchases(PURCHASES_HORIZON_DAYS / _UNIT_DAYS, rows) \
            if count is not None and n else nan
        horizon = CLV_HORIZON_DAYS / _UNIT_DAYS
        out["clv_365d"] = spend.customer_lifetime_value(count, rows, horizon=horizon, discount_rate=self.discount_rate,
                                                        period=horizon / 12) \
            if count is not None and spend is not None and n else nan
        out["repurchase_due_days"] = self._due_days(con, t, times, key) if n else nan
        return out[list(SCORE_TABLE_COLUMNS)]

    def _due_days(self, con: Any, t: dict[str, ibis.Table], times: list[pd.Timestamp],
                  key: pd.MultiIndex) -> np.ndarray:
        """Days from each row's time to the customer's earliest predicted repurchase (NaN: no consumable)."""
        if self.repurchase_ is None or not len(self.consumables_):
            return np.full(len(key), np.nan)
        last = fetch_frame(con, last_product_purchases(t, times, products=list(self.consumables_)),
                           ["as_of", "customer_id", "product_id"])
        if last.empty:
            return np.full(len(key), np.nan)
        interval = self.repurchase_.predict(last)
        days = (epoch_seconds(last["last_purchase_at"]) + interval * DAY_S - epoch_seconds(last["as_of"])) / DAY_S
        keep = days >= -self.lapsed_after * interval if self.lapsed_after is not None else np.ones(len(days), bool)
        due = pd.Series(days[keep]).groupby([last["as_of"][keep].to_numpy(), last["customer_id"][keep].to_numpy()]).min()
        return due.reindex(key).to_numpy(dtype="float64")


__all__ = ["CustomerScorer", "ScoreWarning", "ScoreInputError", "scoring_tables", "scoring_times", "SCORE_COLUMNS", "SCORE_TABLE_COLUMNS",
           "CHURN_HORIZONS", "COUNT_MODELS", "REQUIRED_COLUMNS"]
