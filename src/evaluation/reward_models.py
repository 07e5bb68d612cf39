"""Reward models for the direct method and the doubly-robust family: cross-fitted ``q(x, a)``.

:func:`fit_reward_model` fits any scikit-learn regressor (or classifier) on
``[context, one_hot(action)]`` over folds of the log and predicts every
held-out row under every action, so a model never scores the rows it
memorised. :func:`reward_model_refit` wraps it as a :data:`RewardRefit`, the
callable the interval engine uses to refit the model on each resample.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from cadence.data.bandit import FloatArray, LoggedBandit

#: A reward model refitted on a resample: given each row's multiplicity in the
#: resample (``(n,)`` non-negative integers; 0 = left out), return the
#: ``(n, n_actions)`` predictions of the same learner fitted on that resample,
#: cross-fitted as the original. :func:`reward_model_refit` builds one for
#: :func:`fit_reward_model`; see :func:`~cadence.evaluation.compare.estimate`'s ``refit``.
RewardRefit = Callable[[NDArray[np.int64]], ArrayLike]




def fit_reward_model(
    feedback: LoggedBandit,
    estimator: Any | None = None,
    cv: int = 2,
    random_state: int | None = 0,
    resample: ArrayLike | None = None,
) -> FloatArray:
    """Cross-fitted reward model ``q(x_i, a)`` for every row and action.

    The log is split into ``cv`` folds; a clone of ``estimator`` is fit on the
    other folds with features ``[context, one_hot(action)]`` and predicts each
    held-out row under every action. Out-of-fold predictions keep DM and DR
    honest: a model never scores the rows it memorised.

    Parameters
    ----------
    feedback : LoggedBandit
        ``context`` is optional; without it the model learns per-action means.
    estimator : scikit-learn regressor or classifier, optional
        Default ``HistGradientBoostingRegressor(random_state=random_state)``.
        A classifier's prediction is its expected reward
        ``predict_proba(X) @ classes_`` (rewards must then be the class labels).
        Never modified (clones are fit).
    cv : int >= 2
        Folds.
    random_state : int or None
        Seeds the fold split (and the default model).
    resample : (n,) int array >= 0, optional
        Each row's multiplicity in a bootstrap resample: in training a row is
        repeated that many times (0 leaves it out); every row is still
        predicted. The folds are those of the full log. Used by
        :func:`reward_model_refit`.

    Returns
    -------
    (n, n_actions) float array

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LinearRegression
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(400, 2)); a = rng.integers(0, 2, 400)
    >>> fb = LoggedBandit(action=a, reward=x[:, 0] + a, pscore=np.full(400, 0.5),
    ...                   n_actions=2, context=x)
    >>> q = fit_reward_model(fb, LinearRegression())
    >>> q.shape, bool(np.allclose(q[:, 1] - q[:, 0], 1.0))
    ((400, 2), True)
    """
    from sklearn.base import clone, is_classifier
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.model_selection import KFold

    if isinstance(cv, bool) or not isinstance(cv, int | np.integer) or cv < 2:
        raise ValueError(f"cv: expected an int >= 2, got {cv!r}")
    if cv > feedback.n:
        raise ValueError(f"cv: expected at most n = {feedback.n} folds, got {cv}")
    mult = None
    if resample is not None:
        mult = np.asarray(resample)
        if mult.shape != (feedback.n,) or not np.issubdtype(mult.dtype, np.integer):
            raise ValueError(
                f"resample: expected ({feedback.n},) integer multiplicities, "
                f"got shape {mult.shape} dtype {mult.dtype}"
            )
        if (mult < 0).any():
            raise ValueError("resample: multiplicities must be >= 0")
    model = (
        HistGradientBoostingRegressor(random_state=random_state) if estimator is None else estimator
    )
    k = feedback.n_actions
    ctx = feedback.context if feedback.context is not None else np.empty((feedback.n, 0))
    d = ctx.shape[1]
    out = np.empty((feedback.n, k))
    folds = KFold(n_splits=int(cv), shuffle=True, random_state=random_state)
    for train, test in folds.split(ctx):
        if mult is not None:
            train = np.repeat(train, mult[train])
        x_train = np.zeros((train.size, d + k))
        x_train[:, :d] = ctx[train]
        x_train[np.arange(train.size), d + feedback.action[train]] = 1.0
        fitted = clone(model).fit(x_train, feedback.reward[train])
        x_test = np.zeros((test.size, d + k))
        x_test[:, :d] = ctx[test]
        for a in range(k):
            x_test[:, d:] = 0.0
            x_test[:, d + a] = 1.0
            if is_classifier(fitted):
                proba = fitted.predict_proba(x_test)
                out[test, a] = proba @ np.asarray(fitted.classes_, dtype=np.float64)
            else:
                out[test, a] = fitted.predict(x_test)
    bad = int(np.count_nonzero(~np.isfinite(out).all(axis=1)))
    if bad:
        raise ValueError(f"estimator: predicted non-finite rewards for {bad} rows")
    return out


def reward_model_refit(
    feedback: LoggedBandit,
    estimator: Any | None = None,
    cv: int = 2,
    random_state: int | None = 0,
) -> RewardRefit:
    """The :data:`RewardRefit` of :func:`fit_reward_model` with these arguments.

    Pass it as ``refit`` to :func:`~cadence.evaluation.compare.estimate` or :func:`~cadence.evaluation.compare.compare` so that the
    direct method's interval includes the reward model's own error.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LinearRegression
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(400, 1)); a = rng.integers(0, 2, 400)
    >>> fb = LoggedBandit(action=a, reward=x[:, 0] + a + rng.normal(size=400),
    ...                   pscore=np.full(400, 0.5), n_actions=2, context=x)
    >>> from cadence.evaluation.compare import estimate
    >>> from cadence.evaluation.estimators import DirectMethod
    >>> q = fit_reward_model(fb, LinearRegression())
    >>> e = estimate(DirectMethod(), fb, np.tile([0.0, 1.0], (400, 1)), q,
    ...              refit=reward_model_refit(fb, LinearRegression()), n_refit=30)
    >>> e.interval, bool(e.lower < e.value < e.upper)
    ('refit-bootstrap', True)
    """

    def refit(multiplicity: NDArray[np.int64]) -> FloatArray:
        return fit_reward_model(feedback, estimator, cv, random_state, resample=multiplicity)

    return refit
