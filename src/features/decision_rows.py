"""Decision rows: each trigger candidate with its customer's features and model scores, as the served policy reads them.

``cadence features`` writes ``trigger_candidates`` (one row per trigger,
with its decision context as of its own ``eligible_at``) and
``customer_features`` (one row per customer as of the run's cutoff); a
scoring step writes ``customer_scores`` (one row per customer: ``scored_at``
and the models' scores). :func:`decision_rows` is the one join of the three:
a left join on ``customer_id``, so the exported policy
(:class:`cadence.deployment.serving.PolicyModel`) scores what the pipeline
wrote without anything re-derived.

* Every candidate is kept, in its order; a customer without features or
  scores gets nulls there (the served model answers such a row with the
  rules when its policy needs that family, and says so).
* A column in both a candidate and a customer table is the candidate's:
  ``orders_90d`` is then counted as of the trigger itself, not as of the
  feature run's cutoff.
* Time: the features and scores are as of their run's cutoff. Score the
  candidates eligible just before it (``cadence features --since``), as a
  serving team does; joined to older candidates they would describe the
  customer after the trigger.

Examples
--------
>>> t = pd.DataFrame({"customer_id": ["a", "b", "a"], "stage": ["birthday", "win_back", "follow_up"],
...                   "orders_90d": [1, 0, 2]})
>>> f = pd.DataFrame({"customer_id": ["a"], "orders_90d": [5], "recency_days": [3.5]})
>>> s = pd.DataFrame({"customer_id": ["b", "a"], "p_alive": [0.2, 0.9]})
>>> decision_rows(t, f, s)
  customer_id      stage  orders_90d  recency_days  p_alive
0           a   birthday           1           3.5      0.9
1           b   win_back           0           NaN      0.2
2           a  follow_up           2           3.5      0.9
"""

from __future__ import annotations

import pandas as pd

KEY = "customer_id"


def _per_customer(table: pd.DataFrame, name: str, taken: pd.Index) -> pd.DataFrame:
    """``table``'s columns not already ``taken``, indexed by a unique customer id."""
    if KEY not in table:
        raise ValueError(f"{name}.{KEY}: missing column")
    ids = table[KEY]
    if ids.isna().any():
        raise ValueError(f"{name}.{KEY}: {int(ids.isna().sum())} missing ids")
    dup = ids.duplicated()
    if dup.any():  # ids are not echoed: they identify customers
        raise ValueError(f"{name}.{KEY}: {int(dup.sum())} duplicate ids (one row per customer expected)")
    keep = [c for c in table.columns if c != KEY and c not in taken]
    return table.set_index(KEY)[keep]


def decision_rows(trigger_candidates: pd.DataFrame, customer_features: pd.DataFrame | None = None,
                  customer_scores: pd.DataFrame | None = None) -> pd.DataFrame:
    """Trigger candidates left-joined with their customer's features and scores on ``customer_id``.

    Parameters
    ----------
    trigger_candidates
        ``trigger_candidates.parquet`` of ``cadence features`` (or any
        candidate rows with a ``customer_id``).
    customer_features
        ``customer_features.parquet``: one row per customer.
    customer_scores
        The scoring step's ``customer_scores.parquet``: one row per customer.

    Returns
    -------
    pandas.DataFrame
        One row per candidate, in order (index 0..n-1): the candidate's
        columns, then the features' and the scores' other columns (nulls for
        a customer without a row there).

    Raises
    ------
    ValueError
        A table without ``customer_id``, or a customer table with missing
        or repeated ids (the message names the table, never an id).
    """
    if KEY not in trigger_candidates:
        raise ValueError(f"trigger_candidates.{KEY}: missing column")
    out = trigger_candidates.reset_index(drop=True)
    ids = out[KEY]
    parts = [out]
    taken = out.columns
    for name, table in (("customer_features", customer_features), ("customer_scores", customer_scores)):
        if table is None:
            continue
        per = _per_customer(table, name, taken)
        # reindex keeps the candidates' order and length (a merge would too, at the cost of a sort key).
        parts.append(per.reindex(pd.Index(ids)).reset_index(drop=True))
        taken = taken.append(per.columns)
    return pd.concat(parts, axis=1) if len(parts) > 1 else out
