"""Overlap diagnostics: can this log support evaluating this target policy?

:func:`diagnose` reports the Kish effective sample size of the importance
weights [1]_, the largest weight and the share of the target's probability
mass the log shows the logging policy never explored, and says in plain
language whether an estimate would mean anything (with the remedy when not).
:func:`cadence.evaluation.compare.compare` adds the same diagnostics to each
policy's rows.

References
----------
.. [1] Kish (1965). Survey Sampling (the effective sample size).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from cadence.data.bandit import LoggedBandit
from cadence.evaluation.estimators import OnPolicyInputs, PolicyInputs


@dataclass(frozen=True)
class OverlapDiagnostics:
    """Can this log support evaluating this target policy?

    Attributes
    ----------
    n : int
        Logged rows.
    ess : float
        Kish effective sample size of the importance weights,
        ``(sum w)^2 / sum w^2`` (0 when every weight is 0) [1]_.
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


def diagnose_inputs(
    inputs: PolicyInputs, min_ess: float, max_unsupported_mass: float
) -> OverlapDiagnostics:
    fb = inputs.feedback
    if isinstance(inputs, OnPolicyInputs):
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


def check_thresholds(min_ess: float, max_unsupported_mass: float) -> None:
    if not isinstance(min_ess, int | float) or not min_ess >= 0:
        raise ValueError(f"min_ess: expected a number >= 0, got {min_ess!r}")
    if not isinstance(max_unsupported_mass, int | float) or not 0 <= max_unsupported_mass < 1:
        raise ValueError(
            f"max_unsupported_mass: expected a number in [0, 1), got {max_unsupported_mass!r}"
        )


def diagnose(
    feedback: LoggedBandit,
    action_dist: ArrayLike,
    *,
    min_ess: float = 100.0,
    max_unsupported_mass: float = 0.01,
) -> OverlapDiagnostics:
    """Overlap diagnostics of a target policy on a log.

    Parameters
    ----------
    feedback : LoggedBandit
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
    >>> fb = LoggedBandit(action=np.zeros(500, dtype=int), reward=np.ones(500),
    ...                   pscore=np.ones(500), n_actions=2)   # always action 0, deterministically
    >>> d = diagnose(fb, np.tile([0.0, 1.0], (500, 1)))          # target: always action 1
    >>> d.supported, d.unsupported_mass
    (False, 1.0)
    """
    check_thresholds(min_ess, max_unsupported_mass)
    return diagnose_inputs(PolicyInputs(feedback, np.asarray(action_dist)), min_ess, max_unsupported_mass)
