"""Off-policy value of an item-selection rule from logs whose shown item sets were randomised.

A message that shows items was logged with the set ``S`` it showed (``items``,
``|``-joined), the candidate set it was drawn from (``item_candidates``, ``m``
products) and the probability of that set (``items_propensity``: ``1 /
binom(m, k)`` when ``k`` of the ``m`` candidates were drawn uniformly). A
deterministic target rule chooses its own set ``T`` of the same size within
the same candidates; its value per message (conversion or click) is estimated
with per-row weights ``w`` times the logged outcome:

* :func:`pi_weights`, the slate **pseudo-inverse** estimator (Swaminathan et
  al. 2017, "Off-policy evaluation for slate recommendation") for uniform
  ``k``-of-``m`` logging of unordered sets:
  ``w = m (m - 1) / (k (m - k)) * (|T ∩ S| - k (k - 1) / (m - 1))``.
  ``E[w] = 1`` under the logging, and ``E[w y] = V(T)`` when the outcome is
  additive over the shown items (each item adds its own term); it uses every
  logged set that overlaps ``T``, so its variance is far below the exact-set
  estimator's. Rows with ``m <= k`` showed every candidate: ``w = 1``.
  When the outcome is not additive (a response to the items' *mean*
  relevance through a link function), PI is biased for rules far from the
  logging; the exact-set estimator is the unbiased check.
* :func:`exact_set_weights`, the exact-set IPS ``1{T = S} / items_propensity``:
  unbiased for any outcome, but only the rows whose logged set is exactly
  ``T`` (one in ``binom(m, k)``) count.

:func:`evaluate_item_rules` turns the per-row values into estimates with
intervals through the interval engine (:mod:`cadence.evaluation.intervals`):
clustered by customer, and differences between rules taken on the same
resamples (paired). :func:`top_within_candidates` is the target side: the
``k`` best-scored candidates of each row, for any scorer.

Rows: the sent messages with items (``action == "send"``, ``items`` present)
on the recommendation stages. Nothing here reads the synthetic world's truth.

Examples
--------
>>> import numpy as np
>>> pi_weights(["a|b"], ["a|c"], ["a|b|c|d"]).round(4).tolist()   # m=4, k=2, one shared item
[1.0]
>>> pi_weights(["a|b"], ["a|b"], ["a|b|c|d"]).round(4).tolist()
[4.0]
>>> pi_weights(["a|b"], ["c|d"], ["a|b|c|d"]).round(4).tolist()
[-2.0]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from cadence.contract.triggers import RECOMMENDATION_STAGES
from cadence.evaluation.intervals import (
    Clusters,
    PoissonBootstrap,
    RowValues,
    bootstrap_replicates,
    check_interval_args,
    normal_interval,
    percentile_interval,
    use_bootstrap,
)

#: Per-message outcomes :func:`item_outcomes` reads from the messages log.
ITEM_METRICS: Mapping[str, str] = {"conversion": "converted_order_id", "click": "clicked_at"}
#: Columns a messages log needs for item off-policy evaluation.
ITEM_LOG_COLUMNS: tuple[str, ...] = ("customer_id", "stage", "action", "items", "items_propensity", "item_candidates")
ItemEstimator = Literal["pi", "exact"]
_SEP = "|"


def _sets(values: ArrayLike) -> list[frozenset[str]]:
    out = []
    for v in np.asarray(values, dtype=object).ravel():
        out.append(frozenset() if v is None or (isinstance(v, float) and np.isnan(v))
                   else frozenset(p for p in str(v).split(_SEP) if p))
    return out


def _sizes(values: ArrayLike) -> np.ndarray:
    return np.fromiter((len(s) for s in _sets(values)), np.int64)


def pi_weights(target_items: ArrayLike, logged_items: ArrayLike, item_candidates: ArrayLike) -> np.ndarray:
    """Pseudo-inverse weights of target sets ``T`` against logged uniform ``k``-of-``m`` sets ``S``.

    ``w = m (m - 1) / (k (m - k)) * (|T ∩ S| - k (k - 1) / (m - 1))`` with
    ``k = |S|`` and ``m`` the candidates; ``w = 1`` where ``m <= k`` (every
    candidate was shown). Each ``T`` must hold ``k`` distinct candidates.

    Examples
    --------
    >>> pi_weights(["a"], ["a"], ["a|b|c"]).tolist()    # k = 1: plain IPS, 1 / (1/3)
    [3.0]
    """
    t, s, c = _sets(target_items), _sets(logged_items), _sets(item_candidates)
    if not len(t) == len(s) == len(c):
        raise ValueError(f"pi_weights: {len(t)} target sets, {len(s)} logged sets, {len(c)} candidate sets")
    w = np.empty(len(t))
    for i, (ti, si, ci) in enumerate(zip(t, s, c, strict=True)):
        k, m = len(si), len(ci)
        if not si <= ci:
            raise ValueError(f"messages: items: row {i} shows {sorted(si - ci)} outside its item_candidates")
        if len(ti) != k or not ti <= ci:
            raise ValueError(f"target items: row {i} must be {k} distinct products of its item_candidates, "
                             f"got {sorted(ti)}")
        if m <= k:
            w[i] = 1.0
            continue
        w[i] = m * (m - 1) / (k * (m - k)) * (len(ti & si) - k * (k - 1) / (m - 1))
    return w


def exact_set_weights(target_items: ArrayLike, logged_items: ArrayLike, items_propensity: ArrayLike) -> np.ndarray:
    """Exact-set IPS weights ``1{T = S} / items_propensity``.

    Examples
    --------
    >>> exact_set_weights(["a|b", "a|b"], ["b|a", "a|c"], [1 / 6, 1 / 6]).tolist()
    [6.0, 0.0]
    """
    t, s = _sets(target_items), _sets(logged_items)
    p = np.asarray(items_propensity, dtype=float).ravel()
    if not len(t) == len(s) == len(p):
        raise ValueError(f"exact_set_weights: {len(t)} target sets, {len(s)} logged sets, {len(p)} propensities")
    if not (np.isfinite(p) & (p > 0) & (p <= 1)).all():
        raise ValueError("messages: items_propensity: expected probabilities in (0, 1] on rows with items")
    same = np.fromiter((a == b for a, b in zip(t, s, strict=True)), bool, len(t))
    return same / p


def item_rows(messages: pd.DataFrame) -> pd.DataFrame:
    """The rows item rules are judged on: sent messages with items on recommendation stages (index reset).

    Raises a clear error when the log lacks what the estimators need.

    Examples
    --------
    >>> item_rows(pd.DataFrame({"customer_id": ["c"], "stage": ["birthday"]}))
    Traceback (most recent call last):
    ...
    ValueError: messages: missing column 'action', 'items', 'items_propensity', 'item_candidates' (item off-policy evaluation needs the shown items, their candidate set and the set's logged probability: a log from a shop with latent tastes)
    """
    missing = [c for c in ITEM_LOG_COLUMNS if c not in messages.columns]
    if missing:
        raise ValueError(f"messages: missing column {', '.join(map(repr, missing))} (item off-policy evaluation "
                         "needs the shown items, their candidate set and the set's logged probability: a log from "
                         "a shop with latent tastes)")
    keep = ((messages["action"] == "send") & messages["items"].notna()
            & messages["stage"].astype(str).isin(list(RECOMMENDATION_STAGES))).to_numpy()
    rows = messages.loc[keep].reset_index(drop=True)
    if not len(rows):
        raise ValueError("messages: no sent message with items on a recommendation stage")
    bad = rows["items_propensity"].isna() | rows["item_candidates"].isna()
    if bad.any():
        col = "items_propensity" if rows["items_propensity"].isna().any() else "item_candidates"
        raise ValueError(f"messages: {col}: missing on {int(bad.sum())} sent message(s) with items")
    p = rows["items_propensity"].to_numpy(dtype=float)
    if not ((p > 0) & (p <= 1)).all():
        raise ValueError("messages: items_propensity: expected probabilities in (0, 1]")
    return rows


def item_outcomes(rows: pd.DataFrame, metric: str) -> np.ndarray:
    """0/1 outcome of each row: converted (``converted_order_id`` present) or clicked (``clicked_at`` present)."""
    if metric not in ITEM_METRICS:
        raise ValueError(f"metric: expected one of {sorted(ITEM_METRICS)}, got {metric!r}")
    col = ITEM_METRICS[metric]
    if col not in rows.columns:
        raise ValueError(f"messages: missing column {col!r} (the {metric} outcome)")
    return rows[col].notna().to_numpy(dtype=float)


def candidate_pairs(item_candidates: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``|``-joined candidate sets -> (row, position, product id) of every candidate.

    >>> [a.tolist() for a in candidate_pairs(pd.Series(["x|y", None, "z"]))]
    [[0, 0, 2], [0, 1, 0], ['x', 'y', 'z']]
    """
    s = pd.Series(np.asarray(item_candidates, dtype=object)).fillna("").astype(str)
    lists = s.str.split(_SEP)
    n = lists.str.len().to_numpy()
    row = np.repeat(np.arange(len(s)), n)
    pos = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
    ids = np.asarray([p for lst in lists.to_numpy() for p in lst], dtype=object)
    keep = ids != ""
    return row[keep], pos[keep], ids[keep]


def top_within_candidates(row: np.ndarray, pos: np.ndarray, product: np.ndarray, score: np.ndarray,
                          n_rows: int, k: int | np.ndarray) -> np.ndarray:
    """The ``k`` best-scored candidates of each row, ``|``-joined in candidate order (None: no candidates).

    Ties (and ``-inf`` or NaN scores) go to the earlier candidate, so a rule
    with nothing to say falls back to the candidate order. ``k`` may differ per row.

    >>> r, p, ids = candidate_pairs(pd.Series(["x|y|z"]))
    >>> top_within_candidates(r, p, ids, np.array([0.1, 0.9, 0.5]), 1, 2).tolist()
    ['y|z']
    """
    kk = np.broadcast_to(np.asarray(k, dtype=np.int64), (n_rows,))
    sc = np.where(np.isfinite(score), score, -np.inf)
    order = np.lexsort((pos, -sc, row))
    r, p, ids = row[order], pos[order], product[order]
    starts = np.searchsorted(r, np.arange(n_rows))
    rank = np.arange(len(r)) - starts[r]
    keep = rank < kk[r]
    r, p, ids = r[keep], p[keep], ids[keep]
    again = np.lexsort((p, r))  # back to candidate order within each row
    out = np.full(n_rows, None, dtype=object)
    frame = pd.DataFrame({"row": r[again], "id": ids[again]})
    if len(frame):
        joined = frame.groupby("row", sort=True)["id"].agg(_SEP.join)
        out[joined.index.to_numpy()] = joined.to_numpy()
    return out


def rule_weights(rows: pd.DataFrame, target_items: ArrayLike, estimator: ItemEstimator = "pi") -> np.ndarray:
    """Per-row weights of a target rule's sets on :func:`item_rows` output."""
    t = np.asarray(target_items, dtype=object)
    if len(t) != len(rows):
        raise ValueError(f"target items: {len(t)} sets for {len(rows)} logged rows")
    if estimator == "pi":
        return pi_weights(t, rows["items"], rows["item_candidates"])
    if estimator == "exact":
        if (_sizes(t) != _sizes(rows["items"])).any():
            raise ValueError("target items: each set must have as many products as the logged one")
        return exact_set_weights(t, rows["items"], rows["items_propensity"])
    raise ValueError(f"estimator: expected 'pi' or 'exact', got {estimator!r}")


def evaluate_item_rules(rows: pd.DataFrame, targets: Mapping[str, ArrayLike], *,
                        metrics: Sequence[str] = ("conversion",), estimators: Sequence[ItemEstimator] = ("pi",),
                        baseline: str | None = None, alpha: float = 0.05, interval: str = "auto",
                        n_bootstrap: int = 500, random_state: int | None = 0) -> pd.DataFrame:
    """Value per message of each target rule, with customer-clustered intervals, and paired differences.

    Parameters
    ----------
    rows : DataFrame
        :func:`item_rows` of a messages log (the rows every rule is judged on).
    targets : mapping of name to array of str
        Each rule's ``|``-joined set per row (e.g. :func:`top_within_candidates`).
    metrics, estimators : sequences
        Outcomes (:data:`ITEM_METRICS`) and weightings (``"pi"``, ``"exact"``).
    baseline : str or None
        A rule name: also report every other rule minus it (``"<rule> - <baseline>"``),
        on the same resamples.
    alpha, interval, n_bootstrap, random_state
        As everywhere in :mod:`cadence.evaluation.intervals`.

    Returns
    -------
    DataFrame
        One row per (metric, estimator, rule or difference): ``estimate``,
        ``lower``, ``upper``, ``std_error``, ``n`` (rows), ``customers``,
        and ``logged`` (the logging policy's own mean outcome).

    Examples
    --------
    >>> log = pd.DataFrame({"customer_id": ["a", "b", "c", "d"], "stage": ["birthday"] * 4, "action": ["send"] * 4,
    ...     "items": ["x", "y", "x", "z"], "items_propensity": [1 / 3] * 4, "item_candidates": ["x|y|z"] * 4,
    ...     "converted_order_id": ["o", None, "o", None]})
    >>> rows = item_rows(log)
    >>> out = evaluate_item_rules(rows, {"x": ["x"] * 4, "y": ["y"] * 4}, baseline="y", interval="normal")
    >>> out[["rule", "estimate"]].values.tolist()
    [['x', 1.5], ['y', 0.0], ['x - y', 1.5]]
    """
    check_interval_args(alpha, interval, n_bootstrap)
    if baseline is not None and baseline not in targets:
        raise ValueError(f"baseline: {baseline!r} is not one of the rules {sorted(targets)}")
    n = len(rows)
    clusters = Clusters(rows["customer_id"].astype(str).to_numpy(), n)
    boot = PoissonBootstrap(clusters.n_clusters, n_bootstrap, random_state) if use_bootstrap(interval, n) else None
    out = []
    for metric in metrics:
        y = item_outcomes(rows, metric)
        for est in estimators:
            names = list(targets)
            vals = [rule_weights(rows, targets[name], est) * y for name in names]
            if baseline is not None:
                b = vals[names.index(baseline)]
                for name, v in list(zip(names, vals, strict=True)):
                    if name != baseline:
                        names.append(f"{name} - {baseline}")
                        vals.append(v - b)
            cols = [RowValues(v, None) for v in vals]
            reps = bootstrap_replicates(boot, cols, clusters) if boot is not None else None
            for j, (name, v) in enumerate(zip(names, vals, strict=True)):
                center = float(v.mean())
                if reps is not None:
                    lo, hi, se = percentile_interval(reps[:, j], alpha)
                else:
                    lo, hi, se = normal_interval(v - center, center, alpha, clusters)
                out.append({"metric": metric, "estimator": est, "rule": name, "estimate": center, "lower": lo,
                            "upper": hi, "std_error": se, "n": n, "customers": clusters.n_clusters,
                            "logged": float(y.mean())})
    return pd.DataFrame(out)


__all__ = ["ITEM_LOG_COLUMNS", "ITEM_METRICS", "candidate_pairs", "evaluate_item_rules", "exact_set_weights",
           "item_outcomes", "item_rows", "pi_weights", "rule_weights", "top_within_candidates"]
