"""Uplift models (heterogeneous treatment effects) and their evaluation: Qini, AUUC, uplift at k.

For a binary treatment ``T`` (send vs hold, incentive vs none) randomised with
a known per-row propensity ``e(x) = P(T = 1 | x)``, the learners estimate the
effect ``tau(x) = E[y | x, T=1] - E[y | x, T=0]``:

* :class:`SLearner`: one outcome model on ``[x, T, T * x]``;
* :class:`TLearner`: one outcome model per arm;
* :class:`XLearner` (Künzel et al., 2019): imputed effects from the other
  arm's model, regressed on ``x`` per arm, blended with the propensity;
* :class:`ClassTransformation`: regression of the transformed outcome
  ``Z = y (T - e) / (e (1 - e))`` on ``x``, whose conditional mean is
  ``tau(x)`` for any known propensity (Athey & Imbens, 2016); with ``e = 1/2``
  and binary ``y`` it is Jaskowski & Jaroszewicz's class transformation.

They are written here because the maintained options do not fit: scikit-uplift
was last released in 2022 and breaks with scikit-learn >= 1.5, and causalml
pins an old numpy and does not install cleanly. Each follows the
scikit-learn contract (``fit`` returns self, fitted attributes end in ``_``,
``get_params``/``clone`` work), taking ``treatment`` and ``propensity`` as
extra ``fit`` arguments.

Evaluation works on randomised data with non-constant propensities by
inverse-propensity weighting the two arms: :func:`qini_curve`,
:func:`uplift_curve`, :func:`qini_coefficient`, :func:`auuc`,
:func:`uplift_at_k`, :func:`plot_qini`. The **oracle** Qini is the same
function called with the true effect as the score.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(4000, 2)); t = rng.binomial(1, 0.5, 4000)
>>> tau = 0.2 * (x[:, 0] > 0)
>>> y = rng.binomial(1, 0.2 + t * tau).astype(float)
>>> m = TLearner().fit(x, t, y)
>>> bool(np.corrcoef(m.predict(x), tau)[0, 1] > 0.5)
True
>>> bool(qini_coefficient(y, t, tau) > qini_coefficient(y, t, rng.random(4000)))   # the oracle beats noise
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
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

FloatArray = NDArray[np.float64]


# --------------------------------------------------------------------------- inputs
def _inputs(X: ArrayLike, treatment: ArrayLike, y: ArrayLike | None = None,
            propensity: ArrayLike | None = None) -> tuple[FloatArray, NDArray[np.int64], FloatArray, FloatArray]:
    x = np.asarray(X, dtype=float)
    if x.ndim != 2:
        raise ValueError(f"X: expected a 2-d array (n, d), got shape {x.shape}")
    n = x.shape[0]
    t = np.asarray(treatment)
    if t.shape != (n,):
        raise ValueError(f"treatment: expected {n} values like X, got shape {t.shape}")
    if not np.isin(t, [0, 1]).all():
        raise ValueError("treatment: expected 0/1 values")
    t = t.astype(np.int64)
    if t.min() == t.max():
        raise ValueError("treatment: only one arm present; an effect needs treated and control rows")
    yy = np.zeros(n) if y is None else np.asarray(y, dtype=float)
    if yy.shape != (n,):
        raise ValueError(f"y: expected {n} values like X, got shape {yy.shape}")
    if not np.isfinite(yy).all():
        raise ValueError("y: non-finite values")
    if propensity is None:
        e = np.full(n, t.mean())
    else:
        e = np.asarray(propensity, dtype=float)
        if e.shape == ():
            e = np.full(n, float(e))
        if e.shape != (n,):
            raise ValueError(f"propensity: expected {n} values like X, got shape {e.shape}")
        if not ((e > 0) & (e < 1)).all():
            raise ValueError("propensity: expected values strictly between 0 and 1")
    return x, t, yy, e


def _binary(y: FloatArray) -> bool:
    return bool(np.isin(y, [0.0, 1.0]).all())


def _default_base(binary: bool) -> Any:
    # Regularised linear models: fast, stable on small per-stage samples, and the
    # S-learner's interaction columns let them express heterogeneity.
    if binary:
        return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
    return make_pipeline(StandardScaler(), LinearRegression())


def _fit_outcome(base: Any, x: FloatArray, y: FloatArray, w: FloatArray | None) -> Any:
    model = clone(base)
    if is_classifier(model) and not _binary(y):
        raise ValueError("base: a classifier needs a 0/1 outcome; give a regressor for amounts")
    if is_classifier(model) and np.unique(y).size < 2:
        return _Constant(float(y.mean()))
    kw = {}
    if w is not None:
        last = model.steps[-1][0] if hasattr(model, "steps") else None
        kw = {f"{last}__sample_weight" if last else "sample_weight": w}
    return model.fit(x, y, **kw)


class _Constant:
    """An outcome model for an arm whose outcome never varies."""

    def __init__(self, value: float) -> None:
        self.value = value


def _predict(model: Any, x: FloatArray) -> FloatArray:
    if isinstance(model, _Constant):
        return np.full(len(x), model.value)
    if is_classifier(model):
        proba = model.predict_proba(x)
        return np.asarray(proba[:, list(model.classes_).index(1.0)] if 1.0 in model.classes_ else proba[:, -1])
    return np.asarray(model.predict(x), float)


# --------------------------------------------------------------------------- learners
class _Learner(BaseEstimator):  # type: ignore[misc]
    """Learners with outcome models: the effect is the difference of the two predictions."""

    def predict(self, X: ArrayLike) -> FloatArray:
        """Estimated effect ``tau(x)`` per row."""
        mu0, mu1 = self.predict_outcomes(X)  # type: ignore[attr-defined]
        return np.asarray(mu1 - mu0, float)


class SLearner(_Learner):
    """One outcome model on ``[x, T, T * x]``.

    Parameters
    ----------
    base : scikit-learn estimator, optional
        Classifier for 0/1 outcomes (its probability is the outcome), regressor
        otherwise. Default: standardised logistic / linear regression.
    """

    def __init__(self, base: Any = None) -> None:
        self.base = base

    @staticmethod
    def _design(x: FloatArray, t: FloatArray) -> FloatArray:
        return np.hstack([x, t[:, None], x * t[:, None]])

    def fit(self, X: ArrayLike, treatment: ArrayLike, y: ArrayLike, propensity: ArrayLike | None = None,
            sample_weight: ArrayLike | None = None) -> SLearner:
        """Fit the single model (weights: ``sample_weight``; the propensity is not needed)."""
        x, t, yy, _ = _inputs(X, treatment, y, propensity)
        w = None if sample_weight is None else np.asarray(sample_weight, float)
        base = self.base if self.base is not None else _default_base(_binary(yy))
        self.model_ = _fit_outcome(base, self._design(x, t.astype(float)), yy, w)
        self.n_features_in_ = x.shape[1]
        return self

    def predict_outcomes(self, X: ArrayLike) -> tuple[FloatArray, FloatArray]:
        """``(E[y | x, T=0], E[y | x, T=1])``."""
        check_is_fitted(self, "model_")
        x = np.asarray(X, float)
        n = len(x)
        return (_predict(self.model_, self._design(x, np.zeros(n))),
                _predict(self.model_, self._design(x, np.ones(n))))


class TLearner(_Learner):
    """One outcome model per arm (see :class:`SLearner` for ``base``)."""

    def __init__(self, base: Any = None) -> None:
        self.base = base

    def fit(self, X: ArrayLike, treatment: ArrayLike, y: ArrayLike, propensity: ArrayLike | None = None,
            sample_weight: ArrayLike | None = None) -> TLearner:
        """Fit the control and treated models."""
        x, t, yy, _ = _inputs(X, treatment, y, propensity)
        w = None if sample_weight is None else np.asarray(sample_weight, float)
        base = self.base if self.base is not None else _default_base(_binary(yy))
        self.models_ = [_fit_outcome(base, x[t == a], yy[t == a], None if w is None else w[t == a])
                        for a in (0, 1)]
        self.n_features_in_ = x.shape[1]
        return self

    def predict_outcomes(self, X: ArrayLike) -> tuple[FloatArray, FloatArray]:
        """``(E[y | x, T=0], E[y | x, T=1])``."""
        check_is_fitted(self, "models_")
        x = np.asarray(X, float)
        return _predict(self.models_[0], x), _predict(self.models_[1], x)


class XLearner(_Learner):
    """Künzel et al. (2019): first-stage T-learner, imputed effects regressed per arm.

    ``tau(x) = e(x) tau_0(x) + (1 - e(x)) tau_1(x)``, with ``tau_1`` fit on the
    treated (``y - mu0(x)``) and ``tau_0`` on the controls (``mu1(x) - y``);
    ``e(x)`` is the propensity (a model of it, logistic, when none was given).

    Parameters
    ----------
    base : estimator, optional
        First-stage outcome model (as in :class:`SLearner`).
    effect_base : regressor, optional
        Second-stage effect model (default: standardised linear regression).
    """

    def __init__(self, base: Any = None, effect_base: Any = None) -> None:
        self.base = base
        self.effect_base = effect_base

    def fit(self, X: ArrayLike, treatment: ArrayLike, y: ArrayLike, propensity: ArrayLike | None = None,
            sample_weight: ArrayLike | None = None) -> XLearner:
        """Fit both stages and the propensity blend."""
        x, t, yy, e = _inputs(X, treatment, y, propensity)
        self.first_ = TLearner(self.base).fit(x, t, yy, sample_weight=sample_weight)
        mu0, mu1 = self.first_.predict_outcomes(x)
        eff = self.effect_base if self.effect_base is not None else _default_base(False)
        self.tau1_ = _fit_outcome(eff, x[t == 1], yy[t == 1] - mu0[t == 1], None)
        self.tau0_ = _fit_outcome(eff, x[t == 0], mu1[t == 0] - yy[t == 0], None)
        self.propensity_ = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, t)
        self.given_propensity_ = propensity is not None
        self.mean_propensity_ = float(e.mean())
        self.n_features_in_ = x.shape[1]
        return self

    def predict(self, X: ArrayLike) -> FloatArray:
        """Estimated effect per row."""
        check_is_fitted(self, "tau1_")
        x = np.asarray(X, float)
        e = self.propensity_.predict_proba(x)[:, 1] if not self.given_propensity_ else np.full(len(x), self.mean_propensity_)
        return e * _predict(self.tau0_, x) + (1 - e) * _predict(self.tau1_, x)

    def predict_outcomes(self, X: ArrayLike) -> tuple[FloatArray, FloatArray]:
        """First-stage control outcome and ``mu0 + tau(x)``."""
        mu0, _ = self.first_.predict_outcomes(X)
        return mu0, mu0 + self.predict(X)


class ClassTransformation(BaseEstimator):  # type: ignore[misc]
    """Regression of the transformed outcome ``Z = y (T - e) / (e (1 - e))`` on ``x``.

    Parameters
    ----------
    base : regressor, optional
        Default: standardised linear regression.
    """

    def __init__(self, base: Any = None) -> None:
        self.base = base

    def fit(self, X: ArrayLike, treatment: ArrayLike, y: ArrayLike, propensity: ArrayLike | None = None,
            sample_weight: ArrayLike | None = None) -> ClassTransformation:
        """Fit the regression of ``Z``."""
        x, t, yy, e = _inputs(X, treatment, y, propensity)
        z = yy * (t - e) / (e * (1 - e))
        base = self.base if self.base is not None else _default_base(False)
        w = None if sample_weight is None else np.asarray(sample_weight, float)
        self.model_ = _fit_outcome(base, x, z, w)
        self.n_features_in_ = x.shape[1]
        return self

    def predict(self, X: ArrayLike) -> FloatArray:
        """Estimated effect per row."""
        check_is_fitted(self, "model_")
        return _predict(self.model_, np.asarray(X, float))


# --------------------------------------------------------------------------- evaluation
def _curve(y: ArrayLike, treatment: ArrayLike, score: ArrayLike, propensity: ArrayLike | None,
           kind: str) -> pd.DataFrame:
    yy = np.asarray(y, float)
    x_dummy = np.zeros((len(yy), 1))
    _, t, yy, e = _inputs(x_dummy, treatment, yy, propensity)
    s = np.asarray(score, float)
    if s.shape != yy.shape:
        raise ValueError(f"uplift_score: expected {len(yy)} values like y, got shape {s.shape}")
    # Inverse-propensity weights make both arms stand for the whole population.
    w1 = np.where(t == 1, 1 / e, 0.0)
    w0 = np.where(t == 0, 1 / (1 - e), 0.0)
    frame = pd.DataFrame({"s": s, "y1": w1 * yy, "n1": w1, "y0": w0 * yy, "n0": w0})
    # Ties share one step: group equal scores, best first.
    g = frame.groupby("s", sort=True).sum().iloc[::-1]
    size = frame.groupby("s", sort=True).size().iloc[::-1].to_numpy()
    cy1, cn1, cy0, cn0 = (np.concatenate([[0.0], np.cumsum(g[c].to_numpy())]) for c in ("y1", "n1", "y0", "n0"))
    n = len(yy)
    frac = np.concatenate([[0.0], np.cumsum(size)]) / n
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "qini":
            # Incremental outcomes in the targeted group, per customer of the population.
            val = (cy1 - cy0 * np.where(cn0 > 0, cn1 / cn0, 0.0)) / n
        else:
            # Uplift of the targeted group times its share.
            rate = np.where(cn1 > 0, cy1 / cn1, 0.0) - np.where(cn0 > 0, cy0 / cn0, 0.0)
            val = rate * frac
    return pd.DataFrame({"fraction": frac, kind if kind == "qini" else "gain": np.nan_to_num(val)})


def qini_curve(y: ArrayLike, treatment: ArrayLike, uplift_score: ArrayLike,
               propensity: ArrayLike | None = None) -> pd.DataFrame:
    """Qini curve: incremental outcomes (per population member) from targeting the top ``fraction``.

    ``qini(f) = (Y1(f) - Y0(f) N1(f) / N0(f)) / n`` over the best-scored
    ``f`` share, with both arms inverse-propensity weighted. Ties in the
    score are one step (row order never matters).

    >>> qini_curve([1, 0, 0, 0], [1, 1, 0, 0], [0.9, 0.1, 0.8, 0.2])["qini"].round(3).tolist()
    [0.0, 0.5, 0.5, 0.5, 0.5]
    """
    return _curve(y, treatment, uplift_score, propensity, "qini")


def uplift_curve(y: ArrayLike, treatment: ArrayLike, uplift_score: ArrayLike,
                 propensity: ArrayLike | None = None) -> pd.DataFrame:
    """Uplift (gain) curve: the top ``fraction``'s uplift times ``fraction``."""
    return _curve(y, treatment, uplift_score, propensity, "uplift")


def _area_over_random(curve: pd.DataFrame, col: str) -> float:
    f, v = curve["fraction"].to_numpy(), curve[col].to_numpy()
    random = v[-1] * f
    return float(np.trapezoid(v - random, f))


def qini_coefficient(y: ArrayLike, treatment: ArrayLike, uplift_score: ArrayLike,
                     propensity: ArrayLike | None = None) -> float:
    """Area between the Qini curve and the random-targeting line (0 = random, in outcome units).

    >>> round(qini_coefficient([1, 0, 0, 0], [1, 1, 0, 0], [0.9, 0.1, 0.8, 0.2]), 4)
    0.1875
    """
    return _area_over_random(qini_curve(y, treatment, uplift_score, propensity), "qini")


def auuc(y: ArrayLike, treatment: ArrayLike, uplift_score: ArrayLike, propensity: ArrayLike | None = None) -> float:
    """Area under the uplift (gain) curve above the random line."""
    return _area_over_random(uplift_curve(y, treatment, uplift_score, propensity), "gain")


def uplift_at_k(y: ArrayLike, treatment: ArrayLike, uplift_score: ArrayLike, k: float = 0.3,
                propensity: ArrayLike | None = None) -> float:
    """Mean outcome of treated minus control among the top ``k`` share by score (IPW means).

    >>> uplift_at_k([1, 0, 1, 0], [1, 0, 1, 0], [4, 3, 2, 1], k=0.5)
    1.0
    """
    if not 0 < k <= 1:
        raise ValueError(f"k: expected a share in (0, 1], got {k}")
    yy = np.asarray(y, float)
    _, t, yy, e = _inputs(np.zeros((len(yy), 1)), treatment, yy, propensity)
    s = np.asarray(uplift_score, float)
    top = np.argsort(-s, kind="stable")[: max(1, int(round(k * len(s))))]
    t_top, y_top, e_top = t[top], yy[top], e[top]
    w1, w0 = (t_top == 1) / e_top, (t_top == 0) / (1 - e_top)
    if w1.sum() == 0 or w0.sum() == 0:
        return float("nan")
    return float((w1 * y_top).sum() / w1.sum() - (w0 * y_top).sum() / w0.sum())


def plot_qini(curves: dict[str, pd.DataFrame], title: str = "Qini curves") -> go.Figure:
    """One line per named :func:`qini_curve`, plus random targeting.

    >>> c = qini_curve([1, 0, 0, 0], [1, 1, 0, 0], [0.9, 0.1, 0.8, 0.2])
    >>> len(plot_qini({"model": c}).data)
    2
    """
    fig = go.Figure()
    end = max((float(c["qini"].iloc[-1]) for c in curves.values()), default=0.0)
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, end], mode="lines", name="random",
                             line={"dash": "dash", "color": "grey"}))
    for name, c in curves.items():
        fig.add_trace(go.Scatter(x=c["fraction"], y=c["qini"], mode="lines", name=name))
    fig.update_layout(title=title, xaxis_title="share targeted (best scores first)",
                      yaxis_title="incremental outcomes per customer", xaxis_tickformat=".0%")
    return fig
