"""The policy learner: the scikit-learn contract, masks, costs, exploration and bad inputs."""

from __future__ import annotations

import pickle
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import estimator_checks_generator

from cadence.policies.learner import PolicyLearner

# --------------------------------------------------------------------------- #
# scikit-learn's estimator checks
# --------------------------------------------------------------------------- #


class ExperimentLearner(PolicyLearner):
    """The learner as the checks call it, ``fit(X, y)``: ``y`` is the reward of a uniform three-arm log.

    scikit-learn's generic checks know only ``fit(X, y)``; a policy also needs
    the logged action and its propensity. This subclass supplies them (row
    ``i`` got arm ``i % 3`` with probability 1/3) and changes nothing else, so
    every check runs the real constructor, validation, fit and predict.
    """

    def fit(self, X: Any, y: Any = None) -> ExperimentLearner:  # type: ignore[override]
        n = getattr(X, "shape", (len(X),))[0]
        super().fit(X, y, action=np.arange(n) % 3, pscore=np.full(n, 1 / 3))
        return self


#: Checks that cannot apply, with the reason (none so far: every generic check passes).
EXPECTED_FAILED: dict[str, str] = {}


def _check_id(check: object) -> str:
    base = getattr(check, "func", check)
    keywords = getattr(check, "keywords", {})
    name = getattr(base, "__name__", str(base))
    return name + (f"({', '.join(f'{k}={v}' for k, v in keywords.items())})" if keywords else "")


@pytest.mark.parametrize(
    ("estimator", "check"),
    [
        pytest.param(est, check, id=_check_id(check))
        for est, check in estimator_checks_generator(
            ExperimentLearner(), expected_failed_checks=EXPECTED_FAILED, mark="skip"
        )
    ],
)
def test_sklearn_checks(estimator, check) -> None:  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check(estimator)


# --------------------------------------------------------------------------- #
# A small log with every kind of column
# --------------------------------------------------------------------------- #


def small_log(n: int = 3000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Context with numbers, a category and missing values; arm ``b`` pays for tier ``gold``, ``c`` where x > 0."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    X = pd.DataFrame({
        "x": np.where(rng.random(n) < 0.1, np.nan, x),
        "tier": pd.Series(rng.choice(["gold", "silver", None], n, p=[0.4, 0.5, 0.1]), dtype=object),
        "visits": rng.poisson(3, n),
        "member": rng.random(n) < 0.5,
    })
    action = rng.choice(np.array(["a", "b", "c"]), n)
    effect = np.column_stack([np.zeros(n), 1.5 * (X["tier"] == "gold") - 0.5, 2.0 * (x > 0) - 1.0])
    y = rng.normal(size=n) + effect[np.arange(n), pd.Categorical(action, ["a", "b", "c"]).codes]
    return X, y, action, effect


def test_contract_on_a_frame() -> None:
    X, y, action, _ = small_log()
    est = PolicyLearner(actions=["a", "b", "c"], epsilon=0.1)
    with pytest.raises(NotFittedError):
        est.predict(X)
    params = est.get_params()
    assert est.fit(X, y, action=action, pscore=np.full(len(X), 1 / 3)) is est
    assert est.get_params() == params  # fit leaves the constructor's values alone
    assert not [k for k in vars(est) if not k.endswith("_") and k not in params]
    assert list(est.feature_names_in_) == list(X.columns) and est.n_features_in_ == 4
    first = est.action_dist(X)
    np.testing.assert_allclose(pickle.loads(pickle.dumps(est)).action_dist(X), first)
    twin = clone(est)
    assert not hasattr(twin, "coef_")
    np.testing.assert_allclose(twin.fit(X, y, action=action, pscore=np.full(len(X), 1 / 3)).action_dist(X), first)
    assert twin.set_params(epsilon=0.0) is twin and twin.epsilon == 0.0
    order = np.random.default_rng(0).permutation(len(X))
    np.testing.assert_allclose(est.action_dist(X.iloc[order]), first[order])


def test_learns_the_best_arm_per_context_from_every_kind_of_column() -> None:
    X, y, action, effect = small_log(6000)
    est = PolicyLearner(actions=["a", "b", "c"]).fit(X, y, action=action, pscore=np.full(len(X), 1 / 3))
    best = effect.argmax(axis=1)
    gap = np.sort(effect, axis=1)[:, -1] - np.sort(effect, axis=1)[:, -2]
    chosen = pd.Categorical(est.predict(X), ["a", "b", "c"]).codes
    # Clear cases (the true best arm wins by >= 0.5, the noise's sd is 1): chosen right in >= 90%.
    assert (chosen == best)[gap >= 0.5].mean() >= 0.9
    # New values: an unseen category, missing values where the fit had none, all handled.
    fresh = pd.DataFrame({"x": [1.0, -1.0], "tier": ["platinum", "gold"], "visits": [np.nan, 2.0],
                          "member": [True, False]})
    assert est.predict(fresh).tolist()[0] == "c"


def test_a_column_missing_in_every_row_of_a_fold_is_no_information() -> None:
    # Scores measured only for some customers (one fold's worth): the reward model must not fail on them.
    X, y, action, _ = small_log(600)
    X["score"] = np.where(np.arange(len(X)) < 300, np.nan, 1.0)
    est = PolicyLearner(actions=["a", "b", "c"], cv=2, random_state=0)
    est.fit(X, y, action=action, pscore=np.full(len(X), 1 / 3), groups=np.arange(len(X)) < 300)
    assert est.action_dist(X).shape == (len(X), 3)


def test_allowed_mask_costs_and_action_features() -> None:
    X, y, action, _ = small_log()
    n = len(X)
    allowed = np.ones((n, 3), bool)
    allowed[::2, 2] = False  # arm c unavailable on even rows, where the log never took it
    keep = allowed[np.arange(n), pd.Categorical(action, ["a", "b", "c"]).codes]
    pscore = np.where(np.arange(n) % 2 == 0, 1 / 2, 1 / 3)[keep]
    est = PolicyLearner(actions=["a", "b", "c"], epsilon=0.2).fit(
        X[keep], y[keep], action=action[keep], pscore=pscore, allowed=allowed[keep])
    dist = est.action_dist(X, allowed=allowed)
    assert (dist[~allowed] == 0).all() and np.allclose(dist.sum(axis=1), 1.0)
    assert set(est.predict(X.iloc[::2], allowed=allowed[::2])) <= {"a", "b"}
    # A cost on arm c above its largest gain removes it; a mapping names only the costly arm.
    costly = PolicyLearner(actions=["a", "b", "c"], action_costs={"c": 10.0}).fit(
        X, y, action=action, pscore=np.full(n, 1 / 3))
    assert "c" not in set(costly.predict(X)) and "c" in set(est.predict(X))
    # Shared action features: b and c each one feature, a none (the baseline), same decisions mostly.
    shared = PolicyLearner(actions=["a", "b", "c"], action_features=[[0, 0], [1, 0], [0, 1]]).fit(
        X, y, action=action, pscore=np.full(n, 1 / 3))
    free = PolicyLearner(actions=["a", "b", "c"]).fit(X, y, action=action, pscore=np.full(n, 1 / 3))
    assert (shared.predict(X) == free.predict(X)).mean() > 0.95


@pytest.mark.parametrize("scores", ["dr", "dm", "ips", "reward"])
def test_every_score_kind_learns(scores: str) -> None:
    X, y, action, effect = small_log(6000, seed=1)
    est = PolicyLearner(actions=["a", "b", "c"], scores=scores).fit(
        X, y, action=action, pscore=np.full(len(X), 1 / 3))
    chosen = pd.Categorical(est.predict(X), ["a", "b", "c"]).codes
    value = effect[np.arange(len(X)), chosen].mean()
    # Each beats the best single arm's true value by a clear margin (oracle ~ +0.98, best arm ~ +0.1).
    assert value > effect.mean(axis=0).max() + 0.4, value


def test_reward_scores_are_one_ridge_regression_per_action() -> None:
    from sklearn.linear_model import Ridge

    X, y, action, _ = small_log(3000, seed=2)
    est = PolicyLearner(actions=["a", "b", "c"], scores="reward", alpha=5.0).fit(
        X, y, action=action, pscore=np.full(len(X), 1 / 3))
    z = est.encoder_.transform(X)
    got = est.predict_reward(X)
    for k, arm in enumerate(["a", "b", "c"]):
        rows = action == arm
        # A T-learner: each arm's own ridge on its own rows (intercept free, the encoded columns penalised).
        ridge = Ridge(alpha=5.0).fit(z[rows], y[rows])
        np.testing.assert_allclose(got[:, k], ridge.predict(z), atol=1e-5)


def test_exploration_propensities_match_the_distribution() -> None:
    X, y, action, _ = small_log()
    est = PolicyLearner(actions=["a", "b", "c"], epsilon=0.3).fit(
        X, y, action=action, pscore=np.full(len(X), 1 / 3))
    dist = est.action_dist(X)
    d = est.decide(X, rng=np.random.default_rng(5))
    codes = pd.Categorical(d["action"], ["a", "b", "c"]).codes
    np.testing.assert_allclose(d["propensity"], dist[np.arange(len(X)), codes])
    assert d["greedy"].mean() == pytest.approx(0.7 + 0.3 / 3, abs=0.03)
    with pytest.raises(ValueError, match="rng: epsilon > 0"):
        est.decide(X)
    greedy = clone(est).set_params(epsilon=0.0).fit(X, y, action=action, pscore=np.full(len(X), 1 / 3))
    out = greedy.decide(X)
    assert (out["propensity"] == 1).all() and out["action"].tolist() == greedy.predict(X).tolist()


def test_groups_keep_customers_in_one_fold_and_fit_is_reproducible() -> None:
    X, y, action, _ = small_log()
    customers = np.repeat(np.arange(len(X) // 3), 3)
    kw: dict[str, Any] = {"action": action, "pscore": np.full(len(X), 1 / 3), "groups": customers}
    a = PolicyLearner(actions=["a", "b", "c"]).fit(X, y, **kw)
    b = PolicyLearner(actions=["a", "b", "c"]).fit(X, y, **kw)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    with pytest.raises(ValueError, match="groups: 1 groups, fewer than cv = 2"):
        PolicyLearner().fit(X, y, action=action, pscore=kw["pscore"], groups=np.zeros(len(X)))


# --------------------------------------------------------------------------- #
# Bad inputs: one message each, naming the input and the problem
# --------------------------------------------------------------------------- #

_X, _Y, _A, _ = small_log(60)
_P = np.full(60, 1 / 3)


@pytest.mark.parametrize(
    ("params", "fit", "message"),
    [
        ({}, {"y": None}, "requires y to be passed"),
        ({}, {"action": None}, "action: required"),
        ({}, {"pscore": None}, "pscore: required"),
        ({}, {"y": _Y[:10]}, "y: expected 60 rows like X, got 10"),
        ({}, {"y": np.where(np.arange(60) == 3, np.nan, _Y)}, "y: 1 rows are missing or not finite"),
        ({}, {"pscore": np.where(np.arange(60) < 2, 0.0, _P)}, r"pscore: 2 rows outside \(0, 1\]"),
        ({}, {"action": np.where(np.arange(60) == 0, None, _A)}, "action: 1 rows missing"),
        ({"actions": ["a", "b"]}, {}, r"action: \d+ rows have values not in actions, e.g. \['c'\]"),
        ({"actions": ["a", "a", "b"]}, {}, r"actions: duplicate values \['a'\]"),
        ({}, {"allowed": np.ones((60, 2), bool)}, r"allowed: expected shape \(n, n_actions\) = \(60, 3\)"),
        ({}, {"allowed": np.ones((60, 3))}, "allowed: expected booleans"),
        ({}, {"allowed": np.zeros((60, 3), bool)}, "allowed: 60 rows allow no action"),
        ({}, {"allowed": np.tile([True, True, False], (60, 1))}, r"allowed: the logged action is not allowed in \d+ rows"),
        ({"action_costs": [1.0, 2.0]}, {}, r"action_costs: expected 3 costs \(one per action\), got 2"),
        ({"action_costs": {"z": 1.0}}, {}, r"action_costs: \['z'\] are not actions"),
        ({"action_features": [[1.0], [2.0]]}, {}, r"action_features: expected 3 rows \(one per action\), got 2"),
        ({}, {"X": _X.assign(when=pd.Timestamp("2025-01-01"))}, "X: column 'when' has dtype datetime64"),
        ({}, {"X": _X.iloc[:0]}, "X: 0 rows"),
        ({"scores": "magic"}, {}, "scores"),
        ({"epsilon": 1.0}, {}, "epsilon"),
    ],
)
def test_bad_inputs(params: dict[str, Any], fit: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"X": _X, "y": _Y, "action": _A, "pscore": _P} | fit
    if "X" in fit and len(fit["X"]) == 0:
        args.update(y=[], action=[], pscore=[])
    with pytest.raises((ValueError, InvalidParameterError), match=message):
        PolicyLearner(**params).fit(args.pop("X"), args.pop("y"), **args)


def test_bad_inputs_when_deciding() -> None:
    est = PolicyLearner().fit(_X, _Y, action=_A, pscore=_P)
    with pytest.raises(ValueError, match="allowed: 1 rows allow no action"):
        est.predict(_X.head(2), allowed=np.array([[True, False, False], [False, False, False]]))
    with pytest.raises(ValueError, match="feature names"):
        est.predict(_X.rename(columns={"x": "y"}))


def _mixed_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "recency": np.where(rng.random(n) < 0.2, np.nan, rng.exponential(30.0, n)),
        "orders": rng.poisson(2.0, n),
        "flag": rng.random(n) < 0.5,
        "gone": np.full(n, np.nan),  # missing in every row: the imputer keeps it (at 0)
        "segment": pd.Series(rng.choice(["new", "loyal", "vip"], n), dtype=object),
        "stage": pd.Categorical(rng.choice(["a", "b"], n), categories=["a", "b", "c"]),
    })


@pytest.mark.parametrize("n_knots", [None, 4])
def test_deciding_encodes_exactly_as_the_fitted_transformer(n_knots: int | None) -> None:
    """The short path of deciding gives the ColumnTransformer's numbers bit for bit, unseen categories and
    missing values included, and hence the same decisions; other encoders take the transformer itself."""
    from cadence.policies.learner import _encode

    X = _mixed_frame(600, 0)
    y = np.random.default_rng(1).normal(size=600)
    learner = PolicyLearner(n_knots=n_knots).fit(X, y, action=np.arange(600) % 3, pscore=np.full(600, 1 / 3))
    new = _mixed_frame(300, 2)
    new.loc[:9, "segment"] = "unseen"
    new.loc[10:19, "segment"] = None
    new.loc[20:29, "recency"] = np.nan
    want = learner.encoder_.transform(new)
    got = _encode(learner.encoder_, new)
    assert got.dtype == np.float64 and got.shape == want.shape and got.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(learner.predict_reward(new), want @ learner.coef_[:-1] + learner.coef_[-1])
    # float32 numbers stay float32 in the transformer: the short path steps aside and gives its numbers.
    as32 = new.astype({"recency": np.float32})
    np.testing.assert_array_equal(_encode(learner.encoder_, as32), learner.encoder_.transform(as32))
