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
finite-difference Hessian of the negative log-likelihood at the optimum.

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

import warnings
from abc import abstractmethod
from numbers import Real
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from scipy import optimize, special, stats
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import Tags
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_array, check_is_fitted

TimeUnit = Literal["D", "W"]

#: Days per time unit of :func:`rfm_summary`.
DAYS_PER_UNIT: dict[str, float] = {"D": 1.0, "W": 7.0}


# ---------------------------------------------------------------------------
# Features: orders -> (frequency, recency, T, monetary_value)
# ---------------------------------------------------------------------------


def _utc(ts: Any, name: str) -> pd.Timestamp:
    out = pd.Timestamp(ts)
    if out is pd.NaT:
        raise ValueError(f"{name} must be a timestamp, got {ts!r}")
    # A naive cutoff is read as UTC: the contract stores every timestamp in UTC.
    return out.tz_localize("UTC") if out.tzinfo is None else out.tz_convert("UTC")


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
        after ``start`` -- the cohort of the calibration period.
    time_unit : {'W', 'D'}
        Unit of ``recency`` and ``T``: weeks (days / 7) or days.
    merge_same_day : bool
        Count all orders of a customer on one day as one purchase whose value
        is their sum (the convention of [1]). If False every order counts.

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
    cutoff = _utc(as_of, "as_of")
    days = _order_days(orders)
    days = days[days["ts"] < cutoff]
    if start is not None:
        first_ts = days.groupby("customer_id")["ts"].transform("min")
        days = days[first_ts >= _utc(start, "start")]

    purchases: pd.DataFrame
    if merge_same_day:
        purchases = days.groupby(["customer_id", "day"], sort=True)["revenue"].sum().reset_index()
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
    lo, hi = _utc(as_of, "as_of"), _utc(until, "until")
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


# ---------------------------------------------------------------------------
# Maximum-likelihood base
# ---------------------------------------------------------------------------


class _MaximumLikelihoodModel(BaseEstimator):
    """Fit positive parameters by maximum likelihood; derive errors and a summary.

    A model family names its parameters, writes its per-customer
    log-likelihood and a starting point; this class optimises over
    log-parameters and fills ``params_``, ``summary_``, ``log_likelihood_``.
    """

    _param_names: ClassVar[tuple[str, ...]]
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
        """Per-customer log-likelihood at ``params`` (natural scale)."""

    @abstractmethod
    def _initial_params(self, data: tuple[np.ndarray, ...]) -> np.ndarray:
        """A starting point (natural scale) for the optimiser."""

    def _objective(self, params: np.ndarray, data: tuple[np.ndarray, ...]) -> float:
        """Mean negative log-likelihood plus ``penalizer * sum(params**2)``."""
        ll = self._log_likelihood(params, data)
        value = -float(np.mean(ll)) + float(self.penalizer) * float(np.sum(params**2))
        return value if np.isfinite(value) else np.inf

    def _fit_mle(self, data: tuple[np.ndarray, ...]) -> None:
        n = data[0].shape[0]

        def f(log_params: np.ndarray) -> float:
            return self._objective(np.exp(log_params), data)

        start = np.log(self._initial_params(data))
        lbfgs = {"ftol": 1e-15, "gtol": 1e-10, "maxiter": 5_000}
        best = optimize.minimize(f, start, method="L-BFGS-B", options=lbfgs)
        if not (best.success and np.isfinite(best.fun)):
            # A poor start can stall the quasi-Newton steps; Nelder-Mead is robust
            # far from the optimum, and L-BFGS-B then polishes its answer.
            coarse = optimize.minimize(
                f,
                start,
                method="Nelder-Mead",
                options={"xatol": 1e-8, "fatol": 1e-12, "maxiter": 20_000, "maxfev": 40_000},
            )
            polished = optimize.minimize(f, coarse.x, method="L-BFGS-B", options=lbfgs)
            best = min((best, coarse, polished), key=lambda res: res.fun)
        if not np.isfinite(best.fun):
            raise ValueError("the log-likelihood is not finite anywhere the optimiser looked")
        params = np.exp(best.x)

        hessian = _hessian(lambda p: n * self._objective(p, data), params)
        try:
            cov = np.linalg.inv(hessian)
            se = np.sqrt(np.where(np.diag(cov) >= 0, np.diag(cov), np.nan))
        except np.linalg.LinAlgError:
            se = np.full_like(params, np.nan)
        converged = bool(best.success) and bool(np.all(np.isfinite(se)))
        if not converged:
            warnings.warn(
                f"{type(self).__name__}: the optimiser did not converge cleanly "
                f"({best.message}); check the summary's standard errors",
                ConvergenceWarning,
                stacklevel=3,
            )

        z = stats.norm.ppf(0.975)
        self.params_ = {k: float(v) for k, v in zip(self._param_names, params, strict=True)}
        self.summary_ = pd.DataFrame(
            {
                "estimate": params,
                "std_error": se,
                "lower_95": params - z * se,
                "upper_95": params + z * se,
            },
            index=pd.Index(self._param_names, name="parameter"),
        )
        self.log_likelihood_ = float(np.sum(self._log_likelihood(params, data)))
        self.n_customers_ = int(n)
        self.converged_ = converged

    def _params(self) -> np.ndarray:
        check_is_fitted(self, "params_")
        return np.array([self.params_[k] for k in self._param_names])


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
        Wald 95 % interval ``lower_95``, ``upper_95``.
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
    [0.243, 0.013, 0.218, 0.267]
    """

    _param_names = ("r", "alpha", "a", "b")

    @staticmethod
    def _log_likelihood(params: np.ndarray, data: tuple[np.ndarray, ...]) -> np.ndarray:
        r, alpha, a, b = params
        x, t_x, T = data
        common = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
        beta_ab = special.betaln(a, b)
        stay = special.betaln(a, b + x) - beta_ab - (r + x) * np.log(alpha + T)
        # The dropout term only exists for repeat buyers; keep betaln's
        # arguments valid for x = 0 so that np.where does not see NaNs.
        x_pos = np.maximum(x, 1.0)
        drop = special.betaln(a + 1, b + x_pos - 1) - beta_ab - (r + x) * np.log(alpha + t_x)
        drop = np.where(x > 0, drop, -np.inf)
        return common + np.logaddexp(stay, drop)

    def _initial_params(self, data: tuple[np.ndarray, ...]) -> np.ndarray:
        x, _, T = data
        # r = 1 and alpha = 1 / (observed repeat rate) put the rate on the data's time scale.
        rate = (x.sum() + 1.0) / (T.sum() + 1.0)
        return np.array([1.0, 1.0 / rate, 1.0, 1.0])

    def fit(self, X: Any, y: None = None) -> BetaGeoModel:
        """Estimate ``r, alpha, a, b`` by maximum likelihood.

        Parameters
        ----------
        X : DataFrame or array of shape (n_customers, 3)
            ``frequency`` (whole repeat purchases), ``recency`` and ``T``
            (same time unit, ``0 <= recency <= T``).
        y : None
            Ignored; present for the scikit-learn API.

        Returns
        -------
        self
        """
        self._validate_params()
        data = _columns(X, _RFM)
        _check_rfm(*data)
        self.n_features_in_ = len(_RFM)
        if isinstance(X, pd.DataFrame):
            self.feature_names_in_ = np.array(_RFM, dtype=object)
        self._fit_mle(data)
        return self

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
    :meth:`fit` drops the others. ``monetary_value`` is the mean value of a
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

    def fit(self, X: Any, y: None = None) -> GammaGammaModel:
        """Estimate ``p, q, v`` from the repeat buyers in ``X``.

        Parameters
        ----------
        X : DataFrame or array of shape (n_customers, 2)
            ``frequency`` and ``monetary_value``; rows with frequency 0 are
            dropped, the rest need ``monetary_value > 0``.
        y : None
            Ignored.

        Returns
        -------
        self
        """
        self._validate_params()
        x, m = _columns(X, _SPEND)
        if np.any(x < 0) or np.any(m < 0):
            raise ValueError("Negative values in data: frequency and monetary_value must be >= 0")
        if np.any(x != np.round(x)):
            raise ValueError("frequency must be a whole number of repeat purchases")
        keep = x > 0
        if not keep.any():
            raise ValueError("no repeat buyers (frequency > 0) to fit spend on")
        if np.any(m[keep] <= 0):
            raise ValueError(
                f"{int(np.sum(m[keep] <= 0))} repeat buyer(s) have monetary_value <= 0; "
                "the Gamma-Gamma likelihood needs positive spend"
            )
        self.n_features_in_ = len(_SPEND)
        if isinstance(X, pd.DataFrame):
            self.feature_names_in_ = np.array(_SPEND, dtype=object)
        self._fit_mle((x[keep], m[keep]))
        return self

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
        bgnbd: BetaGeoModel,
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
        bgnbd : BetaGeoModel
            A fitted purchase model, on the time unit of ``X``.
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
