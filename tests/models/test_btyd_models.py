"""Pareto/NBD, MBG/NBD and BG/BB: the published fits, formulas, real-data handling."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import special

from cadence.data.io import read_tables
from cadence.models.btyd import (
    BetaGeoBetaBinomModel,
    BetaGeoModel,
    DataQualityWarning,
    GammaGammaModel,
    ModifiedBetaGeoModel,
    ParetoNBDModel,
    compress_rows,
    discrete_summary,
    holdout_actuals,
    rfm_summary,
)

AS_OF = "1997-10-01"
UNTIL = "1998-07-01"


@pytest.fixture(scope="module")
def root(pytestconfig: pytest.Config) -> Path:
    return pytestconfig.rootpath / "data" / "external"


@pytest.fixture(scope="module")
def orders(root: Path) -> pd.DataFrame:
    return read_tables(root / "cdnow" / "sample", ["orders"])["orders"]


@pytest.fixture(scope="module")
def rfm(orders: pd.DataFrame) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQualityWarning)
        return rfm_summary(orders, as_of=AS_OF, start="1997-01-01", time_unit="W")


@pytest.fixture(scope="module")
def pareto(rfm: pd.DataFrame) -> ParetoNBDModel:
    return ParetoNBDModel().fit(rfm)


@pytest.fixture(scope="module")
def donations(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / "donations" / "donations.csv").rename(columns={"periods": "n_periods"})


@pytest.fixture(scope="module")
def bgbb(donations: pd.DataFrame) -> BetaGeoBetaBinomModel:
    return BetaGeoBetaBinomModel().fit(donations, sample_weight=donations["weights"])


# ---------------------------------------------------------------------------
# Published fits (tolerance 0.5 % on each parameter, as in issue 23)
# ---------------------------------------------------------------------------


def test_pareto_nbd_reproduces_the_cdnow_sample_fit(pareto: ParetoNBDModel) -> None:
    # Fader, Hardie & Lee's MATLAB note on the CDNOW sample (39 weeks).
    published = {"r": 0.5533, "alpha": 10.578, "s": 0.6062, "beta": 11.669}
    for name, value in published.items():
        assert pareto.params_[name] == pytest.approx(value, rel=0.005), name
    assert pareto.log_likelihood_ == pytest.approx(-9594.98, abs=0.05)
    assert pareto.n_customers_ == 2357 and pareto.converged_
    assert pareto.n_distinct_rows_ < pareto.n_customers_  # the fit ran on compressed triples
    s = pareto.summary_
    assert (s["std_error"] > 0).all() and np.isfinite(s["std_error"]).all()


def test_mbgnbd_converges_beside_bgnbd(rfm: pd.DataFrame) -> None:
    bg, mbg = BetaGeoModel().fit(rfm), ModifiedBetaGeoModel().fit(rfm)
    assert mbg.converged_ and np.isfinite(mbg.summary_["std_error"]).all()
    # One more way to drop out, same number of parameters: its maximum is at
    # least as good as BG/NBD's on these data, within a few log-likelihood units.
    assert abs(mbg.log_likelihood_ - bg.log_likelihood_) < 5.0
    # The 1,411 customers without repeat purchases are not certainly alive under MBG/NBD.
    zero = rfm[rfm["frequency"] == 0]
    assert (mbg.conditional_probability_alive(zero) < 1).all()
    assert (bg.conditional_probability_alive(zero) == 1).all()


def test_bgbb_reproduces_the_donations_fit(bgbb: BetaGeoBetaBinomModel) -> None:
    # Fader, Hardie & Shang (2010), 11,104 donors of the 1995 cohort, 6 opportunities.
    published = {"alpha": 1.204, "beta": 0.750, "gamma": 0.657, "delta": 2.783}
    for name, value in published.items():
        assert bgbb.params_[name] == pytest.approx(value, rel=0.005), name
    assert bgbb.n_customers_ == 11104 and bgbb.converged_
    assert bgbb.log_likelihood_ == pytest.approx(-33225.6, abs=0.1)


def test_holdout_forecasts_of_the_three_count_models(
    rfm: pd.DataFrame, orders: pd.DataFrame, pareto: ParetoNBDModel
) -> None:
    actual = holdout_actuals(orders, AS_OF, UNTIL, rfm.index).to_numpy()
    assert actual.sum() == 1882
    for model in (BetaGeoModel().fit(rfm), ModifiedBetaGeoModel().fit(rfm), pareto):
        total = model.predict(rfm, 39.0).sum()
        # All three under-forecast the CDNOW holdout by 10-20 % (FHL 2005, fig. 3).
        assert 0.8 < total / actual.sum() < 0.92, (type(model).__name__, total)


# ---------------------------------------------------------------------------
# Formulas
# ---------------------------------------------------------------------------


def _pareto_direct(params: tuple[float, ...], x: float, t_x: float, T: float) -> float:
    """The note's likelihood term by term, with the untransformed 2F1."""
    r, alpha, s, beta = params
    a = r + s + x
    if alpha >= beta:
        def f(t: float) -> float:
            return special.hyp2f1(a, s + 1, a + 1, (alpha - beta) / (alpha + t)) / (alpha + t) ** a
    else:
        def f(t: float) -> float:
            return special.hyp2f1(a, r + x, a + 1, (beta - alpha) / (beta + t)) / (beta + t) ** a
    a0 = f(t_x) - f(T)
    front = special.gamma(r + x) * alpha**r * beta**s / special.gamma(r)
    return float(np.log(front * (1 / ((alpha + T) ** (r + x) * (beta + T) ** s) + s / a * a0)))


@pytest.mark.parametrize("params", [(0.55, 10.6, 0.61, 11.7), (0.55, 12.0, 0.8, 5.0), (1.3, 3.0, 2.0, 3.0)])
def test_pareto_likelihood_matches_the_direct_form_in_both_branches(params: tuple[float, ...]) -> None:
    rows = np.array([[0, 0, 38.0], [1, 5, 38], [4, 30, 38], [10, 37.5, 38], [3, 20, 20]])
    got = ParetoNBDModel._log_likelihood(np.array(params), tuple(rows.T))
    want = [_pareto_direct(params, *row) for row in rows]
    np.testing.assert_allclose(got, want, rtol=1e-9)
    # Heavy buyers, where the direct form overflows: finite.
    heavy = ParetoNBDModel._log_likelihood(np.array(params), (np.array([400.0]), np.array([30.0]), np.array([38.0])))
    assert np.isfinite(heavy).all()


def test_pareto_predictions(pareto: ParetoNBDModel) -> None:
    r, alpha, s, beta = (pareto.params_[k] for k in ("r", "alpha", "s", "beta"))
    # A new customer: the closed form against the conditional one at x = t_x = T = 0.
    t = np.array([1.0, 10.0, 39.0, 78.0])
    conditional = [pareto.conditional_expected_purchases(u, [[0, 0, 0]])[0] for u in t]
    np.testing.assert_allclose(conditional, pareto.expected_purchases(t), rtol=1e-10)
    np.testing.assert_allclose(
        pareto.expected_purchases(t), r * beta / (alpha * (s - 1)) * (1 - (beta / (beta + t)) ** (s - 1))
    )
    # P(alive): recent buyers more alive; equal to 1 when the last purchase is at T.
    grid = np.column_stack([np.full(5, 3), [30, 20, 10, 5, 1], np.full(5, 30)])
    p = pareto.conditional_probability_alive(grid)
    assert (np.diff(p) < 0).all() and p[0] == pytest.approx(1.0)
    # At s = 1 the forecast is the limit of the general formula.
    near = pareto.with_params(np.array([r, alpha, 1 + 1e-7, beta]))
    at_one = pareto.with_params(np.array([r, alpha, 1.0, beta]))
    np.testing.assert_allclose(near.expected_purchases(t), at_one.expected_purchases(t), rtol=1e-6)


def test_mbgnbd_new_customer_equals_the_conditional_at_zero(rfm: pd.DataFrame) -> None:
    mbg = ModifiedBetaGeoModel().fit(rfm)
    t = np.array([1.0, 10.0, 39.0, 78.0])
    conditional = [mbg.conditional_expected_purchases(u, [[0, 0, 0]])[0] for u in t]
    np.testing.assert_allclose(conditional, mbg.expected_purchases(t), rtol=1e-10)
    r, alpha, a, b = (mbg.params_[k] for k in ("r", "alpha", "a", "b"))
    x, t_x, T, u = 3.0, 20.0, 38.0, 39.0
    direct = (
        (a + b + x) / (a - 1)
        * (1 - ((alpha + T) / (alpha + T + u)) ** (r + x) * special.hyp2f1(r + x, b + x + 1, a + b + x, u / (alpha + T + u)))
        / (1 + a / (b + x) * ((alpha + T) / (alpha + t_x)) ** (r + x))
    )
    assert mbg.conditional_expected_purchases(u, [[x, t_x, T]])[0] == pytest.approx(direct, rel=1e-9)


def test_bgbb_predictions(bgbb: BetaGeoBetaBinomModel, donations: pd.DataFrame) -> None:
    n = np.array([1.0, 5.0, 11.0])
    conditional = [bgbb.conditional_expected_purchases(k, [[0, 0, 0]])[0] for k in n]
    np.testing.assert_allclose(conditional, bgbb.expected_purchases(n), rtol=1e-10)
    # The model's expected repeat transactions in the 6 calibration periods
    # match the observed total within 1 % (FHS 2010 fig. 3 fits closely).
    observed = float((donations["frequency"] * donations["weights"]).sum())
    expected = float(bgbb.expected_purchases(6.0)) * float(donations["weights"].sum())
    assert expected == pytest.approx(observed, rel=0.01)
    p = bgbb.conditional_probability_alive(donations)
    assert ((p > 0) & (p <= 1)).all()
    # Six of six: alive for sure up to period 6, so P(alive in 7) = 1 - E[theta | survived 6].
    six = bgbb.conditional_probability_alive([[6, 6, 6]])[0]
    g, d = bgbb.params_["gamma"], bgbb.params_["delta"]
    assert six == pytest.approx((d + 6) / (g + d + 6), rel=1e-9)


# ---------------------------------------------------------------------------
# Recovery of known parameters
# ---------------------------------------------------------------------------


def test_pareto_nbd_recovers_simulated_parameters() -> None:
    rng = np.random.default_rng(19870101)
    truth = {"r": 0.6, "alpha": 8.0, "s": 0.8, "beta": 12.0}
    n = 5000
    T = rng.uniform(26, 52, n)
    lam = rng.gamma(truth["r"], 1 / truth["alpha"], n)
    mu = rng.gamma(truth["s"], 1 / truth["beta"], n)
    death = np.minimum(rng.exponential(1 / mu), T)
    x = rng.poisson(lam * death)
    # Given x purchases in (0, death), their times are uniform: the last is the max.
    t_x = np.where(x > 0, death * rng.beta(np.maximum(x, 1), 1), 0.0)
    model = ParetoNBDModel().fit(np.column_stack([x, t_x, T]))
    for name, value in truth.items():
        est, se = model.params_[name], model.summary_["std_error"].to_dict()[name]
        assert abs(est - value) < 3.5 * se, (name, est, se)


# ---------------------------------------------------------------------------
# Real-data handling: warnings with counts, never a lost fit
# ---------------------------------------------------------------------------


def test_zero_spend_repeat_buyers_are_set_aside_with_a_count(rfm: pd.DataFrame) -> None:
    bad = rfm.copy()
    ids = bad.index[bad["frequency"] > 0][:3]
    bad.loc[ids[:2], "monetary_value"] = 0.0
    bad.loc[ids[2], "monetary_value"] = -5.0
    with pytest.warns(DataQualityWarning, match="set aside 3 of 946 repeat buyers"):
        model = GammaGammaModel().fit(bad)
    assert model.n_customers_ == 943 and model.n_set_aside_ == 3
    assert model.params_["p"] == pytest.approx(6.25, rel=0.05)


def test_rfm_summary_warns_about_merges_and_early_customers() -> None:
    orders = pd.DataFrame(
        {
            "customer_id": ["ID-A", "ID-A", "ID-A", "ID-B", "ID-C", "ID-C"],
            "ts": pd.to_datetime(
                ["2024-01-02 09:00", "2024-01-02 18:00", "2024-01-09", "2023-12-01", "2024-01-03", "2024-01-20"],
                utc=True,
                format="ISO8601",
            ),
            "revenue": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        }
    )
    with pytest.warns(DataQualityWarning) as record:
        out = rfm_summary(orders, as_of="2024-02-01", start="2024-01-01")
    messages = [str(w.message) for w in record]
    assert any("left out 1 customers (1 orders)" in m for m in messages)
    assert any("merged 1 same-day orders" in m for m in messages)
    assert list(out.index) == ["ID-A", "ID-C"]
    assert "ID-" not in " ".join(messages)  # counts only, never ids


@pytest.mark.parametrize("cls", [BetaGeoModel, ParetoNBDModel, ModifiedBetaGeoModel])
def test_a_single_purchase_cohort_still_fits_with_a_warning(cls: type) -> None:
    X = np.column_stack([np.zeros(50), np.zeros(50), np.linspace(5, 40, 50)])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        model = cls().fit(X)
    assert any(issubclass(w.category, DataQualityWarning) and "none of the 50 customers" in str(w.message)
               for w in record)
    assert np.isfinite(model.log_likelihood_)
    assert np.isfinite(model.predict(X, 10.0)).all()


def test_compress_rows_keeps_the_likelihood(rfm: pd.DataFrame) -> None:
    data = tuple(rfm[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    distinct, counts = compress_rows(data)
    assert counts.sum() == len(rfm) and len(counts) < len(rfm)
    params = np.array([0.55, 10.6, 0.61, 11.7])
    full = ParetoNBDModel._log_likelihood(params, data).sum()
    assert counts @ ParetoNBDModel._log_likelihood(params, distinct) == pytest.approx(full, rel=1e-12)


def test_discrete_summary_on_the_cdnow_sample(orders: pd.DataFrame) -> None:
    # Quarters of 1997-1998 as opportunities: every customer first bought in Q1 1997.
    summary = discrete_summary(orders, "1998-07-01", start="1997-01-01", period="91D")
    assert summary["weight"].sum() == 2357
    assert (summary["n_periods"] == 5).all()  # 6 whole 91-day periods; 5 after the first
    model = BetaGeoBetaBinomModel().fit(summary, sample_weight=summary["weight"])
    assert model.converged_
    by_customer = discrete_summary(orders, "1998-07-01", start="1997-01-01", period="91D", by_customer=True)
    assert len(by_customer) == 2357 and (by_customer["frequency"] <= by_customer["recency"]).all()


def test_bgnbd_analytic_gradient_matches_finite_differences(rfm: pd.DataFrame) -> None:
    from scipy import optimize

    data = tuple(rfm[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    for params in (np.array([0.3, 4.0, 0.9, 2.0]), np.array([1.2, 10.0, 0.4, 5.0])):
        _, grad = BetaGeoModel._log_likelihood_and_gradient(params, data)
        analytic = np.array([g.sum() for g in grad])
        numeric = optimize.approx_fprime(params, lambda p: BetaGeoModel._log_likelihood(p, data).sum(), 1e-7)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-4)


@pytest.mark.parametrize(
    "params",
    [
        (0.55, 10.6, 0.61, 11.7),  # alpha < beta, near the CDNOW optimum
        (0.55, 12.0, 0.8, 5.0),  # alpha > beta
        (1.3, 3.0, 2.0, 3.0),  # alpha == beta: z = 0
        (0.3, 2.0, 0.5, 40.0),  # z up to 0.95: long series
        (0.3, 0.05, 0.5, 40.0),  # z > 0.998: the rows that fall back to differences of hyp2f1
        (4.0, 30.0, 0.2, 0.3),  # alpha >> beta, heavy buyers in the other branch
    ],
)
def test_pareto_analytic_gradient_matches_finite_differences(params: tuple[float, ...]) -> None:
    # A grid of light and heavy buyers, recent and long gone: the died term (with the
    # hypergeometric derivatives) carries much of the gradient, so an error there shows.
    grid = np.array([[x, t_x, T] for x in (0, 1, 2, 5, 20, 60) for t_x in (0.5, 3.0, 12.0, 30.0)
                     for T in (31.0, 39.0, 52.0)])
    grid[grid[:, 0] == 0, 1] = 0.0
    data = tuple(grid.T)
    weights = np.random.default_rng(7).uniform(0.5, 2.0, len(grid))
    theta = np.array(params)
    total, grad = ParetoNBDModel._total_log_likelihood_and_gradient(theta, data, weights)

    def f(p: np.ndarray) -> float:
        return float(weights @ ParetoNBDModel._log_likelihood(p, data))

    assert total == pytest.approx(f(theta), rel=1e-12)
    # Central differences with relative steps (their own error is ~1e-7 of the scale of f).
    h = 1e-6 * theta
    numeric = np.array([(f(theta + np.eye(4)[i] * h[i]) - f(theta - np.eye(4)[i] * h[i])) / (2 * h[i])
                        for i in range(4)])
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-6 * abs(total))


def test_pareto_intervals_are_positive_on_the_log_scale(pareto: ParetoNBDModel) -> None:
    s = pareto.summary_
    # beta's standard error is about half its estimate on the sample: the symmetric
    # interval would reach below zero (about -0.5); the log-scale one cannot.
    assert s.loc["beta", "estimate"] - 1.959964 * s.loc["beta", "std_error"] < 0
    assert (s["lower_95"] > 0).all()
    np.testing.assert_allclose(np.log(s["upper_95"] / s["estimate"]), np.log(s["estimate"] / s["lower_95"]))
