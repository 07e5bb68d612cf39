"""Forecasts a CLV analyst can check: tracking, conditional expectations, CLV with an interval.

Any fitted count model of :mod:`cadence.models.btyd` that offers
``expected_purchases(t)`` (a new customer's expected repeat purchases in
``(0, t]``) and ``conditional_expected_purchases(t, X)`` plugs in
(:class:`~cadence.models.btyd.BetaGeoModel`,
:class:`~cadence.models.btyd.ParetoNBDModel`,
:class:`~cadence.models.btyd.ModifiedBetaGeoModel`).

* :func:`tracking_table` / :func:`tracking_figure`: weekly and cumulative
  repeat purchases of the cohort, actual against predicted, over the
  calibration period and the holdout (Fader, Hardie & Lee 2005, figs. 2-3).
  The prediction for calendar week ``k`` sums, over the cohort's customers,
  the model's ``E[X(t)]`` at the time since their first purchase:
  ``C(k) = sum_i E[X(e_k - f_i)]``, ``e_k`` the end of week ``k`` and
  ``f_i`` the first purchase day.
* :func:`conditional_expectations_table` / :func:`conditional_expectations_figure`:
  mean holdout purchases by calibration frequency, actual (with a 95 %
  normal interval of the mean) against the model's conditional expectation
  (Fader, Hardie & Lee 2005, fig. 4).
* :func:`clv_interval`: discounted CLV per customer with a 95 % interval
  from a **parametric bootstrap**: parameter vectors are drawn from the
  asymptotic normal distribution of each maximum-likelihood estimate (the
  inverse Hessian, on the log scale: see
  :meth:`~cadence.models.btyd.BetaGeoModel.sample_params`), independently
  for the purchase and the spend model, and the CLV is recomputed for each
  draw; the interval is the draws' percentiles. It covers the estimation
  uncertainty of the parameters, not the randomness of a customer's own
  future purchases.

References
----------
.. [1] Fader, P. S., Hardie, B. G. S. & Lee, K. L. (2005). "Counting your
   customers" the easy way. *Marketing Science* 24(2), 275-284.
.. [2] Fader, P. S., Hardie, B. G. S. & Lee, K. L. (2005). RFM and CLV:
   using iso-value curves for customer base analysis. *Journal of
   Marketing Research* 42(4), 415-430.

Examples
--------
>>> import warnings
>>> from cadence.data.io import read_tables
>>> from cadence.features.purchases import duckdb_tables, fetch_frame, purchase_days, rfm_summary_frame
>>> from cadence.models.btyd import BetaGeoModel, DataQualityWarning
>>> orders = read_tables("data/external/cdnow/sample", ["orders"])["orders"]
>>> with warnings.catch_warnings():
...     warnings.simplefilter("ignore", DataQualityWarning)
...     rfm = rfm_summary_frame(orders, as_of="1997-10-01", start="1997-01-01")
>>> bg = BetaGeoModel().fit(rfm)
>>> con, t = duckdb_tables({"orders": orders})
>>> days = fetch_frame(con, purchase_days(t, "1998-07-01"), ["customer_id", "day"])
>>> table = tracking_table(bg, days, start="1997-01-01", as_of="1997-10-01", until="1998-07-01")
>>> int(table["actual"].sum())
4339
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from sklearn.exceptions import ConvergenceWarning

from cadence.contract.clock import DAY_S, utc
from cadence.models.btyd import (
    BetaGeoModel,
    DataQualityWarning,
    GammaGammaModel,
    ModifiedBetaGeoModel,
    ParetoNBDModel,
)


class CountModel(Protocol):
    """A fitted repeat-purchase model (BG/NBD, Pareto/NBD, MBG/NBD)."""

    params_: dict[str, float]

    def expected_purchases(self, t: float | np.ndarray) -> np.ndarray: ...

    def conditional_expected_purchases(self, t: float, X: Any) -> np.ndarray: ...

    def sample_params(self, n_draws: int, random_state: Any = None) -> np.ndarray: ...

    def with_params(self, params: np.ndarray) -> Any: ...


#: The models :func:`fit_btyd_models` fits, by key, with their display names.
BTYD_MODELS: dict[str, tuple[str, type]] = {
    "bgnbd": ("BG/NBD", BetaGeoModel),
    "pareto_nbd": ("Pareto/NBD", ParetoNBDModel),
    "mbgnbd": ("MBG/NBD", ModifiedBetaGeoModel),
    "gamma_gamma": ("Gamma-Gamma", GammaGammaModel),
}


@dataclass(frozen=True)
class BTYDFit:
    """The BTYD models fitted on one summary, the ones that failed, and the data warnings.

    Attributes
    ----------
    models : dict
        Key (``'bgnbd'``, ``'pareto_nbd'``, ``'mbgnbd'``, ``'gamma_gamma'``) -> fitted model.
    failures : dict
        Key -> ``'<ExceptionType>: <message>'`` for each model that could not be fitted.
    warnings : tuple of str
        Messages of the :class:`~cadence.models.btyd.DataQualityWarning` and
        convergence warnings raised while fitting (counts, never ids).
    """

    models: dict[str, Any]
    failures: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def count_models(self) -> dict[str, Any]:
        """The fitted purchase-count models (all but Gamma-Gamma)."""
        return {k: m for k, m in self.models.items() if k != "gamma_gamma"}


def record_warnings(make: Any, notes: list[str]) -> Any:
    """Call ``make()``; append the data-quality and convergence warnings it raises to ``notes``.

    Other warnings are raised again unchanged.

    Examples
    --------
    >>> notes: list[str] = []
    >>> record_warnings(lambda: warnings.warn("3 rows", DataQualityWarning) or 1, notes), notes
    (1, ['3 rows'])
    """
    seen: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                return make()
            finally:
                seen = list(caught)
    finally:
        # Also when make() raises: what it warned about before failing is reported.
        for w in seen:
            if issubclass(w.category, (DataQualityWarning, ConvergenceWarning)):
                notes.append(str(w.message))
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def fit_btyd_models(rfm: pd.DataFrame, models: tuple[str, ...] = tuple(BTYD_MODELS)) -> BTYDFit:
    """Fit every BTYD model that can be fitted on ``rfm``; a failure loses only that model.

    Parameters
    ----------
    rfm : DataFrame
        A summary (``frequency, recency, T, monetary_value``) of
        :func:`cadence.features.purchases.rfm_summary`.
    models : tuple of str
        Keys of :data:`BTYD_MODELS` to fit.

    Returns
    -------
    BTYDFit

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rfm = pd.DataFrame({"frequency": [0, 2, 5, 1, 3], "recency": [0.0, 20, 29, 3, 10],
    ...                     "T": [30.0, 30, 30, 30, 25], "monetary_value": [0.0, 0.0, 0, 0, 0]})
    >>> fit = fit_btyd_models(rfm)
    >>> sorted(fit.models), list(fit.failures)
    (['bgnbd', 'mbgnbd', 'pareto_nbd'], ['gamma_gamma'])
    """
    notes: list[str] = []
    fitted: dict[str, Any] = {}
    failures: dict[str, str] = {}
    for key in models:
        cls = BTYD_MODELS[key][1]
        try:
            fitted[key] = record_warnings(lambda cls=cls: cls().fit(rfm), notes)
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as e:
            failures[key] = f"{type(e).__name__}: {e}"
    return BTYDFit(fitted, failures, tuple(notes))


def parameter_table(fit: BTYDFit) -> pd.DataFrame:
    """Every fitted model's parameters with standard errors, 95 % intervals and log-likelihood.

    Parameters
    ----------
    fit : BTYDFit

    Returns
    -------
    DataFrame
        Columns ``model, parameter, estimate, std_error, lower_95, upper_95,
        log_likelihood, n_customers, converged``.
    """
    rows = []
    for key, model in fit.models.items():
        s = model.summary_.reset_index()
        s.insert(0, "model", BTYD_MODELS[key][0])
        rows.append(s.assign(log_likelihood=model.log_likelihood_, n_customers=model.n_customers_,
                             converged=model.converged_))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def tracking_table(
    model: CountModel,
    days: pd.DataFrame,
    *,
    start: Any,
    as_of: Any,
    until: Any,
    days_per_unit: float = 7.0,
) -> pd.DataFrame:
    """Weekly repeat purchases of the cohort first seen in ``[start, as_of)``, actual and predicted.

    Parameters
    ----------
    model : fitted count model
        Fitted on the cohort's summary in a time unit of ``days_per_unit`` days.
    days : DataFrame
        Every purchase day before ``until``: ``customer_id`` and ``day``
        (whole UTC epoch days), as ``purchase_days(tables, until)`` of
        :mod:`cadence.features.purchases` gives them (same-day orders are one
        purchase, as in the fit).
    start, as_of, until : timestamp-like
        Cohort start, end of calibration (exclusive), end of holdout (exclusive).
    days_per_unit : float, default 7.0
        Days per time unit of the model (7 for a fit in weeks).

    Returns
    -------
    DataFrame
        One row per week from ``start``: ``week_start``, ``period``
        ('calibration' or 'holdout', by the week's start), ``actual``,
        ``predicted``, ``actual_cumulative``, ``predicted_cumulative``.
    """
    lo, cut, hi = utc(start, "start"), utc(as_of, "as_of"), utc(until, "until")
    if not lo < cut < hi:
        raise ValueError(f"need start < as_of < until, got {lo}, {cut}, {hi}")
    day = pd.to_datetime(days["day"].to_numpy(dtype="int64") * DAY_S, unit="s", utc=True)
    days = pd.DataFrame({"customer_id": days["customer_id"].to_numpy(), "day": day})
    # The cohort: customers whose first purchase day falls in [start, as_of), by customer id.
    first_day = days.groupby("customer_id")["day"].transform("min")
    cohort = days.groupby("customer_id", sort=True)["day"].min()
    cohort = cohort[(cohort >= lo) & (cohort < cut)]
    week = pd.Timedelta(7, "D")
    n_weeks = int(np.ceil((hi - lo) / week))
    starts = lo + pd.to_timedelta(7 * np.arange(n_weeks), unit="D")
    repeat = days[(days["day"] > first_day) & days["customer_id"].isin(cohort.index)]
    index = ((repeat["day"] - lo) // week).astype("int64")
    actual = np.bincount(index, minlength=n_weeks)[:n_weeks].astype("float64")
    # Customers by first day; C(k) = sum over first days of count * E[X(time since first day)].
    firsts = cohort.value_counts()
    end_days = np.minimum(7.0 * np.arange(1, n_weeks + 1), (hi - lo) / pd.Timedelta(1, "D"))
    first_days = np.asarray((pd.DatetimeIndex(firsts.index) - lo) / pd.Timedelta(1, "D"), dtype="float64")
    elapsed = np.clip((end_days[:, None] - first_days[None, :]) / days_per_unit, 0.0, None)
    cumulative = model.expected_purchases(elapsed) @ firsts.to_numpy(dtype="float64")
    return pd.DataFrame(
        {
            "week_start": starts,
            "period": np.where(starts < cut, "calibration", "holdout"),
            "actual": actual,
            "predicted": np.diff(cumulative, prepend=0.0),
            "actual_cumulative": np.cumsum(actual),
            "predicted_cumulative": cumulative,
        }
    )


def tracking_figure(tables: dict[str, pd.DataFrame], as_of: Any, title: str = "Repeat purchases") -> go.Figure:
    """Weekly and cumulative repeat purchases, actual against each model, calibration end marked.

    Parameters
    ----------
    tables : dict of name -> DataFrame
        :func:`tracking_table` per model (the actual series is taken from the first).
    as_of : timestamp-like
        End of the calibration period, drawn as a vertical line.
    title : str

    Returns
    -------
    plotly Figure
    """
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("weekly", "cumulative"))
    first = next(iter(tables.values()))
    for row, col in ((1, "actual"), (2, "actual_cumulative")):
        fig.add_trace(go.Scatter(x=first["week_start"], y=first[col], name="actual", mode="lines",
                                 line={"color": "black"}, showlegend=row == 1), row=row, col=1)
    for name, table in tables.items():
        for row, col in ((1, "predicted"), (2, "predicted_cumulative")):
            fig.add_trace(go.Scatter(x=table["week_start"], y=table[col], name=name, mode="lines",
                                     line={"dash": "dash"}, legendgroup=name, showlegend=row == 1),
                          row=row, col=1)
    cut = utc(as_of, "as_of")
    for row in (1, 2):
        fig.add_vline(x=cut.to_pydatetime(), line_dash="dot", line_color="grey", row=row, col=1)  # type: ignore[arg-type]
    fig.add_annotation(x=cut.to_pydatetime(), y=1.0, yref="paper", text="end of calibration", showarrow=False,
                       xanchor="left")
    fig.update_layout(title=title, yaxis_title="repeat purchases", yaxis2_title="cumulative")
    return fig


def conditional_expectations_table(
    model: CountModel, rfm: pd.DataFrame, actual: Any, t: float, max_frequency: int = 7
) -> pd.DataFrame:
    """Mean holdout purchases by calibration frequency, actual (with 95 % interval) and predicted.

    Parameters
    ----------
    model : fitted count model
    rfm : DataFrame
        The calibration summary (``frequency, recency, T``) the model was fitted on.
    actual : array-like of shape (n_customers,)
        Holdout repeat purchases of the same customers, same order.
    t : float
        Holdout length in the model's time unit.
    max_frequency : int, default 7
        Frequencies at or above it form one group (``'7+'``).

    Returns
    -------
    DataFrame
        Index ``frequency`` (labels ``'0' .. '7+'``); columns ``n``,
        ``actual``, ``actual_lower_95``, ``actual_upper_95``, ``predicted``.
    """
    actual = np.asarray(actual, dtype="float64")
    predicted = model.conditional_expected_purchases(t, rfm)
    freq = np.minimum(rfm["frequency"].to_numpy(), max_frequency)
    labels = [str(k) if k < max_frequency else f"{max_frequency}+" for k in freq]
    frame = pd.DataFrame({"frequency": labels, "actual": actual, "predicted": predicted, "k": freq})
    grouped = frame.groupby("k").agg(
        frequency=("frequency", "first"), n=("actual", "size"), actual=("actual", "mean"),
        sd=("actual", "std"), predicted=("predicted", "mean"),
    )
    half = 1.959964 * grouped["sd"].fillna(0.0) / np.sqrt(grouped["n"])
    out = grouped.assign(actual_lower_95=grouped["actual"] - half, actual_upper_95=grouped["actual"] + half)
    return out.set_index("frequency")[["n", "actual", "actual_lower_95", "actual_upper_95", "predicted"]]


def conditional_expectations_figure(
    tables: dict[str, pd.DataFrame], title: str = "Holdout purchases by calibration frequency"
) -> go.Figure:
    """Actual (with 95 % intervals) against each model's conditional expectation.

    Parameters
    ----------
    tables : dict of name -> DataFrame
        :func:`conditional_expectations_table` per model (actuals from the first).
    title : str

    Returns
    -------
    plotly Figure
    """
    first = next(iter(tables.values()))
    fig = go.Figure(go.Scatter(
        x=first.index, y=first["actual"], name="actual", mode="lines+markers", line={"color": "black"},
        error_y={"type": "data", "symmetric": False,
                 "array": first["actual_upper_95"] - first["actual"],
                 "arrayminus": first["actual"] - first["actual_lower_95"]},
    ))
    for name, table in tables.items():
        fig.add_trace(go.Scatter(x=table.index, y=table["predicted"], name=name, mode="lines+markers",
                                 line={"dash": "dash"}))
    fig.update_layout(title=title, xaxis_title="repeat purchases in calibration",
                      yaxis_title="mean repeat purchases in holdout")
    return fig


def clv_interval(
    purchase_model: CountModel,
    spend_model: GammaGammaModel,
    X: pd.DataFrame,
    horizon: float,
    discount_rate: float,
    *,
    period: float = 1.0,
    n_draws: int = 200,
    level: float = 0.95,
    random_state: int | None = 0,
) -> pd.DataFrame:
    """Discounted CLV per customer with a parametric-bootstrap interval.

    The point value is :meth:`GammaGammaModel.customer_lifetime_value` at the
    estimates; the interval is the ``(1 - level) / 2`` and ``(1 + level) / 2``
    percentiles of the same CLV recomputed at ``n_draws`` parameter draws
    of both models (see the module docstring). The total over customers and
    its interval (percentiles of the per-draw totals, not a sum of
    per-customer bounds) are in ``attrs``.

    Parameters
    ----------
    purchase_model : fitted count model
    spend_model : GammaGammaModel
        Fitted on the same customers' spend.
    X : DataFrame
        ``frequency, recency, T, monetary_value`` (a
        :func:`cadence.features.purchases.rfm_summary`).
    horizon, discount_rate, period : float
        As for :meth:`GammaGammaModel.customer_lifetime_value`.
    n_draws : int, default 200
    level : float, default 0.95
    random_state : int or None, default 0

    Returns
    -------
    DataFrame
        Index of ``X``; columns ``clv``, ``lower``, ``upper``. ``attrs``:
        ``total``, ``total_lower``, ``total_upper``, ``n_draws``, ``level``,
        ``method`` ('parametric bootstrap').

    Examples
    --------
    >>> import warnings
    >>> from cadence.data.io import read_tables
    >>> from cadence.features.purchases import rfm_summary_frame
    >>> from cadence.models.btyd import BetaGeoModel, DataQualityWarning, GammaGammaModel
    >>> orders = read_tables("data/external/cdnow/sample", ["orders"])["orders"]
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", DataQualityWarning)
    ...     rfm = rfm_summary_frame(orders, as_of="1997-10-01", start="1997-01-01")
    >>> bg, gg = BetaGeoModel().fit(rfm), GammaGammaModel().fit(rfm)
    >>> out = clv_interval(bg, gg, rfm.iloc[:100], horizon=52, discount_rate=0.01, period=13, n_draws=50)
    >>> bool((out["lower"] <= out["clv"]).all() and (out["clv"] <= out["upper"]).all())
    True
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_draws < 2:
        raise ValueError(f"n_draws must be at least 2, got {n_draws}")
    rng = np.random.default_rng(random_state)
    point = spend_model.customer_lifetime_value(purchase_model, X, horizon, discount_rate, period=period)
    draws_p = purchase_model.sample_params(n_draws, rng)
    draws_s = spend_model.sample_params(n_draws, rng)
    values = np.empty((n_draws, len(X)))
    for i in range(n_draws):
        values[i] = spend_model.with_params(draws_s[i]).customer_lifetime_value(
            purchase_model.with_params(draws_p[i]), X, horizon, discount_rate, period=period
        )
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    out = pd.DataFrame(
        {"clv": point, "lower": np.percentile(values, lo, axis=0), "upper": np.percentile(values, hi, axis=0)},
        index=X.index,
    )
    totals = values.sum(axis=1)
    out.attrs.update(
        total=float(point.sum()), total_lower=float(np.percentile(totals, lo)),
        total_upper=float(np.percentile(totals, hi)), n_draws=n_draws, level=level,
        method="parametric bootstrap",
    )
    return out


def clv_summary(
    fit: BTYDFit, rfm: pd.DataFrame, horizon: float = 52.0, discount_rate: float = 0.01, *,
    period: float = 52 / 12, n_draws: int = 200, random_state: int | None = 0,
) -> tuple[pd.DataFrame | None, str]:
    """CLV of the customer base with its interval, from BG/NBD and Gamma-Gamma, or why not.

    Parameters
    ----------
    fit : BTYDFit
    rfm : DataFrame
        The summary ``fit`` was fitted on.
    horizon, discount_rate, period, n_draws, random_state
        As for :func:`clv_interval` (defaults: one year of weeks, 1 % a month).

    Returns
    -------
    table : DataFrame or None
        Rows ``total`` and ``mean per customer``; columns ``clv``, ``lower_95``, ``upper_95``.
    note : str
        How the interval was made, or why there is no table.
    """
    if "bgnbd" not in fit.models or "gamma_gamma" not in fit.models:
        return None, "no CLV: BG/NBD or Gamma-Gamma could not be fitted (" + "; ".join(fit.failures.values()) + ")"
    try:
        out = clv_interval(fit.models["bgnbd"], fit.models["gamma_gamma"], rfm, horizon, discount_rate,
                           period=period, n_draws=n_draws, random_state=random_state)
    except ValueError as e:
        return None, f"no CLV interval: {e}"
    n = len(rfm)
    a = out.attrs
    table = pd.DataFrame(
        {"clv": [a["total"], a["total"] / n], "lower_95": [a["total_lower"], a["total_lower"] / n],
         "upper_95": [a["total_upper"], a["total_upper"] / n]},
        index=pd.Index(["total", "mean per customer"], name="CLV"),
    )
    note = (f"CLV over {horizon:g} time units, discounted {discount_rate:.1%} per {period:.3g}; 95% interval from a "
            f"parametric bootstrap of both models' parameters ({n_draws} draws).")
    return table, note


__all__ = [
    "BTYDFit",
    "BTYD_MODELS",
    "clv_summary",
    "fit_btyd_models",
    "parameter_table",
    "record_warnings",
    "CountModel",
    "clv_interval",
    "conditional_expectations_figure",
    "conditional_expectations_table",
    "tracking_figure",
    "tracking_table",
]
