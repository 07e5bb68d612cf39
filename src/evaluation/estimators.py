"""Off-policy estimators: each writes one method returning a value per logged row.

A *log* (:class:`~cadence.data.bandit.LoggedBandit`) is one row per
decision: the context the logging policy saw, the action it took, the
probability it had of taking that action (``pscore``, the
``messages.propensity`` column) and the reward that followed. A *target
policy* is given, as in the Open Bandit Pipeline, by one documented array
``action_dist`` of shape ``(n, n_actions)``: row ``i`` is the target policy's
distribution over actions in the context of logged row ``i``. Nothing else
crosses the boundary between policies and estimators.

Every estimator is a frozen dataclass that writes one method,
:meth:`OffPolicyEstimator.round_values`, returning a value per logged row; the
policy value is the mean of that vector, and the interval engine
(:mod:`cadence.evaluation.intervals`) resamples the same vector, so each
formula lives once. :class:`PolicyInputs` validates a target policy's arrays
once and caches what every estimator reads (importance weights, the reward
model at the logged action, the direct-method term).

Notation used in the docstrings: ``x_i`` context, ``a_i`` logged action,
``r_i`` reward, ``p_i`` = ``pscore`` (logging probability of ``a_i``),
``pi(a | x)`` the target policy (``action_dist``), ``w_i = pi(a_i | x_i) / p_i``
the importance weight and ``q(x, a)`` a reward model's prediction
(``estimated_rewards``, see :mod:`cadence.evaluation.reward_models`).

References
----------
.. [1] Dudík, Langford & Li (2011). Doubly Robust Policy Evaluation and
   Learning. ICML.
.. [2] Swaminathan & Joachims (2015). The Self-Normalized Estimator for
   Counterfactual Learning. NeurIPS.
.. [3] Wang, Agarwal & Dudík (2017). Optimal and Adaptive Off-policy Evaluation
   in Contextual Bandits. ICML.
.. [4] Saito et al. (2021). Open Bandit Dataset and Pipeline. NeurIPS Datasets
   and Benchmarks (the ``action_dist`` convention).

Examples
--------
>>> import numpy as np
>>> from cadence.evaluation.compare import estimate
>>> rng = np.random.default_rng(0)
>>> n = 2_000
>>> action = rng.integers(0, 2, n)                     # uniform logging over 2 actions
>>> reward = rng.binomial(1, np.where(action == 1, 0.3, 0.1)).astype(float)
>>> fb = LoggedBandit(action=action, reward=reward, pscore=np.full(n, 0.5), n_actions=2)
>>> always_1 = np.tile([0.0, 1.0], (n, 1))           # target: always action 1
>>> est = estimate(IPS(), fb, always_1)
>>> est.lower < 0.3 < est.upper
True
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from cadence.data.bandit import FloatArray, LoggedBandit, float_vector, is_real, readonly

# --------------------------------------------------------------------------- #
# Target-policy inputs shared by all estimators
# --------------------------------------------------------------------------- #


def _matrix(name: str, feedback: LoggedBandit, value: ArrayLike) -> NDArray[Any]:
    """``value`` as an ``(n, n_actions)`` array of numbers, or a ValueError naming ``name``."""
    arr = np.asarray(value)
    expected = (feedback.n, feedback.n_actions)
    if arr.shape != expected:
        raise ValueError(f"{name}: expected shape (n, n_actions) = {expected}, got {arr.shape}")
    if not is_real(arr):
        raise ValueError(f"{name}: expected numbers, got dtype {arr.dtype}")
    return arr


def check_action_dist(feedback: LoggedBandit, action_dist: ArrayLike) -> NDArray[Any]:
    arr = np.asarray(action_dist)
    if arr.ndim == 3:
        # OBP's (n, n_actions, len_list) layout; only single-slot lists are bandits.
        if arr.shape[2] != 1:
            raise ValueError(
                f"action_dist: len_list must be 1 (slates are not supported), got {arr.shape[2]}"
            )
        arr = arr[:, :, 0]
    arr = _matrix("action_dist", feedback, arr)
    bad = int(np.count_nonzero(~(np.isfinite(arr) & (arr >= 0)).all(axis=1)))
    if bad:
        raise ValueError(f"action_dist: {bad} rows have negative or non-finite entries")
    # float32 policies are welcome (half the memory); allow their rounding.
    eps = float(np.finfo(arr.dtype).eps) if np.issubdtype(arr.dtype, np.floating) else 0.0
    tol = max(1e-6, 4 * feedback.n_actions * eps)
    bad = int(np.count_nonzero(np.abs(arr.sum(axis=1, dtype=np.float64) - 1.0) > tol))
    if bad:
        raise ValueError(f"action_dist: {bad} rows do not sum to 1 (tolerance {tol:g})")
    return readonly(arr)


def check_estimated_rewards(feedback: LoggedBandit, estimated_rewards: ArrayLike) -> FloatArray:
    arr = _matrix("estimated_rewards", feedback, estimated_rewards).astype(np.float64, copy=False)
    bad = int(np.count_nonzero(~np.isfinite(arr).all(axis=1)))
    if bad:
        raise ValueError(f"estimated_rewards: {bad} rows are not finite")
    return readonly(arr)


def check_direct_term(feedback: LoggedBandit, direct_term: ArrayLike) -> FloatArray:
    """``direct_term`` as a finite (n,) float64 array, or a ValueError saying what is wrong."""
    arr = np.asarray(direct_term, dtype=np.float64)
    if arr.shape != (feedback.n,):
        raise ValueError(f"direct_term: expected shape ({feedback.n},), got {arr.shape}")
    bad = int((~np.isfinite(arr)).sum())
    if bad:
        raise ValueError(f"direct_term: {bad} rows are not finite")
    return readonly(arr)


def logged_column(matrix: NDArray[Any], action: NDArray[np.integer[Any]]) -> FloatArray:
    """``matrix[i, action[i]]`` as float64, without an (n,) arange temporary."""
    col = np.take_along_axis(matrix, action[:, None].astype(np.intp, copy=False), axis=1)[:, 0]
    return col.astype(np.float64, copy=False)


@dataclass(frozen=True, eq=False)
class PolicyInputs:
    """One target policy's arrays on one log, validated once, read by every estimator.

    Derived vectors (importance weights, the reward model's factual prediction,
    the direct-method term) are computed on first use and cached read-only, so
    evaluating several estimators of one policy costs one pass each.

    Parameters
    ----------
    feedback : LoggedBandit
    action_dist : (n, n_actions) array
        The target policy; rows are non-negative and sum to 1. OBP's
        ``(n, n_actions, 1)`` is accepted too.
    estimated_rewards : (n, n_actions) array, optional
        A reward model's ``q(x_i, a)`` for every action; needed by DM and the
        DR family (see :func:`~cadence.evaluation.reward_models.fit_reward_model`).
    direct_term : (n,) array, optional
        The direct-method term ``sum_a pi(a | x'_i) q(x'_i, a)`` taken in the
        target policy's *own* contexts ``x'_i`` where they differ from the
        logged ones (a replayed policy's own fatigue: the messages it would
        have sent before row ``i``). DM and the DR family read it instead of
        the term at ``x_i``; the DR residual ``r_i - q(x_i, a_i)`` stays at the
        logged context, where ``r_i`` was observed, so the model carries the
        reward from ``x_i`` to ``x'_i`` and the weighted residual corrects the
        model's error at ``x_i``. Needs ``estimated_rewards``.
    state_weight : (n,) array, optional
        A per-row factor of the importance weight for a state the target
        policy carries (its own fatigue): ``w_i = pi(a_i | x_i) / p_i * s_i``,
        with ``s_i`` zero where the logged state is not the policy's and one
        over the logging policy's probability of that state where it is
        (:func:`~cadence.simulation.carryover.fatigue_weights`). Every
        estimator that reads ``w`` (IPS, SNIPS, the DR residual) then reads
        only rows logged in the policy's own state.
    """

    feedback: LoggedBandit
    action_dist: NDArray[Any]
    estimated_rewards: FloatArray | None = None
    direct_term: FloatArray | None = None
    state_weight: FloatArray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "action_dist", self.checked_action_dist())
        if self.estimated_rewards is not None:
            object.__setattr__(
                self,
                "estimated_rewards",
                check_estimated_rewards(self.feedback, self.estimated_rewards),
            )
        if self.direct_term is not None:
            object.__setattr__(self, "direct_term", check_direct_term(self.feedback, self.direct_term))
            if self.estimated_rewards is None:
                raise ValueError("direct_term: needs estimated_rewards (the DR residual reads q at the logged context)")
        if self.state_weight is not None:
            sw = float_vector("state_weight", self.state_weight, self.feedback.n)
            if (sw < 0).any():
                raise ValueError(f"state_weight: expected non-negative numbers, {int((sw < 0).sum())} rows are negative")
            object.__setattr__(self, "state_weight", readonly(sw))

    def checked_action_dist(self) -> NDArray[Any]:
        """The validated ``action_dist`` (:func:`check_action_dist`)."""
        return check_action_dist(self.feedback, self.action_dist)

    @cached_property
    def target_prob(self) -> FloatArray:
        """(n,) ``pi(a_i | x_i)``, the target's probability of the logged action."""
        return readonly(logged_column(self.action_dist, self.feedback.action))

    @cached_property
    def weight(self) -> FloatArray:
        """(n,) importance weights ``w_i = pi(a_i | x_i) / p_i`` (times ``state_weight`` when given)."""
        w = self.target_prob / self.feedback.pscore
        return readonly(w if self.state_weight is None else w * self.state_weight)

    def reward_model(self, who: str) -> FloatArray:
        """The ``(n, n_actions)`` predictions, or a ValueError naming ``who`` needs them."""
        if self.estimated_rewards is None:
            raise ValueError(
                f"estimated_rewards: {who} needs a reward model's (n, n_actions) predictions "
                "(see fit_reward_model)"
            )
        return self.estimated_rewards

    def factual_reward_hat(self, who: str) -> FloatArray:
        """(n,) ``q(x_i, a_i)``, the reward model at the logged action."""
        self.reward_model(who)
        return self._factual_reward_hat

    def dm_values(self, who: str) -> FloatArray:
        """(n,) ``sum_a pi(a | x_i) q(x_i, a)``."""
        self.reward_model(who)
        return self._dm_values

    @cached_property
    def _factual_reward_hat(self) -> FloatArray:
        return readonly(logged_column(self.reward_model("factual"), self.feedback.action))

    @cached_property
    def _dm_values(self) -> FloatArray:
        if self.direct_term is not None:
            return readonly(self.direct_term)
        # einsum avoids materialising the (n, n_actions) product.
        q = self.reward_model("DM")
        return readonly(np.einsum("ij,ij->i", self.action_dist, q, dtype=np.float64))


class OnPolicy:
    """Type of :data:`ON_POLICY`."""

    def __repr__(self) -> str:
        return "ON_POLICY"


#: Stands for the logging policy itself in :func:`~cadence.evaluation.compare.compare`. Its value needs no
#: correction: every weight is 1, so IPS, SNIPS, DR, Switch-DR and clipped IPS
#: (with ``max_weight >= 1``) reduce to the observed mean reward, and DM to the
#: mean of ``q(x_i, a_i)``. Only the logged action's probability is known, so
#: its full ``action_dist`` could not be written down anyway.
ON_POLICY = OnPolicy()


@dataclass(frozen=True, eq=False)
class OnPolicyInputs(PolicyInputs):
    """The logging policy evaluated on its own log (see :data:`ON_POLICY`)."""

    def checked_action_dist(self) -> NDArray[Any]:
        # Only the logged action's probability is known: there is no action_dist to check.
        return self.action_dist

    @cached_property
    def target_prob(self) -> FloatArray:
        return self.feedback.pscore

    @cached_property
    def weight(self) -> FloatArray:
        return readonly(np.ones(self.feedback.n))

    @cached_property
    def _dm_values(self) -> FloatArray:
        return self._factual_reward_hat


def policy_inputs(
    feedback: LoggedBandit, policy: ArrayLike | OnPolicy, q: FloatArray | None,
    direct_term: ArrayLike | None = None, state_weight: ArrayLike | None = None,
) -> PolicyInputs:
    if isinstance(policy, OnPolicy):
        if direct_term is not None or state_weight is not None:
            raise ValueError("direct_term, state_weight: the logging policy (ON_POLICY) is evaluated in its own "
                             "logged contexts and states")
        return OnPolicyInputs(feedback, np.empty((0, 0)), q)
    return PolicyInputs(feedback, np.asarray(policy), q, None if direct_term is None else np.asarray(direct_term),
                        None if state_weight is None else np.asarray(state_weight))


# --------------------------------------------------------------------------- #
# Estimators
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class OffPolicyEstimator(ABC):
    """Base of all estimators: one method, :meth:`round_values`, per subclass.

    The policy value is ``mean(round_values(inputs))``. Intervals come from
    :func:`~cadence.evaluation.compare.estimate` / :func:`~cadence.evaluation.compare.compare`, which resample that same vector.
    A subclass that sets ``refit_interval = True`` gets, when the caller
    passes a ``refit``, an interval that refits the reward model in every
    resample (see :func:`~cadence.evaluation.compare.estimate`).
    A subclass that sets ``self_normalized = True`` returns
    ``v_i = u_i / mean(w)`` (``w`` the importance weights) and is resampled as
    the ratio ``sum(b_i u_i) / sum(b_i w_i)``, i.e. renormalised in every
    bootstrap resample.
    """

    short_name: ClassVar[str]
    self_normalized: ClassVar[bool] = False
    #: True when the estimate's error is mostly the reward model's own (DM):
    #: given a ``refit``, :func:`~cadence.evaluation.compare.estimate` and :func:`~cadence.evaluation.compare.compare` then take its
    #: interval from resamples that refit the model, not from the per-row
    #: vector alone.
    refit_interval: ClassVar[bool] = False

    @property
    def name(self) -> str:
        """Label used in result tables, e.g. ``"SwitchDR(tau=10)"``."""
        params = ", ".join(f"{f.name}={getattr(self, f.name):g}" for f in fields(self))
        return f"{self.short_name}({params})" if params else self.short_name

    @abstractmethod
    def round_values(self, inputs: PolicyInputs) -> FloatArray:
        """(n,) per-row values whose mean is the estimated policy value."""

    def values(
        self,
        feedback: LoggedBandit,
        action_dist: ArrayLike,
        estimated_rewards: ArrayLike | None = None,
    ) -> FloatArray:
        """Validate the inputs and return :meth:`round_values` (no interval)."""
        q = None if estimated_rewards is None else np.asarray(estimated_rewards)
        return self.round_values(PolicyInputs(feedback, np.asarray(action_dist), q))


@dataclass(frozen=True)
class IPS(OffPolicyEstimator):
    """Inverse propensity scoring: ``v_i = w_i r_i``.

    Unbiased when the logging policy gives positive probability to every
    action the target may take; variance grows with the weights.

    Examples
    --------
    >>> import numpy as np
    >>> fb = LoggedBandit(action=np.array([0, 1]), reward=np.array([1.0, 0.0]),
    ...                   pscore=np.array([0.5, 0.5]), n_actions=2)
    >>> IPS().values(fb, np.array([[1.0, 0.0], [1.0, 0.0]])).tolist()
    [2.0, 0.0]
    """

    short_name: ClassVar[str] = "IPS"

    def round_values(self, inputs: PolicyInputs) -> FloatArray:
        return inputs.weight * inputs.feedback.reward


@dataclass(frozen=True)
class SNIPS(OffPolicyEstimator):
    """Self-normalised IPS [2]_: ``V = sum_i w_i r_i / sum_i w_i``.

    Per-row contribution ``v_i = w_i r_i / mean(w)`` so that ``mean(v) = V``.
    Slightly biased, usually far less variable than IPS, and invariant to a
    reward shift. Its bootstrap renormalises within each resample; its normal
    interval uses the delta method.

    Examples
    --------
    >>> import numpy as np
    >>> fb = LoggedBandit(action=np.array([0, 1]), reward=np.array([1.0, 0.0]),
    ...                   pscore=np.array([0.5, 0.5]), n_actions=2)
    >>> float(SNIPS().values(fb, np.array([[1.0, 0.0], [1.0, 0.0]])).mean())
    1.0
    """

    short_name: ClassVar[str] = "SNIPS"
    self_normalized: ClassVar[bool] = True

    def round_values(self, inputs: PolicyInputs) -> FloatArray:
        w = inputs.weight
        mean_w = float(w.mean())
        if mean_w == 0.0:
            raise ValueError(
                "action_dist: the target policy gives zero probability to every logged action; "
                "SNIPS is undefined"
            )
        return w * inputs.feedback.reward / mean_w


@dataclass(frozen=True)
class DirectMethod(OffPolicyEstimator):
    """Direct method: ``v_i = sum_a pi(a | x_i) q(x_i, a)``.

    Low variance; biased by exactly the reward model's error. Use
    cross-fitted predictions (:func:`~cadence.evaluation.reward_models.fit_reward_model`) so the model never
    scores rows it was fit on.

    Interval. DM's error is mostly the reward model's own estimation error,
    which resampling the per-row vector (the sampling of contexts) cannot see:
    in the test suite's synthetic bandit, with a correctly specified model,
    that interval covered the truth in only ~40% of seeds. Pass a ``refit``
    (:func:`~cadence.evaluation.reward_models.reward_model_refit`) to :func:`~cadence.evaluation.compare.estimate` / :func:`~cadence.evaluation.compare.compare`: the
    interval is then a (cluster) Poisson bootstrap that *refits the reward
    model* in each of ``n_refit`` resamples and takes
    ``value +- z * sd(replicates)`` (``interval="refit-bootstrap"``). It
    covers the model's variance, not a bias shared by every refit (a model
    that systematically mis-extrapolates to the target's actions); only the
    importance-weighted correction of DR can measure that. Without ``refit``
    the interval is the context-only one and too narrow.

    Examples
    --------
    >>> import numpy as np
    >>> fb = LoggedBandit(action=np.array([0, 1]), reward=np.array([1.0, 0.0]),
    ...                   pscore=np.array([0.5, 0.5]), n_actions=2)
    >>> q = np.array([[0.8, 0.1], [0.6, 0.2]])
    >>> DirectMethod().values(fb, np.array([[1.0, 0.0], [0.5, 0.5]]), q).tolist()
    [0.8, 0.4]
    """

    short_name: ClassVar[str] = "DM"
    refit_interval: ClassVar[bool] = True

    def round_values(self, inputs: PolicyInputs) -> FloatArray:
        return np.array(inputs.dm_values(self.short_name))


@dataclass(frozen=True)
class DoublyRobust(OffPolicyEstimator):
    """Doubly robust [1]_: ``v_i = sum_a pi(a | x_i) q(x_i, a) + w_i (r_i - q(x_i, a_i))``.

    Unbiased if either the propensities or the reward model are right; the
    importance-weighted term only carries the model's residual, so a good
    model removes most of IPS's variance.

    Examples
    --------
    >>> import numpy as np
    >>> fb = LoggedBandit(action=np.array([0, 1]), reward=np.array([1.0, 0.0]),
    ...                   pscore=np.array([0.5, 0.5]), n_actions=2)
    >>> q = np.array([[0.8, 0.1], [0.6, 0.2]])
    >>> DoublyRobust().values(fb, np.array([[1.0, 0.0], [1.0, 0.0]]), q).round(3).tolist()
    [1.2, 0.6]
    """

    short_name: ClassVar[str] = "DR"

    def round_values(self, inputs: PolicyInputs) -> FloatArray:
        residual = inputs.feedback.reward - inputs.factual_reward_hat(self.short_name)
        return inputs.dm_values(self.short_name) + inputs.weight * residual


@dataclass(frozen=True)
class SwitchDR(OffPolicyEstimator):
    """Switch doubly robust [3]_ (as in OBP): DR where ``w_i <= tau``, DM elsewhere.

    ``v_i = sum_a pi(a | x_i) q(x_i, a) + 1{w_i <= tau} w_i (r_i - q(x_i, a_i))``.
    ``tau = inf`` gives DR, ``tau = 0`` gives DM; in between it trades the
    variance of large weights for the model's bias on those rows.

    Parameters
    ----------
    tau : float >= 0
        Importance-weight threshold above which the correction is dropped.

    Examples
    --------
    >>> SwitchDR(tau=10).name
    'SwitchDR(tau=10)'
    """

    tau: float
    short_name: ClassVar[str] = "SwitchDR"

    def __post_init__(self) -> None:
        if isinstance(self.tau, bool) or not isinstance(self.tau, int | float) or not self.tau >= 0:
            raise ValueError(f"tau: expected a number >= 0, got {self.tau!r}")

    def round_values(self, inputs: PolicyInputs) -> FloatArray:
        w = inputs.weight
        residual = inputs.feedback.reward - inputs.factual_reward_hat(self.name)
        return inputs.dm_values(self.name) + np.where(w <= self.tau, w * residual, 0.0)


@dataclass(frozen=True)
class ClippedIPS(OffPolicyEstimator):
    """IPS with weights clipped at ``max_weight``: ``v_i = min(w_i, M) r_i``.

    Biased towards zero where clipping binds; bounds the variance.

    Parameters
    ----------
    max_weight : float > 0

    Examples
    --------
    >>> import numpy as np
    >>> fb = LoggedBandit(action=np.array([0, 1]), reward=np.array([1.0, 1.0]),
    ...                   pscore=np.array([0.1, 0.9]), n_actions=2)
    >>> ClippedIPS(max_weight=5).values(fb, np.array([[1.0, 0.0], [1.0, 0.0]])).tolist()
    [5.0, 0.0]
    """

    max_weight: float
    short_name: ClassVar[str] = "ClippedIPS"

    def __post_init__(self) -> None:
        m = self.max_weight
        if isinstance(m, bool) or not isinstance(m, int | float) or not m > 0:
            raise ValueError(f"max_weight: expected a number > 0, got {m!r}")

    def round_values(self, inputs: PolicyInputs) -> FloatArray:
        return np.minimum(inputs.weight, self.max_weight) * inputs.feedback.reward
