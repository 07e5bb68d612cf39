"""What the report, ``cadence evaluate --recommenders`` and the demo show of the recommender comparison.

Tables and a plotly figure of a
:class:`~cadence.workflows.recommendations.RecommenderComparison`: per
stage, each recommender's hit rate@k, recall@k and NDCG@k on the triggers
after the cutoff with 95% intervals (clustered by customer), the paired
difference from the baseline, and where the log allows it the off-policy
value per message of each recommender's item rule. No customer id appears.

Examples
--------
>>> import pandas as pd
>>> fmt_interval(0.1234, 0.1, 0.15)
'0.123 [0.100, 0.150]'
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from cadence.workflows.recommendations import RecommenderComparison, compare_recommenders_named

__all__ = ["compare", "fmt_interval", "offline_table", "ranking_figure", "ranking_table"]


def compare(data_dir: str, **kwargs: object) -> RecommenderComparison:
    """:func:`~cadence.workflows.recommendations.compare_recommenders_named` (the report's one call)."""
    return compare_recommenders_named(data_dir, **kwargs)  # type: ignore[arg-type]


def fmt_interval(value: float, lower: float, upper: float, signed: bool = False) -> str:
    """``value [lower, upper]`` with three decimals (a sign with ``signed``)."""
    f = "{:+.3f}" if signed else "{:.3f}"
    return f"{f.format(value)} [{f.format(lower)}, {f.format(upper)}]"


def ranking_table(comp: RecommenderComparison, metrics: tuple[str, ...] = ("hit_rate", "recall", "ndcg")) -> pd.DataFrame:
    """One row per stage and recommender: triggers judged, each metric@k with its interval, NDCG's difference.

    Examples
    --------
    >>> from cadence.workflows.recommendations import RecommenderComparison
    >>> r = pd.DataFrame({"stage": ["birthday"] * 2, "recommender": ["recently_viewed", "model"], "metric": ["ndcg"] * 2,
    ...     "k": [10, 10], "value": [0.1, 0.3], "lower": [0.0, 0.2], "upper": [0.2, 0.4], "diff": [0.0, 0.2],
    ...     "diff_lower": [0.0, 0.1], "diff_upper": [0.0, 0.3], "n_units": [40, 40]})
    >>> t = pd.Timestamp("2025-01-01", tz="UTC")
    >>> ranking_table(RecommenderComparison(t, t, 10, 7.0, r, None, ""), ("ndcg",)).iloc[1].astype(str).tolist()
    ['birthday', 'model', '40', '0.300 [0.200, 0.400]', '+0.200 [+0.100, +0.300]']
    """
    r = comp.ranking
    base = r["recommender"].iloc[0] if len(r) else ""
    rows = []
    for (stage, rec), g in r.groupby(["stage", "recommender"], sort=False):
        by = g.set_index("metric")
        row = {"stage": stage, "recommender": rec, "triggers": int(g["n_units"].iloc[0])}
        for m in metrics:
            x = by.loc[m]
            row[f"{m}@{comp.k}"] = fmt_interval(float(x["value"]), float(x["lower"]), float(x["upper"]))
        x = by.loc["ndcg"]
        row[f"ndcg - {base}"] = "" if rec == base else fmt_interval(float(x["diff"]), float(x["diff_lower"]),
                                                                   float(x["diff_upper"]), True)
        rows.append(row)
    return pd.DataFrame(rows)


def offline_table(comp: RecommenderComparison) -> pd.DataFrame | None:
    """The off-policy value per message of each recommender's item rule (and differences), or None.

    Examples
    --------
    >>> from cadence.workflows.recommendations import RecommenderComparison
    >>> t = pd.Timestamp("2025-01-01", tz="UTC")
    >>> offline_table(RecommenderComparison(t, t, 10, 7.0, pd.DataFrame(), None, "no log")) is None
    True
    """
    o = comp.offline
    if o is None:
        return None
    return pd.DataFrame({"metric": o["metric"], "rule": o["rule"],
                         "per message (95% interval)": [fmt_interval(v, lo, hi, " - " in rule) for v, lo, hi, rule
                                                        in zip(o["estimate"], o["lower"], o["upper"], o["rule"],
                                                               strict=True)],
                         "messages": o["n"], "logged policy": o["logged"].round(4)})


def ranking_figure(comp: RecommenderComparison, metric: str = "ndcg") -> go.Figure:
    """Each recommender's ``metric``@k per stage with 95% intervals (grouped bars).

    Examples
    --------
    >>> from cadence.workflows.recommendations import RecommenderComparison
    >>> r = pd.DataFrame({"stage": ["birthday"] * 2, "recommender": ["a", "b"], "metric": ["ndcg"] * 2,
    ...     "k": [10, 10], "value": [0.1, 0.3], "lower": [0.0, 0.2], "upper": [0.2, 0.4]})
    >>> t = pd.Timestamp("2025-01-01", tz="UTC")
    >>> [tr.name for tr in ranking_figure(RecommenderComparison(t, t, 10, 7.0, r, None, "")).data]
    ['a', 'b']
    """
    r = comp.ranking[comp.ranking["metric"] == metric]
    fig = go.Figure()
    for name, g in r.groupby("recommender", sort=False):
        fig.add_trace(go.Bar(name=str(name), x=g["stage"], y=g["value"],
                             error_y={"type": "data", "symmetric": False, "array": g["upper"] - g["value"],
                                      "arrayminus": g["value"] - g["lower"]}))
    fig.update_layout(barmode="group", height=440, yaxis_title=f"{metric}@{comp.k}", xaxis_title="stage",
                      title=f"Items each recommender chooses, against the next {comp.horizon_days:g} days' purchases "
                            f"(triggers {comp.as_of:%Y-%m-%d} to {comp.until:%Y-%m-%d}, 95% intervals)")
    return fig
