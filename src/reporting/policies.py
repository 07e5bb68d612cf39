"""Report sections on send policies: offline estimates, the replay table, frequency-cap pressure, sequences.

Examples
--------
>>> import pandas as pd
>>> d = pd.DataFrame({"action": ["send", "hold", "hold"], "reason": ["", "frequency cap: 3 in 7 days", ""],
...                   "stage": ["cart_abandon"] * 3})
>>> cap_pressure(d).to_dict("records")[0]["held by the orchestrator"]
1
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd
import plotly.graph_objects as go

from cadence.policies.sequences import Sequence, sequence_figure

if TYPE_CHECKING:
    from cadence.features.policy_context import PolicyContext


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


def sequence_section(data_dir: Any, seq: Sequence) -> tuple[pd.DataFrame | None, str, go.Figure]:
    """The report's sequence section: the step-lift table (None when the log cannot support it),
    a sentence saying which, and the sequence drawn with the counts through each step."""
    from cadence.simulation.sequences import sequence_lift, sequence_paths, sequence_table
    from cadence.workflows.logs import log_tables

    tables = log_tables(data_dir)
    try:
        table, note = sequence_table(sequence_lift(tables, seq)), (
            "Lift per trigger of each step, from the randomised follow-ups in the log (95% intervals, "
            "clustered by customer).")
    except ValueError as e:
        table, note = None, f"Not estimated: {e}."
    return table, note, sequence_figure(seq, sequence_paths(tables, seq))


def send_time_section(data_dir: Any, holdout_days: float = 90.0) -> dict[str, Any]:
    """The report's send-time section: the doubly-robust table of the rules with and without learned
    send times on the last ``holdout_days`` (model fitted before them), a sentence, and the heatmap."""
    from cadence.evaluation.offline import summary_table
    from cadence.models.send_time import send_time_figure
    from cadence.workflows.policies import judge_send_time

    res = judge_send_time(data_dir, holdout_days=holdout_days, n_refit=None)  # DR is shown: no refits needed
    model = res["model"]
    note = (f"Send-time model fitted on sends before {res['as_of']:%Y-%m-%d} ({len(model.customers_):,} customers, "
            f"bandwidth {model.bandwidth_:g} h, engagement lift {model.lift_:.2f} log-odds at the peak); "
            "doubly-robust estimates per trigger on the later triggers, 95% intervals clustered by customer.")
    return {"table": summary_table(res["estimates"], "DR"), "note": note, "figure": send_time_figure(model),
            "model": model}


def drivers_section(data_dir: Any, policy: str, *, seed: int = 0, sample: int = 10_000, n_repeats: int = 1,
                    context: PolicyContext | None = None) -> dict[str, Any] | None:
    """The report's drivers section: which context columns move the policy's decisions, a sentence, the figure.

    The policy is fitted as ``cadence evaluate`` fits it (half of the
    customers) and decides the other half's triggers; each context column
    (the trigger time standing for the local hour and weekday) is shuffled in
    turn (:func:`~cadence.evaluation.drivers.decision_drivers`): the
    trigger's columns, and for a policy that reads them the customer's
    features and the models' scores as of the trigger (``context``, the
    report's :func:`~cadence.workflows.policies.named_context`, else computed
    here), each column alone and each family whole. One shuffle of each
    over ``sample`` triggers: with the ~90 columns of the full context that
    is ~90 decisions of the sample (about a minute on 2 busy cores). ``None`` for
    the logging policy, whose decisions were random.
    """
    from cadence.evaluation.drivers import NOT_CONTEXT, decision_drivers, drivers_figure
    from cadence.policies.context import family_columns
    from cadence.workflows.policies import fitted_named

    pol, log = fitted_named(data_dir, policy, seed=seed, context=context)
    if pol is None or log.candidates is None:
        return None
    cands = log.candidates
    columns = {c: [c] for c in cands.columns if c not in NOT_CONTEXT}
    columns["trigger time (local hour, weekday)"] = ["triggered_at"]
    for family, label in (("customer", "all customer features"), ("scores", "all model scores")):
        cols = [c for c in family_columns(family) if c in cands.columns]
        if cols:
            columns[label] = cols
    table = decision_drivers(pol, cands, columns=columns, sample=sample, n_repeats=n_repeats, seed=seed)
    top = table.iloc[0]
    note = (f"Share of the {policy} policy's decisions (send or hold, channel, delay, incentive) that change when one "
            f"context column is shuffled across {int(top['rows']):,} held-out triggers (95% intervals, clustered by "
            f"customer). The decisions hinge most on {top['feature']} ({top['changed']:.0%} of them move); a column "
            "at 0% is never read.")
    return {"table": table, "note": note,
            "figure": drivers_figure(table, title=f"What drives the {policy} policy's decisions")}
