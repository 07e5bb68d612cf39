"""The customer-base (BTYD) analysis of a shop's orders: what ``cadence fit btyd``, the CLV notebook and the report show.

The wiring between the layers: the feature layer
(:mod:`cadence.features.purchases`) computes the calibration summary, the
holdout's repeat purchases and the purchase days; the models
(:mod:`cadence.models.btyd`, :mod:`cadence.models.clv`) are fitted on them
and judged against them. No model computes its own inputs.

Examples
--------
>>> from cadence.data.io import read_tables
>>> orders = read_tables("data/external/cdnow/sample", ["orders"])["orders"]
>>> inputs = btyd_inputs(orders, "1997-10-01", "1998-07-01")
>>> len(inputs.rfm), int(inputs.holdout.sum())
(2357, 1882)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from cadence.contract.clock import utc
from cadence.features.purchases import (
    duckdb_tables,
    fetch_frame,
    holdout_frequency,
    purchase_days,
    rfm_summary_frame,
)
from cadence.models.clv import (
    BTYD_MODELS,
    BTYDFit,
    clv_summary,
    conditional_expectations_figure,
    conditional_expectations_table,
    fit_btyd_models,
    parameter_table,
    record_warnings,
    tracking_figure,
    tracking_table,
)


@dataclass(frozen=True)
class BTYDInputs:
    """The BTYD models' inputs for one calibration cutoff and holdout, from the feature layer.

    Attributes
    ----------
    start, as_of : Timestamp
        Cohort start (the first order's UTC day) and end of calibration (exclusive).
    until : Timestamp or None
        End of the holdout (exclusive); None without a holdout.
    rfm : DataFrame
        The cohort's summary in weeks, index ``customer_id``
        (:func:`cadence.features.purchases.rfm_summary_frame`).
    holdout : ndarray of int64 or None
        Repeat purchases in ``[as_of, until)`` of the customers of ``rfm``, in
        its order (:func:`cadence.features.purchases.holdout_frequency`).
    days : DataFrame or None
        Every purchase day before ``until`` (``customer_id``, ``day``), for
        :func:`cadence.models.clv.tracking_table`.
    notes : tuple of str
        The summary's data-quality warnings (counts, never ids).
    """

    start: pd.Timestamp
    as_of: pd.Timestamp
    until: pd.Timestamp | None
    rfm: pd.DataFrame
    holdout: np.ndarray | None
    days: pd.DataFrame | None
    notes: tuple[str, ...]


def btyd_inputs(orders: pd.DataFrame, as_of: Any, until: Any = None) -> BTYDInputs:
    """The feature layer's BTYD inputs: the cohort first seen before ``as_of``, in weeks, and its holdout.

    The cohort starts on the first order's UTC day (the CDNOW convention of
    Fader, Hardie & Lee 2005: every customer's clock starts at their first
    purchase).

    Parameters
    ----------
    orders : DataFrame
        Contract ``orders``.
    as_of : timestamp-like
        End of calibration (exclusive).
    until : timestamp-like, optional
        End of the holdout (exclusive); without it there is no holdout.

    Returns
    -------
    BTYDInputs
    """
    cut = utc(as_of, "as_of")
    past = orders["ts"][orders["ts"] < cut]
    if past.empty:
        raise ValueError(f"orders: no order before as_of={cut}")
    start = past.min().floor("D")
    notes: list[str] = []
    rfm = record_warnings(lambda: rfm_summary_frame(orders, cut, start=start, time_unit="W"), notes)
    if until is None:
        return BTYDInputs(start, cut, None, rfm, None, None, tuple(notes))
    end = utc(until, "until")
    con, t = duckdb_tables({"orders": orders})
    counts = fetch_frame(con, holdout_frequency(t, cut, end), ["customer_id"]).set_index("customer_id")
    holdout = counts["holdout_frequency"].reindex(rfm.index, fill_value=0).to_numpy()
    days = fetch_frame(con, purchase_days(t, end), ["customer_id", "day"])
    return BTYDInputs(start, cut, end, rfm, holdout, days, tuple(notes))


@dataclass(frozen=True)
class CLVReport:
    """What the CLV notebook and the summary report show, computed by :func:`clv_report`.

    Attributes
    ----------
    start, as_of, until : Timestamp
        Cohort start (first order day), end of calibration, end of holdout
        (``until`` is None without orders at or after ``as_of``).
    fit : BTYDFit
    parameters : DataFrame
        :func:`cadence.models.clv.parameter_table`.
    holdout : DataFrame or None
        Per count model: ``predicted_total``, ``actual_total``, ``error_pct``, ``mae``.
    tracking : plotly Figure or None
    conditional_expectations : plotly Figure or None
    clv : DataFrame or None
        :func:`cadence.models.clv.clv_summary`'s table.
    clv_note : str
    """

    start: pd.Timestamp
    as_of: pd.Timestamp
    until: pd.Timestamp | None
    fit: BTYDFit
    parameters: pd.DataFrame
    holdout: pd.DataFrame | None
    tracking: go.Figure | None
    conditional_expectations: go.Figure | None
    clv: pd.DataFrame | None
    clv_note: str


def clv_report(orders: pd.DataFrame, as_of: Any, until: Any = None, *, n_draws: int = 200) -> CLVReport:
    """Fit every BTYD model on the cohort before ``as_of`` and judge it on ``[as_of, until)``.

    The cohort is the customers whose first order is before ``as_of``
    (clock from the first order day), in weeks, as ``cadence fit btyd``
    does (:func:`btyd_inputs`); ``until`` defaults to the day after the last
    order.

    Parameters
    ----------
    orders : DataFrame
        Contract ``orders``.
    as_of : timestamp-like
    until : timestamp-like, optional
    n_draws : int, default 200
        Parametric-bootstrap draws of the CLV interval.

    Returns
    -------
    CLVReport

    Examples
    --------
    >>> from cadence.data.io import read_tables
    >>> orders = read_tables("data/external/cdnow/sample", ["orders"])["orders"]
    >>> report = clv_report(orders, "1997-10-01", n_draws=20)
    >>> int(report.holdout.loc["BG/NBD", "actual_total"]), str(report.until.date())
    (1882, '1998-07-01')
    """
    cut = utc(as_of, "as_of")
    later = orders["ts"][orders["ts"] >= cut]
    end = utc(until, "until") if until is not None else (
        None if later.empty else later.max().floor("D") + pd.Timedelta(1, "D"))
    inputs = btyd_inputs(orders, cut, end)
    rfm, start = inputs.rfm, inputs.start
    fitted = fit_btyd_models(rfm)
    fit = BTYDFit(fitted.models, fitted.failures, inputs.notes + fitted.warnings)
    holdout = tracking = conditional = None
    counts = fit.count_models
    if end is not None and counts and inputs.holdout is not None and inputs.days is not None:
        weeks = (end - cut) / pd.Timedelta(7, "D")
        actual = inputs.holdout
        rows = []
        for key, model in counts.items():
            pred = model.predict(rfm, weeks)
            rows.append({"model": BTYD_MODELS[key][0], "predicted_total": float(pred.sum()),
                         "actual_total": float(actual.sum()),
                         "error_pct": 100 * (float(pred.sum()) / max(float(actual.sum()), 1.0) - 1),
                         "mae": float(np.mean(np.abs(pred - actual)))})
        holdout = pd.DataFrame(rows).set_index("model")
        tracking = tracking_figure({BTYD_MODELS[k][0]: tracking_table(m, inputs.days, start=start, as_of=cut,
                                                                      until=end)
                                    for k, m in counts.items()}, cut)
        conditional = conditional_expectations_figure(
            {BTYD_MODELS[k][0]: conditional_expectations_table(m, rfm, actual, weeks) for k, m in counts.items()})
    value, note = clv_summary(fit, rfm, n_draws=n_draws)
    return CLVReport(start, cut, end, fit, parameter_table(fit), holdout, tracking, conditional, value, note)


__all__ = ["BTYDInputs", "btyd_inputs", "CLVReport", "clv_report"]
