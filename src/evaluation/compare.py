"""Estimate target policies with intervals: :func:`estimate` (one) and :func:`compare` (several, with lifts).

Both validate the target policy once (:class:`~cadence.evaluation.estimators.PolicyInputs`),
take each estimator's per-row values and hand them to the interval engine
(:mod:`cadence.evaluation.intervals`): a seeded Poisson bootstrap, a normal
interval, or resamples that refit the reward model, clustered by customer
when ``groups`` are given. :func:`compare` adds lifts over a reference policy
(paired: every policy shares the resamples) and the overlap diagnostics
(:mod:`cadence.evaluation.diagnostics`) of each policy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from cadence.data.bandit import FloatArray, LoggedBandit
from cadence.evaluation.diagnostics import OverlapDiagnostics, check_thresholds, diagnose_inputs
from cadence.evaluation.estimators import (
    IPS,
    SNIPS,
    DirectMethod,
    DoublyRobust,
    OffPolicyEstimator,
    OnPolicy,
    PolicyInputs,
    check_estimated_rewards,
    policy_inputs,
)
from cadence.evaluation.intervals import (
    Clusters,
    IntervalKind,
    PoissonBootstrap,
    RowValues,
    bootstrap_replicates,
    check_interval_args,
    check_refit_args,
    normal_interval,
    percentile_interval,
    refit_replicates,
    row_values,
    sd_interval,
    use_bootstrap,
)
from cadence.evaluation.reward_models import RewardRefit

#: Per-row vectors held at once while bootstrapping many policies together.
_COLUMN_BUDGET_BYTES = 512 * 2**20


@dataclass(frozen=True)
class Estimate:
    """A policy value with its interval.

    Attributes
    ----------
    estimator : str
        Estimator label (:attr:`~cadence.evaluation.estimators.OffPolicyEstimator.name`).
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


def estimate(
    estimator: OffPolicyEstimator,
    feedback: LoggedBandit,
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
    feedback : LoggedBandit
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
        :data:`~cadence.evaluation.intervals.AUTO_BOOTSTRAP_MAX_ROWS` rows and uses the normal interval above.
    n_bootstrap : int
        Resamples (default 1000).
    random_state : int or None
        Seed of the bootstrap; the same seed gives the same interval.
    groups : (n,) array, optional
        Cluster label per row (e.g. the customer). Rows of a cluster are
        resampled together (bootstrap) or their influence summed (normal,
        cluster-robust), for logs whose rows are not independent.
    refit : callable, optional
        Refits the reward model on a resample (:data:`~cadence.evaluation.reward_models.RewardRefit`, e.g.
        :func:`~cadence.evaluation.reward_models.reward_model_refit`). For estimators whose error is mostly the
        model's own (``refit_interval``: :class:`~cadence.evaluation.estimators.DirectMethod`), the interval
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
    >>> fb = LoggedBandit(action=rng.integers(0, 3, 600), reward=rng.random(600),
    ...                   pscore=np.full(600, 1 / 3), n_actions=3)
    >>> uniform = np.full((600, 3), 1 / 3)
    >>> e = estimate(SNIPS(), fb, uniform, interval="normal")
    >>> e.interval, round(e.value, 3) == round(float(fb.reward.mean()), 3)
    ('normal-delta', True)
    """
    check_interval_args(alpha, interval, n_bootstrap)
    check_refit_args(refit, n_refit)
    inputs = PolicyInputs(
        feedback,
        np.asarray(action_dist),
        None if estimated_rewards is None else np.asarray(estimated_rewards),
    )
    col = row_values(estimator, inputs)
    clusters = None if groups is None else Clusters(groups, feedback.n)
    if refit is not None and estimator.refit_interval:
        reps = refit_replicates(
            feedback, [inputs.action_dist], [estimator], refit, n_refit, random_state, clusters
        )
        lo, hi, se = sd_interval(reps[:, 0, 0], col.value, alpha)
        kind, b = "refit-bootstrap", n_refit
    elif use_bootstrap(interval, feedback.n):
        units = feedback.n if clusters is None else clusters.n_clusters
        boot = PoissonBootstrap(units, n_bootstrap, random_state)
        lo, hi, se = percentile_interval(bootstrap_replicates(boot, [col], clusters)[:, 0], alpha)
        kind, b = "bootstrap-percentile", n_bootstrap
    else:
        lo, hi, se = normal_interval(col.influence(), col.value, alpha, clusters)
        kind, b = ("normal-delta" if col.norm is not None else "normal"), None
    return Estimate(estimator.name, col.value, lo, hi, se, kind, alpha, feedback.n, b)


# --------------------------------------------------------------------------- #
# Comparing policies
# --------------------------------------------------------------------------- #


def compare(
    feedback: LoggedBandit,
    policies: Mapping[str, ArrayLike | OnPolicy],
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
    direct_terms: Mapping[str, ArrayLike] | None = None,
    state_weights: Mapping[str, ArrayLike] | None = None,
) -> pd.DataFrame:
    """Estimate several target policies with several estimators, plus lifts.

    Every (policy, estimator) pair uses the same resamples (or, for normal
    intervals, the same rows), so the lift over the reference policy is a
    *paired* difference: its bootstrap interval comes from the replicate
    differences, its normal interval from the difference of per-row influence
    vectors.

    Parameters
    ----------
    feedback : LoggedBandit
    policies : mapping of name -> (n, n_actions) array or :data:`~cadence.evaluation.estimators.ON_POLICY`
        Target policies. Arrays are read one at a time, so a lazy mapping that
        builds each on access keeps memory at one policy for normal intervals.
        :data:`~cadence.evaluation.estimators.ON_POLICY` stands for the logging policy itself (the usual
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
        As in :func:`~cadence.evaluation.diagnostics.diagnose`.
    groups : (n,) array, optional
        Cluster label per row, as in :func:`estimate`.
    refit, n_refit
        As in :func:`estimate`: estimators with ``refit_interval`` (DM) take
        their value and lift intervals from ``n_refit`` resamples that refit
        the reward model (paired across policies); ``interval`` is then
        ``"refit-bootstrap"`` on their rows.
    direct_terms : mapping of name -> (n,) array, optional
        Per policy, the direct-method term in that policy's own contexts
        (:class:`~cadence.evaluation.estimators.PolicyInputs` ``direct_term``;
        e.g. a replayed policy's own fatigue); DM and the DR family read it,
        the DR residual stays at the logged context. Not with ``refit``.
    state_weights : mapping of name -> (n,) array, optional
        Per policy, the state factor of its importance weights
        (:class:`~cadence.evaluation.estimators.PolicyInputs` ``state_weight``;
        e.g. :func:`~cadence.simulation.carryover.fatigue_weights`).

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
    >>> fb = LoggedBandit(action=a, reward=rng.binomial(1, 0.2 + 0.2 * a).astype(float),
    ...                   pscore=np.full(n, 0.5), n_actions=2)
    >>> pols = {"always_0": np.tile([1.0, 0.0], (n, 1)), "always_1": np.tile([0.0, 1.0], (n, 1))}
    >>> df = compare(fb, pols, n_bootstrap=200)
    >>> df[["policy", "estimator"]].values.tolist()
    [['always_0', 'IPS'], ['always_0', 'SNIPS'], ['always_1', 'IPS'], ['always_1', 'SNIPS']]
    >>> bool((df.query("policy == 'always_1'")["lift_lower"] > 0).all())
    True
    """
    check_interval_args(alpha, interval, n_bootstrap)
    check_thresholds(min_ess, max_unsupported_mass)
    check_refit_args(refit, n_refit)
    names = list(policies)
    if not names:
        raise ValueError("policies: expected at least one target policy")
    ref = names[0] if reference is None else reference
    if ref not in policies:
        raise ValueError(f"reference: {ref!r} is not a policy name; choose from {names}")
    terms, states = dict(direct_terms or {}), dict(state_weights or {})
    for what, given in (("direct_terms", terms), ("state_weights", states)):
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise ValueError(f"{what}: {unknown} are not policy names; choose from {names}")
    if terms and refit is not None:
        raise ValueError("direct_terms: not with refit (a refitted reward model would need its own direct terms)")
    q = None
    if estimated_rewards is not None:
        q = check_estimated_rewards(feedback, np.asarray(estimated_rewards))
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
    bootstrap = use_bootstrap(interval, n)
    z_kind = {False: "normal", True: "normal-delta"}
    # Reference first: its per-row vectors (normal) are needed for every lift.
    order = [ref] + [p for p in names if p != ref]
    results: dict[tuple[str, str], dict[str, Any]] = {}
    diags: dict[str, OverlapDiagnostics] = {}
    ref_cols: list[RowValues] = []
    pending: list[tuple[str, str, RowValues]] = []
    replicates: dict[tuple[str, str], FloatArray] = {}
    clusters = None if groups is None else Clusters(groups, n)
    units = n if clusters is None else clusters.n_clusters
    boot = PoissonBootstrap(units, n_bootstrap, random_state) if bootstrap else None

    def flush() -> None:
        if boot is None or not pending:
            return
        reps = bootstrap_replicates(boot, [c for _, _, c in pending], clusters)
        for j, (p, e, _) in enumerate(pending):
            replicates[(p, e)] = reps[:, j]
        pending.clear()

    for p in order:
        inputs = policy_inputs(feedback, policies[p], q, terms.get(p), states.get(p))
        diags[p] = diagnose_inputs(inputs, min_ess, max_unsupported_mass)
        cols = [row_values(e, inputs) for e in est_list]
        for e, label, col in zip(est_list, labels, cols, strict=True):
            row: dict[str, Any] = {"value": col.value}
            if boot is not None:
                pending.append((p, label, col))
            else:
                row["lower"], row["upper"], row["std_error"] = normal_interval(
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
                    lo, hi, _ = normal_interval(col.influence() - rc.influence(), lift, alpha, clusters)
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
            row["lower"], row["upper"], row["std_error"] = percentile_interval(reps, alpha)
            row["interval"] = "bootstrap-percentile"
            row["lift"] = row["value"] - results[(ref, label)]["value"]
            lo, hi, _ = percentile_interval(reps - replicates[(ref, label)], alpha)
            row["lift_lower"], row["lift_upper"] = (0.0, 0.0) if p == ref else (lo, hi)

    refit_ests = [e for e in est_list if e.refit_interval] if refit is not None else []
    if refit is not None and refit_ests:
        reps3 = refit_replicates(
            feedback, [policies[p] for p in names], refit_ests, refit, n_refit, random_state,
            clusters,
        )
        i_ref = names.index(ref)
        for i, p in enumerate(names):
            for j, e in enumerate(refit_ests):
                row = results[(p, e.name)]
                row["lower"], row["upper"], row["std_error"] = sd_interval(
                    reps3[:, i, j], row["value"], alpha
                )
                row["interval"] = "refit-bootstrap"
                row["lift"] = row["value"] - results[(ref, e.name)]["value"]
                lo, hi, _ = sd_interval(reps3[:, i, j] - reps3[:, i_ref, j], row["lift"], alpha)
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
