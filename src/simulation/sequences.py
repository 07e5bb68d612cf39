"""Judge a sequence offline: what each step adds, from a log with randomised follow-ups.

A sequence (:mod:`cadence.policies.sequences`) sends a first message and,
unless the goal happened first, a follow-up. Three versions of it are
compared on the triggers of its stage: **hold** (no message), **single**
(the first message only) and **sequence** (both). Their values per trigger
are estimated by replay matching with importance weights (Li et al., 2011,
generalised to a logging policy with known propensities): a logged trigger
counts for a version when the logged first decision equals the version's,
weighted by 1 / its propensity, and — where a follow-up decision was due —
when the logged follow-up decision (send, or a logged hold) equals the
version's, weighted by 1 / its propensity. Triggers where no follow-up was
due (the customer ordered first) count for both the single and the sequence
version, as both did the same there. The step lifts are paired differences,
with the logged mean reward as a baseline control variate (a doubly-robust
estimate with a constant reward model: unbiased, because every version's
weights average 1, and far less variable than plain matching), and
customer-clustered Poisson-bootstrap percentile intervals.

This needs a log whose follow-ups were randomised (a follow-up row for every
due follow-up, sent or held, with its propensity: ``step`` = 2 in
``messages``); without one the follow-up's lift cannot be estimated, and
:func:`sequence_lift` says so instead of printing a number.

Written by hand: no maintained off-policy library handles a two-step
decision with goal-dependent eligibility (Open Bandit Pipeline's slate and
cascade estimators assume every position is shown).

Both functions take the log's tables (``messages``, ``customers``,
``orders``); :func:`cadence.workflows.logs.log_tables` reads them from a
data directory.

Examples
--------
>>> import tempfile
>>> from cadence.synthetic import ShopConfig, generate_shop
>>> from cadence.policies.sequences import CART_ABANDON
>>> from cadence.workflows.logs import log_tables
>>> shop = generate_shop(ShopConfig(customers=800, days=60, seed=3, logging_followup=0.5), tempfile.mkdtemp())
>>> t = sequence_lift(log_tables(shop), CART_ABANDON, n_boot=50)
>>> t["step"].tolist()
['first message (single vs hold)', 'follow-up (sequence vs single)']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from cadence.contract.actions import Policy
from cadence.evaluation.intervals import Clusters, percentile_interval
from cadence.features.logged import METRICS, first_steps, logged_candidates, logged_rewards
from cadence.policies.sequences import Exit, Sequence, SequencePolicy, step_counts, walk_many

VERSIONS: tuple[str, ...] = ("hold", "single", "sequence")
#: The steps :func:`sequence_lift` judges: (label, version, the version it is compared with).
STEP_PAIRS: tuple[tuple[str, str, str], ...] = (("first message (single vs hold)", "single", "hold"),
                                                ("follow-up (sequence vs single)", "sequence", "single"))


def _same(a: pd.Series, b: pd.Series) -> np.ndarray:
    return (a.fillna("").astype(str).to_numpy() == b.fillna("").astype(str).to_numpy())


def sequence_versions(seq: Sequence, base: Policy | None = None) -> dict[str, SequencePolicy]:
    """The versions a sequence is judged by (:data:`VERSIONS`): hold its stage, send only its first
    message, run it whole; other stages go to ``base`` (as in :class:`SequencePolicy`)."""
    hold = Sequence(f"{seq.name}/hold", seq.stage, "stop", {"stop": Exit()})
    return {"hold": SequencePolicy({seq.stage: hold}, base),
            "single": SequencePolicy({seq.stage: seq}, base, single=True),
            "sequence": SequencePolicy({seq.stage: seq}, base)}


def version_weights(messages: pd.DataFrame, customers: pd.DataFrame, seq: Sequence,
                    orders: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per logged trigger of the sequence's stage: the importance weight of each version
    (columns :data:`VERSIONS`), and its rewards per metric (the trigger's conversion and net
    revenue, whichever of its messages converted; opens and clicks summed over its messages).
    """
    if "step" not in messages.columns or not (messages["step"] == 2).any():
        raise ValueError(
            "messages: no follow-up rows (step 2); a follow-up's lift needs a log that randomised it — "
            "log every due follow-up (sent, or held with its propensity), e.g. send half of them for a few weeks")
    firsts = first_steps(messages).reset_index(drop=True)
    firsts = firsts[firsts["stage"] == seq.stage].reset_index(drop=True)
    follow = messages[messages["step"] == 2]
    key = ["customer_id", "stage", "triggered_at"]
    fu = firsts[key].merge(follow, on=key, how="left", validate="one_to_one")
    cands = logged_candidates(firsts, customers, orders, history=messages)
    rng = np.random.default_rng(0)
    plans = {name: policy.decide(cands, rng) for name, policy in sequence_versions(seq).items()}
    sent_at = firsts["sent_at"]
    delay = ((sent_at - firsts["triggered_at"]).dt.total_seconds() // 60).fillna(0).astype(np.int64).to_numpy()
    due = fu["step"].notna().to_numpy()
    fu_delay = ((fu["sent_at"] - fu["triggered_at"]).dt.total_seconds() // 60).to_numpy()
    weights = {}
    for name, plan in plans.items():
        if (plan["propensity"] < 1).any() or (plan["followup_propensity"] < 1).any():
            raise ValueError(f"sequence {seq.name!r}: splits make the {name} version stochastic; "
                             "judge each arm as its own sequence")
        first = (firsts["action"].to_numpy() == plan["action"].to_numpy()) & np.where(
            plan["action"].to_numpy() == "send",
            _same(firsts["channel"], plan["channel"]) & _same(firsts["incentive"], plan["incentive"])
            & (delay == plan["delay_minutes"].to_numpy()), True)
        w = first / firsts["propensity"].to_numpy(float)
        wants = plan["followup_action"].to_numpy() == "send"
        f_match = np.where(
            wants,
            (fu["action"].to_numpy() == "send") & _same(fu["channel"], plan["followup_channel"])
            & _same(fu["incentive"], plan["followup_incentive"]) & (fu_delay == plan["followup_delay_minutes"].to_numpy()),
            fu["action"].to_numpy() == "hold")
        # Where a follow-up was due, the logged follow-up decision must match too.
        w = np.where(due, w * f_match / np.where(due, fu["propensity"].to_numpy(float), 1.0), w)
        weights[name] = np.nan_to_num(w)
    r1 = logged_rewards(firsts)
    r2 = logged_rewards(fu.astype({"incentive": object}))  # zero where no follow-up was due
    rewards = r1 + r2.fillna(0).to_numpy()
    out = pd.DataFrame(weights)
    out["customer_id"] = firsts["customer_id"].to_numpy()
    return out, rewards


def _log_tables(tables: Mapping[str, pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """``messages``, ``customers`` and ``orders`` (optional) of ``tables``; a missing one is named."""
    missing = [n for n in ("messages", "customers") if n not in tables]
    if missing:
        raise ValueError(f"tables: no {' or '.join(missing)} table (a sequence is judged on the messages log)")
    return tables["messages"], tables["customers"], tables.get("orders")


def sequence_lift(tables: Mapping[str, pd.DataFrame], seq: Sequence, *,
                  metrics: tuple[str, ...] = ("conversion", "net_revenue"),
                  n_boot: int = 500, alpha: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """Lift of each step per trigger of ``seq.stage``, with customer-clustered bootstrap intervals.

    ``tables`` are the log's ``messages`` and ``customers`` (required) and
    ``orders`` (the decision context's order counts). Rows: ``first message
    (single vs hold)`` and ``follow-up (sequence vs single)``; columns per
    metric: the estimate, its interval, and the versions' values. Also in
    ``.attrs``: the triggers and how many matched each version (the
    effective support).
    """
    messages, customers, orders = _log_tables(tables)
    w, rewards = version_weights(messages, customers, seq, orders)
    for m in metrics:
        if m not in METRICS:
            raise ValueError(f"metric {m!r} is not one of {METRICS}")
    clusters = Clusters(w["customer_id"].to_numpy(), len(w))
    # Poisson bootstrap by customer: each customer's rows share one multiplicity.
    boot = np.random.default_rng(seed).poisson(1.0, size=(n_boot, clusters.n_clusters)).astype(float)
    n_b = boot @ clusters.sizes
    rows = []
    for label, a, b in STEP_PAIRS:
        rec: dict[str, Any] = {"step": label}
        d = w[a].to_numpy() - w[b].to_numpy()
        for m in metrics:
            y = rewards[m].to_numpy(float)
            # Importance weights average 1 under every version, so subtracting the mean reward
            # from y keeps the estimate unbiased and removes most of its variance (a baseline
            # control variate: the doubly-robust estimator with a constant reward model).
            base = y.mean()
            est = float(np.mean(d * (y - base)))
            base_b = (boot @ clusters.sum(y)) / n_b
            reps = (boot @ clusters.sum(d * y) - base_b * (boot @ clusters.sum(d))) / n_b
            lo, hi, _ = percentile_interval(reps, alpha)
            rec.update({f"{m}": est, f"{m}_lower": lo, f"{m}_upper": hi,
                        f"{m}_{a}": base + float(np.mean(w[a].to_numpy() * (y - base))),
                        f"{m}_{b}": base + float(np.mean(w[b].to_numpy() * (y - base)))})
        rows.append(rec)
    out = pd.DataFrame(rows)
    out.attrs.update(triggers=len(w), matched={v: int((w[v] > 0).sum()) for v in VERSIONS})
    return out


def sequence_table(lift: pd.DataFrame, metrics: tuple[str, ...] = ("conversion", "net_revenue")) -> pd.DataFrame:
    """:func:`sequence_lift` formatted for a terminal or report: lift and 95% interval per step and metric.

    >>> t = pd.DataFrame({"step": ["follow-up (sequence vs single)"], "conversion": [0.0012],
    ...                   "conversion_lower": [-0.02], "conversion_upper": [0.03]})
    >>> sequence_table(t, ("conversion",)).values.tolist()
    [['follow-up (sequence vs single)', '+0.0012 [-0.0200, +0.0300]']]
    """
    out = pd.DataFrame({"step": lift["step"]})
    for m in metrics:
        fmt = "{:+.4f}" if m in ("conversion", "open", "click") else "{:+.3f}"
        out[f"{m} lift per trigger (95% interval)"] = [
            f"{fmt.format(v)} [{fmt.format(lo)}, {fmt.format(hi)}]"
            for v, lo, hi in zip(lift[m], lift[f"{m}_lower"], lift[f"{m}_upper"], strict=True)]
    return out


def sequence_paths(tables: Mapping[str, pd.DataFrame], seq: Sequence, seed: int = 0) -> pd.DataFrame:
    """Replay ``seq`` over the logged triggers of its stage: every trigger walks the sequence with
    what was known at each step (its opt-ins then, and the customer's orders up to each goal
    check), giving :func:`~cadence.policies.sequences.step_counts` — how many triggers passed
    each step — for :func:`~cadence.policies.sequences.sequence_figure`. ``tables`` as for
    :func:`sequence_lift`.
    """
    messages, customers, orders = _log_tables(tables)
    firsts = first_steps(messages).reset_index(drop=True)
    firsts = firsts[firsts["stage"] == seq.stage].reset_index(drop=True)
    cands = logged_candidates(firsts, customers, orders, history=messages)
    if orders is None:
        orders = pd.DataFrame({"customer_id": [], "ts": []})
    return step_counts(seq, walk_many(seq, cands, orders, seed=seed).attrs["paths"])
