"""The interval engine: one way to turn per-row values into intervals, for every estimator.

Everything that resamples or clusters a log lives here, public, and is
shared by the off-policy estimators (:mod:`cadence.evaluation.compare`), the
randomised-holdout readout (:mod:`cadence.evaluation.holdout`) and the
sequence lift (:mod:`cadence.simulation.sequences`):

* :class:`RowValues` (:func:`row_values` of an estimator): per-row values
  ``v`` and, for self-normalised estimators, the normaliser ``m``; the
  estimate is ``sum(v) / sum(m)``.
* :class:`PoissonBootstrap`: a seeded Poisson(1) bootstrap drawn in row
  blocks, the same resamples for every call on one log (paired lifts);
  :func:`bootstrap_replicates` runs it on rows or on :class:`Clusters`.
* :class:`Clusters`: rows grouped into independent units (customers) for
  cluster bootstraps and cluster-robust normal intervals.
* :func:`percentile_interval` (bootstrap replicates), :func:`normal_interval`
  (CLT / delta method on influence values), :func:`z_interval`, :func:`t_interval` (a mean over seeds),
  :func:`sd_interval` (``value +- z * sd`` of replicates) and
  :func:`hajek_mean` (a weighted mean with its delta-method variance).
* :func:`refit_replicates`: resamples that refit the reward model
  (:data:`~cadence.evaluation.reward_models.RewardRefit`), for estimators
  whose error is mostly the model's own.

Every interval function returns ``(lower, upper, std_error)``.

Examples
--------
>>> import numpy as np
>>> values = RowValues(np.array([1.0, 0.0, 1.0, 1.0]), None)
>>> boot = PoissonBootstrap(4, 200, random_state=0)
>>> lo, hi, se = percentile_interval(bootstrap_replicates(boot, [values], None)[:, 0], alpha=0.1)
>>> bool(lo <= values.value <= hi)
True
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from cadence.data.bandit import FloatArray, LoggedBandit
from cadence.evaluation.estimators import (
    OffPolicyEstimator,
    OnPolicy,
    PolicyInputs,
    check_estimated_rewards,
    policy_inputs,
)
from cadence.evaluation.reward_models import RewardRefit

IntervalKind = Literal["auto", "bootstrap", "normal"]

#: ``interval="auto"`` bootstraps logs up to this many rows and uses the normal
#: (CLT / delta-method) interval above it, where the bootstrap's cost (rows x
#: resamples Poisson draws) stops paying for itself and the CLT is accurate.
AUTO_BOOTSTRAP_MAX_ROWS = 100_000

#: Bootstrap weights are drawn for at most this many (resample x row) cells at a
#: time, bounding the weight block to ~32 MB whatever the log size.
WEIGHT_BLOCK_CELLS = 4_000_000


@dataclass(frozen=True, eq=False)
class RowValues:
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


def row_values(estimator: OffPolicyEstimator, inputs: PolicyInputs) -> RowValues:
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
    return RowValues(values, norm)


def check_interval_args(alpha: float, interval: str, n_bootstrap: int) -> None:
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


def use_bootstrap(interval: str, n: int) -> bool:
    return interval == "bootstrap" or (interval == "auto" and n <= AUTO_BOOTSTRAP_MAX_ROWS)


def resolve_seed(random_state: int | None) -> int:
    # Without a seed, draw one once: all passes of a call still share resamples.
    return int(np.random.SeedSequence().generate_state(1)[0]) if random_state is None else int(random_state)


class PoissonBootstrap:
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
        self.seed = resolve_seed(random_state)
        self.block = max(1, min(n, WEIGHT_BLOCK_CELLS // n_bootstrap))

    def _weights(self) -> Iterator[tuple[slice, FloatArray]]:
        for j, start in enumerate(range(0, self.n, self.block)):
            stop = min(start + self.block, self.n)
            rng = np.random.default_rng([j, self.seed])
            yield (
                slice(start, stop),
                rng.poisson(1.0, (self.n_bootstrap, stop - start)).astype(np.float64),
            )

    def replicates(self, columns: Sequence[RowValues], sizes: FloatArray | None = None) -> FloatArray:
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


def percentile_interval(reps: FloatArray, alpha: float) -> tuple[float, float, float]:
    ok = reps[np.isfinite(reps)]
    if ok.size < 2:
        return math.nan, math.nan, math.nan
    lo, hi = np.quantile(ok, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi), float(ok.std(ddof=1))


class Clusters:
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

    def column(self, col: RowValues) -> RowValues:
        return RowValues(self.sum(col.values), None if col.norm is None else self.sum(col.norm))


def bootstrap_replicates(boot: PoissonBootstrap, cols: Sequence[RowValues], clusters: Clusters | None) -> FloatArray:
    if clusters is None:
        return boot.replicates(cols)
    return boot.replicates([clusters.column(c) for c in cols], clusters.sizes)


def z_interval(center: float, se: float, alpha: float) -> tuple[float, float, float]:
    z = float(stats.norm.ppf(1 - alpha / 2))
    return center - z * se, center + z * se, se


def t_interval(values: ArrayLike, alpha: float) -> tuple[float, float, float]:
    """Student-t interval of the mean of a few independent values (e.g. one per seed); NaN below two.

    >>> [round(v, 3) for v in t_interval([1.0, 2.0, 3.0], 0.05)]
    [-0.484, 4.484, 0.577]
    """
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        return math.nan, math.nan, math.nan
    se = float(x.std(ddof=1) / math.sqrt(x.size))
    half = float(stats.t.ppf(1 - alpha / 2, x.size - 1)) * se
    center = float(x.mean())
    return center - half, center + half, se


def normal_interval(psi: FloatArray, center: float, alpha: float,
            clusters: Clusters | None = None) -> tuple[float, float, float]:
    if clusters is not None and clusters.n_clusters > 1:
        g = clusters.n_clusters
        totals = clusters.sum(psi)
        return z_interval(center, float(math.sqrt(g / (g - 1) * float(np.dot(totals, totals))) / psi.size), alpha)
    return z_interval(center, float(psi.std(ddof=1) / math.sqrt(psi.size)) if psi.size > 1 else math.nan, alpha)


#: Second entry of the refit bootstrap's seed, so its resamples are drawn from
#: a stream of their own (not those of the context-only bootstrap).
_REFIT_STREAM = 0x5EF17


def check_refit_args(refit: RewardRefit | None, n_refit: int) -> None:
    if refit is not None and not callable(refit):
        raise ValueError(
            "refit: expected a callable (row multiplicities) -> (n, n_actions) predictions, "
            f"got {type(refit).__name__}"
        )
    if isinstance(n_refit, bool) or not isinstance(n_refit, int | np.integer) or n_refit < 2:
        raise ValueError(f"n_refit: expected an int >= 2, got {n_refit!r}")


def refit_replicates(
    feedback: LoggedBandit,
    policies: Sequence[ArrayLike | OnPolicy],
    estimators: Sequence[OffPolicyEstimator],
    refit: RewardRefit,
    n_refit: int,
    random_state: int | None,
    clusters: Clusters | None,
) -> FloatArray:
    """(n_refit, policies, estimators) estimates, the reward model refitted per resample.

    Resample ``b`` gives every unit (row, or cluster with ``clusters``) a
    Poisson(1) multiplicity; ``refit`` fits the reward model on that resample
    and the estimate is the multiplicity-weighted mean of the per-row vector
    under the refitted predictions. Every policy and estimator shares the
    resamples, so differences (lifts) are paired. NaN where a resample is empty.
    """
    rng = np.random.default_rng([resolve_seed(random_state), _REFIT_STREAM])
    units = feedback.n if clusters is None else clusters.n_clusters
    reps = np.full((n_refit, len(policies), len(estimators)), np.nan)
    for b in range(n_refit):
        mult = rng.poisson(1.0, units).astype(np.int64)
        if clusters is not None:
            mult = mult[clusters.codes]
        if not mult.any():
            continue
        try:
            q = check_estimated_rewards(feedback, np.asarray(refit(mult.copy())))
        except ValueError as e:
            raise ValueError(f"refit: returned unusable predictions ({e})") from None
        wt = mult.astype(np.float64)
        for i, policy in enumerate(policies):
            inputs = policy_inputs(feedback, policy, q)
            for j, est in enumerate(estimators):
                col = row_values(est, inputs)
                den = float(wt.sum()) if col.norm is None else float(wt @ col.norm)
                reps[b, i, j] = float(wt @ col.values) / den if den > 0 else math.nan
    return reps


def sd_interval(reps: FloatArray, center: float, alpha: float) -> tuple[float, float, float]:
    # value +- z * sd: with tens of refits the sd is stable where tail quantiles are not.
    ok = reps[np.isfinite(reps)]
    if ok.size < 2:
        return math.nan, math.nan, math.nan
    return z_interval(center, float(ok.std(ddof=1)), alpha)


def hajek_mean(y: FloatArray, w: FloatArray) -> tuple[float, float]:
    """The weighted (Hajek) mean ``sum(w y) / sum(w)`` and its delta-method variance.

    The variance is ``sum(w_i^2 (y_i - mean)^2) / (sum w)^2``, the squared
    influence values summed (no small-sample correction). ``(nan, nan)``
    when there are no rows or every weight is 0. Pair two with
    :func:`z_interval` for a difference of independent arms, as the holdout
    readout does.

    Examples
    --------
    >>> import numpy as np
    >>> hajek_mean(np.array([1.0, 0.0]), np.array([2.0, 2.0]))
    (0.5, 0.125)
    """
    if len(y) == 0 or w.sum() == 0:
        return float("nan"), float("nan")
    mean = float(np.sum(w * y) / np.sum(w))
    var = float(np.sum(w**2 * (y - mean) ** 2) / np.sum(w) ** 2)
    return mean, var
