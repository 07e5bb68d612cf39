"""Uplift models (heterogeneous treatment effects) and their evaluation: Qini, AUUC, uplift at k.

For a binary treatment ``T`` (send vs hold, incentive vs none) randomised with
a known per-row propensity ``e(x) = P(T = 1 | x)`` (not necessarily 1/2, not
necessarily constant), the learners estimate the conditional effect

.. math::

    \\tau(x) = E[y \\mid x, T=1] - E[y \\mid x, T=0]

for a 0/1 outcome (conversion) or an amount (revenue):

* :class:`SLearner`: one outcome model on ``[x, T]``, plus ``T * x`` for
  linear bases (otherwise a linear model could not express any heterogeneity);
* :class:`TLearner`: one outcome model per arm;
* :class:`XLearner` (Künzel et al., 2019): the T-learner's models impute an
  effect for every row from the other arm, one regression of the imputed
  effects per arm, blended as ``e(x) tau_0(x) + (1 - e(x)) tau_1(x)``;
* :class:`ClassTransformation`: regression of the transformed outcome
  ``Z = y (T - e) / (e (1 - e))`` on ``x``. ``E[Z | x] = tau(x)`` for any
  known propensity and any outcome (Athey & Imbens, 2016); for ``e = 1/2``
  and a 0/1 outcome it has the conditional mean of ``2 Z' - 1``, with
  ``Z' = y T + (1 - y)(1 - T)`` the class variable of Jaskowski &
  Jaroszewicz (2012).

Why hand-written: scikit-uplift was last released in 2022 and breaks with
scikit-learn >= 1.5, and causalml pins an old numpy and does not install
cleanly next to our locked stack. Each learner follows the scikit-learn
contract (the constructor only stores its arguments, ``fit`` returns
``self``, fitted attributes end in ``_``, ``get_params``/``set_params``/
``clone``/pickle work) and takes ``treatment``, ``propensity`` and
``sample_weight`` as extra ``fit`` arguments, so ``parametrize_with_checks``
cannot drive them; ``tests/models/test_uplift.py`` checks the contract by hand.

The default outcome model is a standardised :class:`~sklearn.linear_model.LogisticRegression`
for a 0/1 outcome and a standardised :class:`~sklearn.linear_model.LinearRegression`
otherwise (the type is read from ``y``): fast, stable on the few thousand rows
a stage has, and with the S-learner's interactions able to express effects
that vary with ``x``. Any scikit-learn estimator can be passed as ``base``
(it is cloned); a classifier's probability of class 1 is its outcome.

Evaluation (:func:`qini_curve`, :func:`uplift_curve`, :func:`qini_coefficient`,
:func:`auuc`, :func:`uplift_at_k`, :func:`plot_qini`) inverse-propensity
weights both arms, so non-constant propensities are handled, and treats tied
scores as one block, so row order never matters. The **oracle** is the same
call with the true effect as the score (see :func:`qini_coefficient`).

References
----------
.. [1] Künzel, S. R., Sekhon, J. S., Bickel, P. J. & Yu, B. (2019).
   Metalearners for estimating heterogeneous treatment effects using machine
   learning. *PNAS* 116(10), 4156-4165.
.. [2] Athey, S. & Imbens, G. W. (2016). Recursive partitioning for
   heterogeneous causal effects. *PNAS* 113(27), 7353-7360.
.. [3] Jaskowski, M. & Jaroszewicz, S. (2012). Uplift modeling for clinical
   trial data. *ICML Workshop on Clinical Data Analysis*.
.. [4] Radcliffe, N. J. (2007). Using control groups to target on predicted
   lift. *Direct Marketing Analytics Journal* 1, 14-21.
.. [5] Rzepakowski, P. & Jaroszewicz, S. (2012). Decision trees for uplift
   modeling with single and multiple treatments. *Knowledge and Information
   Systems* 32, 303-327.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(4000, 2)); t = rng.binomial(1, 0.3, 4000)
>>> tau = 0.2 * (x[:, 0] > 0)
>>> y = rng.binomial(1, 0.2 + t * tau).astype(float)
>>> m = TLearner().fit(x, t, y, propensity=np.full(4000, 0.3))
>>> bool(np.corrcoef(m.predict(x), tau)[0, 1] > 0.5)
True
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, clone, is_classifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = [
    "ClassTransformation",
    "SLearner",
    "TLearner",
    "XLearner",
    "auuc",
    "plot_qini",
    "qini_coefficient",
    "qini_curve",
    "uplift_at_k",
    "uplift_curve",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


# --------------------------------------------------------------------------- validation
def _vector(values: ArrayLike, name: str, n: int, of: str) -> FloatArray:
    arr = np.asarray(values, dtype=float)
    if arr.shape != (n,):
        raise ValueError(f"{name}: expected {n} values (one per {of}), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    return arr


def _treatment(treatment: ArrayLike, n: int, of: str) -> IntArray:
    t = np.asarray(treatment)
    if t.shape != (n,):
        raise ValueError(f"treatment: expected {n} values (one per {of}), got shape {t.shape}")
    if not np.isin(t, [0, 1]).all():
        raise ValueError("treatment: expected 0/1 values (1 = treated)")
    t = t.astype(np.int64)
    if t.min() == t.max():
        raise ValueError("treatment: only one arm present; an effect needs treated and control rows")
    return t


def _propensity(propensity: ArrayLike | None, t: IntArray, of: str) -> FloatArray:
    n = len(t)
    if propensity is None:
        # Randomised with one probability for everybody: the treated share estimates it.
        return np.full(n, t.mean())
    e = np.asarray(propensity, dtype=float)
    if e.ndim == 0:
        e = np.full(n, float(e))
    if e.shape != (n,):
        raise ValueError(f"propensity: expected {n} values (one per {of}), got shape {e.shape}")
    if not ((e > 0) & (e < 1)).all():  # also rejects NaN
        raise ValueError("propensity: expected values strictly between 0 and 1")
    return e


def _sample_weight(sample_weight: ArrayLike | None, n: int) -> FloatArray | None:
    if sample_weight is None:
        return None
    w = _vector(sample_weight, "sample_weight", n, "row of X")
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError("sample_weight: expected non-negative weights with a positive sum")
    return w


def _check_base(base: Any, name: str) -> None:
    if base is not None and not (hasattr(base, "fit") and hasattr(base, "get_params")):
        raise ValueError(f"{name}: expected a scikit-learn estimator or None, got {base!r}")


def _is_binary(y: FloatArray) -> bool:
    return bool(np.isin(y, [0.0, 1.0]).all())


# --------------------------------------------------------------------------- outcome models
def _default_base(binary: bool) -> Any:
    # Linear models: fast, stable on a few thousand rows per arm, no threads to tune.
    if binary:
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return make_pipeline(StandardScaler(), LinearRegression())


def _is_linear(base: Any) -> bool:
    final = base.steps[-1][1] if isinstance(base, Pipeline) else base
    return type(final).__module__.startswith("sklearn.linear_model")


class _Constant:
    """The outcome model of an arm whose 0/1 outcome never varies (a classifier cannot fit it)."""

    def __init__(self, value: float) -> None:
        self.value = value


def _fit_model(base: Any, x: FloatArray, y: FloatArray, w: FloatArray | None, name: str) -> Any:
    model = clone(base)
    if is_classifier(model):
        if not _is_binary(y):
            raise ValueError(f"{name}: a classifier needs a 0/1 outcome; pass a regressor for amounts")
        if np.unique(y).size < 2:
            return _Constant(float(y[0]))
    if w is None:
        return model.fit(x, y)
    key = f"{model.steps[-1][0]}__sample_weight" if isinstance(model, Pipeline) else "sample_weight"
    return model.fit(x, y, **{key: w})


def _predict_model(model: Any, x: FloatArray) -> FloatArray:
    if isinstance(model, _Constant):
        return np.full(len(x), model.value)
    if is_classifier(model):
        proba = np.asarray(model.predict_proba(x), dtype=float)
        return proba[:, list(model.classes_).index(1)]
    return np.asarray(model.predict(x), dtype=float).reshape(len(x))


# --------------------------------------------------------------------------- learners
class _OutcomeLearner(BaseEstimator):  # type: ignore[misc]
    """Learners with two outcome predictions: the effect is their difference."""

    def predict_outcomes(self, X: ArrayLike) -> tuple[FloatArray, FloatArray]:
        raise NotImplementedError

    def predict(self, X: ArrayLike) -> FloatArray:
        """Estimated effect ``tau(x) = mu1(x) - mu0(x)``, shape ``(n,)``."""
        mu0, mu1 = self.predict_outcomes(X)
        return mu1 - mu0


class SLearner(_OutcomeLearner):
    """One outcome model on ``[x, T]`` (plus ``T * x`` for linear bases).

    Parameters
    ----------
    base : scikit-learn estimator, optional
        Outcome model. A classifier (its probability of class 1 is the
        outcome) needs a 0/1 ``y``; a regressor takes any ``y``. Default:
        standardised logistic regression for a 0/1 ``y``, standardised linear
        regression otherwise. For bases from :mod:`sklearn.linear_model` (also
        as the last step of a Pipeline) the design gets the interactions
        ``T * x``, without which the effect could not vary with ``x``.

    Attributes
    ----------
    model_ : fitted estimator
        The outcome model on the design matrix.
    interactions_ : bool
        Whether the design includes ``T * x``.
    n_features_in_ : int
        Number of features of ``X``.

    Examples
    --------
    >>> x = [[0.0], [1.0], [0.0], [1.0], [0.0], [1.0]]
    >>> m = SLearner().fit(x, [1, 1, 1, 0, 0, 0], [3.0, 5.0, 3.0, 1.0, 1.0, 1.0])
    >>> m.predict([[0.0], [1.0]]).round(3).tolist()
    [2.0, 4.0]
    """

    def __init__(self, base: Any = None) -> None:
        self.base = base

    @staticmethod
    def _design(x: FloatArray, t: FloatArray, interactions: bool) -> FloatArray:
        cols = [x, t[:, None]] + ([x * t[:, None]] if interactions else [])
        return np.hstack(cols)

    def fit(self, X: ArrayLike, treatment: ArrayLike, y: ArrayLike, propensity: ArrayLike | None = None,
            sample_weight: ArrayLike | None = None) -> SLearner:
        """Fit the outcome model.

        Parameters
        ----------
        X : array-like or DataFrame, shape (n, d)
            Numeric features.
        treatment : array-like of 0/1, shape (n,)
        y : array-like of float, shape (n,)
            0/1 outcomes or amounts.
        propensity : array-like, shape (n,) or scalar, optional
            ``P(T = 1 | x)``; validated but not needed (the outcome model
            conditions on ``x``, so randomisation makes it unbiased).
        sample_weight : array-like, shape (n,), optional
            Passed to the base's ``fit``.
        """
        _check_base(self.base, "base")
        x = validate_data(self, X, dtype=float, ensure_all_finite="allow-nan")
        n = x.shape[0]
        t = _treatment(treatment, n, "row of X")
        yy = _vector(y, "y", n, "row of X")
        _propensity(propensity, t, "row of X")
        w = _sample_weight(sample_weight, n)
        base = self.base if self.base is not None else _default_base(_is_binary(yy))
        self.interactions_ = _is_linear(base)
        self.model_ = _fit_model(base, self._design(x, t.astype(float), self.interactions_), yy, w, "base")
        return self

    def predict_outcomes(self, X: ArrayLike) -> tuple[FloatArray, FloatArray]:
        """``(mu0, mu1) = (E[y | x, T=0], E[y | x, T=1])``, each of shape ``(n,)``."""
        check_is_fitted(self, "model_")
        x = validate_data(self, X, dtype=float, ensure_all_finite="allow-nan", reset=False)
        n = x.shape[0]
        return (_predict_model(self.model_, self._design(x, np.zeros(n), self.interactions_)),
                _predict_model(self.model_, self._design(x, np.ones(n), self.interactions_)))


class TLearner(_OutcomeLearner):
    """One outcome model per arm; the effect is the difference of their predictions.

    Parameters
    ----------
    base : scikit-learn estimator, optional
        Outcome model, cloned per arm (see :class:`SLearner`).

    Attributes
    ----------
    models_ : list of two fitted estimators
        Control (index 0) and treated (index 1) outcome models.
    n_features_in_ : int

    Examples
    --------
    >>> x = [[0.0], [1.0], [0.0], [1.0], [0.0], [1.0]]
    >>> m = TLearner().fit(x, [1, 1, 1, 0, 0, 0], [3.0, 5.0, 3.0, 1.0, 1.0, 1.0])
    >>> [v.round(3).tolist() for v in m.predict_outcomes([[1.0]])]
    [[1.0], [5.0]]
    """

    def __init__(self, base: Any = None) -> None:
        self.base = base

    def fit(self, X: ArrayLike, treatment: ArrayLike, y: ArrayLike, propensity: ArrayLike | None = None,
            sample_weight: ArrayLike | None = None) -> TLearner:
        """Fit the control and treated models (arguments as in :meth:`SLearner.fit`)."""
        _check_base(self.base, "base")
        x = validate_data(self, X, dtype=float, ensure_all_finite="allow-nan")
        n = x.shape[0]
        t = _treatment(treatment, n, "row of X")
        yy = _vector(y, "y", n, "row of X")
        _propensity(propensity, t, "row of X")
        w = _sample_weight(sample_weight, n)
        base = self.base if self.base is not None else _default_base(_is_binary(yy))
        self.models_ = [_fit_model(base, x[t == a], yy[t == a], None if w is None else w[t == a], "base")
                        for a in (0, 1)]
        return self

    def predict_outcomes(self, X: ArrayLike) -> tuple[FloatArray, FloatArray]:
        """``(mu0, mu1) = (E[y | x, T=0], E[y | x, T=1])``, each of shape ``(n,)``."""
        check_is_fitted(self, "models_")
        x = validate_data(self, X, dtype=float, ensure_all_finite="allow-nan", reset=False)
        return _predict_model(self.models_[0], x), _predict_model(self.models_[1], x)


class XLearner(BaseEstimator):  # type: ignore[misc]
    """Künzel et al. (2019): T-learner first stage, imputed effects regressed per arm.

    Stage 1 fits ``mu0``, ``mu1`` as :class:`TLearner`. Stage 2 regresses the
    imputed effects ``D1 = y - mu0(x)`` on the treated and ``D0 = mu1(x) - y``
    on the controls, giving ``tau_1`` and ``tau_0``, and returns

    .. math:: \\hat\\tau(x) = e(x)\\, \\tau_0(x) + (1 - e(x))\\, \\tau_1(x),

    which leans on the arm with more rows (``tau_1`` borrows its baseline
    from the larger control arm when few are treated).

    Parameters
    ----------
    base : scikit-learn estimator, optional
        First-stage outcome model (see :class:`SLearner`).
    effect_base : scikit-learn regressor, optional
        Second-stage effect model. Default: standardised linear regression.

    Attributes
    ----------
    first_ : TLearner
        The first stage.
    tau0_, tau1_ : fitted regressors
        Effect models fitted on the control and on the treated rows.
    propensity_model_ : float or fitted Pipeline
        The blend weight ``e(x)`` at :meth:`predict` when no propensity is
        passed there: the constant propensity, or a standardised logistic
        regression fitted to the given per-row propensities (their logit is
        projected on ``x``, a smooth stand-in; any weight in [0, 1] keeps the
        estimator consistent, the propensity is the efficient choice).
    n_features_in_ : int

    Examples
    --------
    >>> x = [[0.0], [1.0], [0.0], [1.0], [0.0], [1.0]]
    >>> m = XLearner().fit(x, [1, 1, 1, 0, 0, 0], [3.0, 5.0, 3.0, 1.0, 1.0, 1.0])
    >>> m.predict([[0.0], [1.0]]).round(3).tolist()
    [2.0, 4.0]
    """

    def __init__(self, base: Any = None, effect_base: Any = None) -> None:
        self.base = base
        self.effect_base = effect_base

    def fit(self, X: ArrayLike, treatment: ArrayLike, y: ArrayLike, propensity: ArrayLike | None = None,
            sample_weight: ArrayLike | None = None) -> XLearner:
        """Fit both stages and the propensity used to blend them (arguments as in :meth:`SLearner.fit`)."""
        _check_base(self.base, "base")
        _check_base(self.effect_base, "effect_base")
        x = validate_data(self, X, dtype=float, ensure_all_finite="allow-nan")
        n = x.shape[0]
        t = _treatment(treatment, n, "row of X")
        yy = _vector(y, "y", n, "row of X")
        e = _propensity(propensity, t, "row of X")
        w = _sample_weight(sample_weight, n)
        self.first_ = TLearner(self.base).fit(x, t, yy, sample_weight=w)
        mu0, mu1 = self.first_.predict_outcomes(x)
        eff = self.effect_base if self.effect_base is not None else _default_base(False)
        if is_classifier(eff):
            raise ValueError("effect_base: expected a regressor (imputed effects are not 0/1)")
        treated, control = t == 1, t == 0
        self.tau1_ = _fit_model(eff, x[treated], yy[treated] - mu0[treated],
                                None if w is None else w[treated], "effect_base")
        self.tau0_ = _fit_model(eff, x[control], mu1[control] - yy[control],
                                None if w is None else w[control], "effect_base")
        if np.ptp(e) == 0:
            self.propensity_model_: Any = float(e[0])
        else:
            # Cross-entropy against the known propensities: each row once as class 1 with
            # weight e and once as class 0 with weight 1 - e (less noisy than fitting T).
            pw = np.concatenate([e, 1 - e]) * (1.0 if w is None else np.tile(w, 2))
            self.propensity_model_ = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(
                np.vstack([x, x]), np.repeat([1, 0], n), logisticregression__sample_weight=pw)
        return self

    def predict(self, X: ArrayLike, propensity: ArrayLike | None = None) -> FloatArray:
        """Estimated effect per row, shape ``(n,)``.

        ``propensity`` (optional, per row or scalar) overrides
        :attr:`propensity_model_` as the blend weight, e.g. on logged rows
        whose propensity is known.
        """
        check_is_fitted(self, "tau1_")
        x = validate_data(self, X, dtype=float, ensure_all_finite="allow-nan", reset=False)
        n = x.shape[0]
        if propensity is not None:
            g = np.asarray(propensity, dtype=float)
            g = np.full(n, float(g)) if g.ndim == 0 else g
            if g.shape != (n,):
                raise ValueError(f"propensity: expected {n} values (one per row of X), got shape {g.shape}")
            if not ((g >= 0) & (g <= 1)).all():
                raise ValueError("propensity: expected values between 0 and 1")
        elif isinstance(self.propensity_model_, float):
            g = np.full(n, self.propensity_model_)
        else:
            g = self.propensity_model_.predict_proba(x)[:, 1]
        return np.asarray(g * _predict_model(self.tau0_, x) + (1 - g) * _predict_model(self.tau1_, x))

    def predict_outcomes(self, X: ArrayLike) -> tuple[FloatArray, FloatArray]:
        """First-stage ``(mu0, mu1)``; their difference is the T-learner's effect, not :meth:`predict`."""
        check_is_fitted(self, "first_")
        validate_data(self, X, dtype=float, ensure_all_finite="allow-nan", reset=False)
        return self.first_.predict_outcomes(np.asarray(X, dtype=float))


class ClassTransformation(BaseEstimator):  # type: ignore[misc]
    """Regression of the transformed outcome ``Z = y (T - e) / (e (1 - e))`` on ``x``.

    ``E[Z | x] = e mu1 / e - (1 - e) mu0 / (1 - e) = tau(x)`` when ``e`` is the
    true propensity, so any regressor of ``Z`` estimates the effect. ``Z`` is
    noisy (``|Z| = |y| / e`` or ``|y| / (1 - e)``), more so for propensities
    near 0 or 1; prefer a simple or regularised ``base``.

    Parameters
    ----------
    base : scikit-learn regressor, optional
        Default: standardised linear regression (also for a 0/1 ``y``:
        ``Z`` is not 0/1).

    Attributes
    ----------
    model_ : fitted regressor
    n_features_in_ : int

    Examples
    --------
    >>> x = [[0.0], [1.0], [0.0], [1.0]]
    >>> m = ClassTransformation().fit(x, [1, 1, 0, 0], [1.0, 1.0, 0.0, 1.0])
    >>> m.predict([[0.0], [1.0]]).round(3).tolist()
    [1.0, 0.0]
    """

    def __init__(self, base: Any = None) -> None:
        self.base = base

    def fit(self, X: ArrayLike, treatment: ArrayLike, y: ArrayLike, propensity: ArrayLike | None = None,
            sample_weight: ArrayLike | None = None) -> ClassTransformation:
        """Fit the regression of ``Z`` (arguments as in :meth:`SLearner.fit`; the propensity matters here)."""
        _check_base(self.base, "base")
        if self.base is not None and is_classifier(self.base):
            raise ValueError("base: expected a regressor (the transformed outcome is not 0/1)")
        x = validate_data(self, X, dtype=float, ensure_all_finite="allow-nan")
        n = x.shape[0]
        t = _treatment(treatment, n, "row of X")
        yy = _vector(y, "y", n, "row of X")
        e = _propensity(propensity, t, "row of X")
        w = _sample_weight(sample_weight, n)
        z = yy * (t - e) / (e * (1 - e))
        base = self.base if self.base is not None else _default_base(False)
        self.model_ = _fit_model(base, x, z, w, "base")
        return self

    def predict(self, X: ArrayLike) -> FloatArray:
        """Estimated effect per row, shape ``(n,)``."""
        check_is_fitted(self, "model_")
        x = validate_data(self, X, dtype=float, ensure_all_finite="allow-nan", reset=False)
        return _predict_model(self.model_, x)


# --------------------------------------------------------------------------- evaluation
def _eval_inputs(y: ArrayLike, treatment: ArrayLike, uplift_score: ArrayLike,
                 propensity: ArrayLike | None) -> tuple[FloatArray, IntArray, FloatArray, FloatArray]:
    yy = np.asarray(y, dtype=float)
    if yy.ndim != 1 or len(yy) == 0:
        raise ValueError(f"y: expected a non-empty 1-d array, got shape {yy.shape}")
    n = len(yy)
    yy = _vector(yy, "y", n, "entry of y")
    t = _treatment(treatment, n, "entry of y")
    s = _vector(uplift_score, "uplift_score", n, "entry of y")
    e = _propensity(propensity, t, "entry of y")
    return yy, t, s, e


def _cumulative(y: ArrayLike, treatment: ArrayLike, uplift_score: ArrayLike,
                propensity: ArrayLike | None) -> dict[str, FloatArray]:
    """Cumulative IPW sums over tie blocks of the score, best block first, with a leading 0."""
    yy, t, s, e = _eval_inputs(y, treatment, uplift_score, propensity)
    # Inverse-propensity weights: each arm then stands for the whole population.
    w1 = np.where(t == 1, 1 / e, 0.0)
    w0 = np.where(t == 0, 1 / (1 - e), 0.0)
    # Equal scores form one block (one step of the curve), so the order of tied
    # rows never matters; the curve is linear across the block.
    uniq, block = np.unique(-s, return_inverse=True)
    k = len(uniq)

    def cum(v: FloatArray) -> FloatArray:
        return np.concatenate([[0.0], np.cumsum(np.bincount(block, weights=v, minlength=k))])

    return {"n": cum(np.ones_like(yy)), "y1": cum(w1 * yy), "n1": cum(w1),
            "y0": cum(w0 * yy), "n0": cum(w0), "total": np.array([float(len(yy))])}


def _ratio(a: FloatArray, b: FloatArray) -> FloatArray:
    # Convention (as scikit-uplift): an empty arm contributes 0 until it has rows.
    return np.divide(a, b, out=np.zeros_like(a), where=b > 0)


def qini_curve(y: ArrayLike, treatment: ArrayLike, uplift_score: ArrayLike,
               propensity: ArrayLike | None = None) -> pd.DataFrame:
    """Qini curve: incremental outcomes per population member from targeting the best-scored share.

    With rows sorted by descending score and inverse-propensity weights
    ``w = T / e + (1 - T) / (1 - e)``, over the targeted share ``f``

    .. math:: \\mathrm{qini}(f) = \\frac{1}{n}\\Big(Y_1(f) - Y_0(f)\\,\\frac{N_1(f)}{N_0(f)}\\Big),

    where ``Y_a`` and ``N_a`` are the weighted outcome sums and weights of arm
    ``a`` (Radcliffe's form; the ratio term is 0 before the first control).
    Dividing by the population size ``n`` makes curves of different sizes
    comparable. Rows with equal scores form one step (the cumulative sums are
    averaged over their orderings), so row order never matters.

    Parameters
    ----------
    y : array-like, shape (n,)
        Outcomes (0/1 or amounts).
    treatment : array-like of 0/1, shape (n,)
    uplift_score : array-like, shape (n,)
        Higher = target first.
    propensity : array-like, shape (n,) or scalar, optional
        ``P(T = 1 | x)`` per row; default the treated share.

    Returns
    -------
    DataFrame
        ``fraction`` (0 to 1, from 0, one row per distinct score plus the
        origin) and ``qini``.

    Examples
    --------
    >>> qini_curve([1, 0, 0, 0], [1, 1, 0, 0], [0.9, 0.1, 0.8, 0.2])["qini"].tolist()
    [0.0, 0.5, 0.5, 0.5, 0.5]
    """
    c = _cumulative(y, treatment, uplift_score, propensity)
    n = c["total"][0]
    qini = (c["y1"] - c["y0"] * _ratio(c["n1"], c["n0"])) / n
    return pd.DataFrame({"fraction": c["n"] / n, "qini": qini})


def uplift_curve(y: ArrayLike, treatment: ArrayLike, uplift_score: ArrayLike,
                 propensity: ArrayLike | None = None) -> pd.DataFrame:
    """Uplift (gain) curve: the targeted share's uplift times the share.

    .. math:: \\mathrm{gain}(f) = f \\Big(\\frac{Y_1(f)}{N_1(f)} - \\frac{Y_0(f)}{N_0(f)}\\Big)

    with the weighted sums of :func:`qini_curve` (an arm's mean is 0 before its
    first row). It estimates the same quantity as the Qini curve, scaled by the
    targeted count instead of the weighted treated count (Rzepakowski &
    Jaroszewicz, 2012). Columns ``fraction`` and ``gain``.

    Examples
    --------
    >>> uplift_curve([1, 0, 1, 0], [1, 0, 0, 1], [4, 3, 2, 1])["gain"].round(3).tolist()
    [0.0, 0.25, 0.5, 0.375, 0.0]
    """
    c = _cumulative(y, treatment, uplift_score, propensity)
    frac = c["n"] / c["total"][0]
    gain = frac * (_ratio(c["y1"], c["n1"]) - _ratio(c["y0"], c["n0"]))
    return pd.DataFrame({"fraction": frac, "gain": gain})


def _area_over_random(curve: pd.DataFrame, col: str) -> float:
    f, v = curve["fraction"].to_numpy(), curve[col].to_numpy()
    return float(np.trapezoid(v - v[-1] * f, f))


def qini_coefficient(y: ArrayLike, treatment: ArrayLike, uplift_score: ArrayLike,
                     propensity: ArrayLike | None = None) -> float:
    """Area between the Qini curve and the random-targeting line (0 = random).

    The random line runs from the origin to the curve's end (targeting
    everyone), so a constant score scores exactly 0. The area is in outcome
    units per population member (the curve is), comparable across data sets of
    different sizes; it is *not* divided by a "perfect model" area, which for
    noisy outcomes mostly measures the noise. For a relative figure divide by
    the oracle's coefficient: the same call with the **true effect** as the
    score, available on simulated data.

    Examples
    --------
    >>> round(qini_coefficient([1, 0, 0, 0], [1, 1, 0, 0], [0.9, 0.1, 0.8, 0.2]), 4)
    0.1875

    The oracle ranks by the true effect; a model sits between it and random:

    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> x = rng.normal(size=(20000, 1)); t = rng.binomial(1, 0.3, 20000)
    >>> tau = 0.1 * (x[:, 0] > 0)
    >>> y = rng.binomial(1, 0.1 + t * tau).astype(float)
    >>> oracle = qini_coefficient(y, t, tau, propensity=0.3)
    >>> model = qini_coefficient(y, t, x[:, 0] + rng.normal(size=20000), propensity=0.3)
    >>> bool(oracle > model > 0)
    True
    """
    return _area_over_random(qini_curve(y, treatment, uplift_score, propensity), "qini")


def auuc(y: ArrayLike, treatment: ArrayLike, uplift_score: ArrayLike, propensity: ArrayLike | None = None) -> float:
    """Area between the uplift (gain) curve and its random line (0 = random), as :func:`qini_coefficient`.

    Examples
    --------
    >>> round(auuc([1, 0, 1, 0], [1, 0, 0, 1], [4, 3, 2, 1]), 5)
    0.28125
    """
    return _area_over_random(uplift_curve(y, treatment, uplift_score, propensity), "gain")


def uplift_at_k(y: ArrayLike, treatment: ArrayLike, uplift_score: ArrayLike, k: float = 0.3,
                propensity: ArrayLike | None = None) -> float:
    """Weighted mean outcome of the treated minus the controls among the best-scored ``k`` share.

    The top share holds ``k * n`` rows: rows tied with the last one admitted
    enter with an equal fractional weight, so row order never matters. Means
    are inverse-propensity weighted (Hajek). NaN when an arm has no row in the
    top share.

    Examples
    --------
    >>> uplift_at_k([1, 0, 1, 0], [1, 0, 1, 0], [4, 3, 2, 1], k=0.5)
    1.0
    >>> uplift_at_k([1, 0, 1, 0], [1, 0, 0, 1], [4, 3, 3, 1], k=0.5)  # half of each tied row
    0.5
    """
    if not 0 < k <= 1:
        raise ValueError(f"k: expected a share in (0, 1], got {k}")
    yy, t, s, e = _eval_inputs(y, treatment, uplift_score, propensity)
    slots = k * len(s)
    cutoff = np.sort(s)[::-1][int(np.ceil(slots - 1e-9)) - 1]  # 0.3 * 10 is 3.0000000000000004
    above, tied = s > cutoff, s == cutoff
    share = np.where(above, 1.0, np.where(tied, (slots - above.sum()) / tied.sum(), 0.0))
    w1, w0 = share * (t == 1) / e, share * (t == 0) / (1 - e)
    if w1.sum() == 0 or w0.sum() == 0:
        return float("nan")
    return float((w1 * yy).sum() / w1.sum() - (w0 * yy).sum() / w0.sum())


def plot_qini(curves: dict[str, pd.DataFrame], title: str = "Qini curves") -> go.Figure:
    """One line per named :func:`qini_curve`, plus random targeting (dashed).

    Curves of one data set share their end point, hence one random line;
    curves that end differently (other rows) get one random line each. Long
    curves are drawn on a 1,001-point grid of ``fraction``.

    Examples
    --------
    >>> c = qini_curve([1, 0, 0, 0], [1, 1, 0, 0], [0.9, 0.1, 0.8, 0.2])
    >>> [tr.name for tr in plot_qini({"model": c, "oracle": c}).data]
    ['random', 'model', 'oracle']
    """
    fig = go.Figure()
    ends = {name: float(c["qini"].iloc[-1]) for name, c in curves.items()}
    same = len(ends) > 0 and np.allclose(list(ends.values()), next(iter(ends.values())))
    randoms = {"random": next(iter(ends.values()))} if same else {f"random ({k})": v for k, v in ends.items()}
    for name, end in randoms.items():
        fig.add_trace(go.Scatter(x=[0.0, 1.0], y=[0.0, end], mode="lines", name=name,
                                 line={"dash": "dash", "color": "grey"}))
    for name, c in curves.items():
        f, q = c["fraction"].to_numpy(), c["qini"].to_numpy()
        if len(f) > 2000:  # keeps exported HTML small; the curve is piecewise linear anyway
            grid = np.linspace(0.0, 1.0, 1001)
            f, q = grid, np.interp(grid, f, q)
        fig.add_trace(go.Scatter(x=f, y=q, mode="lines", name=name))
    fig.update_layout(title=title, xaxis_title="share targeted (best scores first)",
                      yaxis_title="incremental outcomes per customer", xaxis_tickformat=".0%")
    return fig
