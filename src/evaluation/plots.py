"""Plots of off-policy estimates: values or lifts with their intervals, per policy and estimator."""

from __future__ import annotations

from typing import Literal

import pandas as pd
import plotly.graph_objects as go


def plot_estimates(df: pd.DataFrame, *, metric: Literal["value", "lift"] = "value") -> go.Figure:
    """Point estimates with interval error bars, per policy and estimator.

    Parameters
    ----------
    df : DataFrame
        The output of :func:`~cadence.evaluation.compare.compare` (columns ``policy, estimator, value,
        lower, upper`` and, for ``metric="lift"``, ``lift, lift_lower,
        lift_upper``).
    metric : {"value", "lift"}
        Plot policy values, or lifts over the reference policy (with a zero
        line).

    Returns
    -------
    plotly.graph_objects.Figure
        One trace per estimator; policies on the x axis, side by side.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"policy": ["a", "b"], "estimator": ["IPS", "IPS"],
    ...                    "value": [0.1, 0.2], "lower": [0.05, 0.15], "upper": [0.15, 0.25]})
    >>> len(plot_estimates(df).data)
    1
    """
    if metric not in ("value", "lift"):
        raise ValueError(f"metric: expected 'value' or 'lift', got {metric!r}")
    lo_col, hi_col = ("lower", "upper") if metric == "value" else ("lift_lower", "lift_upper")
    needed = ["policy", "estimator", metric, lo_col, hi_col]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ValueError(f"df: missing columns {missing}")
    fig = go.Figure()
    for est, g in df.groupby("estimator", sort=False):
        fig.add_trace(
            go.Scatter(
                x=g["policy"],
                y=g[metric],
                mode="markers",
                name=str(est),
                offsetgroup=str(est),
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": g[hi_col] - g[metric],
                    "arrayminus": g[metric] - g[lo_col],
                },
            )
        )
    interval = df["interval"].iloc[0] if "interval" in df.columns and len(df) else "interval"
    alpha = float(df["alpha"].iloc[0]) if "alpha" in df.columns and len(df) else 0.05
    title = (
        "Estimated policy value"
        if metric == "value"
        else (f"Lift over {df.attrs.get('reference', 'the reference policy')}")
    )
    fig.update_layout(
        title=f"{title} ({1 - alpha:.0%} {interval} intervals)",
        xaxis_title="policy",
        yaxis_title=metric,
        scattermode="group",
        legend_title="estimator",
    )
    if metric == "lift":
        fig.add_hline(y=0.0, line_dash="dot", line_color="grey")
    return fig
