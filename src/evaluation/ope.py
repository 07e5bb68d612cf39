"""Off-policy evaluation (OPE) of target policies on any logged-bandit table.

A *log* is one row per decision: the context the logging policy saw, the action
it took, the probability it had of taking that action (``pscore``, the
``messages.propensity`` column) and the reward that followed. A *target policy*
is given, as in the Open Bandit Pipeline, by one documented array
``action_dist`` of shape ``(n, n_actions)``: row ``i`` is the target policy's
distribution over actions in the context of logged row ``i``. Nothing else
crosses the boundary between policies and estimators.

Every estimator is a frozen dataclass that writes one method,
:meth:`OffPolicyEstimator.round_values`, returning a value per logged row; the
policy value is the mean of that vector and the interval is computed from the
same vector (a seeded bootstrap, or the central limit theorem), so each formula
lives once.

Notation used in the docstrings: ``x_i`` context, ``a_i`` logged action,
``r_i`` reward, ``p_i`` = ``pscore`` (logging probability of ``a_i``),
``pi(a | x)`` the target policy (``action_dist``), ``w_i = pi(a_i | x_i) / p_i``
the importance weight and ``q(x, a)`` a reward model's prediction
(``estimated_rewards``).

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
.. [5] Kish (1965). Survey Sampling (the effective sample size).

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> n = 2_000
>>> action = rng.integers(0, 2, n)                     # uniform logging over 2 actions
>>> reward = rng.binomial(1, np.where(action == 1, 0.3, 0.1)).astype(float)
>>> fb = LoggedFeedback(action=action, reward=reward, pscore=np.full(n, 0.5), n_actions=2)
>>> always_1 = np.tile([0.0, 1.0], (n, 1))           # target: always action 1
>>> est = estimate(IPS(), fb, always_1)
>>> est.lower < 0.3 < est.upper
True
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from functools import cached_property
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from cadence.data.bandit import FloatArray, LoggedFeedback, is_real, readonly

IntervalKind = Literal["auto", "bootstrap", "normal"]

#: A reward model refitted on a resample: given each row's multiplicity in the
#: resample (``(n,)`` non-negative integers; 0 = left out), return the
#: ``(n, n_actions)`` predictions of the same learner fitted on that resample,
#: cross-fitted as the original. :func:`reward_model_refit` builds one for
#: :func:`fit_reward_model`; see :func:`estimate`'s ``refit``.
RewardRefit = Callable[[NDArray[np.int64]], ArrayLike]

#: ``interval="auto"`` bootstraps logs up to this many rows and uses the normal
#: (CLT / delta-method) interval above it, where the bootstrap's cost (rows x
#: resamples Poisson draws) stops paying for itself and the CLT is accurate.
AUTO_BOOTSTRAP_MAX_ROWS = 100_000

#: Bootstrap weights are drawn for at most this many (resample x row) cells at a
#: time, bounding the weight block to ~32 MB whatever the log size.
_WEIGHT_BLOCK_CELLS = 4_000_000

#: Per-row vectors held at once while bootstrapping many policies together.
_COLUMN_BUDGET_BYTES = 512 * 2**20


# --------------------------------------------------------------------------- #
# Logged feedback
# --------------------------------------------------------------------------- #










# --------------------------------------------------------------------------- #
# Target-policy inputs shared by all estimators
# --------------------------------------------------------------------------- #


def _check_action_dist(feedback: LoggedFeedback, action_dist: ArrayLike) -> NDArray[Any]:
    arr = np.asarray(action_dist)
    if arr.ndim == 3:
        # OBP's (n, n_actions, len_list) layout; only single-slot lists are bandits.
        if arr.shape[2] != 1:
            raise ValueError(
                f"action_dist: len_list must be 1 (slates are not supported), got {arr.shape[2]}"
            )
        arr = arr[:, :, 0]
    expected = (feedback.n, feedback.n_actions)
    if arr.shape != expected:
        raise ValueError(
            f"action_dist: expected shape (n, n_actions) = {expected}, got {arr.shape}"
        )
    if not is_real(arr):
        raise ValueError(f"action_dist: expected numbers, got dtype {arr.dtype}")
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


def _check_estimated_rewards(feedback: LoggedFeedback, estimated_rewards: ArrayLike) -> FloatArray:
    arr = np.asarray(estimated_rewards)
    expected = (feedback.n, feedback.n_actions)
    if arr.shape != expected:
        raise ValueError(
            f"estimated_rewards: expected shape (n, n_actions) = {expected}, got {arr.shape}"
        )
    if not is_real(arr):
        raise ValueError(f"estimated_rewards: expected numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    bad = int(np.count_nonzero(~np.isfinite(arr).all(axis=1)))
    if bad:
        raise ValueError(f"estimated_rewards: {bad} rows are not finite")
    return readonly(arr)


def _logged_column(matrix: NDArray[Any], action: NDArray[np.integer[Any]]) -> FloatArray:
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
    feedback : LoggedFeedback
    action_dist : (n, n_actions) array
        The target policy; rows are non-negative and sum to 1. OBP's
        ``(n, n_actions, 1)`` is accepted too.
    estimated_rewards : (n, n_actions) array, optional
        A reward model's ``q(x_i, a)`` for every action; needed by DM and the
        DR family (see :func:`fit_reward_model`).
    """

    feedback: LoggedFeedback
    action_dist: NDArray[Any]
    estimated_rewards: FloatArray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "action_dist", _check_action_dist(self.feedback, self.action_dist))
        if self.estimated_rewards is not None:
            object.__setattr__(
                self,
                "estimated_rewards",
                _check_estimated_rewards(self.feedback, self.estimated_rewards),
            )

    @cached_property
    def target_prob(self) -> FloatArray:
        """(n,) ``pi(a_i | x_i)``, the target's probability of the logged action."""
        return readonly(_logged_column(self.action_dist, self.feedback.action))

    @cached_property
    def weight(self) -> FloatArray:
        """(n,) importance weights ``w_i = pi(a_i | x_i) / p_i``."""
        return readonly(self.target_prob / self.feedback.pscore)

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
        return readonly(_logged_column(self.reward_model("factual"), self.feedback.action))

    @cached_property
    def _dm_values(self) -> FloatArray:
        # einsum avoids materialising the (n, n_actions) product.
        q = self.reward_model("DM")
        return readonly(np.einsum("ij,ij->i", self.action_dist, q, dtype=np.float64))


class _OnPolicy:
    """Type of :data:`ON_POLICY`."""

    def __repr__(self) -> str:
        return "ON_POLICY"


#: Stands for the logging policy itself in :func:`compare`. Its value needs no
#: correction: every weight is 1, so IPS, SNIPS, DR, Switch-DR and clipped IPS
#: (with ``max_weight >= 1``) reduce to the observed mean reward, and DM to the
#: mean of ``q(x_i, a_i)``. Only the logged action's probability is known, so
#: its full ``action_dist`` could not be written down anyway.
ON_POLICY = _OnPolicy()


@dataclass(frozen=True, eq=False)
class _OnPolicyInputs(PolicyInputs):
    """The logging policy evaluated on its own log (see :data:`ON_POLICY`)."""

    def __post_init__(self) -> None:
        if self.estimated_rewards is not None:
            object.__setattr__(
                self,
                "estimated_rewards",
                _check_estimated_rewards(self.feedback, self.estimated_rewards),
            )

    @cached_property
    def target_prob(self) -> FloatArray:
        return self.feedback.pscore

    @cached_property
    def weight(self) -> FloatArray:
        return readonly(np.ones(self.feedback.n))

    @cached_property
    def _dm_values(self) -> FloatArray:
        return self._factual_reward_hat


def _policy_inputs(
    feedback: LoggedFeedback, policy: ArrayLike | _OnPolicy, q: FloatArray | None
) -> PolicyInputs:
    if isinstance(policy, _OnPolicy):
        return _OnPolicyInputs(feedback, np.empty((0, 0)), q)
    return PolicyInputs(feedback, np.asarray(policy), q)


# --------------------------------------------------------------------------- #
# Estimators
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class OffPolicyEstimator(ABC):
    """Base of all estimators: one method, :meth:`round_values`, per subclass.

    The policy value is ``mean(round_values(inputs))``. Intervals come from
    :func:`estimate` / :func:`compare`, which resample that same vector.
    A subclass that sets ``refit_interval = True`` gets, when the caller
    passes a ``refit``, an interval that refits the reward model in every
    resample (see :func:`estimate`).
    A subclass that sets ``self_normalized = True`` returns
    ``v_i = u_i / mean(w)`` (``w`` the importance weights) and is resampled as
    the ratio ``sum(b_i u_i) / sum(b_i w_i)``, i.e. renormalised in every
    bootstrap resample.
    """

    short_name: ClassVar[str]
    self_normalized: ClassVar[bool] = False
    #: True when the estimate's error is mostly the reward model's own (DM):
    #: given a ``refit``, :func:`estimate` and :func:`compare` then take its
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
        feedback: LoggedFeedback,
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
    >>> fb = LoggedFeedback(action=np.array([0, 1]), reward=np.array([1.0, 0.0]),
    ...                     pscore=np.array([0.5, 0.5]), n_actions=2)
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
    >>> fb = LoggedFeedback(action=np.array([0, 1]), reward=np.array([1.0, 0.0]),
    ...                     pscore=np.array([0.5, 0.5]), n_actions=2)
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
    cross-fitted predictions (:func:`fit_reward_model`) so the model never
    scores rows it was fit on.

    Interval. DM's error is mostly the reward model's own estimation error,
    which resampling the per-row vector (the sampling of contexts) cannot see:
    in the test suite's synthetic bandit, with a correctly specified model,
    that interval covered the truth in only ~40% of seeds. Pass a ``refit``
    (:func:`reward_model_refit`) to :func:`estimate` / :func:`compare`: the
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
    >>> fb = LoggedFeedback(action=np.array([0, 1]), reward=np.array([1.0, 0.0]),
    ...                     pscore=np.array([0.5, 0.5]), n_actions=2)
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
    >>> fb = LoggedFeedback(action=np.array([0, 1]), reward=np.array([1.0, 0.0]),
    ...                     pscore=np.array([0.5, 0.5]), n_actions=2)
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
    >>> fb = LoggedFeedback(action=np.array([0, 1]), reward=np.array([1.0, 1.0]),
    ...                     pscore=np.array([0.1, 0.9]), n_actions=2)
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


# --------------------------------------------------------------------------- #
# Intervals: one engine for every estimator
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class Estimate:
    """A policy value with its interval.

    Attributes
    ----------
    estimator : str
        Estimator label (:attr:`OffPolicyEstimator.name`).
    value : float
        Point estimate on the full log.
    lower, upper : float
        ``1 - alpha`` interval.
    std_error : float
        Standard error (bootstrap: standard deviation of the replicates).
    interval : str
        How the interval was made: ``"bootstrap-percentile"`` (Poisson
        bootstrap), ``"normal"`` (CLT on the per-row vector) or
        ``"normal-delta"`` (CLT with the delta method, self-normalised
        estimators).
    alpha : float
    n : int
        Logged rows.
    n_bootstrap : int or None
        Resamples, for bootstrap intervals.
    """

    estimator: str
    value: float
    lower: float
    upper: float
    std_error: float
    interval: str
    alpha: float
    n: int
    n_bootstrap: int | None


@dataclass(frozen=True, eq=False)
class _Column:
    """Per-row values ``v`` and, for self-normalised estimators, ``m = w / mean(w)``.

    The estimate is ``sum(v) / sum(m)`` (``m = 1`` otherwise); a resample with
    row multiplicities ``b`` gives ``sum(b v) / sum(b m)``.
    """

    values: FloatArray
    norm: FloatArray | None

    @cached_property
    def value(self) -> float:
        return float(self.values.mean())

    def influence(self) -> FloatArray:
        # Delta method for the ratio mean(v)/mean(m), with mean(m) == 1.
        if self.norm is None:
            return self.values - self.value
        return self.values - self.value * self.norm


def _column(estimator: OffPolicyEstimator, inputs: PolicyInputs) -> _Column:
    values = np.asarray(estimator.round_values(inputs), dtype=np.float64)
    if values.shape != (inputs.feedback.n,):
        raise ValueError(
            f"{estimator.name}: round_values returned shape {values.shape}, "
            f"expected ({inputs.feedback.n},)"
        )
    norm = None
    if estimator.self_normalized:
        w = inputs.weight
        norm = w / w.mean()
    return _Column(values, norm)


def _check_interval_args(alpha: float, interval: str, n_bootstrap: int) -> None:
    if not isinstance(alpha, int | float) or not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha: expected a number in (0, 1), got {alpha!r}")
    if interval not in ("auto", "bootstrap", "normal"):
        raise ValueError(f"interval: expected 'auto', 'bootstrap' or 'normal', got {interval!r}")
    if (
        isinstance(n_bootstrap, bool)
        or not isinstance(n_bootstrap, int | np.integer)
        or n_bootstrap < 2
    ):
        raise ValueError(f"n_bootstrap: expected an int >= 2, got {n_bootstrap!r}")


def _use_bootstrap(interval: str, n: int) -> bool:
    return interval == "bootstrap" or (interval == "auto" and n <= AUTO_BOOTSTRAP_MAX_ROWS)


def _resolve_seed(random_state: int | None) -> int:
    # Without a seed, draw one once: all passes of a call still share resamples.
    return int(np.random.SeedSequence().generate_state(1)[0]) if random_state is None else int(random_state)


class _PoissonBootstrap:
    """Seeded Poisson(1) bootstrap drawn in row blocks.

    Each row's multiplicity is Poisson(1), the large-n limit of the
    multinomial bootstrap, which lets blocks be drawn independently: memory
    is one ``(n_bootstrap, block)`` weight matrix whatever ``n``. Block ``j``
    always uses the generator seeded by ``(seed, j)``, so every call on the
    same log sees the same resamples: replicates of different policies are
    paired and their differences are a paired bootstrap.
    """

    def __init__(self, n: int, n_bootstrap: int, random_state: int | None) -> None:
        self.n = n
        self.n_bootstrap = n_bootstrap
        self.seed = _resolve_seed(random_state)
        self.block = max(1, min(n, _WEIGHT_BLOCK_CELLS // n_bootstrap))

    def _weights(self) -> Iterator[tuple[slice, FloatArray]]:
        for j, start in enumerate(range(0, self.n, self.block)):
            stop = min(start + self.block, self.n)
            rng = np.random.default_rng([j, self.seed])
            yield (
                slice(start, stop),
                rng.poisson(1.0, (self.n_bootstrap, stop - start)).astype(np.float64),
            )

    def replicates(self, columns: Sequence[_Column], sizes: FloatArray | None = None) -> FloatArray:
        """(n_bootstrap, len(columns)) resampled estimates; NaN where a resample is empty.

        With ``sizes`` the units are clusters: ``columns`` hold per-cluster
        sums and ``sizes`` the rows in each cluster.
        """
        k = len(columns)
        sn = [i for i, c in enumerate(columns) if c.norm is not None]
        num = np.zeros((self.n_bootstrap, k))
        den_sn = np.zeros((self.n_bootstrap, len(sn)))
        total = np.zeros(self.n_bootstrap)
        for rows, w in self._weights():
            num += w @ np.column_stack([c.values[rows] for c in columns])
            total += w.sum(axis=1) if sizes is None else w @ sizes[rows]
            if sn:
                den_sn += w @ np.column_stack([columns[i].norm[rows] for i in sn])  # type: ignore[index]
        den = np.repeat(total[:, None], k, axis=1)
        den[:, sn] = den_sn
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(den > 0, num / den, np.nan)


def _percentile(reps: FloatArray, alpha: float) -> tuple[float, float, float]:
    ok = reps[np.isfinite(reps)]
    if ok.size < 2:
        return math.nan, math.nan, math.nan
    lo, hi = np.quantile(ok, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi), float(ok.std(ddof=1))


class _Clusters:
    """Rows grouped into independent clusters (e.g. customers) for intervals.

    Rows of one customer share that customer's unobserved traits, so their
    outcomes are correlated; treating them as independent understates the
    variance. Intervals then resample, or sum influence over, whole clusters.
    """

    def __init__(self, groups: ArrayLike, n: int) -> None:
        g = np.asarray(groups)
        if g.shape != (n,):
            raise ValueError(f"groups: expected shape ({n},) like the log, got {g.shape}")
        self.codes = np.unique(g, return_inverse=True)[1].astype(np.intp)
        self.n_clusters = int(self.codes.max()) + 1 if n else 0
        self.sizes = np.bincount(self.codes, minlength=self.n_clusters).astype(np.float64)

    def sum(self, v: FloatArray) -> FloatArray:
        return np.bincount(self.codes, weights=v, minlength=self.n_clusters).astype(np.float64)

    def column(self, col: _Column) -> _Column:
        return _Column(self.sum(col.values), None if col.norm is None else self.sum(col.norm))


def _bootstrap_reps(boot: _PoissonBootstrap, cols: Sequence[_Column], clusters: _Clusters | None) -> FloatArray:
    if clusters is None:
        return boot.replicates(cols)
    return boot.replicates([clusters.column(c) for c in cols], clusters.sizes)


def _z_interval(center: float, se: float, alpha: float) -> tuple[float, float, float]:
    z = float(stats.norm.ppf(1 - alpha / 2))
    return center - z * se, center + z * se, se


def _normal(psi: FloatArray, center: float, alpha: float,
            clusters: _Clusters | None = None) -> tuple[float, float, float]:
    if clusters is not None and clusters.n_clusters > 1:
        g = clusters.n_clusters
        totals = clusters.sum(psi)
        return _z_interval(center, float(math.sqrt(g / (g - 1) * float(np.dot(totals, totals))) / psi.size), alpha)
    return _z_interval(center, float(psi.std(ddof=1) / math.sqrt(psi.size)) if psi.size > 1 else math.nan, alpha)


#: Second entry of the refit bootstrap's seed, so its resamples are drawn from
#: a stream of their own (not those of the context-only bootstrap).
_REFIT_STREAM = 0x5EF17


def _check_refit_args(refit: RewardRefit | None, n_refit: int) -> None:
    if refit is not None and not callable(refit):
        raise ValueError(
            "refit: expected a callable (row multiplicities) -> (n, n_actions) predictions, "
            f"got {type(refit).__name__}"
        )
    if isinstance(n_refit, bool) or not isinstance(n_refit, int | np.integer) or n_refit < 2:
        raise ValueError(f"n_refit: expected an int >= 2, got {n_refit!r}")


def _refit_replicates(
    feedback: LoggedFeedback,
    policies: Sequence[ArrayLike | _OnPolicy],
    estimators: Sequence[OffPolicyEstimator],
    refit: RewardRefit,
    n_refit: int,
    random_state: int | None,
    clusters: _Clusters | None,
) -> FloatArray:
    """(n_refit, policies, estimators) estimates, the reward model refitted per resample.

    Resample ``b`` gives every unit (row, or cluster with ``clusters``) a
    Poisson(1) multiplicity; ``refit`` fits the reward model on that resample
    and the estimate is the multiplicity-weighted mean of the per-row vector
    under the refitted predictions. Every policy and estimator shares the
    resamples, so differences (lifts) are paired. NaN where a resample is empty.
    """
    rng = np.random.default_rng([_resolve_seed(random_state), _REFIT_STREAM])
    units = feedback.n if clusters is None else clusters.n_clusters
    reps = np.full((n_refit, len(policies), len(estimators)), np.nan)
    for b in range(n_refit):
        mult = rng.poisson(1.0, units).astype(np.int64)
        if clusters is not None:
            mult = mult[clusters.codes]
        if not mult.any():
            continue
        try:
            q = _check_estimated_rewards(feedback, np.asarray(refit(mult.copy())))
        except ValueError as e:
            raise ValueError(f"refit: returned unusable predictions ({e})") from None
        wt = mult.astype(np.float64)
        for i, policy in enumerate(policies):
            inputs = _policy_inputs(feedback, policy, q)
            for j, est in enumerate(estimators):
                col = _column(est, inputs)
                den = float(wt.sum()) if col.norm is None else float(wt @ col.norm)
                reps[b, i, j] = float(wt @ col.values) / den if den > 0 else math.nan
    return reps


def _refit_interval(reps: FloatArray, center: float, alpha: float) -> tuple[float, float, float]:
    # value +- z * sd: with tens of refits the sd is stable where tail quantiles are not.
    ok = reps[np.isfinite(reps)]
    if ok.size < 2:
        return math.nan, math.nan, math.nan
    return _z_interval(center, float(ok.std(ddof=1)), alpha)


def estimate(
    estimator: OffPolicyEstimator,
    feedback: LoggedFeedback,
    action_dist: ArrayLike,
    estimated_rewards: ArrayLike | None = None,
    *,
    alpha: float = 0.05,
    interval: IntervalKind = "auto",
    n_bootstrap: int = 1000,
    random_state: int | None = 0,
    groups: ArrayLike | None = None,
    refit: RewardRefit | None = None,
    n_refit: int = 50,
) -> Estimate:
    """Estimate one target policy's value with a ``1 - alpha`` interval.

    Parameters
    ----------
    estimator : OffPolicyEstimator
    feedback : LoggedFeedback
    action_dist : (n, n_actions) array
        Target policy, rows summing to 1.
    estimated_rewards : (n, n_actions) array, optional
        Reward-model predictions (DM and the DR family need them).
    alpha : float
        Miscoverage; 0.05 gives a 95% interval.
    interval : {"auto", "bootstrap", "normal"}
        ``"bootstrap"``: percentile interval of a seeded Poisson bootstrap of
        the per-row vector (self-normalised estimators renormalised per
        resample). ``"normal"``: ``value +- z se`` with ``se`` the standard
        deviation of the per-row influence values over ``sqrt(n)`` (delta
        method for SNIPS). ``"auto"`` (default) bootstraps up to
        :data:`AUTO_BOOTSTRAP_MAX_ROWS` rows and uses the normal interval above.
    n_bootstrap : int
        Resamples (default 1000).
    random_state : int or None
        Seed of the bootstrap; the same seed gives the same interval.
    groups : (n,) array, optional
        Cluster label per row (e.g. the customer). Rows of a cluster are
        resampled together (bootstrap) or their influence summed (normal,
        cluster-robust), for logs whose rows are not independent.
    refit : callable, optional
        Refits the reward model on a resample (:data:`RewardRefit`, e.g.
        :func:`reward_model_refit`). For estimators whose error is mostly the
        model's own (``refit_interval``: :class:`DirectMethod`), the interval
        is then ``value +- z * sd`` over ``n_refit`` Poisson (cluster)
        resamples that each refit the model and re-estimate
        (``interval="refit-bootstrap"``), whatever ``interval`` says. Other
        estimators ignore it.
    n_refit : int
        Refits (default 50; each costs one fit of the reward model).

    Returns
    -------
    Estimate

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> fb = LoggedFeedback(action=rng.integers(0, 3, 600), reward=rng.random(600),
    ...                     pscore=np.full(600, 1 / 3), n_actions=3)
    >>> uniform = np.full((600, 3), 1 / 3)
    >>> e = estimate(SNIPS(), fb, uniform, interval="normal")
    >>> e.interval, round(e.value, 3) == round(float(fb.reward.mean()), 3)
    ('normal-delta', True)
    """
    _check_interval_args(alpha, interval, n_bootstrap)
    _check_refit_args(refit, n_refit)
    inputs = PolicyInputs(
        feedback,
        np.asarray(action_dist),
        None if estimated_rewards is None else np.asarray(estimated_rewards),
    )
    col = _column(estimator, inputs)
    clusters = None if groups is None else _Clusters(groups, feedback.n)
    if refit is not None and estimator.refit_interval:
        reps = _refit_replicates(
            feedback, [inputs.action_dist], [estimator], refit, n_refit, random_state, clusters
        )
        lo, hi, se = _refit_interval(reps[:, 0, 0], col.value, alpha)
        kind, b = "refit-bootstrap", n_refit
    elif _use_bootstrap(interval, feedback.n):
        units = feedback.n if clusters is None else clusters.n_clusters
        boot = _PoissonBootstrap(units, n_bootstrap, random_state)
        lo, hi, se = _percentile(_bootstrap_reps(boot, [col], clusters)[:, 0], alpha)
        kind, b = "bootstrap-percentile", n_bootstrap
    else:
        lo, hi, se = _normal(col.influence(), col.value, alpha, clusters)
        kind, b = ("normal-delta" if col.norm is not None else "normal"), None
    return Estimate(estimator.name, col.value, lo, hi, se, kind, alpha, feedback.n, b)


# --------------------------------------------------------------------------- #
# Overlap diagnostics
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class OverlapDiagnostics:
    """Can this log support evaluating this target policy?

    Attributes
    ----------
    n : int
        Logged rows.
    ess : float
        Kish effective sample size of the importance weights,
        ``(sum w)^2 / sum w^2`` (0 when every weight is 0) [5]_.
    ess_share : float
        ``ess / n``.
    max_weight : float
        Largest importance weight.
    mean_weight : float
        ``mean(w)``; estimates ``1 -`` (target mass off the logging support),
        so values well below 1 also signal missing support.
    unsupported_mass : float
        Share of the target's probability mass, averaged over logged rows,
        that the log shows the logging policy could not have explored. The
        logging support is only observable through logged actions, so this is
        a *lower bound*: mass on actions that never appear in the log, plus,
        on rows logged with ``pscore == 1`` (a deterministic choice in that
        context), all mass on actions other than the logged one.
    deterministic_share : float
        Share of rows logged with ``pscore == 1``.
    supported : bool
        False when ``unsupported_mass > max_unsupported_mass`` or
        ``ess < min_ess``.
    reason : str
        Plain-language explanation, with the remedy when unsupported.
    """

    n: int
    ess: float
    ess_share: float
    max_weight: float
    mean_weight: float
    unsupported_mass: float
    deterministic_share: float
    supported: bool
    reason: str


_HOLDOUT_ADVICE = (
    "Run a randomised holdout (e.g. epsilon-greedy or uniform exploration on a share of "
    "traffic, logging each action's propensity) and evaluate on that log."
)


def _diagnose(
    inputs: PolicyInputs, min_ess: float, max_unsupported_mass: float
) -> OverlapDiagnostics:
    fb = inputs.feedback
    if isinstance(inputs, _OnPolicyInputs):
        return OverlapDiagnostics(
            n=fb.n, ess=float(fb.n), ess_share=1.0, max_weight=1.0, mean_weight=1.0,
            unsupported_mass=0.0, deterministic_share=float((fb.pscore >= 1.0).mean()),
            supported=True, reason="on-policy: the logging policy's value is its observed mean",
        )
    w = inputs.weight
    sum_w = float(w.sum())
    sum_w2 = float(np.dot(w, w))
    ess = sum_w**2 / sum_w2 if sum_w2 > 0 else 0.0
    deterministic = fb.pscore >= 1.0
    never_logged = fb.action_counts == 0
    off_support = inputs.action_dist[:, never_logged].sum(axis=1, dtype=np.float64)
    # A deterministic logged choice shows every other action was unexplored there.
    off_support = np.where(deterministic, 1.0 - inputs.target_prob, off_support)
    unsupported = float(off_support.mean())
    det_share = float(deterministic.mean())
    max_w = float(w.max())

    if unsupported > max_unsupported_mass:
        why = (
            f"the target policy puts {unsupported:.1%} of its probability mass on actions the "
            "logging policy is never seen to explore"
        )
        if det_share > 0:
            why += (
                f" (the logging policy was deterministic, pscore == 1, on {det_share:.1%} of rows)"
            )
        reason = (
            f"unsupported: {why}; no estimator can recover those rewards from this log. "
            + _HOLDOUT_ADVICE
        )
        supported = False
    elif ess < min_ess:
        reason = (
            f"unsupported: effective sample size {ess:.1f} is below {min_ess:g} "
            f"(max importance weight {max_w:.3g}); the estimate would rest on a handful of rows. "
            + _HOLDOUT_ADVICE
        )
        supported = False
    else:
        reason = (
            f"supported: ESS {ess:.0f} of {fb.n} rows ({ess / fb.n:.1%}), max importance weight "
            f"{max_w:.3g}, unsupported mass {unsupported:.2%}"
        )
        supported = True
    return OverlapDiagnostics(
        n=fb.n,
        ess=ess,
        ess_share=ess / fb.n,
        max_weight=max_w,
        mean_weight=sum_w / fb.n,
        unsupported_mass=unsupported,
        deterministic_share=det_share,
        supported=supported,
        reason=reason,
    )


def _check_thresholds(min_ess: float, max_unsupported_mass: float) -> None:
    if not isinstance(min_ess, int | float) or not min_ess >= 0:
        raise ValueError(f"min_ess: expected a number >= 0, got {min_ess!r}")
    if not isinstance(max_unsupported_mass, int | float) or not 0 <= max_unsupported_mass < 1:
        raise ValueError(
            f"max_unsupported_mass: expected a number in [0, 1), got {max_unsupported_mass!r}"
        )


def diagnose(
    feedback: LoggedFeedback,
    action_dist: ArrayLike,
    *,
    min_ess: float = 100.0,
    max_unsupported_mass: float = 0.01,
) -> OverlapDiagnostics:
    """Overlap diagnostics of a target policy on a log.

    Parameters
    ----------
    feedback : LoggedFeedback
    action_dist : (n, n_actions) array
        Target policy.
    min_ess : float
        Below this Kish effective sample size the log is declared unable to
        support evaluation (default 100).
    max_unsupported_mass : float
        Tolerated target mass outside the observed logging support (default
        1%); see :attr:`OverlapDiagnostics.unsupported_mass`.

    Returns
    -------
    OverlapDiagnostics

    Examples
    --------
    >>> import numpy as np
    >>> fb = LoggedFeedback(action=np.zeros(500, dtype=int), reward=np.ones(500),
    ...                     pscore=np.ones(500), n_actions=2)   # always action 0, deterministically
    >>> d = diagnose(fb, np.tile([0.0, 1.0], (500, 1)))          # target: always action 1
    >>> d.supported, d.unsupported_mass
    (False, 1.0)
    """
    _check_thresholds(min_ess, max_unsupported_mass)
    return _diagnose(PolicyInputs(feedback, np.asarray(action_dist)), min_ess, max_unsupported_mass)


# --------------------------------------------------------------------------- #
# Comparing policies
# --------------------------------------------------------------------------- #


def compare(
    feedback: LoggedFeedback,
    policies: Mapping[str, ArrayLike | _OnPolicy],
    estimators: Sequence[OffPolicyEstimator] | None = None,
    estimated_rewards: ArrayLike | None = None,
    *,
    reference: str | None = None,
    alpha: float = 0.05,
    interval: IntervalKind = "auto",
    n_bootstrap: int = 1000,
    random_state: int | None = 0,
    min_ess: float = 100.0,
    max_unsupported_mass: float = 0.01,
    groups: ArrayLike | None = None,
    refit: RewardRefit | None = None,
    n_refit: int = 50,
) -> pd.DataFrame:
    """Estimate several target policies with several estimators, plus lifts.

    Every (policy, estimator) pair uses the same resamples (or, for normal
    intervals, the same rows), so the lift over the reference policy is a
    *paired* difference: its bootstrap interval comes from the replicate
    differences, its normal interval from the difference of per-row influence
    vectors.

    Parameters
    ----------
    feedback : LoggedFeedback
    policies : mapping of name -> (n, n_actions) array or :data:`ON_POLICY`
        Target policies. Arrays are read one at a time, so a lazy mapping that
        builds each on access keeps memory at one policy for normal intervals.
        :data:`ON_POLICY` stands for the logging policy itself (the usual
        reference for lifts).
    estimators : sequence of OffPolicyEstimator, optional
        Default: ``IPS, SNIPS`` plus ``DM, DR`` when ``estimated_rewards`` is
        given.
    estimated_rewards : (n, n_actions) array, optional
        Reward-model predictions shared by every policy.
    reference : str, optional
        Policy the lifts are measured against (default: the first).
    alpha, interval, n_bootstrap, random_state
        As in :func:`estimate` (default ``"auto"``).
    min_ess, max_unsupported_mass
        As in :func:`diagnose`.
    groups : (n,) array, optional
        Cluster label per row, as in :func:`estimate`.
    refit, n_refit
        As in :func:`estimate`: estimators with ``refit_interval`` (DM) take
        their value and lift intervals from ``n_refit`` resamples that refit
        the reward model (paired across policies); ``interval`` is then
        ``"refit-bootstrap"`` on their rows.

    Returns
    -------
    DataFrame
        One row per (policy, estimator): ``policy, estimator, value, lower,
        upper, std_error, lift, lift_lower, lift_upper, interval, alpha, n,
        ess, ess_share, max_weight, unsupported_mass, supported, reason``.
        ``df.attrs["reference"]`` names the reference policy.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> n = 1_000
    >>> a = rng.integers(0, 2, n)
    >>> fb = LoggedFeedback(action=a, reward=rng.binomial(1, 0.2 + 0.2 * a).astype(float),
    ...                     pscore=np.full(n, 0.5), n_actions=2)
    >>> pols = {"always_0": np.tile([1.0, 0.0], (n, 1)), "always_1": np.tile([0.0, 1.0], (n, 1))}
    >>> df = compare(fb, pols, n_bootstrap=200)
    >>> df[["policy", "estimator"]].values.tolist()
    [['always_0', 'IPS'], ['always_0', 'SNIPS'], ['always_1', 'IPS'], ['always_1', 'SNIPS']]
    >>> bool((df.query("policy == 'always_1'")["lift_lower"] > 0).all())
    True
    """
    _check_interval_args(alpha, interval, n_bootstrap)
    _check_thresholds(min_ess, max_unsupported_mass)
    _check_refit_args(refit, n_refit)
    names = list(policies)
    if not names:
        raise ValueError("policies: expected at least one target policy")
    ref = names[0] if reference is None else reference
    if ref not in policies:
        raise ValueError(f"reference: {ref!r} is not a policy name; choose from {names}")
    q = None
    if estimated_rewards is not None:
        q = _check_estimated_rewards(feedback, np.asarray(estimated_rewards))
    if estimators is None:
        est_list: list[OffPolicyEstimator] = [IPS(), SNIPS()]
        if q is not None:
            est_list += [DirectMethod(), DoublyRobust()]
    else:
        est_list = list(estimators)
    if not est_list:
        raise ValueError("estimators: expected at least one estimator")
    labels = [e.name for e in est_list]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise ValueError(f"estimators: duplicate estimators {dupes}")

    n = feedback.n
    bootstrap = _use_bootstrap(interval, n)
    z_kind = {False: "normal", True: "normal-delta"}
    # Reference first: its per-row vectors (normal) are needed for every lift.
    order = [ref] + [p for p in names if p != ref]
    results: dict[tuple[str, str], dict[str, Any]] = {}
    diags: dict[str, OverlapDiagnostics] = {}
    ref_cols: list[_Column] = []
    pending: list[tuple[str, str, _Column]] = []
    replicates: dict[tuple[str, str], FloatArray] = {}
    clusters = None if groups is None else _Clusters(groups, n)
    units = n if clusters is None else clusters.n_clusters
    boot = _PoissonBootstrap(units, n_bootstrap, random_state) if bootstrap else None

    def flush() -> None:
        if boot is None or not pending:
            return
        reps = _bootstrap_reps(boot, [c for _, _, c in pending], clusters)
        for j, (p, e, _) in enumerate(pending):
            replicates[(p, e)] = reps[:, j]
        pending.clear()

    for p in order:
        inputs = _policy_inputs(feedback, policies[p], q)
        diags[p] = _diagnose(inputs, min_ess, max_unsupported_mass)
        cols = [_column(e, inputs) for e in est_list]
        for e, label, col in zip(est_list, labels, cols, strict=True):
            row: dict[str, Any] = {"value": col.value}
            if boot is not None:
                pending.append((p, label, col))
            else:
                row["lower"], row["upper"], row["std_error"] = _normal(
                    col.influence(), col.value, alpha, clusters
                )
                row["interval"] = z_kind[e.self_normalized]
                if p == ref:
                    ref_cols.append(col)
                rc = ref_cols[labels.index(label)]
                lift = col.value - rc.value
                if p == ref:
                    row["lift_lower"], row["lift_upper"] = 0.0, 0.0
                else:
                    lo, hi, _ = _normal(col.influence() - rc.influence(), lift, alpha, clusters)
                    row["lift_lower"], row["lift_upper"] = lo, hi
                row["lift"] = lift
            results[(p, label)] = row
        if (
            boot is not None
            and sum(c.values.nbytes * 2 for _, _, c in pending) > _COLUMN_BUDGET_BYTES
        ):
            flush()
    flush()

    if boot is not None:
        for (p, label), row in results.items():
            reps = replicates[(p, label)]
            row["lower"], row["upper"], row["std_error"] = _percentile(reps, alpha)
            row["interval"] = "bootstrap-percentile"
            row["lift"] = row["value"] - results[(ref, label)]["value"]
            lo, hi, _ = _percentile(reps - replicates[(ref, label)], alpha)
            row["lift_lower"], row["lift_upper"] = (0.0, 0.0) if p == ref else (lo, hi)

    refit_ests = [e for e in est_list if e.refit_interval] if refit is not None else []
    if refit is not None and refit_ests:
        reps3 = _refit_replicates(
            feedback, [policies[p] for p in names], refit_ests, refit, n_refit, random_state,
            clusters,
        )
        i_ref = names.index(ref)
        for i, p in enumerate(names):
            for j, e in enumerate(refit_ests):
                row = results[(p, e.name)]
                row["lower"], row["upper"], row["std_error"] = _refit_interval(
                    reps3[:, i, j], row["value"], alpha
                )
                row["interval"] = "refit-bootstrap"
                row["lift"] = row["value"] - results[(ref, e.name)]["value"]
                lo, hi, _ = _refit_interval(reps3[:, i, j] - reps3[:, i_ref, j], row["lift"], alpha)
                row["lift_lower"], row["lift_upper"] = (0.0, 0.0) if p == ref else (lo, hi)

    records = []
    for p in names:
        d = diags[p]
        for label in labels:
            r = results[(p, label)]
            records.append(
                {
                    "policy": p,
                    "estimator": label,
                    "value": r["value"],
                    "lower": r["lower"],
                    "upper": r["upper"],
                    "std_error": r["std_error"],
                    "lift": r["lift"],
                    "lift_lower": r["lift_lower"],
                    "lift_upper": r["lift_upper"],
                    "interval": r["interval"],
                    "alpha": alpha,
                    "n": n,
                    "ess": d.ess,
                    "ess_share": d.ess_share,
                    "max_weight": d.max_weight,
                    "unsupported_mass": d.unsupported_mass,
                    "supported": d.supported,
                    "reason": d.reason,
                }
            )
    out = pd.DataFrame.from_records(records)
    out.attrs["reference"] = ref
    return out


# --------------------------------------------------------------------------- #
# Reward model
# --------------------------------------------------------------------------- #


def fit_reward_model(
    feedback: LoggedFeedback,
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
    feedback : LoggedFeedback
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
    >>> fb = LoggedFeedback(action=a, reward=x[:, 0] + a, pscore=np.full(400, 0.5),
    ...                     n_actions=2, context=x)
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
    feedback: LoggedFeedback,
    estimator: Any | None = None,
    cv: int = 2,
    random_state: int | None = 0,
) -> RewardRefit:
    """The :data:`RewardRefit` of :func:`fit_reward_model` with these arguments.

    Pass it as ``refit`` to :func:`estimate` or :func:`compare` so that the
    direct method's interval includes the reward model's own error.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LinearRegression
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(400, 1)); a = rng.integers(0, 2, 400)
    >>> fb = LoggedFeedback(action=a, reward=x[:, 0] + a + rng.normal(size=400),
    ...                     pscore=np.full(400, 0.5), n_actions=2, context=x)
    >>> q = fit_reward_model(fb, LinearRegression())
    >>> e = estimate(DirectMethod(), fb, np.tile([0.0, 1.0], (400, 1)), q,
    ...              refit=reward_model_refit(fb, LinearRegression()), n_refit=30)
    >>> e.interval, bool(e.lower < e.value < e.upper)
    ('refit-bootstrap', True)
    """

    def refit(multiplicity: NDArray[np.int64]) -> FloatArray:
        return fit_reward_model(feedback, estimator, cv, random_state, resample=multiplicity)

    return refit


# --------------------------------------------------------------------------- #
# Plot
# --------------------------------------------------------------------------- #


def plot_estimates(df: pd.DataFrame, *, metric: Literal["value", "lift"] = "value") -> go.Figure:
    """Point estimates with interval error bars, per policy and estimator.

    Parameters
    ----------
    df : DataFrame
        The output of :func:`compare` (columns ``policy, estimator, value,
        lower, upper`` and, for ``metric="lift"``, ``lift, lift_lower,
        lift_upper``).
    metric : {"value", "lift"}
        Plot policy values, or lifts over the reference policy (with a zero
        line).

    Returns
    -------
    plotly.graph_objects.Figure
        One trace per estimator; policies on the x axis, side by side.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"policy": ["a", "b"], "estimator": ["IPS", "IPS"],
    ...                    "value": [0.1, 0.2], "lower": [0.05, 0.15], "upper": [0.15, 0.25]})
    >>> len(plot_estimates(df).data)
    1
    """
    if metric not in ("value", "lift"):
        raise ValueError(f"metric: expected 'value' or 'lift', got {metric!r}")
    lo_col, hi_col = ("lower", "upper") if metric == "value" else ("lift_lower", "lift_upper")
    needed = ["policy", "estimator", metric, lo_col, hi_col]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ValueError(f"df: missing columns {missing}")
    fig = go.Figure()
    for est, g in df.groupby("estimator", sort=False):
        fig.add_trace(
            go.Scatter(
                x=g["policy"],
                y=g[metric],
                mode="markers",
                name=str(est),
                offsetgroup=str(est),
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": g[hi_col] - g[metric],
                    "arrayminus": g[metric] - g[lo_col],
                },
            )
        )
    interval = df["interval"].iloc[0] if "interval" in df.columns and len(df) else "interval"
    alpha = float(df["alpha"].iloc[0]) if "alpha" in df.columns and len(df) else 0.05
    title = (
        "Estimated policy value"
        if metric == "value"
        else (f"Lift over {df.attrs.get('reference', 'the reference policy')}")
    )
    fig.update_layout(
        title=f"{title} ({1 - alpha:.0%} {interval} intervals)",
        xaxis_title="policy",
        yaxis_title=metric,
        scattermode="group",
        legend_title="estimator",
    )
    if metric == "lift":
        fig.add_hline(y=0.0, line_dash="dot", line_color="grey")
    return fig
