"""Report sections on send policies: offline estimates, the replay table, frequency-cap pressure.

Examples
--------
>>> import pandas as pd
>>> d = pd.DataFrame({"action": ["send", "hold", "hold"], "reason": ["", "frequency cap: 3 in 7 days", ""],
...                   "stage": ["cart_abandon"] * 3})
>>> cap_pressure(d).to_dict("records")[0]["held by the orchestrator"]
1
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go


def cap_pressure(decisions: pd.DataFrame) -> pd.DataFrame:
    """Per stage: triggers, sends, and holds by orchestration rule (a replay's decisions, with ``stage``)."""
    d = decisions.reset_index(drop=True)
    rule = d["reason"].fillna("").str.replace(r":.*| within .*| is sent .*", "", regex=True)
    d = d.assign(rule=rule.mask(rule == ""))
    out = d.groupby("stage").agg(triggers=("action", "size"), sends=("action", lambda a: int((a == "send").sum())))
    out["held by the orchestrator"] = d.groupby("stage")["rule"].count()
    by_rule = d.dropna(subset=["rule"]).pivot_table(index="stage", columns="rule", values="action", aggfunc="size")
    return out.join(by_rule).fillna(0).astype(int).reset_index()


def cap_pressure_figure(pressure: pd.DataFrame) -> go.Figure:
    """Stacked bars: share of each stage's triggers held, by orchestration rule."""
    fixed = {"stage", "triggers", "sends", "held by the orchestrator"}
    fig = go.Figure()
    for rule in [c for c in pressure.columns if c not in fixed]:
        fig.add_trace(go.Bar(x=pressure["stage"], y=pressure[rule] / pressure["triggers"], name=rule))
    fig.update_layout(barmode="stack", title="Frequency-cap pressure: triggers held by the orchestrator",
                      yaxis_title="share of the stage's triggers", yaxis_tickformat=".0%", xaxis_title="stage")
    return fig


def lift_figure(table: pd.DataFrame) -> go.Figure:
    """Replay lifts with their 95% intervals, one panel-free dot per metric (relative to the baseline)."""
    t = table[table["metric"] != "messages per customer"]
    rel = t["lift"] / t["baseline"]
    fig = go.Figure(go.Scatter(
        x=rel, y=t["metric"], mode="markers",
        error_x={"type": "data", "symmetric": False, "array": (t["lift_upper"] - t["lift"]) / t["baseline"],
                 "arrayminus": (t["lift"] - t["lift_lower"]) / t["baseline"]}))
    fig.add_vline(x=0, line_dash="dot", line_color="grey")
    fig.update_layout(title="Replay: candidate against baseline (relative lift, 95% interval)",
                      xaxis_tickformat="+.0%", xaxis_title="lift relative to the baseline")
    return fig
