"""The promotion gate: does a candidate policy beat the champion on the same evaluation data?

:func:`gate` scores both versions' full action distributions (exploration
included) with the doubly-robust estimator of net revenue per trigger and
returns the candidate's lift over the champion as a paired difference with a
customer-clustered interval. :func:`cadence.workflows.promote.promote` loads
the registered versions, runs this gate and moves the alias.

Examples
--------
>>> import tempfile
>>> from cadence.synthetic import ShopConfig, generate_shop
>>> from cadence.workflows.logs import load_log
>>> from cadence.deployment.serving import PolicyModel
>>> from cadence.policies.rules import RulesPolicy
>>> log = load_log(generate_shop(ShopConfig(customers=300, days=60, seed=1), tempfile.mkdtemp() + "/s"))
>>> same = PolicyModel(RulesPolicy(), epsilon=0.1).action_distribution(log.candidates)
>>> est = gate(log, same, same)
>>> est["diff"], est["diff_lower"] > 0  # an equal candidate never passes
(0.0, False)
"""

from __future__ import annotations

from typing import Any

import numpy as np

METRIC = "net_revenue"






def gate(log: Any, champion: np.ndarray, candidate: np.ndarray, *, alpha: float = 0.05,
         seed: int = 0) -> dict[str, float]:
    """Doubly-robust net revenue of two action distributions on ``log`` and their paired difference.

    Returns ``champion, champion_lower, champion_upper, candidate,
    candidate_lower, candidate_upper, diff, diff_lower, diff_upper`` (per
    trigger; ``1 - alpha`` intervals clustered by customer).
    """
    from cadence.evaluation.compare import compare
    from cadence.evaluation.estimators import DoublyRobust
    from cadence.models.response import ResponseModel

    n = log.n
    q_model = ResponseModel(random_state=seed).fit(log, METRIC)
    needed = np.flatnonzero((champion > 0).any(axis=0) | (candidate > 0).any(axis=0))
    q = q_model.matrix([log.action, *(np.full(n, a, np.int64) for a in needed)])
    df = compare(log.for_metric(METRIC), {"champion": champion, "candidate": candidate}, [DoublyRobust()], q,
                 reference="champion", alpha=alpha, random_state=seed, groups=log.groups)
    ch = df[df["policy"] == "champion"].iloc[0]
    ca = df[df["policy"] == "candidate"].iloc[0]
    return {
        "champion": float(ch["value"]), "champion_lower": float(ch["lower"]), "champion_upper": float(ch["upper"]),
        "candidate": float(ca["value"]), "candidate_lower": float(ca["lower"]),
        "candidate_upper": float(ca["upper"]),
        "diff": float(ca["lift"]), "diff_lower": float(ca["lift_lower"]), "diff_upper": float(ca["lift_upper"]),
    }


