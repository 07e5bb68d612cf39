"""Uplift learners recover a known effect; Qini, AUUC and uplift at k behave.

The simulated trial: three standard-normal features; the propensity
``e = 0.3 + 0.15 tanh(x1)`` (0.15-0.45) and the baseline conversion both rise
with ``x1``, so anything that ignores the propensity is biased; the true
effect ``tau = 0.12 (1 + tanh(x0))`` (0-0.24) depends on ``x0`` only. Learners
are fitted on seed 0 and scored on a fresh seed-1 sample. Fixed seeds, so the
bounds below are stated tolerances, not flaky thresholds.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression, Ridge
from threadpoolctl import threadpool_limits

from cadence.models.uplift import (
    ClassTransformation,
    SLearner,
    TLearner,
    XLearner,
    auuc,
    plot_qini,
    qini_coefficient,
    qini_curve,
    uplift_at_k,
    uplift_curve,
)

LEARNERS = [SLearner, TLearner, XLearner, ClassTransformation]
Data = dict[str, np.ndarray]


def simulate(n: int, seed: int) -> Data:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    e = 0.3 + 0.15 * np.tanh(x[:, 1])
    t = rng.binomial(1, e)
    base = 0.05 + 0.6 / (1 + np.exp(-(0.5 + 1.5 * x[:, 1] + 0.5 * x[:, 2])))
    tau = 0.12 * (1 + np.tanh(x[:, 0]))
    y = rng.binomial(1, base + t * tau).astype(float)
    return {"x": x, "t": t, "y": y, "e": e, "tau": tau}


@pytest.fixture(scope="module")
def train() -> Data:
    return simulate(30_000, 0)


@pytest.fixture(scope="module")
def test() -> Data:
    return simulate(30_000, 1)


# --------------------------------------------------------------------------- recovery
# Measured (seed 0 -> seed 1): corr S 0.925, T 0.924, X 0.951, CT 0.964;
# Qini S 0.0177, T 0.0177, X 0.0187, CT 0.0190 vs oracle 0.0189.
@pytest.mark.parametrize("learner", LEARNERS, ids=lambda c: c.__name__)
def test_recovers_a_heterogeneous_effect(learner: type, train: Data, test: Data) -> None:
    m = learner().fit(train["x"], train["t"], train["y"], propensity=train["e"])
    pred = m.predict(test["x"])
    corr = float(np.corrcoef(pred, test["tau"])[0, 1])
    q_model = qini_coefficient(test["y"], test["t"], pred, test["e"])
    q_oracle = qini_coefficient(test["y"], test["t"], test["tau"], test["e"])
    print(f"\n{learner.__name__}: corr {corr:.3f}, Qini {q_model:.4f} vs oracle {q_oracle:.4f}, "
          f"mean effect {pred.mean():.3f} (true {test['tau'].mean():.3f})")
    assert corr > 0.85
    assert 0.8 * q_oracle < q_model < 1.1 * q_oracle  # well above random (0), near the oracle
    assert abs(pred.mean() - test["tau"].mean()) < 0.015


@pytest.mark.parametrize("learner", LEARNERS, ids=lambda c: c.__name__)
def test_recovers_an_effect_on_amounts(learner: type, train: Data, test: Data) -> None:
    # Revenue: 40 per conversion; the default base becomes a linear regression.
    m = learner().fit(train["x"], train["t"], 40.0 * train["y"], propensity=train["e"])
    pred = m.predict(test["x"])
    corr = float(np.corrcoef(pred, test["tau"])[0, 1])
    q_model = qini_coefficient(40.0 * test["y"], test["t"], pred, test["e"])
    q_oracle = qini_coefficient(40.0 * test["y"], test["t"], test["tau"], test["e"])
    assert corr > 0.9 and 0.9 * q_oracle < q_model < 1.1 * q_oracle
    assert abs(pred.mean() - 40 * test["tau"].mean()) < 0.6


def test_any_sklearn_base_and_no_interactions_for_trees(train: Data, test: Data) -> None:
    hgb = HistGradientBoostingClassifier(max_iter=60, max_depth=3)
    with threadpool_limits(1):  # HGB is pathologically slow with many OpenMP threads here
        m = SLearner(base=hgb).fit(train["x"][:10_000], train["t"][:10_000], train["y"][:10_000])
        pred = m.predict(test["x"])
    assert not m.interactions_ and SLearner().fit(train["x"], train["t"], train["y"]).interactions_
    assert np.corrcoef(pred, test["tau"])[0, 1] > 0.8  # measured 0.88
    r = TLearner(base=Ridge()).fit(train["x"], train["t"], 40.0 * train["y"])
    assert abs(r.predict(test["x"]).mean() - 40 * test["tau"].mean()) < 0.6


def test_class_transformation_needs_the_propensity(train: Data, test: Data) -> None:
    # With the treated share instead of e(x), Z mixes the baseline into the effect.
    wrong = ClassTransformation().fit(train["x"], train["t"], train["y"]).predict(test["x"]).mean()
    right = ClassTransformation().fit(train["x"], train["t"], train["y"], train["e"]).predict(test["x"]).mean()
    assert abs(right - test["tau"].mean()) < 0.01 < 0.05 < wrong - test["tau"].mean()


def test_x_learner_blends_with_the_propensity(train: Data, test: Data) -> None:
    x, t, y, e = train["x"][:5000], train["t"][:5000], train["y"][:5000], train["e"][:5000]
    assert XLearner().fit(x, t, y).propensity_model_ == pytest.approx(t.mean())
    m = XLearner().fit(x, t, y, propensity=e)
    # The fitted propensity model tracks the given e(x) (a logistic fit to a tanh).
    g = m.propensity_model_.predict_proba(x)[:, 1]
    assert np.abs(g - e).mean() < 0.02 and np.corrcoef(g, e)[0, 1] > 0.95
    tau0, tau1 = m.tau0_.predict(test["x"]), m.tau1_.predict(test["x"])
    np.testing.assert_allclose(m.predict(test["x"], propensity=1.0), tau0)
    np.testing.assert_allclose(m.predict(test["x"], propensity=0.0), tau1)
    mu0, mu1 = m.predict_outcomes(test["x"])  # first stage = the T-learner
    np.testing.assert_allclose(mu1 - mu0, TLearner().fit(x, t, y).predict(test["x"]))


# --------------------------------------------------------------------------- estimator contract
@pytest.mark.parametrize("learner", LEARNERS, ids=lambda c: c.__name__)
def test_estimator_contract(learner: type, train: Data) -> None:
    x, t, y, e = train["x"][:3000], train["t"][:3000], train["y"][:3000], train["e"][:3000]
    est = learner()
    with pytest.raises(NotFittedError):
        est.predict(x)
    params = est.get_params()
    assert not [k for k in vars(est) if k.endswith("_")]  # the constructor only stores params
    assert est.fit(x, t, y, propensity=e) is est and est.get_params() == params
    assert est.n_features_in_ == 3
    first = est.predict(x)
    assert first.shape == (3000,) and first.dtype == np.float64
    np.testing.assert_allclose(pickle.loads(pickle.dumps(est)).predict(x), first)
    fresh = clone(est)
    assert fresh.get_params() == params and not hasattr(fresh, "n_features_in_")
    np.testing.assert_allclose(fresh.fit(x, t, y, propensity=e).predict(x), first)
    # Nested parameters reach the (cloned) base of the fitted learner.
    base, key = (Ridge(), "base__alpha") if learner is ClassTransformation else (LogisticRegression(), "base__C")
    tuned = learner(base=base).set_params(**{key: 0.25})
    assert tuned.get_params()[key] == 0.25
    tuned.fit(x, t, y, propensity=e)
    inner = {SLearner: "model_", TLearner: "models_", XLearner: "first_", ClassTransformation: "model_"}[learner]
    assert f"{key[6:]}=0.25" in repr(getattr(tuned, inner))


@pytest.mark.parametrize("learner", LEARNERS, ids=lambda c: c.__name__)
def test_frames_and_feature_names(learner: type, train: Data) -> None:
    frame = pd.DataFrame(train["x"][:2000], columns=["a", "b", "c"])
    t, y = train["t"][:2000], train["y"][:2000]
    m = learner().fit(frame, t, y)
    assert list(m.feature_names_in_) == ["a", "b", "c"]
    np.testing.assert_allclose(m.predict(frame), learner().fit(frame.to_numpy(), t, y).predict(train["x"][:2000]))
    with pytest.raises(ValueError, match="feature names"):
        m.predict(frame[["c", "b", "a"]])
    with pytest.raises(ValueError, match="expecting 3 features"):
        learner().fit(frame.to_numpy(), t, y).predict(train["x"][:10, :2])


@pytest.mark.parametrize("learner", LEARNERS, ids=lambda c: c.__name__)
def test_sample_weight_equals_repeating_rows(learner: type, train: Data) -> None:
    x, t, y, e = train["x"][:2000], train["t"][:2000], train["y"][:2000], train["e"][:2000]
    w = np.where(np.arange(2000) % 3 == 0, 2.0, 1.0)
    rep = np.repeat(np.arange(2000), w.astype(int))
    weighted = learner().fit(x, t, y, propensity=e, sample_weight=w).predict(x)
    repeated = learner().fit(x[rep], t[rep], y[rep], propensity=e[rep]).predict(x)
    np.testing.assert_allclose(weighted, repeated, atol=2e-3)


def test_an_arm_whose_outcome_never_varies() -> None:
    # A classifier cannot fit one class: that arm's outcome model is the constant.
    x = np.arange(8.0)[:, None]
    t, y = np.array([1, 1, 1, 1, 0, 0, 0, 0]), np.array([1.0, 0, 1, 0, 0, 0, 0, 0])
    mu0, mu1 = TLearner().fit(x, t, y).predict_outcomes(x)
    assert (mu0 == 0).all() and 0 < mu1.mean() < 1
    assert np.isfinite(XLearner().fit(x, t, y).predict(x)).all()


# --------------------------------------------------------------------------- input errors
_X, _T, _Y = np.zeros((4, 2)), np.array([1, 0, 1, 0]), np.array([1.0, 0.0, 0.0, 1.0])
FIT_ERRORS: list[tuple[Callable[[], Any], str]] = [
    (lambda: TLearner().fit(_X, [2, 0, 2, 0], _Y), "treatment: expected 0/1 values"),
    (lambda: TLearner().fit(_X, [1, 1, 1, 1], _Y), "treatment: only one arm present"),
    (lambda: TLearner().fit(_X, _T[:3], _Y), r"treatment: expected 4 values \(one per row of X\)"),
    (lambda: SLearner().fit(_X, _T, _Y[:3]), r"y: expected 4 values \(one per row of X\), got shape \(3,\)"),
    (lambda: SLearner().fit(_X, _T, [1.0, np.nan, 0.0, 1.0]), "y: contains NaN"),
    (lambda: XLearner().fit(_X, _T, _Y, propensity=[0.5, 1.0, 0.5, 0.5]), "propensity: expected values strictly between 0 and 1"),
    (lambda: XLearner().fit(_X, _T, _Y, propensity=[0.5, 0.0, 0.5, 0.5]), "propensity: expected values strictly between 0 and 1"),
    (lambda: ClassTransformation().fit(_X, _T, _Y, propensity=[0.5, 0.5]), r"propensity: expected 4 values"),
    (lambda: TLearner().fit(_X, _T, _Y, sample_weight=[1, -1, 1, 1]), "sample_weight: expected non-negative"),
    (lambda: SLearner().fit([1.0, 2.0, 3.0, 4.0], _T, _Y), "Expected 2D array"),
    (lambda: XLearner().fit(_X, _T, _Y).predict(_X, propensity=[0.5, 0.5]), r"propensity: expected 4 values"),
    (lambda: TLearner(base="logistic").fit(_X, _T, _Y), "base: expected a scikit-learn estimator"),
    (lambda: TLearner(base=LogisticRegression()).fit(_X, _T, 40 * _Y), "base: a classifier needs a 0/1 outcome"),
    (lambda: ClassTransformation(base=LogisticRegression()).fit(_X, _T, _Y), "base: expected a regressor"),
    (lambda: XLearner(effect_base=LogisticRegression()).fit(_X, _T, _Y), "effect_base: expected a regressor"),
    (lambda: uplift_at_k(_Y, _T, [1, 2, 3, 4], k=0), r"k: expected a share in \(0, 1\]"),
    (lambda: uplift_at_k(_Y, _T, [1, 2, 3, 4], k=1.5), r"k: expected a share in \(0, 1\]"),
    (lambda: qini_curve(_Y, _T, [1, 2, 3]), r"uplift_score: expected 4 values \(one per entry of y\)"),
    (lambda: qini_curve(_Y, _T, [1, 2, np.nan, 4]), "uplift_score: contains NaN"),
    (lambda: qini_coefficient(_Y, [1, 0, 1], [1, 2, 3, 4]), r"treatment: expected 4 values \(one per entry of y\)"),
    (lambda: auuc(_Y, [0, 0, 0, 0], [1, 2, 3, 4]), "treatment: only one arm present"),
    (lambda: uplift_curve(_Y, _T, [1, 2, 3, 4], propensity=1.2), "propensity: expected values strictly between 0 and 1"),
]


@pytest.mark.parametrize(("call", "message"), FIT_ERRORS, ids=[m for _, m in FIT_ERRORS])
def test_input_errors_name_the_argument(call: Callable[[], Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


# --------------------------------------------------------------------------- Qini and friends
def test_qini_curve_by_hand_with_a_varying_propensity() -> None:
    # Weights 1/e (treated) and 1/(1-e) (control): 2, 2, 4/3, 4. Cumulative:
    # row 0: Y1=2 N1=2 -> 2/4; row 1: N0=2 -> 0.5; row 2: Y0=4/3 N0=10/3 -> (2-0.8)/4;
    # row 3: N1=6 -> (2-2.4)/4.
    y, t, s, e = [1, 0, 1, 0], [1, 0, 0, 1], [0.4, 0.3, 0.2, 0.1], [0.5, 0.5, 0.25, 0.25]
    q = qini_curve(y, t, s, e)
    assert list(q.columns) == ["fraction", "qini"]
    np.testing.assert_allclose(q["fraction"], [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(q["qini"], [0, 0.5, 0.5, 0.3, -0.1])
    np.testing.assert_allclose(uplift_curve(y, t, s, e)["gain"], [0, 0.25, 0.5, 0.75 * 0.6, -1 / 15])
    # Area of qini + 0.1 f: trapezoids of 0, .525, .55, .375, 0 at step 1/4.
    assert qini_coefficient(y, t, s, e) == pytest.approx(0.3625)


def test_ties_are_one_step_and_row_order_never_matters(test: Data) -> None:
    tied = qini_curve([1, 0, 0, 1], [1, 0, 1, 0], [1, 1, 0, 0])
    np.testing.assert_allclose(tied.to_numpy(), [[0, 0], [0.5, 0.5], [1, 0]])
    y, t, e = test["y"][:5000], test["t"][:5000], test["e"][:5000]
    s = np.round(test["tau"][:5000], 2)  # many ties
    order = np.random.default_rng(1).permutation(5000)
    for curve in (qini_curve, uplift_curve):
        a, b = curve(y, t, s, e), curve(y[order], t[order], s[order], e[order])
        np.testing.assert_allclose(a.to_numpy(), b.to_numpy())
        assert len(a) == np.unique(s).size + 1 and a["fraction"].iloc[0] == 0 and a["fraction"].iloc[-1] == 1
    k_a = uplift_at_k(y, t, s, 0.3, e)
    assert k_a == pytest.approx(uplift_at_k(y[order], t[order], s[order], 0.3, e[order]), abs=1e-12)


def test_curves_are_per_population_member(test: Data) -> None:
    y, t, s, e = test["y"][:5000], test["t"][:5000], test["tau"][:5000], test["e"][:5000]
    twice = qini_curve(np.tile(y, 2), np.tile(t, 2), np.tile(s, 2), np.tile(e, 2))
    np.testing.assert_allclose(twice.to_numpy(), qini_curve(y, t, s, e).to_numpy())


def test_constant_score_is_random_targeting(test: Data) -> None:
    y, t, e = test["y"], test["t"], test["e"]
    assert qini_coefficient(y, t, np.zeros(len(y)), e) == pytest.approx(0.0, abs=1e-12)
    assert auuc(y, t, np.ones(len(y)), e) == pytest.approx(0.0, abs=1e-12)
    assert auuc(y, t, test["tau"], e) > 0 > auuc(y, t, -test["tau"], e)


def test_inverse_propensity_weighting_removes_the_baseline_bias(test: Data) -> None:
    # Ranking by x1 is worthless (tau ignores x1), but the top by x1 is treated more
    # often and converts more anyway: unweighted, the Qini is far from 0.
    y, t, e, x1 = test["y"], test["t"], test["e"], test["x"][:, 1]
    oracle = qini_coefficient(y, t, test["tau"], e)
    weighted, naive = qini_coefficient(y, t, x1, e), qini_coefficient(y, t, x1)
    print(f"\nscore x1: weighted Qini {weighted:.4f}, unweighted {naive:.4f}, oracle {oracle:.4f}")
    assert abs(weighted) < 0.1 * oracle < 0.2 * oracle < -naive  # measured 0.0007, -0.0053, 0.0189


def test_uplift_at_k_by_hand_and_on_the_trial(test: Data) -> None:
    # k n = 2 rows: row 0, and half of each of the rows tied at 4. Treated mean 1;
    # controls weighted 0.5/0.5 = 1 (y 0) and 0.5/0.75 = 2/3 (y 1): mean 0.4.
    y, t, s, e = [1, 0, 1, 0, 1], [1, 0, 0, 1, 1], [5, 4, 4, 2, 1], [0.5, 0.5, 0.25, 0.25, 0.5]
    assert uplift_at_k(y, t, s, k=0.4, propensity=e) == pytest.approx(0.6)
    # k n = 0.3 * 10 = 3.0000000000000004 must not admit a sliver of the 4th row (a converting control).
    t10, y10 = [1, 0, 1, 0, 1, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0, 1, 0, 1, 0]
    assert uplift_at_k(y10, t10, np.arange(10.0), k=0.3) == 1.0
    assert np.isnan(uplift_at_k(y, t, s, k=0.2, propensity=e))  # no control in the top row
    top = uplift_at_k(test["y"], test["t"], test["tau"], k=0.2, propensity=test["e"])
    bottom = uplift_at_k(test["y"], test["t"], -test["tau"], k=0.2, propensity=test["e"])
    # True mean effects there: 0.22 and 0.02; sd over seeds of the estimates about 0.016.
    assert top > 0.19 and bottom < 0.07  # measured 0.209 and 0.060


def test_plot_qini(test: Data) -> None:
    y, t, e = test["y"], test["t"], test["e"]
    curves = {"oracle": qini_curve(y, t, test["tau"], e), "x1": qini_curve(y, t, test["x"][:, 1], e)}
    fig = plot_qini(curves, title="trial")
    assert [tr.name for tr in fig.data] == ["random", "oracle", "x1"]
    assert len(fig.data[1].x) == 1001 and fig.layout.title.text == "trial"  # thinned
    other = qini_curve(y[:100], t[:100], test["tau"][:100], e[:100])
    assert [tr.name for tr in plot_qini({"a": curves["oracle"], "b": other}).data][:2] == ["random (a)", "random (b)"]
