"""Buy-till-you-die baselines: BG/NBD for purchase counts, Gamma-Gamma for spend.

The two models answer "how many more purchases, how likely still a customer,
and worth how much" from three numbers per customer (frequency, recency, age)
plus an average spend, and are the usual yardstick for anything fancier.

The reference implementation, ``lifetimes``, has been unmaintained since 2020
and its successor ``btyd`` is archived, so the likelihoods and the closed
forms are written here with numpy/scipy (``gammaln``, ``betaln``, ``hyp2f1``)
in log space, and fitted by maximum likelihood with
:func:`scipy.optimize.minimize` over log-parameters: L-BFGS-B with tight
tolerances, falling back to Nelder-Mead plus an L-BFGS-B polish when it does
not converge. Standard errors come from the inverse of a central
finite-difference Hessian of the negative log-likelihood at the optimum (of
the analytic gradient where a model has one), and the 95 % intervals are
Wald intervals on the log scale: every parameter is positive, so
``theta * exp(+-1.96 se / theta)`` (the delta method) keeps both ends
positive where ``theta +- 1.96 se`` could cross zero.

Notation (Fader, Hardie & Lee 2005): for a customer first seen at time 0 and
observed until ``T``, ``x`` is the number of *repeat* purchases ("frequency")
and ``t_x`` the time of the last one ("recency", 0 when ``x = 0``).

BG/NBD. While alive a customer buys as a Poisson process with rate
``lambda ~ Gamma(r, alpha)``; after each purchase they drop out with
probability ``p ~ Beta(a, b)``. The likelihood of one customer is

.. math::

    L = \\frac{B(a, b+x)}{B(a, b)} \\frac{\\Gamma(r+x)\\,\\alpha^r}{\\Gamma(r)(\\alpha+T)^{r+x}}
      + \\delta_{x>0} \\frac{B(a+1, b+x-1)}{B(a, b)}
        \\frac{\\Gamma(r+x)\\,\\alpha^r}{\\Gamma(r)(\\alpha+t_x)^{r+x}}

([1]), evaluated in log space as ``log A1 + logaddexp(log A2, log A3)``
with ``A1`` the common gamma factor and ``A2``, ``A3`` the two beta terms.

Gamma-Gamma. The ``x`` repeat-transaction values of a customer are
``Gamma(p, nu)`` and ``nu ~ Gamma(q, gamma)`` across customers, independent
of the purchase process. The mean ``m`` of the ``x`` values has likelihood

.. math::

    L = \\frac{\\Gamma(px+q)}{\\Gamma(px)\\Gamma(q)}
        \\frac{\\gamma^q\\, m^{px-1} x^{px}}{(\\gamma + m x)^{px+q}} .

References
----------
.. [1] Fader, P. S., Hardie, B. G. S. & Lee, K. L. (2005). "Counting your
   customers" the easy way: an alternative to the Pareto/NBD model.
   *Marketing Science* 24(2), 275-284.
.. [2] Fader, P. S., Hardie, B. G. S. & Lee, K. L. (2005). RFM and CLV: using
   iso-value curves for customer base analysis. *Journal of Marketing
   Research* 42(4), 415-430.
.. [3] Fader, P. S. & Hardie, B. G. S. (2013). The Gamma-Gamma model of
   monetary value. http://brucehardie.com/notes/025/
.. [4] Fader, P. S., Hardie, B. G. S. & Lee, K. L. (2008). Computing P(alive)
   using the BG/NBD model. http://brucehardie.com/notes/021/

Examples
--------
Fit both models on the CDNOW sample's 39-week calibration period (run from
the repository root):

>>> from cadence.data.io import read_tables
>>> orders = read_tables("data/external/cdnow/sample", ["orders"])["orders"]
>>> rfm = rfm_summary(orders, as_of="1997-10-01", start="1997-01-01", time_unit="W")
>>> bg = BetaGeoModel().fit(rfm)
>>> {k: round(v, 3) for k, v in bg.params_.items()}
{'r': 0.243, 'alpha': 4.414, 'a': 0.793, 'b': 2.426}
>>> gg = GammaGammaModel().fit(rfm)
>>> {k: round(v, 2) for k, v in gg.params_.items()}
{'p': 6.25, 'q': 3.74, 'v': 15.44}
>>> clv = gg.customer_lifetime_value(bg, rfm, horizon=52, discount_rate=0.01, period=13)
"""

from __future__ import annotations

import copy
import warnings
from abc import abstractmethod
from numbers import Real
from typing import Any, ClassVar, Literal, NamedTuple

import numpy as np
import pandas as pd
from scipy import optimize, special, stats
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import Tags
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_array, check_is_fitted

from cadence.contract.clock import utc

TimeUnit = Literal["D", "W"]

#: Days per time unit of :func:`rfm_summary`.
DAYS_PER_UNIT: dict[str, float] = {"D": 1.0, "W": 7.0}


# ---------------------------------------------------------------------------
# Features: orders -> (frequency, recency, T, monetary_value)
# ---------------------------------------------------------------------------


def _order_days(orders: pd.DataFrame) -> pd.DataFrame:
    missing = {"customer_id", "ts", "revenue"} - set(orders.columns)
    if missing:
        raise ValueError(f"orders lack column(s) {sorted(missing)}")
    ts = orders["ts"]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        raise ValueError("orders.ts must be timezone-aware (the contract stores UTC)")
    ts = ts.dt.tz_convert("UTC")
    return pd.DataFrame(
        {
            "customer_id": orders["customer_id"],
            "ts": ts,
            "day": ts.dt.floor("D"),
            "revenue": orders["revenue"].astype("float64"),
        }
    )


def purchase_days(orders: pd.DataFrame, until: Any) -> pd.DataFrame:
    """One row per customer and UTC day with a purchase before ``until`` (same-day orders merged).

    Parameters
    ----------
    orders : DataFrame
        Contract ``orders``.
    until : timestamp-like
        Exclusive end.

    Returns
    -------
    DataFrame
        ``customer_id``, ``day`` (UTC midnight), ``revenue`` (the day's sum),
        ``first_day`` (the customer's first purchase day) and ``is_repeat``.

    Examples
    --------
    >>> import pandas as pd
    >>> orders = pd.DataFrame({"customer_id": ["a", "a", "a"],
    ...     "ts": pd.to_datetime(["2024-01-01 09:00", "2024-01-01 18:00", "2024-01-05 10:00"], utc=True),
    ...     "revenue": [1.0, 2.0, 3.0]})
    >>> purchase_days(orders, "2024-02-01")["is_repeat"].tolist()
    [False, True]
    """
    days = _order_days(orders)
    days = days[days["ts"] < utc(until, "until")]
    out = days.groupby(["customer_id", "day"], sort=True)["revenue"].sum().reset_index()
    out["first_day"] = out.groupby("customer_id")["day"].transform("min")
    out["is_repeat"] = out["day"] > out["first_day"]
    return out


def rfm_summary(
    orders: pd.DataFrame,
    as_of: Any,
    *,
    start: Any = None,
    time_unit: TimeUnit = "W",
    merge_same_day: bool = True,
) -> pd.DataFrame:
    """Summarise orders before ``as_of`` into BG/NBD and Gamma-Gamma inputs.

    Only orders with ``ts < as_of`` are read, so adding orders at or after
    ``as_of`` never changes the result. Time is measured in whole UTC days: a
    purchase happens on its day, and the last observed day is the day of the
    last instant before ``as_of``. With ``as_of = 1997-10-01`` a customer who
    first bought on 1997-01-01 has ``T = 272 / 7 = 38.86`` weeks, as in the
    data of Fader, Hardie & Lee (2005).

    Parameters
    ----------
    orders : DataFrame
        Contract ``orders``: ``customer_id``, ``ts`` (tz-aware), ``revenue``.
    as_of : timestamp-like
        Exclusive cutoff; naive values are read as UTC. Required on purpose:
        defaulting to the latest order would leak the future into features.
    start : timestamp-like, optional
        Keep only customers whose first purchase (before ``as_of``) is at or
        after ``start`` -- the cohort of the calibration period. The models
        start each customer's clock at the first purchase; for a customer
        first seen before ``start`` that clock is unknown (left truncation),
        so, as in the cohort analyses of [1], they are left out, with a
        :class:`DataQualityWarning` giving their number.
    time_unit : {'W', 'D'}
        Unit of ``recency`` and ``T``: weeks (days / 7) or days.
    merge_same_day : bool
        Count all orders of a customer on one day as one purchase whose value
        is their sum (the convention of [1], whose time unit cannot order two
        purchases of one day). If False every order counts. When orders are
        merged a :class:`DataQualityWarning` gives how many.

    Returns
    -------
    DataFrame
        Index ``customer_id`` (sorted); columns

        * ``frequency`` (int64): repeat purchases, i.e. purchases - 1;
        * ``recency`` (float): time from the first to the last purchase;
        * ``T`` (float): time from the first purchase to the last observed day;
        * ``monetary_value`` (float): mean value of the *repeat* purchases
          (the first is excluded, as in [2]); 0 when ``frequency == 0``.

    References
    ----------
    .. [1] Fader, Hardie & Lee (2005), Marketing Science 24(2).
    .. [2] Fader, Hardie & Lee (2005), Journal of Marketing Research 42(4).

    Examples
    --------
    >>> import pandas as pd
    >>> orders = pd.DataFrame({
    ...     "customer_id": ["a", "a", "a", "b"],
    ...     "ts": pd.to_datetime(["2024-01-01", "2024-01-01", "2024-01-15",
    ...                           "2024-01-08"], utc=True),
    ...     "revenue": [10.0, 5.0, 20.0, 7.0],
    ... })
    >>> rfm_summary(orders, as_of="2024-01-29", time_unit="D").reset_index()
      customer_id  frequency  recency     T  monetary_value
    0           a          1     14.0  27.0            20.0
    1           b          0      0.0  20.0             0.0
    """
    if time_unit not in DAYS_PER_UNIT:
        raise ValueError(f"time_unit must be one of {sorted(DAYS_PER_UNIT)}, got {time_unit!r}")
    cutoff = utc(as_of, "as_of")
    days = _order_days(orders)
    days = days[days["ts"] < cutoff]
    if start is not None:
        first_ts = days.groupby("customer_id")["ts"].transform("min")
        early = first_ts < utc(start, "start")
        if early.any():
            n_early = days.loc[early, "customer_id"].nunique()
            warnings.warn(
                f"rfm_summary: left out {n_early} customers ({int(early.sum())} orders) whose first "
                f"purchase is before start={start}: their clock cannot start at the first purchase",
                DataQualityWarning,
                stacklevel=2,
            )
        days = days[~early]

    purchases: pd.DataFrame
    if merge_same_day:
        purchases = days.groupby(["customer_id", "day"], sort=True)["revenue"].sum().reset_index()
        if len(purchases) < len(days):
            warnings.warn(
                f"rfm_summary: merged {len(days) - len(purchases)} same-day orders into other "
                "orders of the same customer and day (one purchase per day, as in Fader, Hardie "
                "& Lee 2005)",
                DataQualityWarning,
                stacklevel=2,
            )
    else:
        purchases = days.sort_values(["customer_id", "ts"], kind="stable")[
            ["customer_id", "day", "revenue"]
        ]
    purchases = purchases.reset_index(drop=True)
    is_repeat = purchases.groupby("customer_id").cumcount() > 0

    by_customer = purchases.groupby("customer_id", sort=True)
    first = by_customer["day"].min()
    last = by_customer["day"].max()
    end_day = (cutoff - pd.Timedelta(1, "ns")).floor("D")
    unit = DAYS_PER_UNIT[time_unit]

    out = pd.DataFrame(
        {
            "frequency": (by_customer.size() - 1).astype("int64"),
            "recency": (last - first).dt.days.astype("float64") / unit,
            "T": (end_day - first).dt.days.astype("float64") / unit,
        }
    )
    repeat_mean = purchases[is_repeat].groupby("customer_id")["revenue"].mean()
    out["monetary_value"] = repeat_mean.reindex(out.index).fillna(0.0).astype("float64")
    out.index.name = "customer_id"
    return out


def holdout_actuals(orders: pd.DataFrame, as_of: Any, until: Any, customers: Any) -> pd.Series:
    """Count each customer's actual repeat purchases in ``[as_of, until)``.

    Orders on the same UTC day are one purchase, as in :func:`rfm_summary`.
    A day that already holds a purchase before ``as_of`` is not counted again
    (only possible when ``as_of`` is not midnight), and for a customer with no
    purchase before ``as_of`` the first purchase in the window is not a repeat.

    Parameters
    ----------
    orders : DataFrame
        Contract ``orders``.
    as_of, until : timestamp-like
        The holdout window, ``as_of`` included and ``until`` excluded.
    customers : array-like
        Customer ids to report (usually the index of the calibration
        :func:`rfm_summary`); customers without purchases in the window get 0.

    Returns
    -------
    Series
        int64 counts indexed by ``customer_id`` in the order of ``customers``.

    Examples
    --------
    >>> import pandas as pd
    >>> orders = pd.DataFrame({
    ...     "customer_id": ["a", "a", "a", "a"],
    ...     "ts": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-02-01",
    ...                           "2024-03-01"], utc=True),
    ...     "revenue": [1.0, 2.0, 3.0, 4.0],
    ... })
    >>> holdout_actuals(orders, "2024-01-15", "2024-03-01", ["a", "z"]).tolist()
    [1, 0]
    """
    lo, hi = utc(as_of, "as_of"), utc(until, "until")
    if hi <= lo:
        raise ValueError(f"until ({hi}) must be after as_of ({lo})")
    days = _order_days(orders)
    days = days[days["ts"] < hi]
    before = days[days["ts"] < lo][["customer_id", "day"]].drop_duplicates()
    window = days[days["ts"] >= lo][["customer_id", "day"]].drop_duplicates()
    window = window.merge(before, on=["customer_id", "day"], how="left", indicator=True)
    window = window[window["_merge"] == "left_only"]
    counts = window.groupby("customer_id").size()
    # Customers first seen inside the window: their first purchase is not a repeat.
    newcomers = ~counts.index.isin(before["customer_id"].unique())
    counts[newcomers] -= 1
    index = pd.Index(customers, name="customer_id")
    return counts.reindex(index, fill_value=0).astype("int64").rename("holdout_frequency")


# ---------------------------------------------------------------------------
# Input handling shared by the estimators
# ---------------------------------------------------------------------------


class DataQualityWarning(UserWarning):
    """Rows or customers that a summary or a fit set aside or merged, with their count.

    Raised (as a warning, never an error) where real data departs from a
    model's assumptions and the literature's remedy was applied: same-day
    orders merged, customers first seen before the calibration start left out
    of the cohort, repeat buyers with zero or negative spend set aside by
    Gamma-Gamma, a cohort without repeat buyers. The message gives counts
    only, never customer ids.
    """

    # Doctests import this file under another module name; the public path lets
    # pytest-xdist's controller rebuild the warning a worker reports.
    __module__ = "cadence.models.btyd"


def _columns(X: Any, names: tuple[str, ...]) -> tuple[np.ndarray, ...]:
    """Pull the named columns from a DataFrame, or by position from an array."""
    if isinstance(X, pd.DataFrame):
        missing = [c for c in names if c not in X.columns]
        if missing:
            raise ValueError(f"X lacks column(s) {missing}; expected {list(names)}")
        X = X[list(names)]
    # check_array gives the standard messages for sparse, complex, empty and NaN input.
    arr = check_array(X, accept_sparse=False, dtype="float64", ensure_all_finite=True)
    if arr.shape[1] != len(names):
        raise ValueError(
            f"X must be a DataFrame with columns {list(names)} or an array of shape "
            f"(n_customers, {len(names)}); got shape {arr.shape}"
        )
    return tuple(arr[:, i] for i in range(len(names)))


def _check_rfm(x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> None:
    if np.any(x < 0) or np.any(t_x < 0) or np.any(T < 0):
        raise ValueError("Negative values in data: frequency, recency and T must be >= 0")
    if np.any(x != np.round(x)):
        raise ValueError("frequency must be a whole number of repeat purchases")
    if np.any(t_x > T * (1 + 1e-12)):
        raise ValueError("recency must not exceed T")


def compress_rows(
    columns: tuple[np.ndarray, ...], weights: np.ndarray | None = None
) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """Collapse equal rows into distinct rows with summed weights.

    A customer-base likelihood depends on a customer only through a few
    numbers (e.g. ``frequency, recency, T``), and real summaries measured in
    whole days repeat the same triple many times: the log-likelihood is
    ``sum_k w_k log L(row_k)`` over distinct rows ``k`` with counts ``w_k``,
    which is what the fits evaluate.

    Parameters
    ----------
    columns : tuple of ndarray, each of shape (n,)
    weights : ndarray of shape (n,), optional
        Weight of each row (default 1).

    Returns
    -------
    distinct : tuple of ndarray, each of shape (m,)
        The distinct rows (sorted), ``m <= n``.
    counts : ndarray of shape (m,)
        Summed weights of the rows equal to each distinct row.

    Examples
    --------
    >>> import numpy as np
    >>> (x, t), w = compress_rows((np.array([0., 1., 0.]), np.array([0., 2., 0.])))
    >>> x.tolist(), t.tolist(), w.tolist()
    ([0.0, 1.0], [0.0, 2.0], [2.0, 1.0])
    """
    n = columns[0].shape[0]
    w = np.ones(n) if weights is None else np.asarray(weights, dtype="float64")
    if n == 0:
        return columns, w
    order = np.lexsort(columns[::-1])
    sorted_cols = [c[order] for c in columns]
    # A row starts a new group where any column differs from the row before.
    new = np.ones(n, dtype=bool)
    new[1:] = np.any([np.diff(c) != 0 for c in sorted_cols], axis=0)
    starts = np.flatnonzero(new)
    counts = np.add.reduceat(w[order], starts)
    return tuple(c[starts] for c in sorted_cols), counts


# ---------------------------------------------------------------------------
# Maximum-likelihood base
# ---------------------------------------------------------------------------


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """``a @ b`` without BLAS: a threaded BLAS dot stalls for milliseconds on a busy machine."""
    return float(np.einsum("i,i->", a, b))


class _MaximumLikelihoodModel(BaseEstimator):
    """Fit positive parameters by maximum likelihood; derive errors and a summary.

    A model family names its parameters and input columns, writes its
    per-row log-likelihood (optionally with its gradient) and a starting
    point; this class validates and compresses the input (equal rows become
    one row with a weight), optimises over log-parameters and fills
    ``params_``, ``summary_``, ``covariance_``, ``log_likelihood_``.
    """

    _param_names: ClassVar[tuple[str, ...]]
    _input_columns: ClassVar[tuple[str, ...]]
    #: Whether :meth:`_total_log_likelihood_and_gradient` works (else numerical gradients).
    _analytic_gradient: ClassVar[bool] = False
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "penalizer": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(self, penalizer: float = 0.0) -> None:
        self.penalizer = penalizer

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        # Counts, durations and spend are never negative.
        tags.input_tags.positive_only = True
        return tags

    @staticmethod
    @abstractmethod
    def _log_likelihood(params: np.ndarray, data: tuple[np.ndarray, ...]) -> np.ndarray:
        """Per-row log-likelihood at ``params`` (natural scale)."""

    @staticmethod
    def _log_likelihood_and_gradient(
        params: np.ndarray, data: tuple[np.ndarray, ...]
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """Per-row log-likelihood and its per-row derivative in each natural parameter."""
        raise NotImplementedError

    @classmethod
    def _total_log_likelihood_and_gradient(
        cls, params: np.ndarray, data: tuple[np.ndarray, ...], weights: np.ndarray
    ) -> tuple[float, np.ndarray]:
        """``sum_i w_i log L_i`` and its gradient (default: from the per-row terms)."""
        ll, grad = cls._log_likelihood_and_gradient(params, data)
        return _dot(weights, ll), np.array([_dot(weights, d) for d in grad])

    @abstractmethod
    def _initial_params(self, data: tuple[np.ndarray, ...]) -> np.ndarray:
        """A starting point (natural scale) for the optimiser."""

    def _likelihood_inputs(self, data: tuple[np.ndarray, ...]) -> Any:
        """What the likelihood functions receive during a fit (default: ``data``).

        Computed once per fit: a model may add lookups that every evaluation reuses.
        """
        return data

    def _check_input(self, data: tuple[np.ndarray, ...]) -> None:
        """Raise ValueError on input the model cannot read (default: an RFM triple)."""
        _check_rfm(*data)

    def _prepare(
        self, data: tuple[np.ndarray, ...], weights: np.ndarray
    ) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        """Rows the likelihood uses (default: all); may warn about the ones it sets aside."""
        if weights[data[0] > 0].sum() == 0:
            warnings.warn(
                f"{type(self).__name__}: none of the {weights.sum():.0f} customers made a repeat "
                "purchase; the dropout parameters are not identified (their standard errors "
                "are NaN) and only the purchase-rate side of the fit is informative",
                DataQualityWarning,
                stacklevel=4,
            )
        return data, weights

    def fit(self, X: Any, y: None = None, sample_weight: Any = None) -> Any:
        """Estimate the parameters by maximum likelihood.

        Parameters
        ----------
        X : DataFrame or array of shape (n_customers, n_columns)
            The model's input columns (see the class docstring), by name or
            by position.
        y : None
            Ignored; present for the scikit-learn API.
        sample_weight : array-like of shape (n_customers,), optional
            Number of customers each row stands for (e.g. a summary already
            grouped by its distinct rows); default 1.

        Returns
        -------
        self
        """
        self._validate_params()
        data = _columns(X, self._input_columns)
        self._check_input(data)
        n = data[0].shape[0]
        if sample_weight is None:
            weights = np.ones(n)
        else:
            weights = np.asarray(sample_weight, dtype="float64").reshape(-1)
            if weights.shape != (n,) or np.any(~np.isfinite(weights)) or np.any(weights < 0):
                raise ValueError(f"sample_weight must be {n} finite non-negative numbers")
            if n and weights.sum() <= 0:
                raise ValueError("sample_weight sums to zero: no customer to fit")
        self.n_features_in_ = len(self._input_columns)
        if isinstance(X, pd.DataFrame):
            self.feature_names_in_ = np.array(self._input_columns, dtype=object)
        data, weights = self._prepare(data, weights)
        self._fit_mle(*compress_rows(data, weights))
        return self

    def _objective(self, params: np.ndarray, data: tuple[np.ndarray, ...], weights: np.ndarray) -> float:
        """Weighted mean negative log-likelihood plus ``penalizer * sum(params**2)``."""
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            # Far from the optimum a term may be NaN or overflow: the value is then inf.
            ll = self._log_likelihood(params, data)
        value = -_dot(weights, ll) / float(weights.sum()) + float(self.penalizer) * float(np.sum(params**2))
        return value if np.isfinite(value) else np.inf

    def _objective_and_gradient(
        self, params: np.ndarray, data: tuple[np.ndarray, ...], weights: np.ndarray
    ) -> tuple[float, np.ndarray]:
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            ll, grad = self._total_log_likelihood_and_gradient(params, data, weights)
        total = float(weights.sum())
        value = -ll / total + float(self.penalizer) * float(np.sum(params**2))
        g = -grad / total + 2.0 * float(self.penalizer) * params
        if not (np.isfinite(value) and np.all(np.isfinite(g))):
            return np.inf, np.zeros_like(params)
        return value, g

    def _fit_mle(self, data: tuple[np.ndarray, ...], weights: np.ndarray) -> None:
        n = float(weights.sum())
        lik = self._likelihood_inputs(data)

        def f(log_params: np.ndarray) -> float:
            return self._objective(np.exp(log_params), lik, weights)

        def f_and_grad(log_params: np.ndarray) -> tuple[float, np.ndarray]:
            params = np.exp(log_params)
            value, g = self._objective_and_gradient(params, lik, weights)
            return value, g * params  # chain rule: d/dlog(p) = p d/dp

        def stationary(res: optimize.OptimizeResult) -> bool:
            # With tolerances this tight L-BFGS-B may end on a failed line search once the
            # objective cannot drop below its rounding error; an analytic gradient that
            # vanishes there still certifies the optimum.
            if not np.isfinite(res.fun):
                return False
            grad = getattr(res, "jac", None)
            return bool(res.success) or (
                self._analytic_gradient and grad is not None and float(np.max(np.abs(grad))) <= 1e-7
            )

        start = np.log(self._initial_params(data))
        lbfgs = {"ftol": 1e-15, "gtol": 1e-10, "maxiter": 5_000}
        if self._analytic_gradient:
            best = optimize.minimize(f_and_grad, start, method="L-BFGS-B", jac=True, options=lbfgs)
        else:
            best = optimize.minimize(f, start, method="L-BFGS-B", options=lbfgs)
        if not stationary(best):
            # A poor start can stall the quasi-Newton steps; Nelder-Mead is robust
            # far from the optimum, and L-BFGS-B then polishes its answer.
            coarse = optimize.minimize(
                f,
                start,
                method="Nelder-Mead",
                options={"xatol": 1e-8, "fatol": 1e-12, "maxiter": 20_000, "maxfev": 40_000},
            )
            if self._analytic_gradient:
                polished = optimize.minimize(f_and_grad, coarse.x, method="L-BFGS-B", jac=True, options=lbfgs)
            else:
                polished = optimize.minimize(f, coarse.x, method="L-BFGS-B", options=lbfgs)
            best = min((best, coarse, polished), key=lambda res: (res.fun, not stationary(res)))
        if not np.isfinite(best.fun):
            raise ValueError("the log-likelihood is not finite anywhere the optimiser looked")
        params = np.exp(best.x)

        if self._analytic_gradient:
            hessian = _hessian_from_gradient(
                lambda p: n * self._objective_and_gradient(p, lik, weights)[1], params
            )
        else:
            hessian = _hessian(lambda p: n * self._objective(p, lik, weights), params)
        try:
            cov = np.linalg.inv(hessian)
            se = np.sqrt(np.where(np.diag(cov) >= 0, np.diag(cov), np.nan))
        except np.linalg.LinAlgError:
            cov = np.full((params.size, params.size), np.nan)
            se = np.full_like(params, np.nan)
        converged = stationary(best) and bool(np.all(np.isfinite(se)))
        if not converged:
            warnings.warn(
                f"{type(self).__name__}: the optimiser did not converge cleanly "
                f"({best.message}); check the summary's standard errors",
                ConvergenceWarning,
                stacklevel=4,
            )

        # Every parameter is positive: the interval is Wald's on the log scale (delta method,
        # se(log theta) = se / theta), mapped back, so it never crosses zero.
        half_width = stats.norm.ppf(0.975) * se / params
        self.params_ = {k: float(v) for k, v in zip(self._param_names, params, strict=True)}
        self.summary_ = pd.DataFrame(
            {
                "estimate": params,
                "std_error": se,
                "lower_95": params * np.exp(-half_width),
                "upper_95": params * np.exp(half_width),
            },
            index=pd.Index(self._param_names, name="parameter"),
        )
        self.covariance_ = pd.DataFrame(cov, index=list(self._param_names), columns=list(self._param_names))
        self.log_likelihood_ = _dot(weights, self._log_likelihood(params, lik))
        self.n_customers_ = int(round(n))
        self.n_distinct_rows_ = int(data[0].shape[0])
        self.converged_ = converged

    def _params(self) -> np.ndarray:
        check_is_fitted(self, "params_")
        return np.array([self.params_[k] for k in self._param_names])

    def sample_params(self, n_draws: int, random_state: int | np.random.Generator | None = None) -> np.ndarray:
        """Draw parameter vectors from the estimate's asymptotic normal distribution.

        The draws are normal on the log scale, ``log theta ~ N(log theta_hat,
        D^{-1} Sigma D^{-1})`` with ``Sigma`` = :attr:`covariance_` (the
        inverse Hessian) and ``D = diag(theta_hat)`` (the delta method), so
        every draw is positive: the parametric bootstrap behind the CLV
        interval of :func:`cadence.models.clv.clv_interval`.

        Parameters
        ----------
        n_draws : int
        random_state : int, Generator or None

        Returns
        -------
        ndarray of shape (n_draws, n_params)
            In the order of :attr:`summary_`'s index.

        Examples
        --------
        >>> import numpy as np
        >>> X = np.array([[0, 0, 30], [2, 20, 30], [5, 29, 30], [1, 3, 30], [3, 10, 25]])
        >>> BetaGeoModel().fit(X).sample_params(3, random_state=0).shape
        (3, 4)
        """
        theta = self._params()
        cov = self.covariance_.to_numpy()
        if not np.all(np.isfinite(cov)):
            raise ValueError(f"{type(self).__name__}: the covariance is not finite; no parameter draws")
        cov_log = cov / np.outer(theta, theta)
        rng = np.random.default_rng(random_state)
        return np.exp(rng.multivariate_normal(np.log(theta), cov_log, size=n_draws, method="eigh"))

    def with_params(self, params: np.ndarray) -> Any:
        """A copy of this fitted model with other parameter values (for bootstrap draws)."""
        check_is_fitted(self, "params_")
        other = copy.copy(self)
        other.params_ = {k: float(v) for k, v in zip(self._param_names, params, strict=True)}
        return other

    def summary_frame(self) -> pd.DataFrame:
        """:attr:`summary_` with the model's log-likelihood, customers and AIC as columns' attributes.

        Returns
        -------
        DataFrame
            ``summary_`` with a ``model`` column; ``attrs`` holds
            ``log_likelihood``, ``aic`` and ``n_customers``.
        """
        check_is_fitted(self, "params_")
        out = self.summary_.assign(model=type(self).__name__)
        out.attrs.update(
            log_likelihood=self.log_likelihood_,
            aic=2 * len(self._param_names) - 2 * self.log_likelihood_,
            n_customers=self.n_customers_,
        )
        return out


def _hessian(f: Any, x: np.ndarray, rel_step: float = 1e-4) -> np.ndarray:
    """Central finite-difference Hessian of ``f`` at ``x`` with relative steps."""
    k = x.size
    h = rel_step * np.maximum(np.abs(x), 1e-8)
    H = np.empty((k, k))
    f0 = f(x)
    for i in range(k):
        ei = np.zeros(k)
        ei[i] = h[i]
        H[i, i] = (f(x + ei) - 2 * f0 + f(x - ei)) / h[i] ** 2
        for j in range(i + 1, k):
            ej = np.zeros(k)
            ej[j] = h[j]
            H[i, j] = H[j, i] = (
                f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)
            ) / (4 * h[i] * h[j])
    return H


def _hessian_from_gradient(grad: Any, x: np.ndarray, rel_step: float = 1e-5) -> np.ndarray:
    """Central differences of an analytic gradient, symmetrised."""
    k = x.size
    h = rel_step * np.maximum(np.abs(x), 1e-8)
    H = np.empty((k, k))
    for i in range(k):
        e = np.zeros(k)
        e[i] = h[i]
        H[:, i] = (grad(x + e) - grad(x - e)) / (2 * h[i])
    return (H + H.T) / 2


# ---------------------------------------------------------------------------
# BG/NBD
# ---------------------------------------------------------------------------

_RFM = ("frequency", "recency", "T")


class BetaGeoModel(_MaximumLikelihoodModel):
    """BG/NBD model of repeat purchasing (Fader, Hardie & Lee 2005).

    Parameters
    ----------
    penalizer : float, default 0.0
        L2 penalty ``penalizer * (r^2 + alpha^2 + a^2 + b^2)`` added to the
        *mean* negative log-likelihood; 0 gives the maximum-likelihood fit.
        Standard errors are then those of the penalised objective.

    Attributes
    ----------
    params_ : dict
        ``r``, ``alpha`` (purchase rate ``~ Gamma(r, alpha)``, ``alpha`` in the
        time unit of ``X``) and ``a``, ``b`` (dropout ``~ Beta(a, b)``).
    summary_ : DataFrame
        Per parameter: ``estimate``, ``std_error`` (square root of the
        diagonal of the inverse Hessian of the negative log-likelihood) and a
        95 % interval ``lower_95``, ``upper_95``: Wald's on the log scale,
        ``estimate * exp(+-1.96 std_error / estimate)`` (delta method), so it
        is asymmetric and stays positive like the parameter.
    log_likelihood_ : float
        Total log-likelihood at the estimate (without the penalty).
    n_customers_ : int
        Customers in the fit.
    converged_ : bool
        Whether the optimiser reported success and the Hessian is invertible.

    Notes
    -----
    ``X`` is the output of :func:`rfm_summary` (extra columns are ignored) or
    an array with columns ``frequency, recency, T``. The mean purchase rate
    of an alive customer is ``r / alpha`` per time unit; the mean dropout
    probability per purchase is ``a / (a + b)``.

    Examples
    --------
    >>> from cadence.data.io import read_tables
    >>> orders = read_tables("data/external/cdnow/sample", ["orders"])["orders"]
    >>> rfm = rfm_summary(orders, as_of="1997-10-01")
    >>> model = BetaGeoModel().fit(rfm)
    >>> model.summary_.round(3).loc["r"].tolist()
    [0.243, 0.013, 0.219, 0.268]
    """

    _param_names = ("r", "alpha", "a", "b")
    _input_columns = _RFM
    _analytic_gradient = True

    @staticmethod
    def _terms(
        params: np.ndarray, data: tuple[np.ndarray, ...], gradient: bool
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """Log-likelihood per row and, if asked, its gradient in ``(r, alpha, a, b)``.

        ``log L = common + logaddexp(stay, drop)``; the two branches' shares
        ``w_s, w_d`` (a softmax of ``stay, drop``) weight their derivatives.
        Every special-function term depends on ``x`` only, a whole number, so
        it is evaluated once per value ``0..max(x)`` and gathered: that is
        most of the speed of a fit on a million customers.
        """
        r, alpha, a, b = params
        x, t_x, T = data
        xi = x.astype(np.intp)
        k = np.arange(int(xi.max()) + 1 if xi.size else 1, dtype="float64")
        k1 = np.maximum(k, 1.0)  # the dropout branch exists for x > 0 only
        lg_abk = special.gammaln(a + b + k)
        beta_ab = special.gammaln(a) + special.gammaln(b) - special.gammaln(a + b)
        by_k_common = special.gammaln(r + k) - special.gammaln(r) + r * np.log(alpha)
        by_k_stay = special.gammaln(a) + special.gammaln(b + k) - lg_abk - beta_ab
        by_k_drop = special.gammaln(a + 1) + special.gammaln(b + k1 - 1) - lg_abk - beta_ab
        log_aT, log_at = np.log(alpha + T), np.log(alpha + t_x)
        rx = r + x
        common = by_k_common[xi]
        stay = by_k_stay[xi] - rx * log_aT
        drop = np.where(xi > 0, by_k_drop[xi] - rx * log_at, -np.inf)
        mix = np.logaddexp(stay, drop)
        ll = common + mix
        if not gradient:
            return ll, None
        w_s = np.exp(stay - mix)
        w_d = 1.0 - w_s
        psi_abk = special.digamma(a + b + k)
        psi_ab = special.digamma(a + b)
        d_common_r = (special.digamma(r + k) - special.digamma(r) + np.log(alpha))[xi]
        d_r = d_common_r - w_s * log_aT - w_d * log_at
        d_alpha = r / alpha - rx * (w_s / (alpha + T) + w_d / (alpha + t_x))
        a_stay = (special.digamma(a) - psi_abk)[xi]
        a_drop = (special.digamma(a + 1) - psi_abk)[xi]
        b_stay = (special.digamma(b + k) - psi_abk)[xi]
        b_drop = (special.digamma(b + k1 - 1) - psi_abk)[xi]
        d_a = w_s * a_stay + w_d * a_drop - (special.digamma(a) - psi_ab)
        d_b = w_s * b_stay + w_d * b_drop - (special.digamma(b) - psi_ab)
        return ll, (d_r, d_alpha, d_a, d_b)

    @staticmethod
    def _log_likelihood_and_gradient(
        params: np.ndarray, data: tuple[np.ndarray, ...]
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        ll, grad = BetaGeoModel._terms(params, data, gradient=True)
        assert grad is not None
        return ll, grad

    @staticmethod
    def _log_likelihood(params: np.ndarray, data: tuple[np.ndarray, ...]) -> np.ndarray:
        return BetaGeoModel._terms(params, data, gradient=False)[0]

    def _initial_params(self, data: tuple[np.ndarray, ...]) -> np.ndarray:
        x, _, T = data
        # r = 1 and alpha = 1 / (observed repeat rate) put the rate on the data's time scale;
        # a != 1 because the forecasts divide by a - 1 (a cohort without repeat
        # buyers leaves a and b where they start).
        rate = (x.sum() + 1.0) / (T.sum() + 1.0)
        return np.array([1.0, 1.0 / rate, 0.5, 1.0])

    def _log_dropout_odds(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """``log[a / (b + x - 1) * ((alpha + T) / (alpha + t_x))^(r + x)]``; -inf for x = 0."""
        r, alpha, a, b = self._params()
        x_pos = np.maximum(x, 1.0)
        odds = (
            np.log(a) - np.log(b + x_pos - 1) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
        )
        return np.where(x > 0, odds, -np.inf)

    def conditional_probability_alive(self, X: Any) -> np.ndarray:
        """Probability that each customer is still alive at ``T``.

        .. math::

            P(\\text{alive} \\mid x, t_x, T) = \\left[1 + \\delta_{x>0}
            \\frac{a}{b+x-1}\\left(\\frac{\\alpha+T}{\\alpha+t_x}\\right)^{r+x}\\right]^{-1}

        (see [4]). A customer without repeat purchases is alive with
        probability 1: in BG/NBD dropout happens only right after a *repeat*
        purchase (the likelihood has no dropout term for ``x = 0``), a known
        quirk that the MBG/NBD variant removes.

        Parameters
        ----------
        X : DataFrame or array of shape (n_customers, 3)
            ``frequency, recency, T`` as for :meth:`fit`.

        Returns
        -------
        ndarray of shape (n_customers,)

        Examples
        --------
        >>> from cadence.data.io import read_tables
        >>> orders = read_tables("data/external/cdnow/sample", ["orders"])["orders"]
        >>> rfm = rfm_summary(orders, as_of="1997-10-01")
        >>> model = BetaGeoModel().fit(rfm)
        >>> model.conditional_probability_alive([[0, 0, 38], [3, 36, 38], [3, 8, 38]]).round(2)
        array([1.  , 0.83, 0.09])
        """
        x, t_x, T = _columns(X, _RFM)
        _check_rfm(x, t_x, T)
        return np.asarray(special.expit(-self._log_dropout_odds(x, t_x, T)))

    def conditional_expected_purchases(self, t: float, X: Any) -> np.ndarray:
        """Expected purchases of each customer in ``(T, T + t]``.

        .. math::

            E[Y(t) \\mid x, t_x, T] = \\frac{a+b+x-1}{a-1}
            \\left[1 - \\left(\\frac{\\alpha+T}{\\alpha+T+t}\\right)^{r+x}
            {}_2F_1\\!\\left(r+x, b+x; a+b+x-1; \\tfrac{t}{\\alpha+T+t}\\right)\\right]
            P(\\text{alive} \\mid x, t_x, T)

        ([1]). The hypergeometric term is evaluated after Euler's
        transformation, ``(1-z)^{r+x} 2F1(r+x, b+x; c; z) = (1-z)^{a-1}
        2F1(a+b-1-r, a-1; c; z)`` with ``c = a+b+x-1``, whose upper
        parameters do not grow with ``x`` -- the direct form overflows for
        heavy buyers.

        Parameters
        ----------
        t : float
            Length of the forecast window, in the time unit of ``X``.
        X : DataFrame or array of shape (n_customers, 3)

        Returns
        -------
        ndarray of shape (n_customers,)

        Examples
        --------
        >>> from cadence.data.io import read_tables
        >>> orders = read_tables("data/external/cdnow/sample", ["orders"])["orders"]
        >>> rfm = rfm_summary(orders, as_of="1997-10-01")
        >>> model = BetaGeoModel().fit(rfm)
        >>> model.conditional_expected_purchases(39.0, [[0, 0, 38], [3, 36, 38], [3, 8, 38]]).round(2)
        array([0.2 , 2.02, 0.23])
        """
        if t < 0:
            raise ValueError(f"t must be non-negative, got {t}")
        x, t_x, T = _columns(X, _RFM)
        _check_rfm(x, t_x, T)
        r, alpha, a, b = self._params()
        z = t / (alpha + T + t)
        c = a + b + x - 1
        tail = np.exp((a - 1) * np.log1p(-z)) * special.hyp2f1(a + b - 1 - r, a - 1, c, z)
        alive = special.expit(-self._log_dropout_odds(x, t_x, T))
        return np.asarray(c / (a - 1) * (1 - tail) * alive)

    def expected_purchases(self, t: float | np.ndarray) -> np.ndarray:
        """Expected repeat purchases of a new customer in ``(0, t]`` (population).

        .. math::

            E[X(t)] = \\frac{a+b-1}{a-1}\\left[1 - \\left(\\frac{\\alpha}{\\alpha+t}\\right)^r
            {}_2F_1\\!\\left(r, b; a+b-1; \\tfrac{t}{\\alpha+t}\\right)\\right]

        ([1]; evaluated after Euler's transformation as above).

        Parameters
        ----------
        t : float or array
            Time since the first purchase, in the fit's time unit.

        Returns
        -------
        ndarray, shaped like ``t``

        Examples
        --------
        >>> from cadence.data.io import read_tables
        >>> orders = read_tables("data/external/cdnow/sample", ["orders"])["orders"]
        >>> rfm = rfm_summary(orders, as_of="1997-10-01")
        >>> model = BetaGeoModel().fit(rfm)
        >>> model.expected_purchases([0.0, 39.0, 78.0]).round(2)
        array([0.  , 1.2 , 1.86])
        """
        r, alpha, a, b = self._params()
        t = np.asarray(t, dtype="float64")
        if np.any(t < 0):
            raise ValueError("t must be non-negative")
        z = t / (alpha + t)
        tail = np.exp((a - 1) * np.log1p(-z)) * special.hyp2f1(a + b - 1 - r, a - 1, a + b - 1, z)
        # "+ 0.0" turns the -0.0 that a < 1 gives at t = 0 into 0.0.
        return np.asarray((a + b - 1) / (a - 1) * (1 - tail) + 0.0)

    def predict(self, X: Any, t: float) -> np.ndarray:
        """Expected purchases in the next ``t`` time units; see :meth:`conditional_expected_purchases`."""
        return self.conditional_expected_purchases(t, X)


# ---------------------------------------------------------------------------
# Gamma-Gamma
# ---------------------------------------------------------------------------

_SPEND = ("frequency", "monetary_value")


class GammaGammaModel(_MaximumLikelihoodModel):
    """Gamma-Gamma model of average transaction value (Fader, Hardie & Lee 2005; Fader & Hardie 2013).

    Parameters
    ----------
    penalizer : float, default 0.0
        L2 penalty on ``(p, q, v)`` added to the mean negative log-likelihood.

    Attributes
    ----------
    params_ : dict
        ``p`` (shape of a transaction's value), ``q`` and ``v`` (shape and
        rate of the customers' value scale; ``v`` is the papers' ``gamma``).
    summary_, log_likelihood_, n_customers_, converged_
        As for :class:`BetaGeoModel`; ``n_customers_`` counts repeat buyers.

    Notes
    -----
    Only repeat buyers (``frequency > 0``) carry information on spend, so
    :meth:`fit` drops the others. Repeat buyers whose mean repeat spend is
    zero or negative (returns, free orders: 1 customer in the CDNOW master
    file) are outside the model, whose spend is Gamma and thus positive; as in
    Fader & Hardie (2013), who fit positive spend only, they are set aside with
    a :class:`DataQualityWarning` giving their number (``n_set_aside_``). ``monetary_value`` is the mean value of a
    customer's *repeat* purchases (same-day orders merged), as
    :func:`rfm_summary` returns it: with that input the CDNOW sample gives the
    published ``p = 6.25, q = 3.74, gamma = 15.44``. The model assumes spend
    independent of purchase frequency; check the correlation first.

    Examples
    --------
    >>> from cadence.data.io import read_tables
    >>> orders = read_tables("data/external/cdnow/sample", ["orders"])["orders"]
    >>> rfm = rfm_summary(orders, as_of="1997-10-01")
    >>> model = GammaGammaModel().fit(rfm)
    >>> model.n_customers_
    946
    """

    _param_names = ("p", "q", "v")
    _input_columns = _SPEND

    @staticmethod
    def _log_likelihood(params: np.ndarray, data: tuple[np.ndarray, ...]) -> np.ndarray:
        p, q, v = params
        x, m = data
        px = p * x
        return np.asarray(
            special.gammaln(px + q)
            - special.gammaln(px)
            - special.gammaln(q)
            + q * np.log(v)
            + (px - 1) * np.log(m)
            + px * np.log(x)
            - (px + q) * np.log(v + m * x)
        )

    def _initial_params(self, data: tuple[np.ndarray, ...]) -> np.ndarray:
        _, m = data
        # With p = 1, q = 2 the population mean spend p v / (q - 1) equals v: start at the data's mean.
        return np.array([1.0, 2.0, float(np.mean(m))])

    def _check_input(self, data: tuple[np.ndarray, ...]) -> None:
        x, m = data
        if np.any(x < 0):
            raise ValueError("Negative values in data: frequency must be >= 0")
        if np.any(x != np.round(x)):
            raise ValueError("frequency must be a whole number of repeat purchases")

    def _prepare(
        self, data: tuple[np.ndarray, ...], weights: np.ndarray
    ) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        x, m = data
        repeat = (x > 0) & (weights > 0)
        if not repeat.any():
            raise ValueError("no repeat buyers (frequency > 0) to fit spend on")
        bad = repeat & (m <= 0)
        if bad.any():
            # Fader & Hardie (2013) model positive spend; returns and free
            # orders carry no information on the Gamma spend scale.
            warnings.warn(
                f"GammaGammaModel: set aside {weights[bad].sum():.0f} of "
                f"{weights[repeat].sum():.0f} repeat buyers whose mean repeat spend is zero or "
                "negative (returns, free orders); the spend model is fitted on the others",
                DataQualityWarning,
                stacklevel=4,
            )
        keep = repeat & (m > 0)
        if not keep.any():
            raise ValueError("no repeat buyer with positive monetary_value to fit spend on")
        self.n_set_aside_ = int(round(weights[bad].sum()))
        return (x[keep], m[keep]), weights[keep]

    def conditional_expected_average_profit(
        self, frequency: Any, monetary_value: Any
    ) -> np.ndarray:
        """Expected mean transaction value of each customer.

        .. math::

            E[M \\mid p, q, \\gamma, m_x, x] = \\frac{p(\\gamma + m_x x)}{px + q - 1}
            = \\frac{q-1}{px+q-1}\\frac{p\\gamma}{q-1} + \\frac{px}{px+q-1} m_x

        ([2], [3]): a weighted mean of the population mean
        ``p gamma / (q - 1)`` and the customer's own mean; a customer
        without repeat purchases gets the population mean.

        Parameters
        ----------
        frequency, monetary_value : array-like of shape (n_customers,)

        Returns
        -------
        ndarray of shape (n_customers,)

        Examples
        --------
        >>> from cadence.data.io import read_tables
        >>> orders = read_tables("data/external/cdnow/sample", ["orders"])["orders"]
        >>> rfm = rfm_summary(orders, as_of="1997-10-01")
        >>> model = GammaGammaModel().fit(rfm)
        >>> model.conditional_expected_average_profit([0, 1, 10], [0.0, 100.0, 100.0]).round(2)
        array([35.17, 80.22, 97.27])
        """
        p, q, v = self._params()
        x = np.asarray(frequency, dtype="float64")
        m = np.asarray(monetary_value, dtype="float64")
        return np.asarray(p * (v + m * x) / (p * x + q - 1))

    def customer_lifetime_value(
        self,
        bgnbd: BetaGeoModel | ParetoNBDModel | ModifiedBetaGeoModel,
        X: pd.DataFrame,
        horizon: float,
        discount_rate: float,
        *,
        period: float = 1.0,
    ) -> np.ndarray:
        """Discounted expected spend of each customer over the next ``horizon``.

        .. math::

            \\mathrm{CLV} = E[M] \\sum_{k=1}^{K}
            \\frac{E[Y(k\\Delta)] - E[Y((k-1)\\Delta)]}{(1+d)^k},
            \\quad K = \\text{horizon} / \\Delta

        with ``E[Y(.)]`` from ``bgnbd.conditional_expected_purchases`` and
        ``E[M]`` from :meth:`conditional_expected_average_profit`: purchases
        expected in the ``k``-th period are discounted ``k`` periods.

        Parameters
        ----------
        bgnbd : BetaGeoModel, ParetoNBDModel or ModifiedBetaGeoModel
            A fitted purchase model, on the time unit of ``X`` (the name
            stays for compatibility).
        X : DataFrame
            ``frequency, recency, T, monetary_value`` (an :func:`rfm_summary`).
        horizon : float
            Forecast length in the time unit of ``X``; a multiple of ``period``.
        discount_rate : float
            Discount rate per ``period``, ``d >= 0``.
        period : float, default 1.0
            Length of a discounting period ``Delta`` (e.g. ``52 / 12`` for
            monthly discounting of a weekly fit).

        Returns
        -------
        ndarray of shape (n_customers,)

        Examples
        --------
        >>> from cadence.data.io import read_tables
        >>> orders = read_tables("data/external/cdnow/sample", ["orders"])["orders"]
        >>> rfm = rfm_summary(orders, as_of="1997-10-01")
        >>> bg, gg = BetaGeoModel().fit(rfm), GammaGammaModel().fit(rfm)
        >>> # one year ahead, discounted 1 % a month (a month is 52 / 12 weeks)
        >>> clv = gg.customer_lifetime_value(bg, rfm, horizon=52, discount_rate=0.01, period=52 / 12)
        >>> clv.shape
        (2357,)
        """
        check_is_fitted(bgnbd, "params_")
        if discount_rate < 0:
            raise ValueError(f"discount_rate must be >= 0, got {discount_rate}")
        if period <= 0 or horizon <= 0:
            raise ValueError("horizon and period must be positive")
        n_periods = round(horizon / period)
        if n_periods < 1 or not np.isclose(n_periods * period, horizon):
            raise ValueError(f"horizon ({horizon}) must be a whole multiple of period ({period})")
        x, m = _columns(X, _SPEND)
        spend = self.conditional_expected_average_profit(x, m)
        value = np.zeros_like(spend)
        previous = np.zeros_like(spend)
        for k in range(1, n_periods + 1):
            cumulative = bgnbd.conditional_expected_purchases(k * period, X)
            value += (cumulative - previous) / (1 + discount_rate) ** k
            previous = cumulative
        return np.asarray(spend * value)


# ---------------------------------------------------------------------------
# Pareto/NBD
# ---------------------------------------------------------------------------


def _one_minus_power_over(log_k: np.ndarray, e: float) -> np.ndarray:
    """``(1 - k**e) / e`` from ``log k``, continuous at ``e = 0`` (where it is ``-log k``)."""
    if abs(e) < 1e-10:
        return np.asarray(-log_k)
    return np.asarray(-np.expm1(e * log_k) / e)


#: Terms of the series in :func:`_hyp2f1_one_derivatives` before a row falls back to differences.
_SERIES_MAX_TERMS = 4096


def _hyp2f1_one_derivatives(b: np.ndarray, c1: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, ...]:
    """``S = 2F1(1, b; c1; z)`` and ``dS/db, dS/dc1, dS/dz`` for ``0 <= z < 1``, ``0 < b < c1``.

    The series ``S = sum_n T_n``, ``T_0 = 1``, ``T_{n+1} = T_n (b+n)/(c1+n) z``
    has positive terms whose ratio is below ``z``, and differentiates term by
    term: ``dT_n/db = T_n H_n(b)``, ``dT_n/dc1 = -T_n H_n(c1)`` with
    ``H_n(v) = sum_{k<n} 1/(v+k)``, and ``dT_n/dz = n T_n / z``. A row stops
    once a geometric bound on every tail is below ``1e-17 S``. Rows still
    running after :data:`_SERIES_MAX_TERMS` terms (``z`` above about 0.99,
    i.e. one rate parameter under about 1/100 of the other) take central
    differences of :func:`scipy.special.hyp2f1` in ``b`` and ``c1`` and its
    closed-form ``z``-derivative instead.
    """
    n = z.shape[0]
    out = np.empty((4, n))
    idx = np.arange(n)
    b_a, c_a, z_a = b.copy(), c1.copy(), z.copy()
    term, h_b, h_c = np.ones(n), np.zeros(n), np.zeros(n)
    acc = np.zeros((4, n))
    acc[0] = 1.0
    k = 0
    while idx.size and k < _SERIES_MAX_TERMS:
        for _ in range(8):
            bk, ck = b_a + k, c_a + k
            ratio = bk / ck
            acc[3] += (k + 1) * term * ratio  # d/dz of T_{k+1} = (k+1) T_k (b+k)/(c1+k)
            h_b += 1.0 / bk
            h_c += 1.0 / ck
            term = term * ratio * z_a  # T_{k+1}
            acc[0] += term
            acc[1] += term * h_b
            acc[2] -= term * h_c
            k += 1
        # T_{k+j} <= T_k z^j bounds the tails of S, S_b, S_c and S_z.
        q = 1.0 / (1.0 - z_a)
        tail = term * ((k + 1) * q + q * q) * (1.0 + h_b + h_c + 1.0 / b_a)
        done = tail <= 1e-17 * acc[0]
        if done.any():
            out[:, idx[done]] = acc[:, done]
            keep = ~done
            idx, b_a, c_a, z_a = idx[keep], b_a[keep], c_a[keep], z_a[keep]
            term, h_b, h_c, acc = term[keep], h_b[keep], h_c[keep], acc[:, keep]
    if idx.size:
        bb, cc, zz = b[idx], c1[idx], z[idx]
        hb, hc = 1e-6 * np.maximum(bb, 1.0), 1e-6 * np.maximum(cc, 1.0)
        out[0, idx] = special.hyp2f1(1.0, bb, cc, zz)
        out[1, idx] = (special.hyp2f1(1.0, bb + hb, cc, zz) - special.hyp2f1(1.0, bb - hb, cc, zz)) / (2 * hb)
        out[2, idx] = (special.hyp2f1(1.0, bb, cc + hc, zz) - special.hyp2f1(1.0, bb, cc - hc, zz)) / (2 * hc)
        out[3, idx] = bb / cc * special.hyp2f1(2.0, bb + 1.0, cc + 1.0, zz)
    return out[0], out[1], out[2], out[3]


def _log_tail_integral(
    params: np.ndarray, x: np.ndarray, t: np.ndarray, gradient: bool
) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
    """``log J(t)``, ``J(t) = int_t^inf (alpha+u)^-(r+x) (beta+u)^-(s+1) du``, and its gradient.

    With ``M = max(alpha, beta)``, ``z = |alpha - beta| / (M + t)`` and
    ``c = r + s + x``, ``J = (1-z)^e0 2F1(1, b; c+1; z) / (c (M+t)^c)`` where
    ``(e0, b) = (-s, r+x)`` if ``alpha >= beta`` and ``(1-r-x, s+1)``
    otherwise (Fader, Hardie & Lee's ``A_0`` is ``c (J(t_x) - J(T))``).
    Every parameter enters through ``e0, b, c, z, M`` in closed form except
    the hypergeometric factor, whose derivatives come from its series
    (:func:`_hyp2f1_one_derivatives`): the gradient is exact, not a difference.
    """
    r, alpha, s, beta = params
    c = r + s + x
    if alpha >= beta:
        big, e0, b = alpha, -s, r + x
    else:
        big, e0, b = beta, 1.0 - r - x, np.full_like(x, s + 1.0)
    z = abs(alpha - beta) / (big + t)
    log_big_t = np.log(big + t)
    log1mz = np.log1p(-z)
    hyp = special.hyp2f1(1.0, b, c + 1.0, z)
    log_j = e0 * log1mz + np.log(hyp) - c * log_big_t - np.log(c)
    if not gradient:
        return np.asarray(log_j), None
    series, d_b, d_c, d_z = _hyp2f1_one_derivatives(b, c + 1.0, z)
    g_b, g_c, g_z = d_b / series, d_c / series, d_z / series  # derivatives of log 2F1
    common = -log_big_t - 1.0 / c  # d/dc of -c log(M+t) - log c
    if alpha >= beta:
        d_r = g_b + g_c + common
        d_s = -log1mz + g_c + common
        d_alpha = (g_z * (1.0 - z) - (r + x)) / (alpha + t)
        d_beta = -(s / (1.0 - z) + g_z) / (alpha + t)
    else:
        d_r = -log1mz + g_c + common
        d_s = g_b + g_c + common
        d_alpha = ((1.0 - r - x) / (1.0 - z) - g_z) / (beta + t)
        d_beta = (g_z * (1.0 - z) - (s + 1.0)) / (beta + t)
    return np.asarray(log_j), (d_r, d_alpha, d_s, d_beta)


class _ParetoRows(NamedTuple):
    """RFM rows plus the distinct ``(x, t)`` pairs among ``(x, t_x)`` and ``(x, T)``.

    Pareto/NBD's hypergeometric terms depend on a row through ``(x, t_x)``
    and ``(x, T)`` only; a summary in whole days has far fewer distinct pairs
    than rows (8,294 pairs for the 155,289 distinct triples of a million
    simulated customers in ``benchmarks/bench_btyd.py``), so they are
    evaluated once per pair and gathered.
    """

    x: np.ndarray
    t_x: np.ndarray
    T: np.ndarray
    pair_x: np.ndarray
    pair_t: np.ndarray
    at_tx: np.ndarray
    at_T: np.ndarray

    @classmethod
    def of(cls, data: tuple[np.ndarray, ...] | _ParetoRows) -> _ParetoRows:
        if isinstance(data, _ParetoRows):
            return data
        x, t_x, T = (np.asarray(c, dtype="float64") for c in data)
        xx, tt = np.concatenate([x, x]), np.concatenate([t_x, T])
        order = np.lexsort((tt, xx))
        new = np.ones(xx.size, dtype=bool)
        new[1:] = (np.diff(xx[order]) != 0) | (np.diff(tt[order]) != 0)
        inverse = np.empty(xx.size, dtype=np.intp)
        inverse[order] = np.cumsum(new) - 1
        first = order[new]
        return cls(x, t_x, T, xx[first], tt[first], inverse[: x.size], inverse[x.size :])


class ParetoNBDModel(_MaximumLikelihoodModel):
    """Pareto/NBD model of repeat purchasing (Schmittlein, Morrison & Colombo 1987).

    While alive a customer buys as a Poisson process with rate
    ``lambda ~ Gamma(r, alpha)``; the lifetime is exponential with rate
    ``mu ~ Gamma(s, beta)``, independent of ``lambda``. Unlike BG/NBD,
    dropout can happen at any time, also before the first repeat purchase.

    The likelihood of one customer, in the form of Fader, Hardie & Lee's
    note [2] (eq. 22 of [1] rewritten without cancellation), is

    .. math::

        L = \\frac{\\Gamma(r+x)\\alpha^r\\beta^s}{\\Gamma(r)}
            \\Big[\\frac{1}{(\\alpha+T)^{r+x}(\\beta+T)^s}
            + \\frac{s}{r+s+x} A_0\\Big],
        \\qquad A_0 = F(t_x) - F(T),

    with, for ``alpha >= beta``,
    ``F(t) = 2F1(r+s+x, s+1; r+s+x+1; (alpha-beta)/(alpha+t)) / (alpha+t)^{r+s+x}``
    and, for ``alpha < beta``,
    ``F(t) = 2F1(r+s+x, r+x; r+s+x+1; (beta-alpha)/(beta+t)) / (beta+t)^{r+s+x}``
    (the branch keeps the argument in ``[0, 1)``). Each ``F`` is evaluated
    in log space after Euler's transformation
    ``2F1(a, b; a+1; z) = (1-z)^{1-b} 2F1(1, a+1-b; a+1; z)``, whose series
    has upper parameters that do not grow with ``x``.

    Parameters
    ----------
    penalizer : float, default 0.0
        L2 penalty on ``(r, alpha, s, beta)`` added to the mean negative
        log-likelihood.

    Attributes
    ----------
    params_ : dict
        ``r, alpha`` (purchase rate) and ``s, beta`` (dropout rate), in the
        time unit of ``X``.
    summary_, covariance_, log_likelihood_, n_customers_, n_distinct_rows_, converged_
        As for :class:`BetaGeoModel`.

    Notes
    -----
    The fit runs on the distinct ``(frequency, recency, T)`` triples with
    their counts (:func:`compress_rows`), evaluates the hypergeometric terms
    once per distinct ``(frequency, t)`` pair (``t`` a recency or a ``T``),
    and uses the analytic gradient: the bracket's second term is ``s`` times
    the integral ``int_{t_x}^T (alpha+u)^-(r+x) (beta+u)^-(s+1) du``
    ([2], eq. 15-19), whose derivatives in ``alpha`` and ``beta`` are closed
    forms and whose derivatives in ``r`` and ``s`` are the term-by-term
    derivatives of the hypergeometric series (:func:`_log_tail_integral`;
    speed against ``lifetimes``: ``benchmarks/bench_btyd.py``).

    References
    ----------
    .. [1] Schmittlein, D. C., Morrison, D. G. & Colombo, R. (1987). Counting
       your customers: who are they and what will they do next?
       *Management Science* 33(1), 1-24.
    .. [2] Fader, P. S. & Hardie, B. G. S. (2005). A note on deriving the
       Pareto/NBD model and related expressions. http://brucehardie.com/notes/009/
    .. [3] Fader, P. S., Hardie, B. G. S. & Lee, K. L. (2005). A note on
       implementing the Pareto/NBD model in MATLAB. http://brucehardie.com/notes/008/

    Examples
    --------
    >>> from cadence.data.io import read_tables
    >>> orders = read_tables("data/external/cdnow/sample", ["orders"])["orders"]
    >>> rfm = rfm_summary(orders, as_of="1997-10-01", start="1997-01-01")
    >>> model = ParetoNBDModel().fit(rfm)
    >>> {k: round(v, 3) for k, v in model.params_.items()}
    {'r': 0.553, 'alpha': 10.578, 's': 0.606, 'beta': 11.669}
    >>> round(model.log_likelihood_, 2)
    -9594.98
    """

    _param_names = ("r", "alpha", "s", "beta")
    _input_columns = _RFM
    _analytic_gradient = True

    def _likelihood_inputs(self, data: tuple[np.ndarray, ...]) -> _ParetoRows:
        return _ParetoRows.of(data)

    @staticmethod
    def _mixture(
        params: np.ndarray, rows: _ParetoRows, gradient: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[np.ndarray, ...] | None]:
        """Per row ``alive``, ``died`` (the bracket's two terms in logs) and ``log(J(T) / J(t_x))``.

        ``died = log s + log I`` with ``I = J(t_x) - J(T)`` and ``J`` from
        :func:`_log_tail_integral`, evaluated once per distinct ``(x, t)``
        pair; with ``gradient`` also ``J``'s log-derivatives on those pairs.
        """
        r, alpha, s, beta = params
        log_j, d_j = _log_tail_integral(params, rows.pair_x, rows.pair_t, gradient)
        at_tx = log_j[rows.at_tx]
        gap = np.minimum(log_j[rows.at_T] - at_tx, 0.0)
        with np.errstate(divide="ignore"):
            # I = J(t_x) - J(T) >= 0; it is 0 when the last purchase is at T.
            died = np.log(s) + at_tx + np.log(-np.expm1(gap))
        # The (x, T) pairs are among the pairs: the alive term is evaluated there and gathered.
        px, pt = rows.pair_x, rows.pair_t
        alive = (-(r + px) * np.log(alpha + pt) - s * np.log(beta + pt))[rows.at_T]
        return alive, died, gap, d_j

    @staticmethod
    def _log_terms(params: np.ndarray, data: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
        """``log`` of the two bracketed terms of the likelihood (without the common factor)."""
        alive, died, _, _ = ParetoNBDModel._mixture(params, _ParetoRows.of(data), gradient=False)
        return alive, died

    @staticmethod
    def _log_likelihood(params: np.ndarray, data: tuple[np.ndarray, ...]) -> np.ndarray:
        r, alpha, s, beta = params
        rows = _ParetoRows.of(data)
        alive, died, _, _ = ParetoNBDModel._mixture(params, rows, gradient=False)
        x = rows.x
        common = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha) + s * np.log(beta)
        return np.asarray(common + np.logaddexp(alive, died))

    @classmethod
    def _total_log_likelihood_and_gradient(
        cls, params: np.ndarray, data: tuple[np.ndarray, ...], weights: np.ndarray
    ) -> tuple[float, np.ndarray]:
        """``sum_i w_i log L_i`` and its gradient, summed on the pairs rather than the rows.

        Per row, ``d log L = d common + w_a d alive + w_d d died`` with the
        branch shares ``w_a, w_d`` and ``d log I = (d log J(t_x) - rho d log J(T))
        / (1 - rho)``, ``rho = J(T) / J(t_x)``. Every derivative factor depends
        on ``x``, on an ``(x, T)`` or on an ``(x, t)`` pair only, so the row
        weights are first summed per pair (``bincount``) and each factor is
        evaluated once per pair: the rows see a dozen array operations.
        """
        r, alpha, s, beta = params
        rows = _ParetoRows.of(data)
        alive, died, gap, d_j = ParetoNBDModel._mixture(params, rows, gradient=True)
        assert d_j is not None
        mix = np.logaddexp(alive, died)
        n_pairs = rows.pair_x.size
        w_alive = weights * np.exp(alive - mix)
        w_died = weights * np.exp(died - mix)
        with np.errstate(divide="ignore"):
            # Where I = 0 (rho = 1) its share w_died is 0: the factor is irrelevant there.
            u = w_died * np.where(gap < 0.0, -1.0 / np.expm1(gap), 0.0)
        on_pairs = np.bincount(rows.at_tx, u, n_pairs) - np.bincount(rows.at_T, u * np.exp(gap), n_pairs)
        alive_on_pairs = np.bincount(rows.at_T, w_alive, n_pairs)
        by_x = np.bincount(rows.x.astype(np.intp), weights)
        k = np.arange(by_x.size, dtype="float64")
        total_w = float(weights.sum())
        px, pt = rows.pair_x, rows.pair_t
        total = (
            _dot(by_x, special.gammaln(r + k) - special.gammaln(r))
            + total_w * (r * np.log(alpha) + s * np.log(beta))
            + _dot(weights, mix)
        )
        grad = np.array(
            [
                _dot(by_x, special.digamma(r + k) - special.digamma(r)) + total_w * np.log(alpha)
                - _dot(alive_on_pairs, np.log(alpha + pt)),
                total_w * r / alpha - _dot(alive_on_pairs, (r + px) / (alpha + pt)),
                total_w * np.log(beta) - _dot(alive_on_pairs, np.log(beta + pt)) + float(w_died.sum()) / s,
                total_w * s / beta - _dot(alive_on_pairs, s / (beta + pt)),
            ]
        ) + np.array([_dot(on_pairs, d) for d in d_j])
        return float(total), grad

    def _initial_params(self, data: tuple[np.ndarray, ...]) -> np.ndarray:
        x, _, T = data
        rate = (x.sum() + 1.0) / (T.sum() + 1.0)
        # Rate on the data's time scale; lifetimes of the order of the observation window.
        return np.array([1.0, 1.0 / rate, 1.0, float(np.mean(T)) + 1.0])

    def conditional_probability_alive(self, X: Any) -> np.ndarray:
        """Probability that each customer is still alive at ``T``.

        .. math::

            P(\\text{alive} \\mid x, t_x, T) = \\Big[1 + \\frac{s}{r+s+x}
            (\\alpha+T)^{r+x}(\\beta+T)^s A_0\\Big]^{-1}

        ([2], eq. 18), with ``A_0`` as in the class docstring.

        Parameters
        ----------
        X : DataFrame or array of shape (n_customers, 3)
            ``frequency, recency, T``.

        Returns
        -------
        ndarray of shape (n_customers,)

        Examples
        --------
        >>> import numpy as np
        >>> X = np.array([[0, 0, 30], [2, 20, 30], [5, 29, 30], [1, 3, 30], [3, 10, 25]])
        >>> p = ParetoNBDModel().fit(X).conditional_probability_alive([[4, 29, 30], [4, 5, 30]])
        >>> bool(p[0] > p[1])
        True
        """
        data = _columns(X, _RFM)
        _check_rfm(*data)
        alive, died = self._log_terms(self._params(), data)
        return np.asarray(special.expit(alive - died))

    def conditional_expected_purchases(self, t: float, X: Any) -> np.ndarray:
        """Expected purchases of each customer in ``(T, T + t]``.

        .. math::

            E[Y(t) \\mid x, t_x, T] = \\frac{(r+x)(\\beta+T)}{(\\alpha+T)(s-1)}
            \\Big[1 - \\Big(\\frac{\\beta+T}{\\beta+T+t}\\Big)^{s-1}\\Big]
            P(\\text{alive} \\mid x, t_x, T)

        ([1], eq. 22; continuous at ``s = 1``, where the bracket over
        ``s - 1`` becomes ``log((beta+T+t)/(beta+T))``).

        Parameters
        ----------
        t : float
            Forecast window, in the time unit of ``X``.
        X : DataFrame or array of shape (n_customers, 3)

        Returns
        -------
        ndarray of shape (n_customers,)

        Examples
        --------
        >>> import numpy as np
        >>> X = np.array([[0, 0, 30], [2, 20, 30], [5, 29, 30], [1, 3, 30], [3, 10, 25]])
        >>> ParetoNBDModel().fit(X).conditional_expected_purchases(10.0, X).shape
        (5,)
        """
        if t < 0:
            raise ValueError(f"t must be non-negative, got {t}")
        r, alpha, s, beta = self._params()
        x, t_x, T = _columns(X, _RFM)
        _check_rfm(x, t_x, T)
        alive = self.conditional_probability_alive(np.column_stack([x, t_x, T]))
        log_k = np.log(beta + T) - np.log(beta + T + t)
        return np.asarray((r + x) * (beta + T) / (alpha + T) * _one_minus_power_over(log_k, s - 1) * alive)

    def expected_purchases(self, t: float | np.ndarray) -> np.ndarray:
        """Expected repeat purchases of a new customer in ``(0, t]``.

        .. math::

            E[X(t)] = \\frac{r\\beta}{\\alpha(s-1)}
            \\Big[1 - \\Big(\\frac{\\beta}{\\beta+t}\\Big)^{s-1}\\Big]

        ([1], eq. 17).

        Parameters
        ----------
        t : float or array

        Returns
        -------
        ndarray, shaped like ``t``

        Examples
        --------
        >>> import numpy as np
        >>> X = np.array([[0, 0, 30], [2, 20, 30], [5, 29, 30], [1, 3, 30], [3, 10, 25]])
        >>> ParetoNBDModel().fit(X).expected_purchases([0.0])
        array([0.])
        """
        r, alpha, s, beta = self._params()
        t = np.asarray(t, dtype="float64")
        if np.any(t < 0):
            raise ValueError("t must be non-negative")
        log_k = np.log(beta) - np.log(beta + t)
        return np.asarray(r * beta / alpha * _one_minus_power_over(log_k, s - 1) + 0.0)

    def predict(self, X: Any, t: float) -> np.ndarray:
        """Expected purchases in the next ``t`` time units; see :meth:`conditional_expected_purchases`."""
        return self.conditional_expected_purchases(t, X)


# ---------------------------------------------------------------------------
# MBG/NBD
# ---------------------------------------------------------------------------


class ModifiedBetaGeoModel(_MaximumLikelihoodModel):
    """MBG/NBD: BG/NBD with dropout possible at time 0 (Batislam, Denizel & Filiztekin 2007).

    As BG/NBD, but a customer may drop out right after *every* purchase,
    the first included, so a customer without repeat purchases is not
    certainly alive. The likelihood of one customer is

    .. math::

        L = \\frac{\\Gamma(r+x)\\alpha^r}{\\Gamma(r)}\\Big[
            \\frac{B(a, b+x+1)}{B(a,b)} \\frac{1}{(\\alpha+T)^{r+x}}
            + \\frac{B(a+1, b+x)}{B(a,b)} \\frac{1}{(\\alpha+t_x)^{r+x}}\\Big].

    Parameters
    ----------
    penalizer : float, default 0.0

    Attributes
    ----------
    params_ : dict
        ``r, alpha, a, b`` as for :class:`BetaGeoModel`.
    summary_, covariance_, log_likelihood_, n_customers_, n_distinct_rows_, converged_
        As for :class:`BetaGeoModel`.

    Notes
    -----
    Fitted on the distinct triples with numerical gradients.

    References
    ----------
    .. [1] Batislam, E. P., Denizel, M. & Filiztekin, A. (2007). Empirical
       validation and comparison of models for customer base analysis.
       *International Journal of Research in Marketing* 24(3), 201-209.
    .. [2] Wagner, U. & Hoppe, D. (2008). Erratum on the MBG/NBD model.
       *International Journal of Research in Marketing* 25(3), 225-226.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0, 0, 30], [2, 20, 30], [5, 29, 30], [1, 3, 30], [3, 10, 25]])
    >>> model = ModifiedBetaGeoModel().fit(X)
    >>> bool(model.conditional_probability_alive([[0, 0, 30]])[0] < 1)
    True
    """

    _param_names = ("r", "alpha", "a", "b")
    _input_columns = _RFM

    @staticmethod
    def _log_likelihood(params: np.ndarray, data: tuple[np.ndarray, ...]) -> np.ndarray:
        r, alpha, a, b = params
        x, t_x, T = data
        common = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
        beta_ab = special.betaln(a, b)
        stay = special.betaln(a, b + x + 1) - beta_ab - (r + x) * np.log(alpha + T)
        drop = special.betaln(a + 1, b + x) - beta_ab - (r + x) * np.log(alpha + t_x)
        return np.asarray(common + np.logaddexp(stay, drop))

    def _initial_params(self, data: tuple[np.ndarray, ...]) -> np.ndarray:
        x, _, T = data
        rate = (x.sum() + 1.0) / (T.sum() + 1.0)
        return np.array([1.0, 1.0 / rate, 0.5, 1.0])  # a != 1: see BetaGeoModel

    def _log_dropout_odds(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        r, alpha, a, b = self._params()
        return np.asarray(np.log(a) - np.log(b + x) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x)))

    def conditional_probability_alive(self, X: Any) -> np.ndarray:
        """Probability that each customer is still alive at ``T``.

        .. math::

            P(\\text{alive} \\mid x, t_x, T) = \\Big[1 + \\frac{a}{b+x}
            \\Big(\\frac{\\alpha+T}{\\alpha+t_x}\\Big)^{r+x}\\Big]^{-1}

        ([1]); below 1 also for ``x = 0``.

        Parameters
        ----------
        X : DataFrame or array of shape (n_customers, 3)

        Returns
        -------
        ndarray of shape (n_customers,)
        """
        x, t_x, T = _columns(X, _RFM)
        _check_rfm(x, t_x, T)
        return np.asarray(special.expit(-self._log_dropout_odds(x, t_x, T)))

    def conditional_expected_purchases(self, t: float, X: Any) -> np.ndarray:
        """Expected purchases of each customer in ``(T, T + t]``.

        .. math::

            E[Y(t) \\mid x, t_x, T] = \\frac{a+b+x}{a-1}
            \\Big[1 - \\Big(\\frac{\\alpha+T}{\\alpha+T+t}\\Big)^{r+x}
            {}_2F_1\\!\\big(r+x, b+x+1; a+b+x; \\tfrac{t}{\\alpha+T+t}\\big)\\Big]
            P(\\text{alive} \\mid x, t_x, T)

        ([1]), evaluated after Euler's transformation
        ``(1-z)^{r+x} 2F1(r+x, b+x+1; c; z) = (1-z)^{a-1} 2F1(a+b-r, a-1; c; z)``,
        ``c = a+b+x``, as for :class:`BetaGeoModel`.

        Parameters
        ----------
        t : float
        X : DataFrame or array of shape (n_customers, 3)

        Returns
        -------
        ndarray of shape (n_customers,)
        """
        if t < 0:
            raise ValueError(f"t must be non-negative, got {t}")
        x, t_x, T = _columns(X, _RFM)
        _check_rfm(x, t_x, T)
        r, alpha, a, b = self._params()
        z = t / (alpha + T + t)
        c = a + b + x
        tail = np.exp((a - 1) * np.log1p(-z)) * special.hyp2f1(a + b - r, a - 1, c, z)
        alive = special.expit(-self._log_dropout_odds(x, t_x, T))
        return np.asarray(c / (a - 1) * (1 - tail) * alive)

    def expected_purchases(self, t: float | np.ndarray) -> np.ndarray:
        """Expected repeat purchases of a new customer in ``(0, t]``.

        .. math::

            E[X(t)] = \\frac{b}{a-1}\\Big[1 - \\Big(\\frac{\\alpha}{\\alpha+t}\\Big)^r
            {}_2F_1\\!\\big(r, b+1; a+b; \\tfrac{t}{\\alpha+t}\\big)\\Big]

        ([1]); equal to the conditional expectation at ``x = t_x = T = 0``.

        Parameters
        ----------
        t : float or array

        Returns
        -------
        ndarray, shaped like ``t``
        """
        r, alpha, a, b = self._params()
        t = np.asarray(t, dtype="float64")
        if np.any(t < 0):
            raise ValueError("t must be non-negative")
        z = t / (alpha + t)
        tail = np.exp((a - 1) * np.log1p(-z)) * special.hyp2f1(a + b - r, a - 1, a + b, z)
        return np.asarray(b / (a - 1) * (1 - tail) + 0.0)

    def predict(self, X: Any, t: float) -> np.ndarray:
        """Expected purchases in the next ``t`` time units; see :meth:`conditional_expected_purchases`."""
        return self.conditional_expected_purchases(t, X)


# ---------------------------------------------------------------------------
# BG/BB: discrete purchase opportunities
# ---------------------------------------------------------------------------

_DISCRETE = ("frequency", "recency", "n_periods")


def discrete_summary(
    orders: pd.DataFrame,
    as_of: Any,
    *,
    start: Any,
    period: str | pd.Timedelta = "365D",
    by_customer: bool = False,
) -> pd.DataFrame:
    """Summarise orders into BG/BB's discrete-time inputs: repeat periods, last one, opportunities.

    Time from ``start`` is cut into whole periods ``[start + k P, start +
    (k+1) P)``, ``k = 0 .. K-1``, with ``K`` the number of complete periods
    before ``as_of``; a period is a *transaction opportunity* and a customer
    either transacts in it or not (orders in one period count once). A
    customer first buying in period ``f`` has ``n_periods = K - 1 - f``
    opportunities after it, ``frequency`` = periods among them with a
    purchase, and ``recency`` = the last such period counted from ``f`` (0
    when none), as in Fader, Hardie & Shang (2010). Orders before ``start``
    or in the incomplete last period are not read; customers first seen
    before ``start`` are left out (their first period is unknown) with a
    :class:`DataQualityWarning` giving their number.

    Parameters
    ----------
    orders : DataFrame
        Contract ``orders`` (``customer_id``, tz-aware ``ts``, ``revenue``).
    as_of : timestamp-like
        Exclusive cutoff (naive values are UTC).
    start : timestamp-like
        Start of the first period (required: the grid of opportunities).
    period : str or Timedelta, default '365D'
        Length of a period.
    by_customer : bool, default False
        Return one row per customer instead of the distinct rows with counts.

    Returns
    -------
    DataFrame
        Columns ``frequency``, ``recency``, ``n_periods`` (int64) and, unless
        ``by_customer``, ``weight`` (customers per distinct row; pass it as
        ``sample_weight``). With ``by_customer`` the index is ``customer_id``.

    References
    ----------
    Fader, P. S., Hardie, B. G. S. & Shang, J. (2010). Customer-base analysis
    in a discrete-time noncontractual setting. *Marketing Science* 29(6),
    1086-1108.

    Examples
    --------
    >>> import pandas as pd
    >>> orders = pd.DataFrame({
    ...     "customer_id": ["a", "a", "a", "b"],
    ...     "ts": pd.to_datetime(["2020-01-05", "2021-03-01", "2023-02-01", "2020-06-01"], utc=True),
    ...     "revenue": [1.0, 1.0, 1.0, 1.0],
    ... })
    >>> discrete_summary(orders, "2024-01-01", start="2020-01-01", by_customer=True).reset_index()
      customer_id  frequency  recency  n_periods
    0           a          2        3          3
    1           b          0        0          3
    """
    cutoff, origin = utc(as_of, "as_of"), utc(start, "start")
    length = pd.Timedelta(period)
    if length <= pd.Timedelta(0):
        raise ValueError(f"period must be positive, got {period!r}")
    n_total = int((cutoff - origin) // length)
    if n_total < 2:
        raise ValueError(f"fewer than two whole periods of {length} between start and as_of")
    days = _order_days(orders)
    days = days[days["ts"] < origin + n_total * length]
    first_ts = days.groupby("customer_id")["ts"].transform("min")
    early = first_ts < origin
    if early.any():
        warnings.warn(
            f"discrete_summary: left out {days.loc[early, 'customer_id'].nunique()} customers whose "
            f"first purchase is before start={start}",
            DataQualityWarning,
            stacklevel=2,
        )
    days = days[~early]
    k = ((days["ts"] - origin) // length).astype("int64")
    periods = pd.DataFrame({"customer_id": days["customer_id"].to_numpy(), "k": k.to_numpy()}).drop_duplicates()
    by = periods.groupby("customer_id", sort=True)["k"]
    first, last, count = by.min(), by.max(), by.size()
    out = pd.DataFrame(
        {
            "frequency": (count - 1).astype("int64"),
            "recency": (last - first).astype("int64"),
            "n_periods": (n_total - 1 - first).astype("int64"),
        }
    )
    out.index.name = "customer_id"
    if by_customer:
        return out
    grouped = out.groupby(list(_DISCRETE), sort=True).size().rename("weight").reset_index()
    return grouped.astype("int64")


class BetaGeoBetaBinomModel(_MaximumLikelihoodModel):
    """BG/BB model of discrete-time repeat transactions (Fader, Hardie & Shang 2010).

    In each period (a transaction opportunity) an alive customer transacts
    with probability ``p ~ Beta(alpha, beta)`` and, at the start of each
    later period, dies with probability ``theta ~ Beta(gamma, delta)``.
    For ``x`` transactions in ``n`` opportunities, the last in ``t_x``, the
    likelihood is

    .. math::

        L = \\frac{B(\\alpha+x, \\beta+n-x)}{B(\\alpha,\\beta)}
            \\frac{B(\\gamma, \\delta+n)}{B(\\gamma,\\delta)}
          + \\sum_{i=0}^{n-t_x-1} \\frac{B(\\alpha+x, \\beta+t_x-x+i)}{B(\\alpha,\\beta)}
            \\frac{B(\\gamma+1, \\delta+t_x+i)}{B(\\gamma,\\delta)}

    ([1], eq. 5), summed in log space.

    Parameters
    ----------
    penalizer : float, default 0.0

    Attributes
    ----------
    params_ : dict
        ``alpha, beta`` (transaction probability) and ``gamma, delta``
        (dropout probability).
    summary_, covariance_, log_likelihood_, n_customers_, n_distinct_rows_, converged_
        As for :class:`BetaGeoModel`.

    Notes
    -----
    ``X`` has columns ``frequency, recency, n_periods`` (whole numbers,
    ``frequency <= recency <= n_periods``, ``recency = 0`` iff
    ``frequency = 0``), e.g. from :func:`discrete_summary`, whose ``weight``
    column goes into ``sample_weight``. Numerical gradients.

    References
    ----------
    .. [1] Fader, P. S., Hardie, B. G. S. & Shang, J. (2010). Customer-base
       analysis in a discrete-time noncontractual setting. *Marketing
       Science* 29(6), 1086-1108.

    Examples
    --------
    The donations data of [1] (11,104 donors, 6 opportunities), from the
    repository root:

    >>> import pandas as pd
    >>> d = pd.read_csv("data/external/donations/donations.csv")
    >>> model = BetaGeoBetaBinomModel().fit(d.rename(columns={"periods": "n_periods"}),
    ...                                      sample_weight=d["weights"])
    >>> {k: round(v, 3) for k, v in model.params_.items()}
    {'alpha': 1.204, 'beta': 0.75, 'gamma': 0.657, 'delta': 2.783}
    """

    _param_names = ("alpha", "beta", "gamma", "delta")
    _input_columns = _DISCRETE

    def _check_input(self, data: tuple[np.ndarray, ...]) -> None:
        x, t_x, n = data
        if np.any(x < 0) or np.any(t_x < 0) or np.any(n < 0):
            raise ValueError("Negative values in data: frequency, recency and n_periods must be >= 0")
        if np.any(x != np.round(x)) or np.any(t_x != np.round(t_x)) or np.any(n != np.round(n)):
            raise ValueError("frequency, recency and n_periods must be whole numbers of periods")
        if np.any(x > t_x) or np.any(t_x > n) or np.any((x == 0) != (t_x == 0)):
            raise ValueError("need frequency <= recency <= n_periods, and recency = 0 iff frequency = 0")

    @staticmethod
    def _log_likelihood(params: np.ndarray, data: tuple[np.ndarray, ...]) -> np.ndarray:
        alpha, beta, gamma, delta = params
        x, t_x, n = data
        b_ab, b_gd = special.betaln(alpha, beta), special.betaln(gamma, delta)
        out = special.betaln(alpha + x, beta + n - x) - b_ab + special.betaln(gamma, delta + n) - b_gd
        gap = n - t_x
        # Died after period t_x + i: one term per period between the last transaction and n.
        for i in range(int(gap.max()) if gap.size else 0):
            term = (
                special.betaln(alpha + x, beta + t_x - x + i)
                - b_ab
                + special.betaln(gamma + 1, delta + t_x + i)
                - b_gd
            )
            out = np.where(i < gap, np.logaddexp(out, term), out)
        return np.asarray(out)

    def _initial_params(self, data: tuple[np.ndarray, ...]) -> np.ndarray:
        return np.array([1.0, 1.0, 1.0, 1.0])

    def conditional_probability_alive(self, X: Any, m_periods: int = 1) -> np.ndarray:
        """Probability that each customer is alive in period ``n + m_periods``.

        .. math::

            P(\\text{alive at } n+m \\mid x, t_x, n) = \\frac{B(\\alpha+x, \\beta+n-x)}{B(\\alpha,\\beta)}
            \\frac{B(\\gamma, \\delta+n+m)}{B(\\gamma,\\delta)} \\Big/ L

        ([1], eq. 11 for ``m = 1``).

        Parameters
        ----------
        X : DataFrame or array of shape (n_customers, 3)
            ``frequency, recency, n_periods``.
        m_periods : int, default 1

        Returns
        -------
        ndarray of shape (n_customers,)
        """
        alpha, beta, gamma, delta = params = self._params()
        data = _columns(X, _DISCRETE)
        self._check_input(data)
        x, _, n = data
        log_alive = (
            special.betaln(alpha + x, beta + n - x)
            - special.betaln(alpha, beta)
            + special.betaln(gamma, delta + n + m_periods)
            - special.betaln(gamma, delta)
        )
        return np.asarray(np.exp(log_alive - self._log_likelihood(params, data)))

    def conditional_expected_purchases(self, t: float, X: Any) -> np.ndarray:
        """Expected transactions of each customer in the next ``t`` periods.

        .. math::

            E[X(n, n+n^*) \\mid x, t_x, n] = \\frac{1}{L}
            \\frac{B(\\alpha+x+1, \\beta+n-x)}{B(\\alpha,\\beta)}
            \\frac{\\delta}{\\gamma-1}\\frac{\\Gamma(\\gamma+\\delta)}{\\Gamma(1+\\delta)}
            \\Big[\\frac{\\Gamma(1+\\delta+n)}{\\Gamma(\\gamma+\\delta+n)}
            - \\frac{\\Gamma(1+\\delta+n+n^*)}{\\Gamma(\\gamma+\\delta+n+n^*)}\\Big]

        ([1], eq. 13) with ``n^* = t``.

        Parameters
        ----------
        t : float
            Number of future periods.
        X : DataFrame or array of shape (n_customers, 3)

        Returns
        -------
        ndarray of shape (n_customers,)
        """
        if t < 0:
            raise ValueError(f"t must be non-negative, got {t}")
        alpha, beta, gamma, delta = params = self._params()
        data = _columns(X, _DISCRETE)
        self._check_input(data)
        x, _, n = data
        log_front = (
            special.betaln(alpha + x + 1, beta + n - x)
            - special.betaln(alpha, beta)
            + special.gammaln(gamma + delta)
            - special.gammaln(1 + delta)
            - self._log_likelihood(params, data)
        )
        bracket = np.exp(special.gammaln(1 + delta + n) - special.gammaln(gamma + delta + n)) - np.exp(
            special.gammaln(1 + delta + n + t) - special.gammaln(gamma + delta + n + t)
        )
        return np.asarray(np.exp(log_front) * delta / (gamma - 1) * bracket)

    def expected_purchases(self, t: float | np.ndarray) -> np.ndarray:
        """Expected transactions of a new customer in the first ``t`` opportunities.

        .. math::

            E[X(n)] = \\frac{\\alpha}{\\alpha+\\beta}\\frac{\\delta}{\\gamma-1}
            \\Big[1 - \\frac{\\Gamma(\\gamma+\\delta)}{\\Gamma(\\gamma+\\delta+n)}
            \\frac{\\Gamma(1+\\delta+n)}{\\Gamma(1+\\delta)}\\Big]

        ([1], eq. 8).

        Parameters
        ----------
        t : float or array
            Number of opportunities ``n``.

        Returns
        -------
        ndarray, shaped like ``t``
        """
        alpha, beta, gamma, delta = self._params()
        n = np.asarray(t, dtype="float64")
        if np.any(n < 0):
            raise ValueError("t must be non-negative")
        ratio = np.exp(
            special.gammaln(gamma + delta)
            - special.gammaln(gamma + delta + n)
            + special.gammaln(1 + delta + n)
            - special.gammaln(1 + delta)
        )
        return np.asarray(alpha / (alpha + beta) * delta / (gamma - 1) * (1 - ratio) + 0.0)

    def predict(self, X: Any, t: float) -> np.ndarray:
        """Expected transactions in the next ``t`` periods; see :meth:`conditional_expected_purchases`."""
        return self.conditional_expected_purchases(t, X)
