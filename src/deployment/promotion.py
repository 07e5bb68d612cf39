"""The promotion gate: is a served model better than what runs today, on the same evaluation data?

Everything here judges *action distributions*: what a served model
(:meth:`~cadence.deployment.serving.PolicyModel.action_distribution`)
actually draws from, exploration and rules fallbacks included, so the
number recorded on a version and the number a promotion is judged by are
those of the model as served, not of its greedy policy.

* :func:`estimate_served` scores one distribution against the logging
  policy for every metric with the doubly-robust estimator (what
  ``cadence export`` records), with the overlap diagnostics that say
  whether the log supports the estimate at all.
* :func:`gate` scores a candidate against a champion (another version's
  distribution, or :data:`LOGGING_CHAMPION` when the name has no champion
  yet) on net revenue per trigger and returns a :class:`GateResult`: both
  values, their paired difference with a customer-clustered interval, and
  the candidate's support. The rule (:meth:`GateResult.passed`) is the same
  for a first version and a challenger: the candidate's estimate must be
  supported and the ``1 - alpha`` interval of the difference must lie above
  zero. The logging policy is the champion of a name that has none: a first
  version that cannot be shown to beat what wrote the log is not promoted.

:func:`cadence.workflows.promote.promote` loads the registered versions,
runs this gate and moves the alias.

Examples
--------
>>> import tempfile
>>> from cadence.synthetic import ShopConfig, generate_shop
>>> from cadence.workflows.logs import load_log
>>> from cadence.deployment.serving import PolicyModel
>>> from cadence.policies.rules import RulesPolicy
>>> log = load_log(generate_shop(ShopConfig(customers=300, days=60, seed=1), tempfile.mkdtemp() + "/s"))
>>> same = PolicyModel(RulesPolicy(), epsilon=0.1).action_distribution(log.candidates)
>>> res = gate(log, same, same)
>>> res.diff, res.passed  # an equal candidate never passes
(0.0, False)
>>> df = estimate_served(log, same, "rules", metrics=["conversion"])
>>> df[["metric", "policy"]].values.tolist()
[['conversion', 'logging'], ['conversion', 'rules']]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from cadence.contract.actions import LOGGING, N_ACTIONS
from cadence.evaluation.estimators import ON_POLICY, DoublyRobust, OnPolicy

#: The metric the gate judges by: doubly-robust net revenue per trigger.
METRIC = "net_revenue"
#: The champion of a model name that has none yet: the policy that wrote the log.
LOGGING_CHAMPION = LOGGING


@dataclass(frozen=True)
class GateResult:
    """What the gate found: both values, their paired difference, the candidate's support.

    Values are doubly-robust net revenue per trigger with ``1 - alpha``
    intervals clustered by customer; ``diff`` is candidate minus champion on
    the same resamples (paired). ``supported`` and ``reason`` are the
    overlap diagnostics of the candidate's distribution on this log
    (:func:`cadence.evaluation.diagnostics.diagnose`).
    """

    champion: float
    champion_lower: float
    champion_upper: float
    candidate: float
    candidate_lower: float
    candidate_upper: float
    diff: float
    diff_lower: float
    diff_upper: float
    supported: bool
    reason: str
    rows: int
    alpha: float

    @property
    def passed(self) -> bool:
        """Supported, and the interval of the difference lies above zero."""
        return bool(self.supported and self.diff_lower > 0)

    def estimates(self) -> dict[str, float]:
        """The nine numbers (values, bounds, difference), for tags and JSON."""
        return {k: v for k, v in asdict(self).items() if isinstance(v, float) and k != "alpha"}


def code_sets(logged: np.ndarray, dists: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Action codes at which a reward model must be read: the logged one, then every code with mass.

    ``q(x, a)`` is only read at the logged action and where a target
    distribution puts mass, so the sets are ``logged`` followed by each
    row's 1st, 2nd, ... code with positive mass in any of ``dists`` (rows
    with fewer repeat their logged code, which costs nothing twice).

    >>> d = np.zeros((2, N_ACTIONS)); d[0, [0, 3]] = 0.5; d[1, 5] = 1.0
    >>> [s.tolist() for s in code_sets(np.array([1, 5]), [d])]
    [[1, 5], [0, 5], [3, 5]]
    """
    n = len(logged)
    mass = np.zeros((n, N_ACTIONS), bool)
    for d in dists:
        mass |= np.asarray(d) > 0
    mass[np.arange(n), logged] = False
    k = mass.sum(axis=1)
    first = np.argsort(~mass, axis=1, kind="stable")  # codes with mass first, in code order
    return [logged, *(np.where(j < k, first[:, j], logged) for j in range(int(k.max(initial=0))))]


def _dr(log: Any, metric: str, dists: Mapping[str, np.ndarray | OnPolicy], reference: str, *, alpha: float,
        seed: int) -> pd.DataFrame:
    """Doubly-robust values of ``dists`` on ``log`` for one metric, lifts over ``reference``."""
    from cadence.evaluation.compare import compare
    from cadence.models.response import ResponseModel

    arrays = [np.asarray(d) for d in dists.values() if not isinstance(d, OnPolicy)]
    q = ResponseModel(random_state=seed).fit(log, metric).matrix(code_sets(log.action, arrays))
    return compare(log.for_metric(metric), dict(dists), [DoublyRobust()], q, reference=reference, alpha=alpha,
                   random_state=seed, groups=log.groups)


def estimate_served(log: Any, dist: np.ndarray, name: str, *, metrics: Sequence[str] | None = None,
                    alpha: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """Doubly-robust value of a served model's action distribution per metric, with its lift over logging.

    Parameters
    ----------
    log
        A :class:`~cadence.data.bandit.LoggedBandit` of the messages log
        (:func:`cadence.features.logged.log_from_tables`).
    dist
        ``(n, N_ACTIONS)`` probabilities of the served model on
        ``log.candidates`` (exploration included).
    name
        The policy's name in the output (not ``"logging"``).
    metrics
        Default :data:`cadence.features.logged.METRICS`.

    Returns
    -------
    DataFrame
        Rows for ``logging`` and ``name`` per metric, in the columns of
        :func:`cadence.evaluation.offline.evaluate` (``metric, policy,
        estimator, value, lower, upper, lift, lift_lower, lift_upper, ...,
        supported, reason``).

    Examples
    --------
    See the module docstring.
    """
    from cadence.features.logged import METRICS

    if name == LOGGING:
        raise ValueError(f"name: {LOGGING!r} is reserved for the policy that wrote the log")
    frames = [
        _dr(log, metric, {LOGGING: ON_POLICY, name: dist}, LOGGING, alpha=alpha, seed=seed).assign(metric=metric)
        for metric in (METRICS if metrics is None else metrics)
    ]
    out = pd.concat(frames, ignore_index=True)
    cols = ["metric", "policy", "estimator"]
    return out[cols + [c for c in out.columns if c not in cols]]


def gate(log: Any, champion: np.ndarray | OnPolicy, candidate: np.ndarray, *, alpha: float = 0.05,
         seed: int = 0) -> GateResult:
    """Doubly-robust net revenue of a candidate and a champion on ``log`` and their paired difference.

    Parameters
    ----------
    log
        The evaluation data's :class:`~cadence.data.bandit.LoggedBandit`.
    champion
        The champion's ``(n, N_ACTIONS)`` distribution, or
        :data:`~cadence.evaluation.estimators.ON_POLICY` for the logging
        policy (the champion of a name without one).
    candidate
        The candidate's ``(n, N_ACTIONS)`` distribution.
    alpha
        ``1 - alpha`` intervals, clustered by customer.
    """
    df = _dr(log, METRIC, {"champion": champion, "candidate": candidate}, "champion", alpha=alpha, seed=seed)
    ch = df[df["policy"] == "champion"].iloc[0]
    ca = df[df["policy"] == "candidate"].iloc[0]
    return GateResult(
        champion=float(ch["value"]), champion_lower=float(ch["lower"]), champion_upper=float(ch["upper"]),
        candidate=float(ca["value"]), candidate_lower=float(ca["lower"]), candidate_upper=float(ca["upper"]),
        diff=float(ca["lift"]), diff_lower=float(ca["lift_lower"]), diff_upper=float(ca["lift_upper"]),
        supported=bool(ca["supported"]), reason=str(ca["reason"]), rows=int(log.n), alpha=float(alpha),
    )
