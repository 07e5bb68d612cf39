"""BG/NBD and Gamma-Gamma: the published CDNOW fits, formulas, features, contract."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, special
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import estimator_checks_generator

from cadence.data.io import read_tables
from cadence.models.btyd import (
    BetaGeoBetaBinomModel,
    BetaGeoModel,
    GammaGammaModel,
    ModifiedBetaGeoModel,
    ParetoNBDModel,
    holdout_actuals,
    rfm_summary,
)

AS_OF = "1997-10-01"  # end of the 39-week calibration period of Fader, Hardie & Lee (2005)
UNTIL = "1998-07-01"  # the data end on 1998-06-30; the window excludes `until`


# ---------------------------------------------------------------------------
# Fixtures: the CDNOW sample, summarised and fitted once
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cdnow_root(pytestconfig: pytest.Config) -> Path:
    return pytestconfig.rootpath / "data" / "external" / "cdnow"


@pytest.fixture(scope="module")
def orders(cdnow_root: Path) -> pd.DataFrame:
    return read_tables(cdnow_root / "sample", ["orders"])["orders"]


@pytest.fixture(scope="module")
def rfm(orders: pd.DataFrame) -> pd.DataFrame:
    return rfm_summary(orders, as_of=AS_OF, start="1997-01-01", time_unit="W")


@pytest.fixture(scope="module")
def bgnbd(rfm: pd.DataFrame) -> BetaGeoModel:
    return BetaGeoModel().fit(rfm)


@pytest.fixture(scope="module")
def gamma_gamma(rfm: pd.DataFrame) -> GammaGammaModel:
    return GammaGammaModel().fit(rfm)


# ---------------------------------------------------------------------------
# Paper checks
# ---------------------------------------------------------------------------


def test_bgnbd_reproduces_fader_hardie_lee_2005(bgnbd: BetaGeoModel) -> None:
    published = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    for name, value in published.items():
        assert bgnbd.params_[name] == pytest.approx(value, rel=0.005), name
    # The paper reports LL = -9582.4 at its (rounded) estimates.
    assert bgnbd.log_likelihood_ == pytest.approx(-9582.4, abs=0.1)
    assert bgnbd.n_customers_ == 2357
    assert bgnbd.converged_


def test_gamma_gamma_reproduces_fader_hardie_2013(gamma_gamma: GammaGammaModel) -> None:
    published = {"p": 6.25, "q": 3.74, "v": 15.44}
    for name, value in published.items():
        assert gamma_gamma.params_[name] == pytest.approx(value, rel=0.005), name
    assert gamma_gamma.n_customers_ == 946  # repeat buyers only


def test_rfm_matches_the_published_summary(rfm: pd.DataFrame, cdnow_root: Path) -> None:
    published = pd.read_csv(cdnow_root / "raw" / "cdnow_customers_summary.csv")
    # The summary is keyed by the sample's own id; the raw sample maps it to the master id.
    raw = pd.read_csv(cdnow_root / "raw" / "CDNOW_sample.txt", sep=r"\s+", header=None, dtype=str)
    master_id = raw.drop_duplicates(1).set_index(1)[0]
    published.index = pd.Index(master_id.loc[published["ID"].map("{:04d}".format)].to_numpy())
    published = published.loc[rfm.index]
    assert len(published) == len(rfm) == 2357
    np.testing.assert_array_equal(published["frequency"], rfm["frequency"])
    # The published values are rounded to two decimals.
    np.testing.assert_allclose(published["recency"], rfm["recency"], atol=0.005)
    np.testing.assert_allclose(published["T"], rfm["T"], atol=0.005)


def test_holdout_total_is_1882(orders: pd.DataFrame, rfm: pd.DataFrame) -> None:
    actual = holdout_actuals(orders, AS_OF, UNTIL, rfm.index)
    assert actual.sum() == 1882
    assert actual.index.equals(rfm.index)
    # Excluding the last day (30 June 1998) drops exactly its two repeat purchases.
    assert holdout_actuals(orders, AS_OF, "1998-06-30", rfm.index).sum() == 1880


def test_summary_has_inverse_hessian_errors(bgnbd: BetaGeoModel) -> None:
    s = bgnbd.summary_
    assert list(s.index) == ["r", "alpha", "a", "b"]
    assert list(s.columns) == ["estimate", "std_error", "lower_95", "upper_95"]
    assert (s["std_error"] > 0).all() and np.isfinite(s["std_error"]).all()
    assert (s["lower_95"] < s["estimate"]).all() and (s["estimate"] < s["upper_95"]).all()
    # Wald on the log scale (delta method): log(upper / estimate) = 1.96 se / estimate, symmetric in logs.
    np.testing.assert_allclose(np.log(s["upper_95"] / s["estimate"]), 1.959964 * s["std_error"] / s["estimate"],
                               rtol=1e-6)
    np.testing.assert_allclose(s["lower_95"] * s["upper_95"], s["estimate"] ** 2, rtol=1e-12)


# ---------------------------------------------------------------------------
# Recovery of known parameters from simulated customers
# ---------------------------------------------------------------------------


def _simulate_bgnbd(
    r: float, alpha: float, a: float, b: float, T: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Draw (frequency, recency, T) from the BG/NBD story, customer by customer."""
    n = T.size
    lam = rng.gamma(r, 1 / alpha, n)
    p = rng.beta(a, b, n)
    x = np.zeros(n)
    t_x = np.zeros(n)
    now = np.zeros(n)
    active = np.ones(n, dtype=bool)
    while active.any():
        now[active] += rng.exponential(1 / lam[active])
        bought = active & (now <= T)
        x[bought] += 1
        t_x[bought] = now[bought]
        # Dropout happens right after a repeat purchase, never after the first.
        active = bought & (rng.random(n) >= p)
    return np.column_stack([x, t_x, T])


def test_bgnbd_recovers_simulated_parameters() -> None:
    rng = np.random.default_rng(20050401)
    truth = {"r": 0.5, "alpha": 5.0, "a": 0.8, "b": 2.5}
    X = _simulate_bgnbd(**truth, T=rng.uniform(26, 52, 4000), rng=rng)
    model = BetaGeoModel().fit(X)
    for name, value in truth.items():
        est, se = model.params_[name], model.summary_["std_error"].to_dict()[name]
        assert abs(est - value) < 3.5 * se, (name, est, se)


def test_gamma_gamma_recovers_simulated_parameters() -> None:
    rng = np.random.default_rng(20130101)
    p, q, v, n = 6.0, 4.0, 15.0, 4000
    nu = rng.gamma(q, 1 / v, n)
    x = 1 + rng.poisson(2.0, n)
    spend = np.array([rng.gamma(p, 1 / nu[i], x[i]).mean() for i in range(n)])
    model = GammaGammaModel().fit(np.column_stack([x, spend]))
    for name, value in {"p": p, "q": q, "v": v}.items():
        est, se = model.params_[name], model.summary_["std_error"].to_dict()[name]
        assert abs(est - value) < 3.5 * se, (name, est, se)


# ---------------------------------------------------------------------------
# Formulas
# ---------------------------------------------------------------------------


def test_probability_alive_is_one_without_repeat_purchases(
    bgnbd: BetaGeoModel, rfm: pd.DataFrame
) -> None:
    p = bgnbd.conditional_probability_alive(rfm)
    zero = rfm["frequency"].to_numpy() == 0
    assert zero.sum() == 1411
    assert (p[zero] == 1.0).all()
    assert ((p[~zero] > 0) & (p[~zero] < 1)).all()
    # The longer since the last purchase, the less likely still alive.
    grid = np.column_stack([np.full(5, 3), [30, 20, 10, 5, 1], np.full(5, 30)])
    assert (np.diff(bgnbd.conditional_probability_alive(grid)) < 0).all()


def test_probability_alive_formula(bgnbd: BetaGeoModel) -> None:
    r, alpha, a, b = (bgnbd.params_[k] for k in ("r", "alpha", "a", "b"))
    x, t_x, T = 4.0, 12.0, 38.0
    direct = 1 / (1 + a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x))
    assert bgnbd.conditional_probability_alive([[x, t_x, T]])[0] == pytest.approx(direct, rel=1e-12)


def test_conditional_expectation_matches_the_direct_hypergeometric_form(
    bgnbd: BetaGeoModel,
) -> None:
    r, alpha, a, b = (bgnbd.params_[k] for k in ("r", "alpha", "a", "b"))
    x = np.array([0.0, 1, 2, 5, 10, 20])
    t_x = np.array([0.0, 3, 20, 35, 30, 38])
    T = np.full(6, 38.0)
    t = 39.0
    z = t / (alpha + T + t)
    direct = (
        (a + b + x - 1)
        / (a - 1)
        * (
            1
            - ((alpha + T) / (alpha + T + t)) ** (r + x)
            * special.hyp2f1(r + x, b + x, a + b + x - 1, z)
        )
        / (1 + (x > 0) * a / (b + np.maximum(x, 1) - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x))
    )
    got = bgnbd.conditional_expected_purchases(t, np.column_stack([x, t_x, T]))
    np.testing.assert_allclose(got, direct, rtol=1e-9)
    # Heavy buyers, where the direct form is at risk: finite and positive.
    heavy = bgnbd.conditional_expected_purchases(t, [[400, 38, 38]])
    assert np.isfinite(heavy).all() and heavy[0] > 0


def test_new_customer_expectation_equals_population_expectation(bgnbd: BetaGeoModel) -> None:
    t = np.array([1.0, 10.0, 39.0, 78.0])
    conditional = [bgnbd.conditional_expected_purchases(s, [[0, 0, 0]])[0] for s in t]
    np.testing.assert_allclose(conditional, bgnbd.expected_purchases(t), rtol=1e-10)
    assert bgnbd.expected_purchases(0.0) == 0.0
    assert (np.diff(bgnbd.expected_purchases(t)) > 0).all()


def test_conditional_expectations_increase_with_frequency(
    bgnbd: BetaGeoModel, gamma_gamma: GammaGammaModel
) -> None:
    # Recent buyers (recency = T): more purchases, more expected purchases.
    x = np.arange(0, 31, dtype=float)
    X = np.column_stack([x, np.where(x > 0, 30.0, 0.0), np.full_like(x, 30.0)])
    assert (np.diff(bgnbd.predict(X, 39.0)) > 0).all()
    # Spend shrinks to the customer's own mean as evidence grows, from either side.
    population = gamma_gamma.conditional_expected_average_profit([0], [0.0])[0]
    high = gamma_gamma.conditional_expected_average_profit(x[1:], np.full(30, 3 * population))
    low = gamma_gamma.conditional_expected_average_profit(x[1:], np.full(30, population / 3))
    assert (np.diff(high) > 0).all() and (np.diff(low) < 0).all()
    p, q, v = (gamma_gamma.params_[k] for k in ("p", "q", "v"))
    assert population == pytest.approx(p * v / (q - 1))


def test_holdout_forecast_is_in_the_right_range(
    bgnbd: BetaGeoModel, rfm: pd.DataFrame, orders: pd.DataFrame
) -> None:
    forecast = bgnbd.predict(rfm, 39.0)
    actual = holdout_actuals(orders, AS_OF, UNTIL, rfm.index)
    # BG/NBD under-forecasts the CDNOW holdout a little (cf. FHL 2005, fig. 3).
    assert 0.8 < forecast.sum() / actual.sum() < 1.0
    assert np.corrcoef(forecast, actual)[0, 1] > 0.5


def test_customer_lifetime_value(
    bgnbd: BetaGeoModel, gamma_gamma: GammaGammaModel, rfm: pd.DataFrame
) -> None:
    X = rfm.iloc[:50]
    spend = gamma_gamma.conditional_expected_average_profit(X["frequency"], X["monetary_value"])
    undiscounted = gamma_gamma.customer_lifetime_value(
        bgnbd, X, horizon=52, discount_rate=0.0, period=13
    )
    np.testing.assert_allclose(undiscounted, spend * bgnbd.predict(X, 52.0), rtol=1e-10)
    discounted = gamma_gamma.customer_lifetime_value(
        bgnbd, X, horizon=52, discount_rate=0.02, period=13
    )
    assert (discounted < undiscounted).all() and (discounted > undiscounted / 1.02**4).all()
    with pytest.raises(ValueError, match="whole multiple of period"):
        gamma_gamma.customer_lifetime_value(bgnbd, X, horizon=50, discount_rate=0.01, period=13)


def test_penalizer_shrinks_parameters(rfm: pd.DataFrame) -> None:
    X = rfm.iloc[:600]
    plain, penalised = BetaGeoModel().fit(X), BetaGeoModel(penalizer=0.01).fit(X)

    def size(m: BetaGeoModel) -> float:
        return float(np.sum(np.array(list(m.params_.values())) ** 2))

    assert size(penalised) < size(plain)
    assert penalised.log_likelihood_ < plain.log_likelihood_


def test_nelder_mead_fallback_reaches_the_same_optimum(
    rfm: pd.DataFrame, bgnbd: BetaGeoModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_minimize = optimize.minimize
    calls: list[str] = []

    def first_lbfgs_fails(fun, x0, method=None, **kw):  # type: ignore[no-untyped-def]
        calls.append(method)
        if len(calls) == 1:
            return optimize.OptimizeResult(x=x0, fun=np.inf, success=False, message="forced")
        return real_minimize(fun, x0, method=method, **kw)

    monkeypatch.setattr(optimize, "minimize", first_lbfgs_fails)
    model = BetaGeoModel().fit(rfm)
    assert calls == ["L-BFGS-B", "Nelder-Mead", "L-BFGS-B"]
    for name, value in bgnbd.params_.items():
        assert model.params_[name] == pytest.approx(value, rel=1e-4), name
    assert model.converged_


# ---------------------------------------------------------------------------
# rfm_summary and holdout_actuals on small tables
# ---------------------------------------------------------------------------


def _orders(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "order_id": [f"o{i}" for i in range(len(rows))],
            "customer_id": [r[0] for r in rows],
            "ts": pd.to_datetime([r[1] for r in rows], utc=True, format="ISO8601"),
            "revenue": [r[2] for r in rows],
        }
    )


TOY = _orders(
    [
        ("a", "2024-01-01 09:00", 10.0),
        ("a", "2024-01-01 17:00", 5.0),  # same day as the first: one purchase of 15
        ("a", "2024-01-15 12:00", 20.0),
        ("a", "2024-01-29 08:00", 40.0),
        ("b", "2024-01-08", 7.0),
        ("c", "2023-12-20", 3.0),  # before `start` in the cohort test
        ("c", "2024-01-10", 4.0),
    ]
)


def test_rfm_summary_definitions() -> None:
    got = rfm_summary(TOY, as_of="2024-02-01", time_unit="D")
    expected = pd.DataFrame(
        {
            "frequency": [2, 0, 1],
            "recency": [28.0, 0.0, 21.0],
            "T": [30.0, 23.0, 42.0],  # to 2024-01-31, the last observed day
            "monetary_value": [30.0, 0.0, 4.0],  # mean of repeat purchases only
        },
        index=pd.Index(["a", "b", "c"], name="customer_id"),
    )
    pd.testing.assert_frame_equal(got, expected)
    weeks = rfm_summary(TOY, as_of="2024-02-01", time_unit="W")
    np.testing.assert_allclose(weeks[["recency", "T"]] * 7, got[["recency", "T"]])


def test_rfm_summary_options() -> None:
    unmerged = rfm_summary(TOY, as_of="2024-02-01", time_unit="D", merge_same_day=False)
    assert unmerged.loc["a", "frequency"] == 3
    assert unmerged.loc["a", "monetary_value"] == pytest.approx((5 + 20 + 40) / 3)
    cohort = rfm_summary(TOY, as_of="2024-02-01", start="2024-01-01")
    assert list(cohort.index) == ["a", "b"]
    # Naive cutoffs are UTC; other zones are converted.
    aware = rfm_summary(TOY, as_of=pd.Timestamp("2024-02-01 01:00", tz="Europe/Paris"))
    pd.testing.assert_frame_equal(aware, rfm_summary(TOY, as_of="2024-02-01"))


def test_rfm_summary_reads_nothing_at_or_after_as_of(
    orders: pd.DataFrame, rfm: pd.DataFrame
) -> None:
    cutoff = pd.Timestamp(AS_OF, tz="UTC")
    existing = orders["customer_id"].iloc[0]
    later = pd.DataFrame(
        {
            "order_id": ["late-1", "late-2", "late-3"],
            "customer_id": [existing, existing, "99999"],
            "ts": [cutoff, cutoff + pd.Timedelta(days=3), cutoff],
            "revenue": [1000.0, 1000.0, 1000.0],
        }
    )
    extended = pd.concat([orders, later], ignore_index=True)
    again = rfm_summary(extended, as_of=AS_OF, start="1997-01-01", time_unit="W")
    pd.testing.assert_frame_equal(again, rfm)


def test_holdout_actuals_rules() -> None:
    extra = _orders(
        [
            ("b", "2024-02-03 10:00", 1.0),
            ("b", "2024-02-03 18:00", 1.0),  # same day: one purchase
            ("b", "2024-02-10", 1.0),
            ("d", "2024-02-05", 1.0),  # first purchase in the window: not a repeat
            ("d", "2024-02-06", 1.0),
            ("a", "2024-03-01", 1.0),  # at `until`: outside
        ]
    )
    data = pd.concat([TOY, extra], ignore_index=True)
    got = holdout_actuals(data, "2024-02-01", "2024-03-01", ["a", "b", "c", "d", "zz"])
    assert got.to_dict() == {"a": 0, "b": 2, "c": 0, "d": 1, "zz": 0}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: rfm_summary(TOY, as_of="2024-02-01", time_unit="M"),  # type: ignore[arg-type]
            "time_unit must be one of",
        ),
        (
            lambda: rfm_summary(TOY.assign(ts=TOY["ts"].dt.tz_localize(None)), as_of="2024-02-01"),
            "timezone-aware",
        ),
        (
            lambda: rfm_summary(TOY.drop(columns="revenue"), as_of="2024-02-01"),
            r"lack column\(s\) \['revenue'\]",
        ),
        (lambda: holdout_actuals(TOY, "2024-02-01", "2024-01-01", ["a"]), "must be after as_of"),
    ],
)
def test_feature_bad_inputs(call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message):
        call()


# ---------------------------------------------------------------------------
# Estimator contract
# ---------------------------------------------------------------------------

VALID_X: dict[type, np.ndarray] = {
    BetaGeoModel: np.array(
        [
            [0, 0, 30],
            [2, 20, 30],
            [5, 29, 30],
            [1, 3, 30],
            [0, 0, 12],
            [3, 10, 25],
            [8, 24, 26],
            [0, 0, 40],
        ],
        dtype=float,
    ),
    GammaGammaModel: np.array(
        [[1, 20.0], [3, 35.5], [2, 12.0], [5, 40.0], [1, 18.0], [2, 25.0], [4, 16.0], [0, 0.0]]
    ),
    BetaGeoBetaBinomModel: np.array(
        [[0, 0, 6], [1, 1, 6], [2, 5, 6], [3, 3, 6], [4, 6, 6], [6, 6, 6], [0, 0, 4], [2, 3, 4]],
        dtype=float,
    ),
}
VALID_X[ParetoNBDModel] = VALID_X[ModifiedBetaGeoModel] = VALID_X[BetaGeoModel]
ALL_MODELS = [BetaGeoModel, GammaGammaModel, ParetoNBDModel, ModifiedBetaGeoModel, BetaGeoBetaBinomModel]

_RANDOM_X = (
    "the check draws a random X; these models need a customer summary (whole, "
    "non-negative frequency; 0 <= recency <= T; exactly 3 resp. 2 columns) and "
    "reject it with a ValueError. The property is tested on valid X in "
    "test_contract_on_valid_input."
)
_EXPECTED_FAILED = {
    name: _RANDOM_X
    for name in (
        "check_dict_unchanged",
        "check_dont_overwrite_parameters",
        "check_dtype_object",
        "check_estimators_dtypes",
        "check_estimators_fit_returns_self",
        "check_estimators_nan_inf",
        "check_estimators_overwrite_params",
        "check_estimators_pickle",
        "check_f_contiguous_array_estimator",
        "check_fit2d_1feature",
        "check_fit2d_1sample",
        "check_fit2d_predict1d",
        "check_fit_check_is_fitted",
        "check_fit_idempotent",
        "check_fit_score_takes_y",
        "check_methods_sample_order_invariance",
        "check_methods_subset_invariance",
        "check_n_features_in",
        "check_n_features_in_after_fitting",
        "check_pipeline_consistency",
        "check_positive_only_tag_during_fit",
        "check_readonly_memmap_input",
        "check_sample_weights_pandas_series",
        "check_sample_weights_not_an_array",
        "check_sample_weights_list",
        "check_sample_weights_shape",
        "check_sample_weights_not_overwritten",
        "check_sample_weight_equivalence_on_dense_data",
        "check_all_zero_sample_weights_error",
    )
}


def _expected_failed(estimator: object) -> dict[str, str]:
    failed = dict(_EXPECTED_FAILED)
    if isinstance(estimator, GammaGammaModel):
        # Two columns of positive draws are a valid spend summary: these pass.
        for name in (
            "check_sample_weights_not_an_array",
            "check_sample_weights_shape",
            "check_sample_weights_not_overwritten",
        ):
            del failed[name]
    else:
        failed["check_estimators_unfitted"] = (
            "predict(X, t) needs the forecast length t, so predict(X) raises TypeError; "
            "NotFittedError is tested in test_contract_on_valid_input"
        )
    return failed


def _check_id(check: object) -> str:
    base = getattr(check, "func", check)
    keywords = getattr(check, "keywords", {})
    name = getattr(base, "__name__", str(base))
    return name + (f"({', '.join(f'{k}={v}' for k, v in keywords.items())})" if keywords else "")


ESTIMATORS = (
    BetaGeoModel(),
    GammaGammaModel(),
    ParetoNBDModel(),
    ModifiedBetaGeoModel(),
    BetaGeoBetaBinomModel(),
)
Model = BetaGeoModel | GammaGammaModel | ParetoNBDModel | ModifiedBetaGeoModel | BetaGeoBetaBinomModel


# What parametrize_with_checks does, with the expected failures skipped rather
# than xfailed: pytest renders a full traceback for every xfail, which costs
# ~10 s here for checks that cannot apply. test_expected_failures_still_fail
# keeps them strict.
@pytest.mark.parametrize(
    ("estimator", "check"),
    [
        pytest.param(est, check, id=f"{type(est).__name__}-{_check_id(check)}")
        for template in ESTIMATORS
        for est, check in estimator_checks_generator(
            template, expected_failed_checks=_expected_failed(template), mark="skip"
        )
    ],
)
def test_sklearn_checks(estimator, check) -> None:  # type: ignore[no-untyped-def]
    check(estimator)


@pytest.mark.parametrize("template", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_expected_failures_still_fail(template: Model) -> None:
    expected = _expected_failed(template)
    seen = set()
    for est, check in estimator_checks_generator(template):
        name = _check_id(check).split("(")[0]
        if name in expected:
            seen.add(name)
            with pytest.raises((ValueError, TypeError, AssertionError)):
                check(est)
    assert seen == set(expected)  # no stale entries


@pytest.mark.parametrize("cls", ALL_MODELS)
def test_contract_on_valid_input(cls: type[Model]) -> None:
    X = VALID_X[cls]
    est = cls(penalizer=0.001)
    with pytest.raises(NotFittedError):
        est.conditional_expected_average_profit(
            [1], [1.0]
        ) if cls is GammaGammaModel else est.predict(X, 1.0)

    params_before = est.get_params()
    assert est.fit(X) is est
    assert est.get_params() == params_before  # fit leaves the constructor's values alone
    assert not [k for k in vars(est) if not k.endswith("_") and k not in params_before]
    assert est.n_features_in_ == X.shape[1]

    def predict(model: Model, rows: np.ndarray) -> np.ndarray:
        if isinstance(model, GammaGammaModel):
            return model.conditional_expected_average_profit(rows[:, 0], rows[:, 1])
        return model.predict(rows, 10.0)

    keys, params = set(vars(est)), dict(est.params_)
    first = predict(est, X)
    assert set(vars(est)) == keys and est.params_ == params  # predicting changes nothing
    # Row order and subsets do not change a row's prediction.
    order = np.random.default_rng(0).permutation(len(X))
    np.testing.assert_allclose(predict(est, X[order]), first[order])
    np.testing.assert_allclose(predict(est, X[:3]), first[:3])
    # Pickling and refitting a clone give the same model.
    np.testing.assert_allclose(predict(pickle.loads(pickle.dumps(est)), X), first)
    twin = clone(est)
    assert twin.get_params() == params_before and not hasattr(twin, "params_")
    read_only = X.copy()
    read_only.setflags(write=False)
    np.testing.assert_allclose(predict(twin.fit(read_only, y=None), X), first, rtol=1e-8)
    assert twin.set_params(penalizer=0.5) is twin and twin.penalizer == 0.5
    # A weight of 2 is the same as the row twice (the fits run on weighted distinct rows).
    weighted = clone(est).fit(X, sample_weight=np.r_[2.0, np.ones(len(X) - 1)])
    doubled = clone(est).fit(np.vstack([X[:1], X]))
    for name, value in doubled.params_.items():
        assert weighted.params_[name] == pytest.approx(value, rel=1e-5), name
    assert weighted.log_likelihood_ == pytest.approx(doubled.log_likelihood_, rel=1e-9)
    assert weighted.n_customers_ == doubled.n_customers_


@pytest.mark.parametrize("cls", ALL_MODELS)
def test_negative_penalizer_is_rejected(cls: type[Model]) -> None:
    with pytest.raises(InvalidParameterError, match="penalizer"):
        cls(penalizer=-1.0).fit(VALID_X[cls])


@pytest.mark.parametrize(
    ("cls", "X", "message"),
    [
        (
            BetaGeoModel,
            pd.DataFrame({"frequency": [1], "recency": [1.0]}),
            r"lacks column\(s\) \['T'\]",
        ),
        (BetaGeoModel, [[-1, 0, 5]], "Negative values in data"),
        (BetaGeoModel, [[1.5, 1, 5]], "whole number of repeat purchases"),
        (BetaGeoModel, [[1, 6, 5]], "recency must not exceed T"),
        (BetaGeoModel, [[1, np.nan, 5]], "NaN"),
        (BetaGeoModel, [[1, 2]], r"got shape \(1, 2\)"),
        (GammaGammaModel, [[0, 0.0], [0, 0.0]], "no repeat buyers"),
        (GammaGammaModel, [[2, -1.0]], "no repeat buyer with positive monetary_value"),
        (GammaGammaModel, [[-2, 1.0]], "Negative values in data"),
        (BetaGeoModel, [[1, 1, 5]], "sample_weight sums to zero"),
        (BetaGeoBetaBinomModel, [[2, 1, 6]], "frequency <= recency <= n_periods"),
        (BetaGeoBetaBinomModel, [[0, 2, 6]], "recency = 0 iff frequency = 0"),
        (BetaGeoBetaBinomModel, [[1, 1.5, 6]], "whole numbers of periods"),
        (ParetoNBDModel, [[1, 6, 5]], "recency must not exceed T"),
        (ModifiedBetaGeoModel, [[-1, 0, 5]], "Negative values in data"),
    ],
)
def test_bad_model_inputs(cls: type[Model], X: object, message: str) -> None:
    weight = [0.0] if "sums to zero" in message else None
    with pytest.raises(ValueError, match=message):
        cls().fit(X, sample_weight=weight)
