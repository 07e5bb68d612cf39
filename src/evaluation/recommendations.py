"""Offline evaluation of recommenders on a time split: hit rate@k, recall@k, NDCG@k with intervals.

Recommenders are fitted on the interactions strictly before ``as_of`` and
judged on what was bought in ``[as_of, as_of + horizon)``
(:func:`time_split` builds both from the shop's tables). For each unit (a
customer, or one order with ``unit="order"``) the relevant set is the products
bought in the window (in that order):

* hit rate@k: 1 if any of the top ``k`` was bought, else 0;
* recall@k: ``|top k & bought| / |bought|``;
* NDCG@k (binary relevance): ``sum over hits of 1 / log2(rank + 1)``
  divided by the same sum for a perfect list, ``sum_{r <= min(k, |bought|)} 1 / log2(r + 1)``.

The metrics are means over units. Intervals come from the shared interval
engine (:mod:`cadence.evaluation.intervals`): a seeded Poisson bootstrap that
resamples whole customers (:class:`~cadence.evaluation.intervals.Clusters`),
with the same resamples for every recommender, so each difference from the
baseline is a paired bootstrap.

Examples
--------
>>> import pandas as pd
>>> recs = pd.DataFrame({"customer_id": ["a", "a", "b"], "product_id": ["x", "y", "z"], "rank": [1, 2, 1],
...                      "score": [2.0, 1.0, 1.0]})
>>> bought = pd.DataFrame({"customer_id": ["a", "b"], "order_id": ["o1", "o2"], "product_id": ["y", "w"]})
>>> ranking_metrics(recs, bought, k=2)[["customer_id", "hit_rate", "recall"]].values.tolist()
[['a', 1.0, 1.0], ['b', 0.0, 0.0]]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from sklearn.base import clone

from cadence.contract.clock import utc
from cadence.evaluation.intervals import (
    Clusters,
    PoissonBootstrap,
    RowValues,
    bootstrap_replicates,
    check_interval_args,
    percentile_interval,
)
from cadence.features.interactions import (
    DEFAULT_WEIGHTS,
    InteractionData,
    load_interactions,
    purchases_between,
)
from cadence.features.purchases import fetch_frame
from cadence.models.recommenders import Recommender

Unit = Literal["customer", "order"]
Population = Literal["with_history", "all"]
#: Metrics of :func:`ranking_metrics`, in column order.
METRICS: tuple[str, ...] = ("hit_rate", "recall", "ndcg")
#: Columns of :func:`compare_recommenders`, in order.
COMPARISON_COLUMNS: tuple[str, ...] = ("recommender", "metric", "k", "value", "lower", "upper", "std_error",
                                       "diff", "diff_lower", "diff_upper", "n_units", "n_customers")


def time_split(con: Any, tables: Mapping[str, Any], as_of: Any, horizon_days: float, *,
               weights: Mapping[str, float] = DEFAULT_WEIGHTS,
               neighbours: int = 50) -> tuple[InteractionData, pd.DataFrame]:
    """The fitting data before ``as_of`` and the order lines of ``[as_of, as_of + horizon_days)``.

    Returns ``(data, purchases)``: an :class:`InteractionData` and a frame
    of ``customer_id``, ``order_id``, ``product_id``, ``ts``.
    """
    if not isinstance(horizon_days, int | float) or horizon_days <= 0:
        raise ValueError(f"horizon_days must be a positive number, got {horizon_days!r}")
    start = utc(as_of, "as_of")
    end = start + pd.Timedelta(days=float(horizon_days))
    data = load_interactions(con, tables, start, weights=weights, neighbours=neighbours)
    bought = fetch_frame(con, purchases_between(tables, start, end), ["customer_id", "ts", "order_id", "product_id"])
    return data, bought


def _check_purchases(purchases: pd.DataFrame, unit: str) -> pd.DataFrame:
    need = ["customer_id", "product_id"] + (["order_id"] if unit == "order" else [])
    missing = [c for c in need if c not in purchases.columns]
    if missing:
        raise ValueError(f"purchases: missing column {', '.join(map(repr, missing))}")
    return purchases


def ranking_metrics(recommendations: pd.DataFrame, purchases: pd.DataFrame, k: int, *,
                    unit: Unit = "customer") -> pd.DataFrame:
    """Hit rate@k, recall@k and NDCG@k of each unit that bought something.

    Parameters
    ----------
    recommendations
        ``customer_id``, ``product_id``, ``rank`` (1 = best), as
        :meth:`~cadence.models.recommenders.Recommender.recommend` returns;
        ranks above ``k`` are ignored.
    purchases
        ``customer_id``, ``product_id`` (and ``order_id`` for
        ``unit="order"``) of the judging window; every customer in it is a
        unit (one without recommendations scores 0).
    k
        List length judged.
    unit
        ``"customer"``: the products a customer bought in the window;
        ``"order"``: each order's products, judged against the customer's list.

    Returns
    -------
    pandas.DataFrame
        ``customer_id`` (and ``order_id``), ``n_relevant`` and :data:`METRICS`.
    """
    if unit not in ("customer", "order"):
        raise ValueError(f"unit: expected 'customer' or 'order', got {unit!r}")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    missing = [c for c in ("customer_id", "product_id", "rank") if c not in recommendations.columns]
    if missing:
        raise ValueError(f"recommendations: missing column {', '.join(map(repr, missing))}")
    keys = ["customer_id"] + (["order_id"] if unit == "order" else [])
    bought = _check_purchases(purchases, unit)[[*keys, "product_id"]].astype(str).drop_duplicates()
    rec = recommendations.loc[recommendations["rank"] <= k, ["customer_id", "product_id", "rank"]]
    rec = rec.astype({"customer_id": str, "product_id": str})
    hits = bought.merge(rec, on=["customer_id", "product_id"], how="left")
    hits["gain"] = np.where(hits["rank"].notna(), 1.0 / np.log2(hits["rank"].fillna(1).to_numpy() + 1.0), 0.0)
    hits["hit"] = hits["rank"].notna().astype(np.float64)
    per = hits.groupby(keys, sort=True).agg(n_relevant=("product_id", "size"), n_hits=("hit", "sum"),
                                            dcg=("gain", "sum")).reset_index()
    discounts = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(1, k + 1) + 1.0))])
    ideal = discounts[np.minimum(per["n_relevant"].to_numpy(), k)]
    per["hit_rate"] = (per["n_hits"] > 0).astype(np.float64)
    per["recall"] = per["n_hits"] / per["n_relevant"]
    per["ndcg"] = per["dcg"] / ideal
    return per[[*keys, "n_relevant", *METRICS]]



def _names_and_baseline(named: Mapping[str, Any], baseline: str | None, what: str) -> tuple[list[str], str]:
    """The names of ``named`` and the baseline among them (the first by default), or a clear error."""
    if not named:
        raise ValueError(f"{what}: give at least one")
    names = list(named)
    base = names[0] if baseline is None else baseline
    if base not in named:
        raise ValueError(f"baseline: {base!r} is not one of {names}")
    return names, base

def compare_recommenders(recommenders: Mapping[str, Recommender], data: InteractionData, purchases: pd.DataFrame,
                         *, k: int = 10, baseline: str | None = None, unit: Unit = "customer",
                         population: Population = "with_history", candidates: Any = None, exclude: Any = None,
                         alpha: float = 0.05, n_bootstrap: int = 1000,
                         random_state: int | None = 0) -> pd.DataFrame:
    """Fit each recommender on ``data`` and judge it on ``purchases``: one table with intervals.

    Parameters
    ----------
    recommenders
        Name to (unfitted) recommender; each is cloned and fitted on ``data``.
    data
        The interactions before ``as_of`` (:func:`time_split`).
    purchases
        Order lines at or after ``data.as_of`` (:func:`time_split`); an
        earlier one is refused (the fit would have seen it).
    k
        List length.
    baseline
        The recommender the differences are taken from (default: the first).
    unit
        ``"customer"`` or ``"order"`` (see :func:`ranking_metrics`).
    population
        ``"with_history"``: only customers with an interaction before
        ``as_of`` (those a message could be personalised for); ``"all"``:
        every buyer in the window.
    candidates, exclude
        Passed to every ``recommend``.
    alpha, n_bootstrap, random_state
        ``1 - alpha`` intervals from ``n_bootstrap`` customer-clustered Poisson
        resamples, seeded.

    Returns
    -------
    pandas.DataFrame
        :data:`COMPARISON_COLUMNS`: per recommender and metric the mean over
        units, its interval and standard error, the paired difference from
        the baseline with its interval (0 for the baseline itself), the
        number of units and of customers.

    Examples
    --------
    >>> import pandas as pd
    >>> from cadence.features.interactions import load_interactions
    >>> from cadence.features.purchases import duckdb_tables
    >>> from cadence.models.recommenders import PopularityRecommender, RecentlyViewedRecommender
    >>> orders = pd.DataFrame({"order_id": ["o1", "o2", "o3"], "customer_id": ["a", "b", "a"], "revenue": [1.0] * 3,
    ...                        "ts": pd.to_datetime(["2025-01-02", "2025-01-03", "2025-02-05"], utc=True)})
    >>> items = pd.DataFrame({"order_id": ["o1", "o2", "o3"], "product_id": ["x", "y", "y"]})
    >>> con, t = duckdb_tables({"orders": orders, "order_items": items})
    >>> data, bought = time_split(con, t, "2025-02-01", 30)
    >>> table = compare_recommenders({"popular": PopularityRecommender(), "recent": RecentlyViewedRecommender()},
    ...                              data, bought, k=2, n_bootstrap=50)
    >>> table.loc[table.metric == "hit_rate", ["recommender", "value"]].values.tolist()
    [['popular', 1.0], ['recent', 0.0]]
    """
    check_interval_args(alpha, "bootstrap", n_bootstrap)
    names, base = _names_and_baseline(recommenders, baseline, "recommenders")
    if population not in ("with_history", "all"):
        raise ValueError(f"population: expected 'with_history' or 'all', got {population!r}")
    if not isinstance(data, InteractionData):
        raise TypeError(f"data must be an InteractionData (time_split), got {type(data).__name__}")
    bought = _check_purchases(purchases, unit)
    if "ts" in bought.columns and len(bought) and utc(bought["ts"].min(), "purchases.ts") < data.as_of:
        raise ValueError(f"purchases: column 'ts' has rows before as_of {data.as_of} (the fit saw them)")
    if population == "with_history":
        bought = bought[bought["customer_id"].astype(str).isin(set(data.interactions["customer_id"].astype(str)))]
    if len(bought) == 0:
        raise ValueError("purchases: no customer to judge (no purchase in the window"
                         + (" by a customer with history)" if population == "with_history" else ")"))
    customers = sorted(bought["customer_id"].astype(str).unique())
    per: dict[str, pd.DataFrame] = {}
    for name in names:
        fitted = clone(recommenders[name]).fit(data)
        recs = fitted.recommend(customers, k=k, candidates=candidates, exclude=exclude)
        per[name] = ranking_metrics(recs, bought, k, unit=unit)
    rows = _paired_intervals(per, base, per[base]["customer_id"].to_numpy(), k, alpha, n_bootstrap, random_state)
    return pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))


def _paired_intervals(per: Mapping[str, pd.DataFrame], base: str, groups: np.ndarray, k: int, alpha: float,
                      n_bootstrap: int, random_state: int | None) -> list[tuple[Any, ...]]:
    """Each method's metric means with customer-clustered intervals, and paired differences from ``base``.

    ``per`` holds one frame per method with the same units in the same
    order (columns :data:`METRICS`); ``groups`` is each unit's customer.
    """
    units = per[base]
    n = len(units)
    clusters = Clusters(groups, n)
    boot = PoissonBootstrap(clusters.n_clusters, n_bootstrap, random_state)
    cols, index = [], []
    for name, frame in per.items():
        for m in METRICS:
            v = frame[m].to_numpy(np.float64)
            cols.append(RowValues(v, None))
            cols.append(RowValues(v - units[m].to_numpy(np.float64), None))
            index.append((name, m))
    reps = bootstrap_replicates(boot, cols, clusters)
    rows = []
    for j, (name, m) in enumerate(index):
        lo, hi, se = percentile_interval(reps[:, 2 * j], alpha)
        if name == base:
            dlo = dhi = diff = 0.0
        else:
            diff = cols[2 * j + 1].value
            dlo, dhi, _ = percentile_interval(reps[:, 2 * j + 1], alpha)
        rows.append((name, m, k, cols[2 * j].value, lo, hi, se, diff, dlo, dhi, n, clusters.n_clusters))
    return rows


def _items_as_ranks(items: pd.Series) -> pd.DataFrame:
    """``|``-joined product ids per unit -> ``customer_id`` (the unit), ``product_id``, ``rank``."""
    s = items.where(items.notna(), "").astype(str)
    lists = s.str.split("|")
    n = lists.str.len().to_numpy()
    unit = np.repeat(np.arange(len(s)), n)
    rank = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n) + 1
    pid = np.asarray([p for lst in lists.to_numpy() for p in lst], dtype=object)
    keep = pid != ""
    return pd.DataFrame({"customer_id": unit[keep].astype(str), "product_id": pid[keep], "rank": rank[keep]})


def stage_ranking_metrics(selections: Mapping[str, pd.Series], candidates: pd.DataFrame, purchases: pd.DataFrame,
                          *, k: int = 10, horizon_days: float = 7.0, baseline: str | None = None,
                          alpha: float = 0.05, n_bootstrap: int = 1000,
                          random_state: int | None = 0) -> pd.DataFrame:
    """Hit rate@k, recall@k and NDCG@k of each item selection, per stage of the trigger, with intervals.

    A unit is one trigger candidate whose customer bought something in
    ``[eligible_at, eligible_at + horizon_days)``; its relevant products are
    those bought then, and its list is the selection's ``items`` for that
    trigger (:meth:`cadence.policies.items.ItemSelector.select`). Intervals
    resample whole customers (one customer's triggers move together), with
    the same resamples for every selection, so differences from the
    baseline are paired; each stage is resampled on its own.

    Parameters
    ----------
    selections
        Name to a Series of ``|``-joined product ids on ``candidates``' index.
    candidates
        ``customer_id``, ``stage``, ``eligible_at``.
    purchases
        ``customer_id``, ``product_id``, ``ts`` (order lines; the judging
        window must cover every trigger's horizon, or its later purchases
        count as not bought).
    k, horizon_days, baseline, alpha, n_bootstrap, random_state
        As in :func:`compare_recommenders`; ``baseline`` defaults to the first selection.

    Returns
    -------
    pandas.DataFrame
        ``stage`` followed by :data:`COMPARISON_COLUMNS` (``recommender`` is
        the selection's name); stages without a unit have no rows.

    Examples
    --------
    >>> cands = pd.DataFrame({"customer_id": ["a", "b"], "stage": ["browse_abandon"] * 2,
    ...                       "eligible_at": pd.to_datetime(["2025-03-01"] * 2, utc=True)})
    >>> bought = pd.DataFrame({"customer_id": ["a", "b"], "product_id": ["x", "z"],
    ...                        "ts": pd.to_datetime(["2025-03-02"] * 2, utc=True)})
    >>> sel = {"recent": pd.Series(["y|x", "y"]), "model": pd.Series(["x|y", "z"])}
    >>> t = stage_ranking_metrics(sel, cands, bought, k=2, n_bootstrap=50)
    >>> t.loc[t.metric == "hit_rate", ["recommender", "value", "diff"]].values.tolist()
    [['recent', 0.5, 0.0], ['model', 1.0, 0.5]]
    """
    check_interval_args(alpha, "bootstrap", n_bootstrap)
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if not isinstance(horizon_days, int | float) or horizon_days <= 0:
        raise ValueError(f"horizon_days must be a positive number, got {horizon_days!r}")
    names, base = _names_and_baseline(selections, baseline, "selections")
    for frame, name, need in ((candidates, "candidates", ("customer_id", "stage", "eligible_at")),
                              (purchases, "purchases", ("customer_id", "product_id", "ts"))):
        missing = [c for c in need if c not in frame.columns]
        if missing:
            raise ValueError(f"{name}: missing column {', '.join(map(repr, missing))}")
    for name, sel in selections.items():
        if not isinstance(sel, pd.Series) or not sel.index.equals(candidates.index):
            raise ValueError(f"selections[{name!r}]: expected a Series on candidates' index")
    cand = pd.DataFrame({"unit": np.arange(len(candidates)), "customer_id": candidates["customer_id"].astype(str).to_numpy(),
                         "stage": candidates["stage"].astype(str).to_numpy(),
                         "start": pd.to_datetime(candidates["eligible_at"], utc=True).to_numpy()})
    cand["end"] = cand["start"] + np.timedelta64(int(float(horizon_days) * 86_400e9), "ns")
    bought = purchases[["customer_id", "product_id", "ts"]].astype({"customer_id": str, "product_id": str})
    bought = bought.assign(ts=pd.to_datetime(bought["ts"], utc=True).to_numpy())
    rel = cand.merge(bought, on="customer_id")
    rel = rel[(rel["ts"] >= rel["start"]) & (rel["ts"] < rel["end"])]
    rel = rel[["unit", "product_id"]].drop_duplicates().rename(columns={"unit": "customer_id"})
    rel["customer_id"] = rel["customer_id"].astype(str)
    ranked = {name: _items_as_ranks(sel.reset_index(drop=True)) for name, sel in selections.items()}
    per_all = {name: ranking_metrics(r, rel, k) for name, r in ranked.items()}
    out = []
    for stage in sorted(cand["stage"].unique()):
        units = set(cand.loc[cand["stage"] == stage, "unit"].astype(str))
        per = {name: f[f["customer_id"].isin(units)].reset_index(drop=True) for name, f in per_all.items()}
        if not len(per[base]):
            continue
        groups = cand["customer_id"].to_numpy()[per[base]["customer_id"].astype(int).to_numpy()]
        for row in _paired_intervals(per, base, groups, k, alpha, n_bootstrap, random_state):
            out.append((stage, *row))
    return pd.DataFrame(out, columns=["stage", *COMPARISON_COLUMNS])


def plot_recommenders(table: pd.DataFrame, *, what: Literal["value", "diff"] = "value") -> go.Figure:
    """Each recommender's metrics with their intervals (``what="diff"``: differences from the baseline).

    ``table`` is :func:`compare_recommenders`' output; one trace per
    recommender, metrics on the x axis.

    Examples
    --------
    >>> table = pd.DataFrame({"recommender": ["a", "b"], "metric": ["hit_rate"] * 2, "k": [10, 10],
    ...                       "value": [0.2, 0.3], "lower": [0.1, 0.2], "upper": [0.3, 0.4],
    ...                       "diff": [0.0, 0.1], "diff_lower": [0.0, 0.05], "diff_upper": [0.0, 0.15]})
    >>> [trace.name for trace in plot_recommenders(table).data]
    ['a', 'b']
    """
    if what not in ("value", "diff"):
        raise ValueError(f"what: expected 'value' or 'diff', got {what!r}")
    lo_col, hi_col = ("lower", "upper") if what == "value" else ("diff_lower", "diff_upper")
    missing = [c for c in ("recommender", "metric", "k", what, lo_col, hi_col) if c not in table.columns]
    if missing:
        raise ValueError(f"table: missing column {', '.join(map(repr, missing))}")
    fig = go.Figure()
    for name, g in table.groupby("recommender", sort=False):
        labels = [f"{m}@{k}" for m, k in zip(g["metric"], g["k"], strict=True)]
        fig.add_trace(go.Bar(
            name=str(name), x=labels, y=g[what],
            error_y={"type": "data", "symmetric": False, "array": g[hi_col] - g[what],
                     "arrayminus": g[what] - g[lo_col]}))
    title = "Recommenders on next purchases" if what == "value" else "Difference from the baseline"
    fig.update_layout(barmode="group", title=title, yaxis_title=what, xaxis_title="metric")
    if what == "diff":
        fig.add_hline(y=0.0, line_dash="dot")
    return fig


__all__ = ["time_split", "ranking_metrics", "compare_recommenders", "stage_ranking_metrics", "plot_recommenders",
           "METRICS",
           "COMPARISON_COLUMNS"]
