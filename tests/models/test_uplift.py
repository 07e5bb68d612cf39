"""Uplift learners recover a known effect; Qini and friends behave."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import Ridge

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


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    """Randomised data, propensity 0.2-0.5 depending on x1; effect grows with x0."""
    rng = np.random.default_rng(0)
    n = 30_000
    x = rng.normal(size=(n, 3))
    e = np.where(x[:, 1] > 0, 0.5, 0.2)
    t = rng.binomial(1, e)
    base = 1 / (1 + np.exp(-(-1.5 + 0.5 * x[:, 2])))
    tau = 0.12 * (1 + np.tanh(x[:, 0]))  # 0 .. 0.24
    y = rng.binomial(1, np.clip(base + t * tau, 0, 1)).astype(float)
    return {"x": x, "t": t, "y": y, "e": e, "tau": tau}


@pytest.mark.parametrize("learner", LEARNERS, ids=lambda c: c.__name__)
def test_recovers_the_effect(learner: type, data: dict[str, np.ndarray]) -> None:
    m = learner().fit(data["x"], data["t"], data["y"], propensity=data["e"])
    pred = m.predict(data["x"])
    corr = float(np.corrcoef(pred, data["tau"])[0, 1])
    q_model = qini_coefficient(data["y"], data["t"], pred, data["e"])
    q_oracle = qini_coefficient(data["y"], data["t"], data["tau"], data["e"])
    print(f"\n{learner.__name__}: corr(pred, true effect) = {corr:.3f}, Qini {q_model:.4f} vs oracle {q_oracle:.4f}, "
          f"mean effect {pred.mean():.3f} (true {data['tau'].mean():.3f})")
    assert corr > 0.8
    assert 0 < q_model <= q_oracle * 1.2
    assert abs(pred.mean() - data["tau"].mean()) < 0.02


@pytest.mark.parametrize("learner", LEARNERS, ids=lambda c: c.__name__)
def test_estimator_contract(learner: type, data: dict[str, np.ndarray]) -> None:
    x, t, y = data["x"][:3000], data["t"][:3000], data["y"][:3000]
    est = learner()
    with pytest.raises(NotFittedError):
        est.predict(x)
    params = est.get_params()
    assert est.fit(x, t, y) is est and est.get_params() == params
    first = est.predict(x)
    np.testing.assert_allclose(pickle.loads(pickle.dumps(est)).predict(x), first)
    np.testing.assert_allclose(clone(est).fit(x, t, y).predict(x), first)


def test_continuous_outcomes_and_custom_base(data: dict[str, np.ndarray]) -> None:
    amount = data["y"] * 40.0
    m = TLearner(base=Ridge()).fit(data["x"], data["t"], amount)
    assert abs(m.predict(data["x"]).mean() - 40 * data["tau"].mean()) < 1.0
    with pytest.raises(ValueError, match="base: a classifier needs a 0/1 outcome"):
        from sklearn.linear_model import LogisticRegression

        TLearner(base=LogisticRegression()).fit(data["x"], data["t"], amount)


def test_input_errors_name_the_argument(data: dict[str, np.ndarray]) -> None:
    x, t, y = data["x"][:100], data["t"][:100], data["y"][:100]
    with pytest.raises(ValueError, match="treatment: expected 0/1"):
        TLearner().fit(x, t * 2, y)
    with pytest.raises(ValueError, match="treatment: only one arm"):
        TLearner().fit(x, np.ones(100, int), y)
    with pytest.raises(ValueError, match="y: expected 100 values"):
        TLearner().fit(x, t, y[:50])
    with pytest.raises(ValueError, match="propensity: expected values strictly between 0 and 1"):
        XLearner().fit(x, t, y, propensity=np.ones(100))


def test_qini_is_invariant_to_row_order_and_handles_ties(data: dict[str, np.ndarray]) -> None:
    y, t, e = data["y"][:5000], data["t"][:5000], data["e"][:5000]
    s = np.round(data["tau"][:5000], 2)  # many ties
    order = np.random.default_rng(1).permutation(5000)
    a = qini_curve(y, t, s, e)
    b = qini_curve(y[order], t[order], s[order], e[order])
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy())
    assert len(a) == np.unique(s).size + 1 and a["fraction"].iloc[-1] == 1.0
    # A constant score is random targeting: a straight line, zero area.
    assert qini_coefficient(y, t, np.zeros(5000), e) == pytest.approx(0.0, abs=1e-12)
    assert auuc(y, t, data["tau"][:5000], e) > 0
    assert uplift_curve(y, t, s, e)["gain"].iloc[0] == 0


def test_uplift_at_k(data: dict[str, np.ndarray]) -> None:
    top = uplift_at_k(data["y"], data["t"], data["tau"], k=0.2, propensity=data["e"])
    bottom = uplift_at_k(data["y"], data["t"], -data["tau"], k=0.2, propensity=data["e"])
    assert top > 0.15 > 0.05 > bottom
    with pytest.raises(ValueError, match="k: expected a share"):
        uplift_at_k(data["y"], data["t"], data["tau"], k=0)


def test_plot(data: dict[str, np.ndarray]) -> None:
    fig = plot_qini({"oracle": qini_curve(data["y"], data["t"], data["tau"], data["e"])})
    assert [tr.name for tr in fig.data] == ["random", "oracle"]
