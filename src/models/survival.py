"""Time to the next purchase: as-of snapshots and a survival estimator on lifelines.

Churn risk and repurchase timing are one question asked two ways: how long
after their last purchase does a customer buy again, if ever? The feature layer
(:mod:`cadence.features.purchases`) turns an order history into *as-of snapshots* (one row per customer, features
from the past only, the target from the future) and fits parametric
accelerated-failure-time models or a Cox model on them with ``lifelines``.

The target and its left truncation
----------------------------------
For a snapshot at the cutoff ``as_of`` the duration runs from the customer's
last purchase before ``as_of`` to their next purchase after it. Every row has
already survived ``e = elapsed_days`` days without a purchase, so the sample is
*left-truncated* at ``e``: the likelihood of a row is

.. math::

    L_i = \\frac{f(t_i \\mid x_i)^{\\delta_i}\\, S(t_i \\mid x_i)^{1-\\delta_i}}{S(e_i \\mid x_i)} ,

which lifelines fits through ``entry_col``. Without the division by
:math:`S(e_i)` long-lapsed customers would look like fast repurchasers. The
same conditioning gives churn risk, the probability of no purchase in the
next ``h`` days for a customer who has not bought for ``e`` days:

.. math::

    \\operatorname{risk}_h = P(T > e + h \\mid T > e) = S(e + h) / S(e) .

Time grid. Orders of one customer on the same UTC day are one purchase (as
in :func:`cadence.features.purchases.rfm_summary`), and a purchase day counts at its
midpoint: the last purchase on day ``L`` is at ``L + 0.5``, so with a
midnight cutoff ``elapsed_days = as_of - L - 0.5`` and an event on day ``N``
has ``duration_days = N - L``. ``elapsed_days`` is this grid's time since the
last purchase, the row's entry time; the customer feature ``recency_days``
(:func:`cadence.features.customer.customer_features`) is the exact time since
the last order, a different number, hence a different name.

Families. ``weibull`` (:math:`S = \\exp(-(t/\\lambda)^\\rho)`), ``loglogistic``
(:math:`S = 1/(1 + (t/\\alpha)^\\beta)`), ``lognormal``
(:math:`S = 1 - \\Phi((\\log t - \\mu)/\\sigma)`) put the covariates on the
log-scale parameter (:math:`\\log\\lambda = \\beta^\\top z`) with a common shape;
``cox`` uses Breslow's baseline. The ``*_cure`` families are their mixture-cure
versions (:mod:`cadence.models._cure`): a share :math:`\\pi(z)`, logistic in the
covariates, never buys again, :math:`S = \\pi + (1 - \\pi) S_0`, so churn risk
tends to 1 for the long-lapsed instead of decaying like a power of
:math:`e/(e+h)`. lifelines fits them; predictions use the closed forms above
(and the Cox baseline step function) evaluated with numpy, so a million
customers score in a second.

References
----------
.. [1] Klein, J. P. & Moeschberger, M. L. (2003). *Survival Analysis*,
   2nd ed., ch. 3.4 (left truncation) and ch. 12 (AFT models). Springer.
.. [2] Davidson-Pilon, C. (2019). lifelines: survival analysis in Python.
   *Journal of Open Source Software* 4(40), 1317.

Examples
--------
The snapshots are the feature layer's
(:func:`cadence.features.purchases.purchase_snapshots`):

>>> import pandas as pd
>>> from cadence.features.engine import connect, register
>>> from cadence.features.purchases import fetch_frame, purchase_snapshots
>>> orders = pd.DataFrame({
...     "customer_id": ["a", "a", "a", "b", "b"],
...     "ts": pd.to_datetime(["2024-01-01", "2024-01-11", "2024-02-05",
...                           "2024-01-20", "2024-03-01"], utc=True),
...     "revenue": [10.0, 20.0, 15.0, 8.0, 9.0],
... })
>>> con = connect()
>>> snap = fetch_frame(con, purchase_snapshots(register(con, {"orders": orders}), "2024-02-01",
...                                            until="2024-03-01"), ["customer_id"])
>>> snap[["customer_id", "frequency", "elapsed_days", "duration_days", "event"]]
  customer_id  frequency  elapsed_days  duration_days  event
0           a          1          20.5           25.0      1
1           b          0          11.5           40.5      0
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from scipy import special
from sklearn.base import BaseEstimator
from sklearn.model_selection import KFold
from sklearn.utils import Tags
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from cadence.contract.clock import utc

Family = Literal["auto", "weibull", "loglogistic", "lognormal", "weibull_cure", "loglogistic_cure",
                 "lognormal_cure", "cox"]

#: Covariates of :func:`cadence.features.purchases.purchase_snapshots` the model uses unless told otherwise.
DEFAULT_FEATURES: tuple[str, ...] = (
    "frequency",
    "elapsed_days",
    "purchase_tenure_days",
    "mean_gap_days",
    "monetary",
)
#: Mixture-cure versions of the AFT families (a share of customers never buys again).
CURE_FAMILIES: tuple[str, ...] = ("weibull_cure", "loglogistic_cure", "lognormal_cure")
#: Every parametric family (their likelihoods are comparable).
PARAMETRIC_FAMILIES: tuple[str, ...] = ("weibull", "loglogistic", "lognormal", *CURE_FAMILIES)
#: Families 'auto' chooses among: the cure families, which contain the plain ones as pi -> 0.
AUTO_FAMILIES: tuple[str, ...] = CURE_FAMILIES
# ---------------------------------------------------------------------------
# Families: log S(t) and its inverse from fitted parameters (closed forms)
# ---------------------------------------------------------------------------


def _log_cure(params: dict[str, Any], Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log pi(z) and log(1 - pi(z)) of a cure model, pi = sigmoid(cure_intercept + z' cure_beta)."""
    logit = params["cure_intercept"] + Z @ params["cure_beta"]
    return -np.logaddexp(0.0, -logit), -np.logaddexp(0.0, logit)


def _log_survival(family: str, params: dict[str, Any], Z: np.ndarray, t: np.ndarray) -> np.ndarray:
    """log S(t | z) for rows ``Z`` (n, k) and times ``t`` broadcastable to (..., n)."""
    t = np.maximum(t, 1e-12)
    if family in CURE_FAMILIES:
        log_pi, log_rest = _log_cure(params, Z)
        return np.logaddexp(log_pi, log_rest + _log_survival(family.removesuffix("_cure"), params, Z, t))
    if family == "cox":
        log_ph = (Z - params["norm_mean"]) @ params["beta"]
        H0 = np.interp(t, params["times"], params["cumhaz"], left=0.0)
        return -H0 * np.exp(log_ph)
    loc = params["intercept"] + Z @ params["beta"]
    shape = params["shape"]
    if family == "weibull":  # loc = log lambda, shape = rho
        return -np.exp(shape * (np.log(t) - loc))
    if family == "loglogistic":  # loc = log alpha, shape = beta
        return -np.logaddexp(0.0, shape * (np.log(t) - loc))
    if family == "lognormal":  # loc = mu, shape = sigma
        return np.asarray(special.log_ndtr(-(np.log(t) - loc) / shape))
    raise ValueError(f"unknown family {family!r}")


def _inverse_log_survival(
    family: str, params: dict[str, Any], Z: np.ndarray, log_s: np.ndarray
) -> np.ndarray:
    """The time t with log S(t | z) = log_s (inf when the curve never gets there)."""
    log_s = np.minimum(log_s, -1e-300)
    if family in CURE_FAMILIES:
        # S = pi + (1 - pi) S0: reachable only above the cured share.
        log_pi, log_rest = _log_cure(params, Z)
        gap = log_pi - log_s  # log(pi / S) < 0 when reachable
        ok = gap < 0
        log_s0 = np.where(ok, log_s + np.log1p(-np.exp(np.minimum(gap, -1e-12))) - log_rest, -1.0)
        t = _inverse_log_survival(family.removesuffix("_cure"), params, Z, np.minimum(log_s0, -1e-300))
        return np.where(ok, t, np.inf)
    if family == "cox":
        H = -log_s / np.exp((Z - params["norm_mean"]) @ params["beta"])
        times, cumhaz = params["times"], params["cumhaz"]
        idx = np.searchsorted(cumhaz, H, side="left")
        return np.where(idx < len(times), times[np.minimum(idx, len(times) - 1)], np.inf)
    loc = params["intercept"] + Z @ params["beta"]
    shape = params["shape"]
    if family == "weibull":
        return np.exp(loc + np.log(-log_s) / shape)
    if family == "loglogistic":
        # S = 1/(1+u), u = (t/alpha)^beta  ->  u = exp(-log S) - 1
        return np.exp(loc + np.log(np.expm1(-log_s)) / shape)
    if family == "lognormal":
        return np.exp(loc - shape * special.ndtri_exp(log_s))
    raise ValueError(f"unknown family {family!r}")


def _log_density(family: str, params: dict[str, Any], Z: np.ndarray, t: np.ndarray) -> np.ndarray:
    """log f(t | z) of the parametric families (for held-out log-likelihood)."""
    if family in CURE_FAMILIES:
        return _log_cure(params, Z)[1] + _log_density(family.removesuffix("_cure"), params, Z, t)
    loc = params["intercept"] + Z @ params["beta"]
    shape = params["shape"]
    logt = np.log(np.maximum(t, 1e-12))
    w = logt - loc
    if family == "weibull":
        return np.log(shape) + (shape - 1) * w - loc - np.exp(shape * w)
    if family == "loglogistic":
        return np.log(shape) - loc + (shape - 1) * w - 2 * np.logaddexp(0.0, shape * w)
    if family == "lognormal":
        z = w / shape
        return -0.5 * z**2 - 0.5 * np.log(2 * np.pi) - np.log(shape) - logt
    raise ValueError(f"no density for family {family!r}")


_PARAM_NAMES: dict[str, tuple[str, str]] = {
    "weibull": ("lambda_", "rho_"),
    "loglogistic": ("alpha_", "beta_"),
    "lognormal": ("mu_", "sigma_"),
}


def _fitter(family: str, penalizer: float) -> Any:
    # Imported here: lifelines pulls in autograd and formulaic (~1 s), which
    # commands that never fit a survival model should not pay for.
    from lifelines import CoxPHFitter, LogLogisticAFTFitter, LogNormalAFTFitter, WeibullAFTFitter

    from cadence.models._cure import CURE_FITTERS

    classes = {
        **CURE_FITTERS,
        "weibull": WeibullAFTFitter,
        "loglogistic": LogLogisticAFTFitter,
        "lognormal": LogNormalAFTFitter,
        "cox": CoxPHFitter,
    }
    return classes[family](penalizer=penalizer)


def _fit_family(
    family: str, penalizer: float, Z: np.ndarray, names: list[str],
    duration: np.ndarray, event: np.ndarray, entry: np.ndarray,
) -> tuple[dict[str, Any], Any]:
    """Fit one family with lifelines; return closed-form parameters and the fitter."""
    from lifelines.exceptions import ConvergenceError

    cure = family in CURE_FAMILIES
    # Cure models name their covariates in formulas: plain column names there.
    cols = [f"z{i}" for i in range(len(names))] if cure else names
    df = pd.DataFrame(Z, columns=cols)
    df["_T"], df["_E"], df["_entry"] = duration, event, entry
    fitter = _fitter(family, penalizer)
    loc_name, shape_name = _PARAM_NAMES.get(family.removesuffix("_cure"), ("", ""))
    kwargs: dict[str, Any] = {}
    if cure:
        formula = " + ".join(cols) or "1"
        kwargs["regressors"] = {loc_name: formula, shape_name: "1", "pi_": formula}
    with warnings.catch_warnings():
        # lifelines warns about its own convergence heuristics; convergence is
        # checked below from the fitted log-likelihood instead.
        warnings.simplefilter("ignore")
        try:
            fitter.fit(df.copy(), "_T", "_E", entry_col="_entry", **kwargs)
        except ConvergenceError:
            if family == "cox" or cure:
                raise
            # lifelines starts the AFT families from a univariate fit, which can
            # run off with heavy truncation; start from the median gap instead
            # (covariates 0, shape 1; the location intercept is the last of its block).
            fitter = _fitter(family, penalizer)
            start = np.r_[np.zeros(len(cols)), np.log(np.median(duration)), 0.0]
            fitter.fit(df.copy(), "_T", "_E", entry_col="_entry", initial_point=start)
    p = fitter.params_
    if family == "cox":
        base = fitter.baseline_cumulative_hazard_
        params = {
            "beta": p.reindex(names).to_numpy(dtype="float64"),
            "norm_mean": np.asarray(fitter._norm_mean.reindex(names), dtype="float64"),
            "times": base.index.to_numpy(dtype="float64"),
            "cumhaz": base.iloc[:, 0].to_numpy(dtype="float64"),
        }
    else:
        loc = p.loc[loc_name]
        params = {
            "intercept": float(loc["Intercept"]),
            "beta": loc.reindex(cols).to_numpy(dtype="float64"),
            "shape": float(np.exp(p.loc[shape_name]["Intercept"])),
        }
        if cure:
            pi = p.loc["pi_"]
            params["cure_intercept"] = float(pi["Intercept"])
            params["cure_beta"] = pi.reindex(cols).to_numpy(dtype="float64")
    values = [params["beta"], *([params["cure_beta"], params["shape"]] if cure else [])]
    if not all(np.all(np.isfinite(v)) for v in values):
        raise ValueError(f"the {family} fit did not converge (non-finite coefficients)")
    return params, fitter


def _median_concordance(family: str, params: dict[str, Any], Z: np.ndarray,
                         duration: np.ndarray, event: np.ndarray) -> float:
    """Harrell's C of the predicted median gap (never reached = longest) with the durations."""
    from lifelines.utils import concordance_index

    median = _inverse_log_survival(family, params, Z, np.full(Z.shape[0], np.log(0.5)))
    return float(concordance_index(duration, np.where(np.isfinite(median), median, 1e12), event))


def _truncated_log_likelihood(
    family: str, params: dict[str, Any], Z: np.ndarray,
    duration: np.ndarray, event: np.ndarray, entry: np.ndarray,
) -> np.ndarray:
    """Per-row log L_i = delta log f(t) + (1 - delta) log S(t) - log S(e)."""
    log_s_t = _log_survival(family, params, Z, duration)
    log_f = _log_density(family, params, Z, duration)
    log_s_e = _log_survival(family, params, Z, entry)
    return np.where(event == 1, log_f, log_s_t) - log_s_e


# ---------------------------------------------------------------------------
# The estimator
# ---------------------------------------------------------------------------


def _target(y: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(duration, event) from a frame, an (n, 2) array or 1-d durations."""
    if y is None:
        raise ValueError(
            "TimeToNextPurchase requires y to be passed, but the target y is None "
            "(pass durations, or (duration, event))"
        )
    if isinstance(y, pd.DataFrame) and {"duration_days", "event"} <= set(y.columns):
        arr = y[["duration_days", "event"]].to_numpy(dtype="float64")
    else:
        arr = np.asarray(y, dtype="float64")
    if arr.ndim == 1:
        arr = np.column_stack([arr, np.ones_like(arr)])
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] != n:
        raise ValueError(f"y must hold {n} durations or (duration, event) pairs, got shape {arr.shape}")
    duration, event = arr[:, 0], arr[:, 1]
    if not np.all(np.isfinite(arr)):
        raise ValueError("y contains NaN or infinity")
    if np.any(duration <= 0):
        raise ValueError("durations must be > 0")
    if not np.isin(event, (0.0, 1.0)).all():
        raise ValueError("event must be 0 (censored) or 1 (observed)")
    return duration, event.astype("int64")


class TimeToNextPurchase(BaseEstimator):
    """Days from the last purchase to the next one, left-truncated at the snapshot.

    Parameters
    ----------
    family : {'auto', 'weibull', 'loglogistic', 'lognormal', 'weibull_cure', 'loglogistic_cure', \
'lognormal_cure', 'cox'}
        Model family. ``'auto'`` fits the three mixture-cure families
        (:data:`AUTO_FAMILIES`; each contains its plain family as the cured
        share goes to 0) on ``cv`` folds and keeps the one with the best mean
        held-out *log-likelihood* (truncated, per row, as in the module
        docstring), then refits it on all rows. Log-likelihood rather than
        concordance because churn risk is used as a probability, so
        calibration matters, and concordance cannot tell families with the
        same ranking apart. Cox is not a candidate: its partial likelihood
        is not comparable.
    penalizer : float
        L2 penalty on the coefficients (lifelines' ``penalizer``).
    features : sequence of str, optional
        Snapshot columns used as covariates; :data:`DEFAULT_FEATURES` when
        X is a DataFrame, all columns when it is an array. Each is
        ``log1p``-transformed and standardised (covariates act on log time).
    cv : int
        Folds for ``family='auto'``.
    random_state : int, optional
        Seed of the fold split and of the row subsample.
    max_samples : int, optional
        Fit on a seeded random subsample of this many rows when there are
        more (lifelines' autograd fit grows superlinearly in time with n;
        a model with ~10 parameters is pinned down long before 10^6 rows).
        None uses every row.

    Attributes
    ----------
    family_ : str
        The family fitted (the chosen one under ``'auto'``).
    features_ : list of str
    params_ : dict
        Closed-form parameters on the standardised covariates.
    lifelines_model_ : lifelines fitter
        The fitted lifelines object (``summary``, ``print_summary``).
    cv_log_likelihood_ : dict
        Mean held-out log-likelihood per row of each candidate ('auto' only).
    log_likelihood_ : float
        Training log-likelihood per row (truncated; parametric families).
    concordance_ : float
        Harrell's C on the training rows (lifelines).
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame({"frequency": rng.integers(0, 5, 300)})
    >>> t = 30 * np.exp(-0.3 * X["frequency"]) * rng.weibull(1.2, 300) + 1
    >>> m = TimeToNextPurchase(family="weibull", features=["frequency"]).fit(X, t)
    >>> new = pd.DataFrame({"frequency": [0, 4]})
    >>> m.churn_risk(new, 30, elapsed=[5.0, 5.0]).round(2).tolist()
    [0.41, 0.03]
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "family": [StrOptions({"auto", *PARAMETRIC_FAMILIES, "cox"})],
        "penalizer": [Interval(Real, 0, None, closed="left")],
        "features": [list, tuple, None],
        "cv": [Interval(Integral, 2, None, closed="left")],
        "random_state": ["random_state"],
        "max_samples": [Interval(Integral, 10, None, closed="left"), None],
    }

    def __init__(
        self,
        family: Family = "auto",
        penalizer: float = 0.0,
        features: list[str] | tuple[str, ...] | None = None,
        cv: int = 3,
        random_state: int | None = 0,
        max_samples: int | None = 200_000,
    ) -> None:
        self.family = family
        self.penalizer = penalizer
        self.features = features
        self.cv = cv
        self.random_state = random_state
        self.max_samples = max_samples

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True  # counts, days and spend
        tags.target_tags.required = True
        tags.target_tags.positive_only = True
        return tags

    # -- input ------------------------------------------------------------

    def _feature_names(self, X: Any) -> list[str]:
        if self.features is not None:
            return list(self.features)
        if isinstance(X, pd.DataFrame):
            # A snapshot frame: the default covariates; any other frame: all its columns.
            if set(DEFAULT_FEATURES) <= set(X.columns):
                return list(DEFAULT_FEATURES)
            return [str(c) for c in X.columns]
        return [f"x{i}" for i in range(np.shape(X)[1] if np.ndim(X) == 2 else 1)]

    def _matrix(self, X: Any, *, reset: bool) -> np.ndarray:
        names = self._feature_names(X) if reset else self.features_
        if isinstance(X, pd.DataFrame):
            missing = [c for c in names if c not in X.columns]
            if missing:
                raise ValueError(f"X lacks column(s) {missing}; expected {names}")
            X = X[names]
        arr = validate_data(self, X, reset=reset, dtype="float64")
        if arr.shape[1] != len(names):
            raise ValueError(f"X has {arr.shape[1]} columns, expected {len(names)} ({names})")
        if np.any(arr < 0):
            raise ValueError("Negative values in data: features are counts, days and spend (>= 0)")
        return np.log1p(arr)

    def _standardised(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "params_")
        return (self._matrix(X, reset=False) - self.feature_mean_) / self.feature_scale_

    @staticmethod
    def _elapsed(X: Any, elapsed: Any, n: int, *, required: bool) -> np.ndarray:
        if elapsed is None:
            if isinstance(X, pd.DataFrame) and "elapsed_days" in X.columns:
                elapsed = X["elapsed_days"]
            elif required:
                raise ValueError("pass elapsed= (days since the last purchase) or X with elapsed_days")
            else:
                elapsed = 0.0
        out = np.broadcast_to(np.asarray(elapsed, dtype="float64"), (n,)).copy()
        if not np.all(np.isfinite(out)) or np.any(out < 0):
            raise ValueError("elapsed times must be finite and >= 0")
        return out

    # -- fit ----------------------------------------------------------------

    def fit(self, X: Any, y: Any = None, *, entry: Any = None) -> TimeToNextPurchase:
        """Fit on snapshot covariates ``X`` and target ``y``.

        Parameters
        ----------
        X : DataFrame or array of shape (n_rows, n_features)
            Covariates (e.g. :func:`cadence.features.purchases.purchase_snapshots`).
        y : DataFrame with ``duration_days`` and ``event``, array (n_rows, 2) or (n_rows,)
            Durations in days (> 0) and event flags; 1-d means all observed.
        entry : array-like of shape (n_rows,), optional
            Left-truncation times (days already survived). Defaults to
            ``X['elapsed_days']`` when X is a DataFrame holding it, else 0.

        Returns
        -------
        self
        """
        self._validate_params()
        raw = self._matrix(X, reset=True)
        self.features_ = self._feature_names(X)
        if raw.shape[0] < 2:
            raise ValueError(f"n_samples = {raw.shape[0]}; a survival fit needs at least 2 rows")
        duration, event = _target(y, raw.shape[0])
        start = self._elapsed(X, entry, raw.shape[0], required=False)
        if np.any(start >= duration):
            raise ValueError("entry (elapsed) must be smaller than the duration on every row")
        if event.sum() == 0:
            raise ValueError("no observed events: nothing to fit")
        rng = np.random.default_rng(self.random_state)
        if self.max_samples is not None and raw.shape[0] > self.max_samples:
            rows = np.sort(rng.choice(raw.shape[0], self.max_samples, replace=False))
            raw, duration, event, start = raw[rows], duration[rows], event[rows], start[rows]
        self.feature_mean_ = raw.mean(axis=0)
        scale = raw.std(axis=0)
        # A constant column carries no information; scale 1 keeps it finite.
        self.feature_scale_ = np.where(scale > 1e-12, scale, 1.0)
        Z = (raw - self.feature_mean_) / self.feature_scale_
        names = [f"z_{n}" for n in self.features_]

        family: str = self.family
        if family == "auto":
            folds = KFold(n_splits=min(self.cv, len(Z)), shuffle=True,
                          random_state=int(rng.integers(2**31 - 1)))
            scores: dict[str, float] = {}
            for candidate in AUTO_FAMILIES:
                held_out: list[np.ndarray] = []
                for train, test in folds.split(Z):
                    try:
                        params, _ = _fit_family(candidate, float(self.penalizer), Z[train], names,
                                                duration[train], event[train], start[train])
                    except Exception:  # noqa: BLE001 -- a family that cannot fit loses
                        held_out = [np.array([-np.inf])]
                        break
                    held_out.append(_truncated_log_likelihood(
                        candidate, params, Z[test], duration[test], event[test], start[test]))
                scores[candidate] = float(np.mean(np.concatenate([np.atleast_1d(h) for h in held_out])))
            self.cv_log_likelihood_ = scores
            family = max(AUTO_FAMILIES, key=lambda k: scores[k])
        self.params_, self.lifelines_model_ = _fit_family(
            family, float(self.penalizer), Z, names, duration, event, start
        )
        self.family_ = family
        if family in CURE_FAMILIES:  # lifelines would approximate the median on a grid
            self.concordance_ = _median_concordance(family, self.params_, Z, duration, event)
        else:
            self.concordance_ = float(self.lifelines_model_.concordance_index_)
        if family != "cox":
            self.log_likelihood_ = float(np.mean(_truncated_log_likelihood(
                family, self.params_, Z, duration, event, start)))
        self.n_rows_ = int(Z.shape[0])
        return self

    # -- predictions --------------------------------------------------------

    def _columns(self, X: Any, n: int) -> pd.Index:
        if isinstance(X, pd.DataFrame):
            if "customer_id" in X.columns:
                return pd.Index(X["customer_id"].to_numpy(), name="customer_id")
            return X.index
        return pd.RangeIndex(n)

    def predict_survival_function(
        self, X: Any, times: Any = None, conditional_after: Any = None
    ) -> pd.DataFrame:
        """S(t | x), or S(e + t | x) / S(e | x) with ``conditional_after = e``.

        Parameters
        ----------
        X : DataFrame or array
            Covariates.
        times : array-like, optional
            Days (after the last purchase, or after ``e`` when conditional);
            0..365 by default.
        conditional_after : float or array-like of shape (n_rows,), optional
            Days already survived, e.g. ``X['elapsed_days']``.

        Returns
        -------
        DataFrame
            times x customers (columns are ``customer_id`` when X has it),
            like lifelines.
        """
        Z = self._standardised(X)
        t = np.arange(0.0, 366.0) if times is None else np.atleast_1d(np.asarray(times, dtype="float64"))
        e = self._elapsed(X, conditional_after, Z.shape[0], required=False) if conditional_after is not None \
            else np.zeros(Z.shape[0])
        log_s = _log_survival(self.family_, self.params_, Z, e[None, :] + t[:, None])
        log_s -= _log_survival(self.family_, self.params_, Z, e)[None, :]
        return pd.DataFrame(np.exp(log_s), index=pd.Index(t, name="days"), columns=self._columns(X, Z.shape[0]))

    def churn_risk(self, X: Any, horizon_days: float, elapsed: Any = None) -> np.ndarray:
        """P(no purchase within ``horizon_days`` | none for ``elapsed`` days) = S(e+h)/S(e).

        ``elapsed`` defaults to ``X['elapsed_days']``. Returns shape (n_rows,).
        """
        if not isinstance(horizon_days, (int, float, np.integer, np.floating)) or not horizon_days >= 0:
            raise ValueError(f"horizon_days must be a number >= 0, got {horizon_days!r}")
        Z = self._standardised(X)
        e = self._elapsed(X, elapsed, Z.shape[0], required=True)
        log_ratio = _log_survival(self.family_, self.params_, Z, e + float(horizon_days)) - _log_survival(
            self.family_, self.params_, Z, e
        )
        return np.asarray(np.exp(np.minimum(log_ratio, 0.0)))

    def conditional_quantile(self, X: Any, q: float | np.ndarray, elapsed: Any = None) -> np.ndarray:
        """Days from now until the next purchase with probability ``q``.

        Solves S(e + r) / S(e) = 1 - q for r; ``inf`` when the survival curve
        never falls that low (Cox beyond its last event time).
        """
        Z = self._standardised(X)
        e = self._elapsed(X, elapsed, Z.shape[0], required=True)
        q = np.asarray(q, dtype="float64")
        if np.any((q <= 0) | (q >= 1)):
            raise ValueError("quantiles must lie strictly between 0 and 1")
        log_target = _log_survival(self.family_, self.params_, Z, e) + np.log1p(-q)
        return np.asarray(np.maximum(_inverse_log_survival(self.family_, self.params_, Z, log_target) - e, 0.0))

    def expected_next_order(
        self, X: Any, as_of: Any = None, *, elapsed: Any = None, interval: float = 0.8
    ) -> pd.DataFrame:
        """Median date of the next order with a central ``interval`` (conditional quantiles).

        ``as_of`` defaults to ``X['as_of']``. Returns a frame with
        ``median_days``, ``lower_days``, ``upper_days`` (days after ``as_of``)
        and the matching UTC dates ``next_order_at``, ``lower_at``,
        ``upper_at`` (NaT when the model says the quantile is never reached).
        """
        if not 0 < interval < 1:
            raise ValueError(f"interval must be in (0, 1), got {interval}")
        if as_of is None:
            if not (isinstance(X, pd.DataFrame) and "as_of" in X.columns):
                raise ValueError("pass as_of= or X with an as_of column")
            base = pd.DatetimeIndex(X["as_of"]).tz_convert("UTC")
        else:
            base = pd.DatetimeIndex(np.full(len(X), utc(as_of, "as_of")))
        alpha = (1 - interval) / 2
        out = pd.DataFrame(index=self._columns(X, len(X)))
        for name, q in (("median", 0.5), ("lower", alpha), ("upper", 1 - alpha)):
            days = self.conditional_quantile(X, q, elapsed)
            out[f"{name}_days"] = days
            finite = np.isfinite(days) & (days < 365 * 200)
            offset = pd.to_timedelta(np.where(finite, days, 0.0), unit="D")
            stamp = pd.Series(base + offset, index=out.index).where(finite)
            out["next_order_at" if name == "median" else f"{name}_at"] = stamp
        return out

    def expected_purchases(self, X: Any, horizon_days: int, elapsed: Any = None) -> np.ndarray:
        """Expected purchases in the next ``horizon_days`` days (renewal approximation).

        The first purchase comes from the conditional distribution given
        ``elapsed`` days without one; later gaps are independent draws from
        the unconditional S(t | x) with the customer's covariates held fixed
        (they would drift as history grows). On a daily grid with the gap
        mass ``f_k = S(k-1) - S(k)``, the renewal density
        ``u_k = f_k + sum_{j<k} f_j u_{k-j}`` gives

        .. math:: E[N(h)] = \\sum_{k=1}^{h} g_k \\Big(1 + \\sum_{j \\le h-k} u_j\\Big),
                  \\quad g_k = \\frac{S(e+k-1) - S(e+k)}{S(e)} .

        Cost is O(n h^2 / 2); fine for a few hundred days.
        """
        h = int(horizon_days)
        if h < 1:
            raise ValueError(f"horizon_days must be >= 1, got {horizon_days}")
        grid = np.arange(0.0, h + 1.0)
        S = self.predict_survival_function(X, grid).to_numpy().T  # (n, h+1)
        cond = self.predict_survival_function(X, grid, conditional_after=self._elapsed(
            X, elapsed, S.shape[0], required=True)).to_numpy().T
        f = np.clip(S[:, :-1] - S[:, 1:], 0.0, None)  # f[:, k-1] = P(gap in (k-1, k])
        g = np.clip(cond[:, :-1] - cond[:, 1:], 0.0, None)
        u = np.zeros_like(f)
        for k in range(h):
            u[:, k] = f[:, k] + np.einsum("ij,ij->i", f[:, :k], u[:, k - 1::-1][:, :k]) if k else f[:, 0]
        U = np.concatenate([np.zeros((f.shape[0], 1)), np.cumsum(u, axis=1)], axis=1)  # U[:, m] = sum_{j<=m}
        # A first purchase in day k leaves h - k - 1 whole days for renewals.
        remaining = U[:, np.arange(h - 1, -1, -1)]
        return np.asarray((g * (1.0 + remaining)).sum(axis=1))

    def score(self, X: Any, y: Any) -> float:
        """Harrell's concordance of predicted median gaps with observed durations."""

        duration, event = _target(y, len(X))
        check_is_fitted(self, "params_")
        return _median_concordance(self.family_, self.params_, self._standardised(X), duration, event)
