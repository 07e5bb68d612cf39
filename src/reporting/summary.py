"""What the summary report shows: data overview, trigger volume, the randomised-holdout readout.

Each later stage (features, survival, policies, replay) adds its section here
and to ``cadence/reporting/notebooks/summary.ipynb``; the notebook only narrates and
calls these functions. Nothing here reads ground truth or prints customer ids.

Examples
--------
>>> import pandas as pd
>>> m = pd.DataFrame({"stage": ["cart_abandon", "birthday"],
...                   "triggered_at": pd.to_datetime(["2025-01-01", "2025-01-02"], utc=True)})
>>> trigger_volume(m).to_dict("records")[0]["triggers"]
1
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import pyarrow.parquet as pq

from cadence.contract.tables import TABLE_NAMES
from cadence.data.io import PathLike, read_table, table_path
from cadence.evaluation.holdout import holdout_lift


@dataclass(frozen=True)
class Summary:
    """Everything the summary report shows, computed once."""

    data_dir: Path
    rows: pd.DataFrame  # table, rows
    volume: pd.DataFrame  # day, stage, triggers
    holdout: pd.DataFrame  # holdout_lift output


def summarise(data_dir: PathLike) -> Summary:
    """Read the data directory and compute the report's tables."""
    rows = []
    for name in TABLE_NAMES:
        p = table_path(data_dir, name)
        if p is None:
            continue
        n = pq.ParquetFile(p).metadata.num_rows if p.suffix == ".parquet" else len(read_table(p, name))
        rows.append({"table": name, "rows": n})
    mp = table_path(data_dir, "messages")
    if mp is None:
        messages = pd.DataFrame(columns=["stage", "triggered_at", "action", "propensity", "converted_order_id"])
    else:
        messages = read_table(mp, "messages")[["stage", "triggered_at", "action", "propensity", "converted_order_id"]]
    return Summary(Path(data_dir), pd.DataFrame(rows), trigger_volume(messages), holdout_lift(messages))


def trigger_volume(messages: pd.DataFrame) -> pd.DataFrame:
    """Triggers per stage and UTC day (one row per day and stage that has any)."""
    day = messages["triggered_at"].dt.tz_convert("UTC").dt.floor("D")
    return (messages.assign(day=day).groupby(["day", "stage"], observed=True).size()
            .rename("triggers").reset_index())


def trigger_volume_figure(volume: pd.DataFrame) -> go.Figure:
    """Stacked daily trigger volume by stage."""
    fig = go.Figure()
    for stage, g in volume.groupby("stage"):
        fig.add_trace(go.Scatter(x=g["day"], y=g["triggers"], name=str(stage), stackgroup="one", mode="lines"))
    fig.update_layout(title="Trigger volume by stage and day", xaxis_title="day (UTC)",
                      yaxis_title="triggers", legend_title="stage", height=420)
    return fig


def holdout_table(holdout: pd.DataFrame) -> pd.DataFrame:
    """The readout in the before/after shape: stage, sent, held, rates, lift and its interval."""
    return pd.DataFrame({
        "stage": holdout["stage"],
        "sent": holdout["sent"],
        "held out": holdout["held"],
        "conversion (sent)": holdout["rate_send"].round(4),
        "conversion (held)": holdout["rate_hold"].round(4),
        "lift": holdout["lift"].round(4),
        "95% interval": [f"[{lo:+.4f}, {hi:+.4f}]" for lo, hi in zip(holdout["lift_lower"], holdout["lift_upper"], strict=True)],
    })


def holdout_figure(holdout: pd.DataFrame) -> go.Figure:
    """Conversion lift of sending vs holding out, per stage, with 95% intervals."""
    h = holdout.iloc[::-1]
    fig = go.Figure(go.Scatter(
        x=h["lift"] * 100, y=h["stage"], mode="markers",
        error_x={"type": "data", "symmetric": False, "array": (h["lift_upper"] - h["lift"]) * 100,
                 "arrayminus": (h["lift"] - h["lift_lower"]) * 100},
        name="lift"))
    fig.add_vline(x=0, line_dash="dot")
    fig.update_layout(title="Conversion lift of sending (percentage points, 95% interval)",
                      xaxis_title="lift (pp)", height=460)
    return fig
