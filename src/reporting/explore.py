"""Exploration of a shop's raw tables: the funnel, purchase heterogeneity, the logged send mix.

Used by ``notebooks/1.0-explore-data.ipynb``; functions from tables to
tables, plus a plotly figure for each. Aggregates only: no customer ids leave.

Examples
--------
>>> import pandas as pd
>>> ev = pd.DataFrame({"session_id": ["s1", "s1", "s2"],
...                    "event_type": ["product_view", "purchase", "product_view"]})
>>> funnel(ev)["sessions"].tolist()
[2, 0, 0, 1]
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

FUNNEL_STEPS: tuple[str, ...] = ("product_view", "add_to_cart", "checkout_start", "purchase")


def funnel(events: pd.DataFrame) -> pd.DataFrame:
    """Sessions reaching each step (a session counts once per step it has)."""
    per = events[events["event_type"].isin(FUNNEL_STEPS)].drop_duplicates(["session_id", "event_type"])
    counts = per["event_type"].value_counts().reindex(list(FUNNEL_STEPS), fill_value=0)
    return pd.DataFrame({"step": list(FUNNEL_STEPS), "sessions": counts.to_numpy()})


def funnel_figure(f: pd.DataFrame) -> go.Figure:
    fig = go.Figure(go.Funnel(y=f["step"], x=f["sessions"], textinfo="value+percent initial"))
    fig.update_layout(title="Sessions reaching each step", height=360)
    return fig


def orders_per_customer(customers: pd.DataFrame, orders: pd.DataFrame) -> pd.DataFrame:
    """How many customers placed 0, 1, 2, ... orders (the heterogeneity BG/NBD models)."""
    n = orders.groupby("customer_id").size().reindex(customers["customer_id"], fill_value=0)
    dist = n.value_counts().sort_index()
    return pd.DataFrame({"orders": dist.index.to_numpy(), "customers": dist.to_numpy()})


def orders_per_customer_figure(dist: pd.DataFrame, cap: int = 20) -> go.Figure:
    d = dist.assign(orders=np.minimum(dist["orders"], cap)).groupby("orders", as_index=False)["customers"].sum()
    fig = go.Figure(go.Bar(x=d["orders"], y=d["customers"]))
    fig.update_layout(title=f"Orders per customer ({cap} means {cap} or more)", xaxis_title="orders",
                      yaxis_title="customers", yaxis_type="log", height=360)
    return fig


def send_mix(messages: pd.DataFrame) -> pd.DataFrame:
    """Share of each stage's logged decisions by action, channel and incentive."""
    m = messages.assign(decision=np.where(messages["action"] == "send",
                                          messages["channel"].fillna("?") + " / " + messages["incentive"].fillna("none"),
                                          "hold"))
    mix = m.groupby(["stage", "decision"], observed=True).size().rename("messages").reset_index()
    mix["share"] = mix["messages"] / mix.groupby("stage")["messages"].transform("sum")
    return mix


def send_mix_figure(mix: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    for decision, g in mix.groupby("decision"):
        fig.add_trace(go.Bar(x=g["share"], y=g["stage"], orientation="h", name=str(decision)))
    fig.update_layout(barmode="stack", title="Logged decisions per stage (channel / incentive, or hold)",
                      xaxis_title="share of triggers", height=520, legend_title="decision")
    return fig


def candidates_by_stage(candidates: pd.DataFrame) -> pd.DataFrame:
    """Trigger candidates per stage, and how many distinct customers each reaches."""
    g = candidates.groupby("stage", observed=True)
    out = pd.DataFrame({"candidates": g.size(), "customers": g["customer_id"].nunique()})
    return out.sort_values("candidates", ascending=False).reset_index()


def candidates_by_stage_figure(per_stage: pd.DataFrame) -> go.Figure:
    fig = go.Figure([
        go.Bar(x=per_stage["stage"], y=per_stage["candidates"], name="candidates"),
        go.Bar(x=per_stage["stage"], y=per_stage["customers"], name="distinct customers"),
    ])
    fig.update_layout(title="Trigger candidates per stage", barmode="group", yaxis_type="log", height=420)
    return fig


def feature_distribution_figure(features: pd.DataFrame, column: str, clip_quantile: float = 0.99) -> go.Figure:
    """Histogram of one customer feature (clipped at a high quantile so outliers do not flatten it)."""
    x = features[column].dropna()
    x = x.clip(upper=x.quantile(clip_quantile)) if len(x) else x
    fig = go.Figure(go.Histogram(x=x, nbinsx=50))
    fig.update_layout(title=f"{column} (clipped at the {clip_quantile:.0%} quantile)", xaxis_title=column,
                      yaxis_title="customers", height=340)
    return fig
