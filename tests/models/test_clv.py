"""Tracking, conditional expectations and CLV intervals on the CDNOW sample; the CLV report's wiring."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cadence.data.io import read_tables
from cadence.features.purchases import DataQualityWarning, rfm_summary_frame
from cadence.models.btyd import BetaGeoModel, GammaGammaModel
from cadence.models.clv import (
    clv_interval,
    clv_summary,
    conditional_expectations_figure,
    conditional_expectations_table,
    fit_btyd_models,
    parameter_table,
    tracking_figure,
    tracking_table,
)
from cadence.workflows.clv import BTYDInputs, btyd_inputs, clv_report

AS_OF, UNTIL, START = "1997-10-01", "1998-07-01", "1997-01-01"


@pytest.fixture(scope="module")
def orders(pytestconfig: pytest.Config) -> pd.DataFrame:
    return read_tables(Path(pytestconfig.rootpath) / "data/external/cdnow/sample", ["orders"])["orders"]


@pytest.fixture(scope="module")
def rfm(orders: pd.DataFrame) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQualityWarning)
        return rfm_summary_frame(orders, as_of=AS_OF, start=START, time_unit="W")


@pytest.fixture(scope="module")
def inputs(orders: pd.DataFrame) -> BTYDInputs:
    return btyd_inputs(orders, AS_OF, UNTIL)


@pytest.fixture(scope="module")
def bg(rfm: pd.DataFrame) -> BetaGeoModel:
    return BetaGeoModel().fit(rfm)


@pytest.fixture(scope="module")
def gg(rfm: pd.DataFrame) -> GammaGammaModel:
    return GammaGammaModel().fit(rfm)


def test_tracking_table_counts_and_fit(bg: BetaGeoModel, inputs: BTYDInputs) -> None:
    table = tracking_table(bg, inputs.days, start=START, as_of=AS_OF, until=UNTIL)
    by_period = table.groupby("period")[["actual", "predicted"]].sum()
    # FHL (2005): 2,457 repeat purchases in the 39 calibration weeks, 1,882 in the holdout.
    assert by_period.loc["calibration", "actual"] == 2457
    assert by_period.loc["holdout", "actual"] == 1882
    # BG/NBD tracks the calibration period within 3 % and under-forecasts the holdout by 8-15 %.
    assert by_period.loc["calibration", "predicted"] == pytest.approx(2457, rel=0.03)
    assert 0.85 < by_period.loc["holdout", "predicted"] / 1882 < 0.92
    np.testing.assert_allclose(table["predicted"].cumsum(), table["predicted_cumulative"])
    assert (np.diff(table["predicted_cumulative"]) >= 0).all()
    fig = tracking_figure({"BG/NBD": table}, AS_OF)
    assert {t.name for t in fig.data} == {"actual", "BG/NBD"} and len(fig.data) == 4


def test_conditional_expectations(bg: BetaGeoModel, rfm: pd.DataFrame, inputs: BTYDInputs) -> None:
    actual = inputs.holdout
    table = conditional_expectations_table(bg, rfm, actual, 39.0)
    assert list(table.index) == ["0", "1", "2", "3", "4", "5", "6", "7+"]
    assert table["n"].sum() == 2357 and table.loc["0", "n"] == 1411
    assert (np.diff(table["predicted"]) > 0).all()
    assert (table["actual_lower_95"] <= table["actual"]).all() and (table["actual"] <= table["actual_upper_95"]).all()
    # The model's group means fall within 40 % of the actual ones (FHL 2005, fig. 4).
    assert np.all(np.abs(table["predicted"] / table["actual"] - 1) < 0.4)
    assert len(conditional_expectations_figure({"BG/NBD": table}).data) == 2


def test_parameter_draws_follow_the_inverse_hessian(bg: BetaGeoModel) -> None:
    draws = np.log(bg.sample_params(4000, random_state=1))
    theta = np.array(list(bg.params_.values()))
    cov_log = bg.covariance_.to_numpy() / np.outer(theta, theta)
    se = np.sqrt(np.diag(cov_log))
    assert np.all(np.abs(draws.mean(axis=0) - np.log(theta)) < 4 * se / np.sqrt(4000))
    np.testing.assert_allclose(draws.std(axis=0), se, rtol=0.05)


def test_clv_interval(bg: BetaGeoModel, gg: GammaGammaModel, rfm: pd.DataFrame) -> None:
    X = rfm.iloc[:300]
    out = clv_interval(bg, gg, X, horizon=52, discount_rate=0.01, period=13, n_draws=60, random_state=3)
    point = gg.customer_lifetime_value(bg, X, horizon=52, discount_rate=0.01, period=13)
    np.testing.assert_allclose(out["clv"], point)
    assert (out["lower"] <= out["upper"]).all()
    a = out.attrs
    assert a["method"] == "parametric bootstrap"
    assert a["total_lower"] < a["total"] < a["total_upper"]
    # The interval is a few per cent of the total, not degenerate and not huge.
    assert 0.02 < (a["total_upper"] - a["total_lower"]) / a["total"] < 0.5
    again = clv_interval(bg, gg, X, horizon=52, discount_rate=0.01, period=13, n_draws=60, random_state=3)
    pd.testing.assert_frame_equal(out, again)
    with pytest.raises(ValueError, match="level"):
        clv_interval(bg, gg, X, horizon=52, discount_rate=0.01, level=1.5)


def test_fit_btyd_models_reports_per_model(rfm: pd.DataFrame) -> None:
    no_spend = rfm.assign(monetary_value=0.0)
    fit = fit_btyd_models(no_spend)
    assert sorted(fit.models) == ["bgnbd", "mbgnbd", "pareto_nbd"]
    assert "no repeat buyer with positive monetary_value" in fit.failures["gamma_gamma"]
    assert any("set aside 946 of 946" in w for w in fit.warnings)
    table = parameter_table(fit)
    assert set(table["model"]) == {"BG/NBD", "Pareto/NBD", "MBG/NBD"}
    assert (table["lower_95"] < table["estimate"]).all()
    value, note = clv_summary(fit, no_spend)
    assert value is None and "could not be fitted" in note


def test_btyd_inputs_are_the_feature_layers(inputs: BTYDInputs, rfm: pd.DataFrame, orders: pd.DataFrame) -> None:
    # The cohort starts on the first order day (1997-01-01), so the summary is the fixture's.
    assert str(inputs.start.date()) == START
    pd.testing.assert_frame_equal(inputs.rfm, rfm, check_exact=True)
    assert inputs.holdout is not None and inputs.holdout.dtype == "int64" and inputs.holdout.sum() == 1882
    assert any("merged" in n for n in inputs.notes) and not any("left out" in n for n in inputs.notes)
    days = inputs.days
    assert days is not None and list(days.columns) == ["customer_id", "day", "revenue"]
    # Every purchase day up to 1998-06-30 (epoch day 10407), one row per customer and day.
    assert days["day"].max() == 10407 and not days.duplicated(["customer_id", "day"]).any()
    no_holdout = btyd_inputs(orders, AS_OF)
    assert no_holdout.holdout is None and no_holdout.days is None


def test_clv_report_on_the_cdnow_sample(orders: pd.DataFrame, bg: BetaGeoModel) -> None:
    report = clv_report(orders, AS_OF, n_draws=20)
    assert (str(report.start.date()), str(report.until.date())) == (START, UNTIL)  # type: ignore[union-attr]
    assert report.fit.models["bgnbd"].params_ == bg.params_
    assert report.holdout is not None and (report.holdout["actual_total"] == 1882).all()
    assert set(report.holdout.index) == {"BG/NBD", "Pareto/NBD", "MBG/NBD"}
    assert report.tracking is not None and report.conditional_expectations is not None
    assert report.clv is not None and "parametric bootstrap" in report.clv_note
    with pytest.raises(ValueError, match="no order before"):
        clv_report(orders, "1990-01-01")
