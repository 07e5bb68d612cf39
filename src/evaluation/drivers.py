"""Which context columns drive a policy's decisions: permutation importance on the decisions themselves.

For each context column (or named group of columns) the column is shuffled
across the rows, the policy decides again, and the share of rows whose
decision (send or hold, channel, delay, incentive) changes is the column's
**decision share**: 0 when the policy ignores it, large when the decision
hinges on it. Unlike a coefficient or an impurity importance this works for
any policy (rules, uplift models, the policy learner, a policy behind the
orchestrator) and is in the unit a marketer cares about: how many sends it
moves. It says nothing about whether the moves pay; the off-policy
estimates say that.

Why by hand: scikit-learn's :func:`~sklearn.inspection.permutation_importance`
scores a fitted estimator's ``predict`` against a target; a policy's output
is a decision row, with no target, and whole families of columns (all of a
customer's features) are permuted together here, the rows of one customer
moving as one. The estimate is the mean over rows (and ``n_repeats``
shuffles) of the changed indicator; its 95% interval is the normal interval
of the interval engine, clustered by customer when ``customer_id`` is a
column (:func:`cadence.evaluation.intervals.normal_interval`).

Examples
--------
>>> import numpy as np, pandas as pd
>>> from cadence.policies.rules import RulesPolicy
>>> cands = pd.DataFrame({"customer_id": ["a", "b", "c", "d"] * 50, "stage": ["cart_abandon", "birthday"] * 100,
...     "triggered_at": pd.Timestamp("2025-03-01", tz="UTC"), "timezone": "UTC",
...     "opt_in_email": True, "opt_in_push": [True, False] * 100, "opt_in_sms": False, "opt_in_whatsapp": False,
...     "sends_7d": 0, "orders_90d": 1, "days_since_order": 12.0})
>>> d = decision_drivers(RulesPolicy(), cands, columns=["opt_in_push", "sends_7d"], n_repeats=2)
>>> float(d.set_index("feature").loc["sends_7d", "changed"])     # the rules never read sends_7d
0.0
>>> bool(d.set_index("feature").loc["opt_in_push", "changed"] > 0)   # their channel follows the opt-ins
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from cadence.contract.actions import Policy
from cadence.evaluation.intervals import Clusters, normal_interval

#: The decision's parts compared: a row's decision changed when any of them did.
DECISION_PARTS: tuple[str, ...] = ("action", "channel", "delay_minutes", "incentive")
#: Columns never shuffled: identifiers and the trigger's own time and stage (structure, not context).
NOT_CONTEXT: frozenset[str] = frozenset({"customer_id", "stage", "triggered_at", "eligible_at", "products", "query",
                                         "order_id", "message_id", "scored_at", "snapshot_at"})


def _keys(decisions: pd.DataFrame) -> np.ndarray:
    parts = [decisions[c].astype(str).to_numpy() for c in DECISION_PARTS]
    return np.asarray(["|".join(t) for t in zip(*parts, strict=True)], dtype=object)


def decision_drivers(policy: Policy, candidates: pd.DataFrame, *,
                     columns: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
                     n_repeats: int = 3, sample: int | None = 20_000, seed: int = 0,
                     alpha: float = 0.05) -> pd.DataFrame:
    """Share of decisions that change when each context column (or group) is shuffled, with its interval.

    Parameters
    ----------
    policy
        Any fitted policy (``decide(candidates, rng)``). Deterministic
        policies give exact shares; a randomised one also changes with the
        generator, so compare against its own re-run (each decision is taken
        with the same seed before and after the shuffle).
    candidates
        Rows the policy decides on, with every column it reads.
    columns
        Column names, or ``{group name: columns}`` to shuffle together (the
        rows are permuted as one block, so a customer's features stay
        consistent with each other). Default: every column but identifiers,
        stage and times (:data:`NOT_CONTEXT`).
    n_repeats
        Shuffles per column; the changed indicator is averaged over them.
    sample
        Rows drawn (seeded, without replacement) when there are more.
    seed, alpha
        Seed of the sample and the shuffles; 1 - confidence of the interval.

    Returns
    -------
    pandas.DataFrame
        ``feature``, ``changed`` (share of decisions that changed),
        ``lower``, ``upper`` (its interval, clustered by ``customer_id`` when
        present), ``rows``; sorted by ``changed``, largest first.
    """
    if n_repeats < 1:
        raise ValueError(f"n_repeats: expected at least 1, got {n_repeats}")
    rng = np.random.default_rng(seed)
    cands = candidates.reset_index(drop=True)
    if sample is not None and len(cands) > sample:
        cands = cands.iloc[np.sort(rng.choice(len(cands), sample, replace=False))].reset_index(drop=True)
    n = len(cands)
    if n == 0:
        raise ValueError("candidates: no rows to decide on")
    if columns is None:
        columns = [c for c in cands.columns if c not in NOT_CONTEXT]
    groups = {c: [c] for c in columns} if not isinstance(columns, Mapping) else {k: list(v) for k, v in columns.items()}
    missing = sorted({c for cols in groups.values() for c in cols} - set(cands.columns))
    if missing:
        raise ValueError(f"candidates: no column(s) {', '.join(missing)} to shuffle")
    base = _keys(policy.decide(cands, np.random.default_rng(seed)))
    clusters = Clusters(cands["customer_id"].astype(str).to_numpy(), n) if "customer_id" in cands else None
    rows = []
    for name, cols in groups.items():
        changed = np.zeros(n)
        for _ in range(n_repeats):
            perm = rng.permutation(n)
            shuffled = cands.copy()
            for c in cols:
                shuffled[c] = cands[c].to_numpy()[perm]
            changed += _keys(policy.decide(shuffled, np.random.default_rng(seed))) != base
        changed /= n_repeats
        share = float(changed.mean())
        lo, hi, _ = normal_interval(changed - share, share, alpha, clusters)
        rows.append({"feature": name, "changed": share, "lower": max(0.0, lo), "upper": min(1.0, hi), "rows": n})
    return pd.DataFrame(rows).sort_values("changed", ascending=False, kind="stable").reset_index(drop=True)


def drivers_figure(drivers: pd.DataFrame, top: int = 20, title: str | None = None) -> go.Figure:
    """Horizontal bars of :func:`decision_drivers`' top rows, with their 95% intervals."""
    d = drivers.head(top).iloc[::-1]
    fig = go.Figure(go.Bar(
        x=d["changed"], y=d["feature"], orientation="h",
        error_x={"type": "data", "symmetric": False, "array": d["upper"] - d["changed"],
                 "arrayminus": d["changed"] - d["lower"]}))
    fig.update_layout(title=title or "What drives the policy's decisions: share of decisions that change "
                      "when a column is shuffled (95% interval)",
                      xaxis_title="share of decisions changed", xaxis_tickformat=".0%",
                      height=max(300, 22 * len(d) + 120))
    return fig
