"""Holdout evaluation by time: counts, calibration, concordance, Brier; plotly figures.

Every split goes through :func:`time_split`: the model sees orders before
``as_of``, the holdout is ``[as_of, until)``. Metrics:

* repeat purchases per customer in the holdout, predicted vs actual (MAE) and
  in total, for the survival model and BG/NBD side by side;
* churn risk ``P(no purchase within h)`` binned into a calibration table
  against an observed or true probability, with the expected calibration
  error ``ECE = sum_b (n_b / n) |mean predicted_b - mean actual_b|``;
* Harrell's concordance of predicted risk with the time to the next purchase;
* the integrated Brier score with inverse-probability-of-censoring weights
  (Graf et al. 1999), written with numpy:

.. math::

    BS(t) = \\frac1n \\sum_i \\Big[\\frac{\\hat S_i(t)^2 \\, 1\\{T_i \\le t, \\delta_i = 1\\}}{G(T_i)}
           + \\frac{(1 - \\hat S_i(t))^2 \\, 1\\{T_i > t\\}}{G(t)}\\Big],
    \\qquad IBS = \\frac{1}{t_{max}} \\int_0^{t_{max}} BS(t)\\,dt ,

with ``G`` the Kaplan-Meier estimate of the censoring distribution.

References
----------
.. [1] Graf, E., Schmoor, C., Sauerbrei, W. & Schumacher, M. (1999).
   Assessment and comparison of prognostic classification schemes for
   survival data. *Statistics in Medicine* 18, 2529-2545.
.. [2] Harrell, F. E., Lee, K. L. & Mark, D. B. (1996). Multivariable
   prognostic models. *Statistics in Medicine* 15, 361-387.

Examples
--------
>>> import numpy as np
>>> calibration_table(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1]), bins=2)["n"].tolist()
[2, 2]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from cadence.contract.clock import utc
from cadence.models.btyd import BetaGeoModel


def time_split(orders: pd.DataFrame, as_of: Any, until: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split orders into the past ``ts < as_of`` and the holdout ``as_of <= ts < until``.

    Examples
    --------
    >>> import pandas as pd
    >>> o = pd.DataFrame({"ts": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-01"], utc=True)})
    >>> [len(p) for p in time_split(o, "2024-02-01", "2024-03-01")]
    [1, 1]
    """
    lo, hi = utc(as_of, "as_of"), utc(until, "until")
    if hi <= lo:
        raise ValueError(f"until ({hi}) must be after as_of ({lo})")
    ts = orders["ts"]
    past = orders[ts < lo]
    holdout = orders[(ts >= lo) & (ts < hi)]
    if past.empty or holdout.empty:
        raise ValueError(f"empty period: {len(past)} orders before {lo}, {len(holdout)} in the holdout")
    return past, holdout


def bgnbd_churn_risk(model: BetaGeoModel, rfm: pd.DataFrame, horizon: float) -> np.ndarray:
    """BG/NBD P(no purchase in the next ``horizon`` time units).

    Alive with probability ``P(alive)``; if alive the rate has posterior
    ``Gamma(r + x, alpha + T)``, whose Laplace transform gives the chance of
    no purchase: ``1 - P(alive) + P(alive) ((alpha+T)/(alpha+T+h))^(r+x)``.
    """
    p_alive = model.conditional_probability_alive(rfm)
    r, alpha = model.params_["r"], model.params_["alpha"]
    x, T = rfm["frequency"].to_numpy(float), rfm["T"].to_numpy(float)
    quiet_if_alive = np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + T + horizon)))
    return np.asarray(1 - p_alive + p_alive * quiet_if_alive)


def count_metrics(predicted: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    """MAE per customer and totals of predicted vs actual repeat purchases."""
    predicted, actual = np.asarray(predicted, float), np.asarray(actual, float)
    return {
        "mae": float(np.mean(np.abs(predicted - actual))),
        "predicted_total": float(predicted.sum()),
        "actual_total": float(actual.sum()),
    }


def calibration_table(predicted: np.ndarray, actual: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Bin predicted probabilities into equal-count bins; mean predicted vs mean actual.

    ``actual`` may be 0/1 outcomes or true probabilities (synthetic shop).
    """
    predicted, actual = np.asarray(predicted, float), np.asarray(actual, float)
    order = np.argsort(predicted, kind="stable")
    groups = np.array_split(order, min(bins, len(order)))
    rows = [
        {
            "bin": i,
            "n": len(g),
            "predicted": float(predicted[g].mean()),
            "actual": float(actual[g].mean()),
        }
        for i, g in enumerate(groups)
        if len(g)
    ]
    return pd.DataFrame(rows)


def expected_calibration_error(table: pd.DataFrame) -> float:
    """Count-weighted mean of |predicted - actual| over the bins of :func:`calibration_table`."""
    w = table["n"] / table["n"].sum()
    return float((w * (table["predicted"] - table["actual"]).abs()).sum())


def concordance(duration: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's C: the share of comparable pairs where higher risk means an earlier event.

    ``risk`` is anything larger for customers expected to buy *sooner*.
    """
    from lifelines.utils import concordance_index

    # lifelines expects scores that rank like survival times: longer = higher.
    return float(concordance_index(duration, -np.asarray(risk, float), event))


def _km(duration: np.ndarray, observed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    times = np.unique(duration[observed == 1])
    at_risk = (duration[None, :] >= times[:, None]).sum(axis=1)
    d = np.array([(duration[observed == 1] == t).sum() for t in times])
    return times, np.cumprod(1 - d / np.maximum(at_risk, 1))


def integrated_brier_score(
    survival: np.ndarray, times: np.ndarray, duration: np.ndarray, event: np.ndarray
) -> float:
    """IPCW integrated Brier score of predicted survival curves.

    Parameters
    ----------
    survival : array of shape (n_times, n_customers)
        Predicted S(t) at ``times`` (e.g. ``predict_survival_function(...).to_numpy()``).
    times : array of shape (n_times,)
        Increasing evaluation times within the follow-up.
    duration, event : arrays of shape (n_customers,)
        Observed times and event flags on the same clock.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.array([1.0, 2.0]); d = np.array([1.5, 3.0]); e = np.array([1, 0])
    >>> integrated_brier_score(np.array([[1.0, 1.0], [0.0, 1.0]]), t, d, e)
    0.0
    """
    times = np.asarray(times, float)
    duration, event = np.asarray(duration, float), np.asarray(event, int)
    c_times, c_surv = _km(duration, 1 - event)

    def G(t: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(c_times, t, side="right") - 1
        return np.where(idx >= 0, c_surv[np.maximum(idx, 0)], 1.0)

    g_t, g_T = G(times), G(duration)
    died = (duration[None, :] <= times[:, None]) & (event[None, :] == 1)
    alive = duration[None, :] > times[:, None]
    bs = (survival**2 * died / np.maximum(g_T, 1e-12)[None, :]
          + (1 - survival) ** 2 * alive / np.maximum(g_t, 1e-12)[:, None]).mean(axis=1)
    if len(times) == 1:
        return float(bs[0])
    return float(np.trapezoid(bs, times) / (times[-1] - times[0]))


# ---------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------


def survival_curves_figure(curves: pd.DataFrame, title: str = "Survival by segment") -> go.Figure:
    """One line per column of ``curves`` (index: days; values: S(t)), e.g. mean curve per segment."""
    fig = go.Figure()
    for name in curves.columns:
        fig.add_trace(go.Scatter(x=curves.index, y=curves[name], mode="lines", name=str(name)))
    fig.update_layout(title=title, xaxis_title="days since last purchase",
                      yaxis_title="P(no purchase yet)", yaxis_range=[0, 1])
    return fig


def calibration_figure(tables: dict[str, pd.DataFrame], title: str = "Churn-risk calibration") -> go.Figure:
    """Reliability diagram: one marker line per named :func:`calibration_table`."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect",
                             line={"dash": "dash", "color": "grey"}))
    for name, t in tables.items():
        fig.add_trace(go.Scatter(x=t["predicted"], y=t["actual"], mode="lines+markers", name=name))
    fig.update_layout(title=title, xaxis_title="predicted P(no purchase)",
                      yaxis_title="actual", xaxis_range=[0, 1], yaxis_range=[0, 1])
    return fig


def risk_distribution_figure(risks: dict[str, np.ndarray], title: str = "Churn-risk distribution") -> go.Figure:
    """Overlaid histograms of churn risk (e.g. per horizon)."""
    fig = go.Figure()
    for name, r in risks.items():
        fig.add_trace(go.Histogram(x=np.asarray(r), name=name, opacity=0.6, xbins={"start": 0, "end": 1, "size": 0.02}))
    fig.update_layout(title=title, barmode="overlay", xaxis_title="churn risk", yaxis_title="customers")
    return fig
