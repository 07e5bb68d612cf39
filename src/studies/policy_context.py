"""Does the learned policy gain from deciding with the customer's features and scores? The truth, over many seeds.

For each seed of the observable-response world
(:class:`~cadence.synthetic.config.ObservableResponse`; by default
:data:`~cadence.synthetic.config.REALISED_RESPONSE`: each trigger's response
type and deal sensitivity depend on the customer's orders, sessions,
recency and tenure just before it, which the shop's features measure, and
on hidden draws):

1. generate the shop under the randomised logging policy, compute the
   policy context from its tables (:func:`cadence.workflows.logs.load_context`:
   weekly customer-feature and score snapshots) and load the log with it;
2. split the customers in half (:func:`~cadence.data.bandit.split_customers`);
   fit on one half the learned policy with every context family (``full``),
   with the trigger's seven columns only (``trigger``), and with one family
   dropped at a time (``no_trigger``, ``no_customer``, ``no_scores``);
   ``rules`` is :class:`~cadence.policies.rules.RulesPolicy`;
3. the **truth**: re-run the world under each policy
   (:func:`~cadence.synthetic.world.iter_world`, the world's own draws; the
   policy reads its context through
   :class:`~cadence.policies.context.WithContext` from the *logged* data) and
   take the expected net revenue per trigger of the **other half's**
   customers (:func:`true_net_revenue`);
4. the **offline estimates** of the paired differences ``full - trigger``
   and ``full - rules`` on the other half's log: replay and doubly robust,
   plain and matched on the replayed fatigue
   (:func:`cadence.simulation.replay.simulate` with the second policy as
   baseline, ``fatigue_matched=True``), each with its 95% interval, and whether it covers the true
   difference; and the truth of the very decisions the replay made
   (:class:`ReplayedDecisions`), which tells the estimators' own miss from
   the policies deciding differently in their re-runs.

:func:`summarise` gives the mean true difference over seeds with a 95%
t-interval and each estimator's coverage. This is a study: it reads the
truth, the estimators do not.

Examples
--------
>>> runs = pd.DataFrame({"seed": [1, 1, 2, 2], "kind": "truth", "policy": ["full", "trigger"] * 2,
...                      "reference": "", "estimator": "truth", "value": [3.0, 2.5, 2.9, 2.6]})
>>> d = summarise(runs)["differences"].iloc[0]
>>> d["policy"], d["reference"], round(float(d["true_diff"]), 3), int(d["positive_seeds"])
('full', 'trigger', 0.4, 2)
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cadence.contract.actions import Policy, delay_choices
from cadence.contract.clock import epoch_seconds
from cadence.contract.tables import INCENTIVES
from cadence.contract.triggers import INCENTIVE_STAGES, STAGES
from cadence.data.bandit import split_customers
from cadence.evaluation.intervals import t_interval
from cadence.policies.context import CONTEXT_FAMILIES, WithContext, fallback_reasons
from cadence.policies.learned import UpliftPolicy
from cadence.policies.rules import RulesPolicy, decisions_frame, opt_in_matrix
from cadence.synthetic.backbone import (
    SEGMENT_NAMES,
    observable_traits,
    realised_traits,
    trigger_response,
)
from cadence.synthetic.config import (
    OBSERVABLE_TRAITS,
    REALISED_RESPONSE,
    ObservableResponse,
    ShopConfig,
)
from cadence.synthetic.world import customer_ids, generate_shop, iter_world
from cadence.workflows.logs import load_context, load_log

#: The learned policies of the study: name -> context families (the customer family with the
#: study's ``customer_columns``; ``full_all`` with all 69 customer features).
VARIANTS: dict[str, tuple[str, ...]] = {
    "full": CONTEXT_FAMILIES,
    "full_all": CONTEXT_FAMILIES,
    "trigger": ("trigger",),
    "no_trigger": ("customer", "scores"),
    "no_customer": ("trigger", "scores"),
    "no_scores": ("trigger", "customer"),
}
#: The paired differences estimated offline: (policy, reference).
COMPARISONS: tuple[tuple[str, str], ...] = (("full", "trigger"), ("full", "rules"))


@dataclass
class RulesWhereLacking:
    """``policy``'s decisions, but the rules' on the rows that lack a family of ``context``.

    The seven-column policy handicapped as a full-context one fitted with
    ``fallback="rules"`` is: that one hands rows without customer features or
    scores to the rules, so ``full`` (with ``fallback="rules"``) against this
    isolates what the extra columns are worth from what the fallback costs.
    The default full-context policy decides those rows with learned
    fallbacks instead (:meth:`~cadence.policies.learned.UpliftPolicy.family_routes`).
    """

    policy: Policy
    context: tuple[str, ...] = CONTEXT_FAMILIES
    row_wise = True

    @property
    def policy_id(self) -> str:
        return self.policy.policy_id

    def decide(self, candidates: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        out = self.policy.decide(candidates, rng)
        lacking = np.flatnonzero(fallback_reasons(candidates, self.context) != "")
        if lacking.size:
            rules = RulesPolicy().decide(candidates.iloc[lacking], rng)
            for j, col in enumerate(out.columns):
                out.iloc[lacking, j] = rules[col].to_numpy()
        return out


def _trigger_keys(candidates: pd.DataFrame) -> pd.MultiIndex:
    """(customer, stage, trigger second) of each candidate: how a world re-run's triggers meet the logged ones."""
    return pd.MultiIndex.from_arrays([candidates["customer_id"].astype(str).to_numpy(),
                                      candidates["stage"].astype(str).to_numpy(),
                                      epoch_seconds(candidates["triggered_at"]).astype(np.int64)])


@dataclass
class ReplayedDecisions:
    """At each trigger of a world re-run, the decision an offline replay made at the same logged trigger.

    Re-running the world under it (:func:`true_net_revenue`) gives the truth of
    exactly the decisions the offline estimators judged, with the fatigue and
    unsubscribes the world makes of them. That splits an offline estimate's
    miss in two: the policy deciding differently in its own re-run (it sees
    that re-run's opt-ins and orders; the replay saw the logged ones), and the
    estimator's own error (a one-step estimator reads each reward at the
    logged history's fatigue, plus its noise). Triggers the replay did not
    see are held; triggers sharing a customer, stage and second take the
    first one's decision.

    >>> ts = pd.to_datetime(["2025-01-01 10:00", "2025-01-02 10:00"], utc=True)
    >>> logged = pd.DataFrame({"customer_id": ["a", "b"], "stage": "cart_abandon", "triggered_at": ts})
    >>> made = decisions_frame(np.array([True, False]), np.zeros(2, int), np.array([20, 0]), np.zeros(2, int),
    ...                        np.ones(2), logged.index)
    >>> world_rows = pd.DataFrame({"customer_id": ["b", "c", "a"], "stage": "cart_abandon",
    ...                            "triggered_at": ts[[1, 0, 0]]})
    >>> ReplayedDecisions(logged, made).decide(world_rows, np.random.default_rng(0))["action"].tolist()
    ['hold', 'hold', 'send']
    """

    candidates: pd.DataFrame
    decisions: pd.DataFrame
    row_wise = True

    def __post_init__(self) -> None:
        keys = _trigger_keys(self.candidates)
        first = ~keys.duplicated()
        self._keys, self._rows = keys[first], np.flatnonzero(first)
        self._made = self.decisions[["action", "channel", "delay_minutes", "incentive", "propensity"]].reset_index(
            drop=True)

    @property
    def policy_id(self) -> str:
        return "replayed-decisions"

    def decide(self, candidates: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        n = len(candidates)
        out = decisions_frame(np.zeros(n, bool), np.full(n, -1), np.zeros(n, np.int64), np.zeros(n, np.int64),
                              np.ones(n), candidates.index)
        pos = self._keys.get_indexer(_trigger_keys(candidates))
        seen = np.flatnonzero(pos >= 0)
        made = self._made.iloc[self._rows[pos[seen]]]
        for j, col in enumerate(out.columns):
            out.iloc[seen, j] = made[col].to_numpy()
        return out


def true_net_revenue(policy: Policy, cfg: ShopConfig, customers: Iterable[str]) -> tuple[float, int]:
    """Expected net revenue per trigger of ``customers`` when the world of ``cfg`` is re-run under ``policy``.

    The same quantity as :func:`~cadence.synthetic.world.simulate_truth`'s
    ``net_revenue / triggers`` (first messages and the follow-ups they
    cause, conversions that land before the data ends), restricted to the
    triggers of ``customers``. Returns (value, triggers).
    """
    keep = pd.Index(pd.unique(np.asarray(list(customers), dtype=object)))
    total, n = 0.0, 0
    for bb, out in iter_world(cfg, policy):
        ids = np.asarray(customer_ids(bb.people.idx).to_numpy(zero_copy_only=False), dtype=object)
        mine = keep.get_indexer(ids[bb.trig_cust]) >= 0
        net = out.p_convert * out.p_in_window * (out.value_if_converted - out.incentive_cost)
        fu = out.fu
        net = net + fu.p_convert * fu.p_in_window * (out.value_if_converted - fu.incentive_cost)
        total += float(net[mine].sum())
        n += int(mine.sum())
    return total / max(n, 1), n


def world(seed: int, customers: int, days: int, response: ObservableResponse | None = None) -> ShopConfig:
    """The study's shop: the observable-response world of ``seed`` (default :data:`~cadence.synthetic.REALISED_RESPONSE`)."""
    return ShopConfig(customers=customers, days=days, seed=seed, observable_response=response or REALISED_RESPONSE)


def policy_context_study(seeds: Iterable[int], *, customers: int = 4000, days: int = 210,
                         families: Sequence[str] = tuple(VARIANTS), offline: bool = True,
                         response: ObservableResponse | None = None, min_rows: int = 300,
                         scores: str = "dr", customer_columns: str | tuple[str, ...] = "core",
                         learner: str = "dr", alpha: float | None = None, progress: bool = False) -> pd.DataFrame:
    """One row per (seed, policy) with the true net revenue per trigger, and per (seed, comparison, estimator) offline.

    Columns: ``seed, kind`` (``"truth"``, ``"estimate"``, or ``"replayed"``: the
    truth of the decisions the offline replay made, :class:`ReplayedDecisions`), ``policy``,
    ``reference`` (comparisons), ``estimator`` (``truth``, ``replay``,
    ``doubly robust`` and their ``, fatigue-matched`` versions), ``value`` (truth: the policy's value; estimate: the
    estimated difference), ``lower, upper`` (estimates), ``triggers``.
    ``scores`` and ``customer_columns`` are the learned policies'
    :attr:`UpliftPolicy.scores` and :attr:`UpliftPolicy.customer_columns`
    (``full_all``: ``"all"``); ``learner`` is their design (``"dr"``, the policy learner, or
    ``"linear"``, :mod:`cadence.policies.linear`) and ``alpha`` its ridge penalty (``None``: the
    design's default, 1 for ``"dr"`` and 10 for ``"linear"``). With ``trigger`` among ``families`` the policy
    ``trigger_fallback`` is the trigger policy with the rules where the full
    context lacks a family (:class:`RulesWhereLacking`).
    """
    from cadence.simulation.replay import replay_decisions, simulate

    rows: list[dict[str, Any]] = []
    for seed in seeds:
        t0 = time.perf_counter()
        cfg = world(seed, customers, days, response)
        with tempfile.TemporaryDirectory() as tmp:
            shop = generate_shop(cfg, Path(tmp) / "shop")
            ctx = load_context(shop)
            log = load_log(shop, context=ctx)
        fit_rows, eval_rows = split_customers(log, 0.5, seed)
        train, test = log.subset(fit_rows), log.subset(eval_rows)
        assert test.candidates is not None
        judged = test.candidates["customer_id"].astype(str).unique()
        policies: dict[str, Policy] = {
            name: UpliftPolicy(learner=learner, context=VARIANTS[name], min_rows=min_rows, scores=scores,
                               customer_columns="all" if name == "full_all" else customer_columns,
                               alpha=(10.0 if learner == "linear" else 1.0) if alpha is None else alpha,
                               random_state=seed).fit(train)
            for name in families}
        if "trigger" in policies:
            policies["trigger_fallback"] = RulesWhereLacking(policies["trigger"])
        policies["rules"] = RulesPolicy()
        t_fit = time.perf_counter()
        truth = {}
        for name, pol in policies.items():
            truth[name], n_trig = true_net_revenue(WithContext(pol, ctx), cfg, judged)
            rows.append({"seed": seed, "kind": "truth", "policy": name, "reference": "", "estimator": "truth",
                         "value": truth[name], "lower": np.nan, "upper": np.nan, "triggers": n_trig})
        t_truth = time.perf_counter()
        if offline:
            compared = [k for k in dict.fromkeys(k for pair in COMPARISONS for k in pair) if k in policies]
            for name in compared:
                made = replay_decisions(test, policies[name], workers=1, seed=seed)
                value, n_trig = true_net_revenue(ReplayedDecisions(test.candidates, made), cfg, judged)
                rows.append({"seed": seed, "kind": "replayed", "policy": name, "reference": "", "estimator": "truth",
                             "value": value, "lower": np.nan, "upper": np.nan, "triggers": n_trig})
            for cand, ref in COMPARISONS:
                if cand not in policies or ref not in policies:
                    continue
                est = simulate(test, policies[cand], policies[ref], workers=1, seed=seed,
                               metrics=("net_revenue",), by_stage=False, fatigue_matched=True)["estimates"]
                est = est[(est["policy"] == "candidate") & (est["estimator"] != "model")]
                for _, r in est.iterrows():
                    rows.append({"seed": seed, "kind": "estimate", "policy": cand, "reference": ref,
                                 "estimator": r["estimator"], "value": float(r["lift"]),
                                 "lower": float(r["lift_lower"]), "upper": float(r["lift_upper"]),
                                 "triggers": test.n})
        if progress:
            print(f"seed {seed}: fit {t_fit - t0:.0f} s, truth {t_truth - t_fit:.0f} s, "
                  f"offline {time.perf_counter() - t_truth:.0f} s; "
                  + ", ".join(f"{k} {v:.3f}" for k, v in truth.items()), flush=True)
    return pd.DataFrame(rows)


def _paired(values: pd.DataFrame, est: pd.DataFrame) -> list[float]:
    """Per estimate row, ``values[policy] - values[reference]`` of its seed (``values``: seeds x policies)."""
    return [values.loc[s, p] - values.loc[s, r] for s, p, r in zip(est["seed"], est["policy"], est["reference"], strict=True)]


def summarise(runs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The study's tables.

    ``values``: per policy, the mean true net revenue per trigger over seeds.
    ``differences``: per (policy, reference) pair, the mean true paired
    difference with a 95% t-interval across seeds and the seeds it is
    positive in; for every learned variant against ``full`` (what dropping a
    family costs) and ``full`` against ``trigger`` and ``rules``.
    ``coverage``: per comparison and estimator, the share of seeds whose
    interval covers the true difference, the mean estimate and true
    difference, and the mean interval width; with ``"replayed"`` rows also
    the mean true difference of the replayed decisions and the share of
    seeds covering it (the estimator's own coverage, the policies' re-run
    states aside).
    """
    truth = runs[runs["kind"] == "truth"].pivot(index="seed", columns="policy", values="value")
    values = truth.agg(["mean", "std"]).T.rename_axis("policy").reset_index()
    pairs = [("full", "trigger"), ("full", "rules"), ("trigger", "rules"), ("full", "trigger_fallback"),
             ("trigger", "trigger_fallback"), ("full_all", "trigger")]
    pairs += [("full", v) for v in VARIANTS if v not in ("full", "trigger")]
    diff_rows = []
    for a, b in pairs:
        if a in truth and b in truth:
            d = (truth[a] - truth[b]).to_numpy()
            m = float(np.mean(d))
            lo, hi, _ = t_interval(d, 0.05)
            diff_rows.append({"policy": a, "reference": b, "seeds": len(d), "true_diff": m, "lower": lo, "upper": hi,
                              "positive_seeds": int((d > 0).sum())})
    est = runs[runs["kind"] == "estimate"].copy()
    cov = pd.DataFrame()
    if len(est):
        est["true_diff"] = _paired(truth, est)
        est["covered"] = (est["lower"] <= est["true_diff"]) & (est["true_diff"] <= est["upper"])
        g = est.groupby(["policy", "reference", "estimator"], sort=False)
        cov = pd.DataFrame({"seeds": g.size(), "coverage": g["covered"].mean(), "estimate": g["value"].mean(),
                            "true_diff": g["true_diff"].mean(),
                            "mean_width": (g["upper"].mean() - g["lower"].mean())})
        replayed = runs[runs["kind"] == "replayed"].pivot(index="seed", columns="policy", values="value")
        if len(replayed):
            est["replayed_diff"] = _paired(replayed, est)
            est["covered_replayed"] = (est["lower"] <= est["replayed_diff"]) & (est["replayed_diff"] <= est["upper"])
            g = est.groupby(["policy", "reference", "estimator"], sort=False)
            cov["replayed_diff"] = g["replayed_diff"].mean()
            cov["coverage_replayed"] = g["covered_replayed"].mean()
        cov = cov.reset_index()
    return {"values": values, "differences": pd.DataFrame(diff_rows), "coverage": cov}


#: Channel preference of :class:`ConstantAction` (the first one the customer is opted into).
_CHANNEL_ORDER = (0, 2, 1, 3)  # email, sms, push, whatsapp
#: The information sets of :func:`feature_headroom`: name -> what the oracle's decision reads besides the stage.
#: ``trigger traits`` is what the seven trigger columns reveal of the customer (frequency, recency);
#: ``observable traits`` adds what only the customer family shows (engagement, tenure, browsing);
#: ``hidden`` adds the response type and deal sensitivity no feature shows.
INFORMATION_SETS: dict[str, tuple[str, ...]] = {
    "stage": (),
    "trigger traits": ("frequency", "recency"),
    "observable traits": OBSERVABLE_TRAITS,
    "hidden": (*OBSERVABLE_TRAITS, *(f"segment_{s}" for s in SEGMENT_NAMES), "deal_sensitivity"),
}
#: The constant actions of :func:`action_values`.
HEADROOM_ACTIONS: tuple[str, ...] = ("hold", *INCENTIVES)


@dataclass
class ConstantAction:
    """Hold every trigger, or send every one with ``incentive`` (first slot, first opted-in channel).

    The incentive only on :data:`~cadence.contract.triggers.INCENTIVE_STAGES`
    (elsewhere ``none``); a customer opted into no channel is held.
    """

    incentive: str | None = None  # None: hold
    row_wise = True

    @property
    def policy_id(self) -> str:
        return f"constant-{self.incentive or 'hold'}"

    def decide(self, candidates: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        n = len(candidates)
        opt_in = opt_in_matrix(candidates)
        channel = np.full(n, -1)
        for k in _CHANNEL_ORDER[::-1]:
            channel = np.where(opt_in[:, k], k, channel)
        stage = candidates["stage"].astype(str).to_numpy()
        delay = np.array([delay_choices(s)[0] for s in stage], dtype=np.int64)
        inc = INCENTIVES.index(self.incentive) if self.incentive else 0
        incentive = np.where(np.isin(stage, list(INCENTIVE_STAGES)), inc, 0)
        send = (self.incentive is not None) & (channel >= 0)
        return decisions_frame(send, channel, delay, incentive, np.ones(n), candidates.index)


def action_values(cfg: ShopConfig) -> pd.DataFrame:
    """Every trigger's true expected net revenue under each of :data:`HEADROOM_ACTIONS`, with the customer's traits.

    One row per trigger of the world of ``cfg`` (its ``observable_response``
    set): ``customer`` (index), ``stage``, ``triggered_s`` (seconds since the epoch), the standardised
    :data:`~cadence.synthetic.config.OBSERVABLE_TRAITS`, ``segment_<type>``
    (0/1), ``deal_sensitivity``, and ``v_<action>``: the expected net revenue
    of the trigger (as in :func:`true_net_revenue`, first message only) when
    the world is re-run under the constant policy :class:`ConstantAction`
    of that action. Ground truth: for judging the world, never for an estimator.
    A constant policy's fatigue differs from a mixed one's, so the values
    approximate each trigger's action values under a policy that mixes them.
    """
    if cfg.observable_response is None:
        raise ValueError("action_values: cfg.observable_response is None; the traits exist only in the observable world")
    parts: list[pd.DataFrame] = []
    values: dict[str, list[np.ndarray]] = {a: [] for a in HEADROOM_ACTIONS}
    for action in HEADROOM_ACTIONS:
        pol = ConstantAction(None if action == "hold" else action)
        for bb, out in iter_world(cfg, pol):
            values[action].append(out.p_convert * out.p_in_window * (out.value_if_converted - out.incentive_cost))
            if action == "hold":
                pp, tc = bb.people, bb.trig_cust
                if cfg.observable_response.basis == "realised":
                    z = realised_traits(cfg, bb)
                else:
                    z = {k: v[tc] for k, v in observable_traits(cfg, pp, bb.browse_rate).items()}
                segment, _, deal = trigger_response(bb)
                frame = pd.DataFrame({"customer": pp.idx[tc], "stage": np.asarray(STAGES)[bb.trig_stage],
                                      "triggered_s": bb.trig_s})
                for t in OBSERVABLE_TRAITS:
                    frame[t] = z[t]
                for k, seg in enumerate(SEGMENT_NAMES):
                    frame[f"segment_{seg}"] = (segment == k).astype(float)
                frame["deal_sensitivity"] = deal
                parts.append(frame)
    out_frame = pd.concat(parts, ignore_index=True)
    for action, v in values.items():
        out_frame[f"v_{action}"] = np.concatenate(v)
    return out_frame


def feature_headroom(values: pd.DataFrame, information_sets: dict[str, tuple[str, ...]] | None = None,
                     seed: int = 0) -> dict[str, float]:
    """The true net revenue per trigger of the best decision rule that reads each information set (an oracle).

    For each set of :data:`INFORMATION_SETS` (default), a least-squares model
    of each send action's gain over hold, ``v_a - v_hold`` of
    :func:`action_values`, per stage and linear in the set's traits within
    each stage, is fitted on half the customers and picks, on the other
    half, the action with the largest predicted gain; the value is that
    action's true value, averaged over both halves (cross-fitted, so it is
    not flattered by fitting the judged customers). The labels are the
    truth's expectations, free of the log's noise: the result is what a
    policy that read those traits exactly could gain with unlimited data, an
    upper bound for a learner of the same form (linear in the context,
    interacted with the stage), and the difference between two sets is what
    the extra traits can be worth in this world. Also ``send`` and ``hold``
    (constant policies) and ``perfect`` (each trigger's best action).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> v = pd.DataFrame({"customer": np.arange(400), "stage": "cart_abandon", "x": rng.normal(size=400)})
    >>> v["v_hold"], v["v_none"] = 1.0, 1.0 + v["x"]
    >>> h = feature_headroom(v, {"stage": (), "x": ("x",)})
    >>> h["x"] > h["stage"] + 0.3  # E max(x, 0) = 0.4 for a standard normal x
    True
    """
    sets = INFORMATION_SETS if information_sets is None else information_sets
    actions = [c[2:] for c in values.columns if c.startswith("v_")]
    gains = values[[f"v_{a}" for a in actions if a != "hold"]].to_numpy() - values[["v_hold"]].to_numpy()
    v_all = values[[f"v_{a}" for a in actions]].to_numpy()
    hold = actions.index("hold")
    send_cols = [j for j, a in enumerate(actions) if a != "hold"]
    stage = pd.get_dummies(values["stage"].astype(str)).to_numpy(float)
    customers = pd.unique(values["customer"])
    rng = np.random.default_rng(seed)
    first = np.isin(values["customer"], rng.choice(customers, len(customers) // 2, replace=False))
    out = {"hold": float(values["v_hold"].mean()), "send": float(values["v_none"].mean()) if "v_none" in values else np.nan,
           "perfect": float(v_all.max(axis=1).mean())}
    for name, traits in sets.items():
        x = np.hstack([stage] + [stage * values[[t]].to_numpy(float) for t in traits])
        total = 0.0
        for fit, judge in ((first, ~first), (~first, first)):
            coef = np.linalg.lstsq(x[fit], gains[fit], rcond=None)[0]
            pred = np.zeros((int(judge.sum()), len(actions)))
            pred[:, send_cols] = x[judge] @ coef
            pred[:, hold] = 0.0
            total += float(v_all[judge][np.arange(int(judge.sum())), pred.argmax(axis=1)].sum())
        out[name] = total / len(values)
    return out


def with_logged_columns(values: pd.DataFrame, cfg: ShopConfig) -> tuple[pd.DataFrame, dict[str, tuple[str, ...]]]:
    """``values`` of :func:`action_values` joined with what the learned policy reads of each trigger, and the sets.

    Generates the shop of ``cfg`` under its logging policy, computes the
    policy context (:func:`cadence.workflows.logs.load_context`) and encodes
    the trigger family and the core customer family
    (:func:`cadence.policies.context.encode_context`) of every logged trigger,
    matched to its row of ``values`` by customer, stage and time. Missing
    numbers are median-filled with an indicator column. Returns the joined
    frame and two information sets for :func:`feature_headroom`:
    ``"trigger columns"`` and ``"trigger + core columns"``: what the
    headroom is when the oracle reads the shop's measured columns instead of
    the world's exact traits.
    """
    from cadence.policies.context import CUSTOMER_CORE, encode_context

    with tempfile.TemporaryDirectory() as tmp:
        shop = generate_shop(cfg, Path(tmp) / "shop")
        log = load_log(shop, context=load_context(shop))
    assert log.candidates is not None
    c = log.candidates.reset_index(drop=True)
    enc = encode_context(c, ("trigger", "customer"), "core").reset_index(drop=True).drop(columns=["stage"])
    numeric = [k for k in enc.columns if pd.api.types.is_numeric_dtype(enc[k])]
    cols = {}
    for k in numeric:
        x = enc[k].astype(float)
        cols[k] = x.fillna(x.median() if x.notna().any() else 0.0)
        if x.isna().any():
            cols[f"{k}_missing"] = x.isna().astype(float)
    key = pd.DataFrame({"cid": c["customer_id"].astype(str).to_numpy(), "stage": c["stage"].astype(str).to_numpy(),
                        "triggered_s": pd.to_datetime(c["triggered_at"], utc=True).astype("int64").to_numpy() // 10**9})
    ids = np.asarray(customer_ids(values["customer"].to_numpy()).to_numpy(zero_copy_only=False), dtype=object)
    joined = values.assign(cid=ids).merge(pd.concat([key, pd.DataFrame(cols)], axis=1),
                                          on=["cid", "stage", "triggered_s"], how="inner")
    trigger = tuple(k for k in cols if k.removesuffix("_missing") not in CUSTOMER_CORE)
    core = tuple(k for k in cols if k.removesuffix("_missing") in CUSTOMER_CORE)
    return joined, {"trigger columns": trigger, "trigger + core columns": trigger + core}


__all__ = ["COMPARISONS", "HEADROOM_ACTIONS", "INFORMATION_SETS", "VARIANTS", "ConstantAction", "ReplayedDecisions", "RulesWhereLacking",
           "action_values", "feature_headroom", "with_logged_columns", "policy_context_study", "summarise", "true_net_revenue", "world"]
