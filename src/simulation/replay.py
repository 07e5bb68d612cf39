"""Replay history under a candidate policy and estimate what it would have changed.

:func:`replay_decisions` walks every logged trigger in time order, customer
by customer, and asks the policy (usually an
:class:`~cadence.policies.orchestrator.OrchestratedPolicy`, which remembers
what it sent) what it would have done, given only what was known then: the
trigger, the customer's opt-ins, and the messages *the replayed policy*
sent in the 7 days before (not the logged ones). The result is the
counterfactual send log.

:func:`simulate` turns two counterfactual logs (candidate and baseline) into
open, click and conversion rates, revenue and messages per customer, with
lifts and 95% intervals, by three estimators, each labelled:

* ``replay``: Li et al. (2011) replay matching: the logged outcomes of the
  triggers where the logging policy happened to take the replayed action,
  weighted by the inverse of its propensity and self-normalised (the
  generalisation of rejection-sampling replay to non-uniform logging);
* ``model``: a response model's prediction at each replayed action and
  replayed context (it sees the replayed fatigue);
* ``doubly robust``: the model's prediction corrected by the matched rows'
  residuals (valid if either the model or the propensities are right);
* with ``fatigue_matched=True`` also ``replay, fatigue-matched`` and
  ``doubly robust, fatigue-matched``: the same two with rows matched on the
  replayed policy's fatigue as well as its action
  (:mod:`cadence.simulation.carryover`). They read no reward at a fatigue the
  policy would not have carried, so a policy that sends much more or less
  than the logging one is not judged at the logged fatigue; the price is width.

Customers are independent, so the walk is partitioned by customer: across
processes in-process (default) or with Spark's ``mapInPandas`` for large
histories; both give identical decisions. :func:`replay_parts` walks a log
handed over in customer partitions instead of whole: each partition is
loaded by a callable in the process that walks it, so memory stays bounded
by the partition, not the shop. Reading a data directory that way (customer
hash buckets of about :data:`PART_ROWS` triggers, split from the Parquet
files in one pass) is the workflow layer's
:func:`cadence.workflows.logs.replay_log`.

Examples
--------
>>> import tempfile
>>> from cadence.synthetic import ShopConfig, generate_shop
>>> from cadence.workflows.logs import load_log
>>> from cadence.policies.orchestrator import OrchestratedPolicy, OrchestratorConfig
>>> from cadence.policies.rules import RulesPolicy
>>> log = load_log(generate_shop(ShopConfig(customers=300, days=60, seed=1), tempfile.mkdtemp() + "/s"))
>>> d = replay_decisions(log, OrchestratedPolicy(RulesPolicy(), OrchestratorConfig(max_per_7d=2)))
>>> len(d) == log.n and set(d["action"]) <= {"send", "hold"}
True
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from cadence.contract.actions import Policy, delay_choices, encode_actions
from cadence.contract.clock import epoch_seconds
from cadence.data.bandit import LoggedBandit
from cadence.evaluation.compare import compare
from cadence.evaluation.estimators import ON_POLICY, SNIPS, DirectMethod, DoublyRobust
from cadence.evaluation.intervals import IntervalKind
from cadence.features.decision_context import SENDS_WINDOW_DAYS
from cadence.features.logged import first_steps, log_from_tables, one_hot
from cadence.features.send_history import SendHistory
from cadence.models.response import ResponseModel
from cadence.simulation.carryover import fatigue_weights

Engine = Literal["process", "spark"]
ESTIMATORS = {"replay": SNIPS(), "model": DirectMethod(), "doubly robust": DoublyRobust()}
#: The estimators that also match the replayed fatigue (:func:`~cadence.simulation.carryover.fatigue_weights`).
MATCHED_ESTIMATORS = {"replay, fatigue-matched": SNIPS(), "doubly robust, fatigue-matched": DoublyRobust()}
_DAY = 86_400
#: Rounds with fewer triggers than this are decided from a table precomputed in one call (for row-wise
#: policies): a live call's fixed cost (tens of ms for a learned policy) would dominate them.
_TABLE_ROUND = 1_000
#: Triggers per partition: more partitions than workers when the log is larger (bounded memory).
PART_ROWS = 1_000_000
#: The columns of a replayed send log with no rows.
_DECISION_COLUMNS = ["action", "channel", "delay_minutes", "incentive", "propensity", "sends_7d"]


def _walk(candidates: pd.DataFrame, policy: Policy, seed: int) -> pd.DataFrame:
    """Decisions for one partition of customers, in time order per customer (index kept)."""
    if hasattr(policy, "reset"):
        policy.reset()
    rng = np.random.default_rng(seed)
    c = candidates.sort_values(["customer_id", "triggered_at"], kind="stable")
    if "local_hour" not in c:
        from cadence.contract.clock import local_time

        hour, weekday = local_time(c)  # fixed per trigger: converted once, not every round
        c = c.assign(local_hour=hour, local_weekday=weekday)
    cust = pd.Categorical(c["customer_id"]).codes.astype(np.int64)
    t = epoch_seconds(c["triggered_at"])
    rank = c.groupby(cust).cumcount().to_numpy()
    # Round k holds every customer's k-th trigger, rows in the order of c.
    order = np.argsort(rank, kind="stable")
    sizes = np.bincount(rank) if len(c) else np.zeros(0, np.int64)
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    if hasattr(policy, "precompute"):
        small = np.flatnonzero(sizes < _TABLE_ROUND)
        if small.size:  # the small rounds are the last ones (a round is never larger than the one before)
            policy.precompute(c.iloc[np.sort(order[bounds[small[0]]:])])
    # The replayed sends of each customer, counted as the decision context counts the logged ones:
    # sends_7d is the sends in [t - 7 days, t) (the feature layer's counter, its last 32 sends each).
    history = SendHistory()
    parts = []
    for k in range(len(sizes)):
        rows = order[bounds[k]:bounds[k + 1]]
        who, when = cust[rows], t[rows]
        sends_7d = history.sends_before(who, when, SENDS_WINDOW_DAYS * _DAY)
        frame = c.iloc[rows].assign(sends_7d=sends_7d)
        dec = policy.decide(frame, rng)
        dec.index = frame.index
        send = (dec["action"] == "send").to_numpy()
        history.record(who[send], when[send] + dec["delay_minutes"].to_numpy(np.int64)[send] * 60)
        dec["sends_7d"] = sends_7d
        parts.append(dec)
    if not parts:
        return pd.DataFrame(columns=_DECISION_COLUMNS)
    return pd.concat(parts).loc[candidates.index]


def customer_partition(customer_id: np.ndarray, n: int) -> np.ndarray:
    """Each row's partition of ``n``: a stable hash of its customer id (text), so a customer's rows share one.

    >>> p = customer_partition(np.array(["a", "b", "a"]), 4)
    >>> bool(p[0] == p[2]) and bool(((0 <= p) & (p < 4)).all())
    True
    """
    return (pd.util.hash_array(np.asarray(customer_id, dtype=object)) % n).astype(np.int64)


def partition_count(rows: int, workers: int) -> int:
    """Partitions of a log of ``rows`` rows: one per worker, more when a partition would pass :data:`PART_ROWS`.

    >>> partition_count(10, 2), partition_count(2_500_000, 2)
    (2, 3)
    """
    return max(workers, -(-rows // PART_ROWS))


def _partitions(candidates: pd.DataFrame, n: int) -> Iterator[pd.DataFrame]:
    part = customer_partition(candidates["customer_id"].astype(str).to_numpy(), n)
    for p in range(n):
        yield candidates[part == p]


def _walk_star(args: tuple[pd.DataFrame, Policy, int]) -> pd.DataFrame:
    return _walk(*args)


def replay_decisions(log: LoggedBandit, policy: Policy, *, engine: Engine = "process",
                     workers: int | None = None, seed: int = 0, progress: bool = False,
                     spark: Any = None) -> pd.DataFrame:
    """The counterfactual send log: one decision per logged trigger (rows in log order).

    Columns: the policy's decision columns (plus ``reason``/``send_at`` when
    orchestrated) and ``sends_7d``, the replayed messages in the 7 days
    before each trigger. Partitioned by customer (``workers`` processes, all
    cores by default; or Spark); a log of more than :data:`PART_ROWS`
    triggers is walked in more partitions than workers. A log too large to
    load whole goes to :func:`replay_parts` in partitions instead.
    """
    if not isinstance(log, LoggedBandit):
        raise TypeError(f"log: expected a LoggedBandit, got {type(log).__name__} "
                        "(a data directory is replayed by cadence.workflows.logs.replay_log)")
    cands = log.candidates.drop(columns=["sends_7d"], errors="ignore")
    if engine == "spark":
        return _replay_spark(cands, policy, seed, spark, workers or 4)
    if engine != "process":
        raise ValueError(f"engine: expected 'process' or 'spark', got {engine!r}")
    workers = workers or os.cpu_count() or 1
    parts = [p for p in _partitions(cands, partition_count(len(cands), workers)) if len(p)]
    if workers == 1 or len(parts) <= 1:
        out = [_walk(p, policy, seed) for p in tqdm(parts, desc="replay", disable=not progress)]
    else:
        with ProcessPoolExecutor(max_workers=workers) as ex:
            out = list(tqdm(ex.map(_walk_star, [(p, policy, seed) for p in parts]), total=len(parts),
                            desc="replay", disable=not progress))
    return pd.concat(out).loc[cands.index] if out else _walk(cands, policy, seed)


@dataclass(frozen=True)
class LogPart:
    """One customer partition of a messages log, as :func:`replay_parts` walks it.

    ``messages`` holds every row of the partition's customers (follow-ups
    too, in log order), ``customers`` and ``orders`` their rows (empty
    frames when they have none), and ``rows`` each message's row number in
    the whole ``messages`` table, which orders the result. Every row of a
    customer must be in one partition: their history is walked whole.
    """

    messages: pd.DataFrame
    customers: pd.DataFrame
    orders: pd.DataFrame
    rows: np.ndarray


def _replay_part(args: tuple[Callable[[], LogPart | None], Policy, int]) -> pd.DataFrame:
    """One partition, loaded (in this process) and walked; indexed by the messages row."""
    load, policy, seed = args
    part = load()
    if part is None:
        return pd.DataFrame()
    log = log_from_tables(part.messages, part.customers, part.orders)
    rows = np.asarray(part.rows)[first_steps(part.messages.reset_index(drop=True)).index.to_numpy()]
    cands = log.candidates.drop(columns=["sends_7d"], errors="ignore").set_axis(pd.Index(rows), axis=0)
    return _walk(cands, policy, seed)


def replay_parts(parts: Sequence[Callable[[], LogPart | None]], policy: Policy, *, workers: int | None = None,
                 seed: int = 0, progress: bool = False) -> pd.DataFrame:
    """:func:`replay_decisions` on a log handed over in customer partitions, never whole.

    Each element of ``parts`` loads one partition (a :class:`LogPart`, or
    ``None`` when it holds no messages) and is called in the process that
    walks it, so with ``workers`` > 1 it must pickle (a module-level
    function, or a ``functools.partial`` of one) and only the partition
    being walked is in memory. The rows are the log's first steps (as
    :func:`~cadence.features.logged.log_from_tables` makes them), ordered by
    their row in ``messages``, with index ``0..n-1``; the decisions are
    those :func:`replay_decisions` makes on the log loaded whole when the
    partitions are the same.

    >>> from functools import partial
    >>> from cadence.policies.rules import RulesPolicy
    >>> ts = lambda *s: pd.to_datetime(list(s), utc=True)
    >>> m = pd.DataFrame({"customer_id": ["a", "b"], "stage": ["cart_abandon"] * 2,
    ...     "triggered_at": ts("2025-01-01", "2025-01-02"), "sent_at": ts("2025-01-01 01:00", "2025-01-02 01:00"),
    ...     "channel": ["email", "email"], "unsubscribed_at": ts(None, None), "action": ["send", "send"],
    ...     "incentive": [None, None], "propensity": [0.5, 0.5], "opened_at": ts(None, None),
    ...     "clicked_at": ts(None, None), "converted_order_id": [None, None], "revenue": [0.0, 0.0]})
    >>> c = pd.DataFrame({"customer_id": ["a", "b"], "opt_in_email": [True, True]})
    >>> o = pd.DataFrame({"customer_id": pd.Series([], dtype=object), "ts": ts()})
    >>> def part(i):  # customer i's rows
    ...     return LogPart(m.iloc[[i]], c.iloc[[i]], o, np.array([i]))
    >>> replay_parts([partial(part, 1), partial(part, 0)], RulesPolicy(), workers=1)["action"].tolist()
    ['send', 'send']
    """
    if not parts:
        return pd.DataFrame(columns=_DECISION_COLUMNS)
    workers = workers or os.cpu_count() or 1
    tasks = [(load, policy, seed) for load in parts]
    if workers == 1:
        out = [_replay_part(a) for a in tqdm(tasks, desc="replay", disable=not progress)]
    else:
        with ProcessPoolExecutor(max_workers=min(workers, len(tasks))) as ex:
            out = list(tqdm(ex.map(_replay_part, tasks), total=len(tasks), desc="replay", disable=not progress))
    out = [d for d in out if len(d)]
    if not out:
        return pd.DataFrame(columns=_DECISION_COLUMNS)
    d = pd.concat(out)
    del out
    d = d.take(np.argsort(d.index.to_numpy(), kind="stable"))
    d.index = pd.RangeIndex(len(d))
    return d


def _replay_spark(cands: pd.DataFrame, policy: Policy, seed: int, spark: Any, partitions: int) -> pd.DataFrame:
    """The same walk with Spark's ``mapInPandas``, one group of customers per task."""
    from cadence.features.engine import spark_session

    session = spark or spark_session()
    frame = cands.assign(_row=np.arange(len(cands)))
    frame["triggered_at"] = pd.to_datetime(frame["triggered_at"], utc=True).dt.tz_convert("UTC").dt.tz_localize(None)
    # Columns with no values cannot be typed by Spark; the policies read none of them.
    frame = frame.drop(columns=[c for c in frame.columns if frame[c].isna().all()])
    sdf = session.createDataFrame(frame.astype({"customer_id": str, "stage": str, "timezone": object}))

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        # Arrow hands a partition over in batches of rows; a customer's history must be walked whole.
        parts = list(batches)
        if parts:
            b = pd.concat(parts, ignore_index=True)
            b = b.assign(triggered_at=pd.to_datetime(b["triggered_at"]).dt.tz_localize("UTC"))
            d = _walk(b.set_index("_row", drop=False), policy, seed)
            yield pd.DataFrame({"_row": d.index.to_numpy(), "action": d["action"].astype(str),
                                "channel": d["channel"].astype(object), "delay_minutes": d["delay_minutes"],
                                "incentive": d["incentive"].astype(object), "propensity": d["propensity"],
                                "sends_7d": d["sends_7d"].astype(np.int64)})

    schema = ("_row long, action string, channel string, delay_minutes long, incentive string, "
              "propensity double, sends_7d long")
    got = sdf.repartition(partitions, "customer_id").mapInPandas(run, schema).toPandas()
    return got.sort_values("_row").set_index(cands.index[got.sort_values("_row")["_row"].to_numpy()]).drop(columns="_row")


def _snap_delays(stage: pd.Series, delay: np.ndarray) -> np.ndarray:
    """Each delay moved to its stage's nearest offered delay (quiet-hour shifts leave the grid)."""
    out = np.asarray(delay, np.int64).copy()
    for s, rows in stage.groupby(stage.astype(str)).groups.items():
        choices = np.asarray(delay_choices(str(s)))
        idx = stage.index.get_indexer(rows)
        out[idx] = choices[np.abs(out[idx, None] - choices[None, :]).argmin(axis=1)]
    return out


def replay_codes(log: LoggedBandit, decisions: pd.DataFrame) -> np.ndarray:
    """Action codes of replayed decisions (delays snapped to the offered grid)."""
    d = decisions.reset_index(drop=True).copy()
    stage = log.candidates["stage"].reset_index(drop=True)
    d["delay_minutes"] = _snap_delays(stage, d["delay_minutes"].to_numpy())
    return encode_actions(stage, d)


#: Rows of the before/after table, as the seeds report results.
TABLE_METRICS = ("open rate", "click rate", "conversion rate", "revenue per customer", "messages per customer")


def simulate(log: LoggedBandit, candidate: Policy, baseline: Policy | None = None, *, engine: Engine = "process",
             workers: int | None = None, seed: int = 0, alpha: float = 0.05, progress: bool = False,
             spark: Any = None, metrics: tuple[str, ...] = ("open", "click", "conversion", "net_revenue"),
             by_stage: bool = True, fatigue_matched: bool = False,
             interval: IntervalKind = "normal") -> dict[str, pd.DataFrame]:
    """Replay ``candidate`` and ``baseline`` (``None`` = the logged policy) and compare them.

    Returns
    -------
    dict with
        ``table``: metric, baseline, candidate, lift, lift_lower, lift_upper,
        estimator (the doubly-robust estimates, the seeds' before/after shape);
        ``estimates``: every metric per trigger by every estimator
        (``replay``, ``model``, ``doubly robust``) for both policies, with intervals;
        ``by_stage``: conversion and net revenue per stage (replay matching);
        ``decisions``: the candidate's counterfactual send log (with ``stage``).
        ``metrics`` limits the per-trigger metrics estimated (the table then
        shows the rows it can); ``by_stage=False`` skips the per-stage table.
        ``fatigue_matched=True`` adds :data:`MATCHED_ESTIMATORS` to ``estimates``
        and shows the fatigue-matched DR in ``table``.
        ``interval`` is :func:`~cadence.evaluation.compare.compare`'s; the
        default ``"normal"`` is the customer-clustered CLT (delta-method)
        interval. A lift rests on the few customers whose logged action
        matched one policy's and converted (in the policy-context study the
        ten largest of ~1,500 customers carried 49-99% of the lift's
        variance), and a Poisson bootstrap's percentile interval of such a
        sum is lopsided: about as wide (median 0.99 of the normal), it missed
        the true lift on its short side in 19 of 640 study estimates that
        the normal interval covered, and the reverse happened once
        (RESULTS.md, "Normal intervals in ``simulate``").
    """
    cand_dec = replay_decisions(log, candidate, engine=engine, workers=workers, seed=seed, progress=progress,
                                spark=spark)
    policies: dict[str, Any] = {"candidate": cand_dec}
    if baseline is not None:
        policies["baseline"] = replay_decisions(log, baseline, engine=engine, workers=workers, seed=seed,
                                                spark=spark)
    codes = {k: replay_codes(log, d) for k, d in policies.items()}
    # The model's direct term scores each replayed action in the policy's own replayed context (its
    # fatigue); the DR residual stays at the logged context, where the reward was observed.
    contexts = {k: log.candidates.assign(sends_7d=d["sends_7d"].to_numpy()) for k, d in policies.items()}
    runs: list[tuple[dict[str, Any], dict[str, np.ndarray] | None]] = [(ESTIMATORS, None)]
    if fatigue_matched:
        runs.append((MATCHED_ESTIMATORS, {k: fatigue_weights(log, d["sends_7d"].to_numpy()) for k, d in policies.items()}))
    frames = []
    for metric in metrics:
        model = ResponseModel(random_state=seed).fit(log, metric)
        q = model.matrix([log.action, *codes.values()])
        dists: dict[str, Any] = {k: one_hot(c) for k, c in codes.items()}
        terms = {k: model.predict_at(contexts[k], c) for k, c in codes.items()}
        if baseline is None:
            dists = {"baseline": ON_POLICY, **dists}
        for named, state_weights in runs:
            df = compare(log.for_metric(metric), dists, list(named.values()), q, reference="baseline", alpha=alpha,
                         interval=interval, random_state=seed, groups=log.groups, direct_terms=terms,
                         state_weights=state_weights)
            df["estimator"] = df["estimator"].map({v.name: k for k, v in named.items()})
            frames.append(df.assign(metric=metric))
    est = pd.concat(frames, ignore_index=True)
    sends = {k: float((c > 0).mean()) for k, c in codes.items()}
    if baseline is None:
        sends["baseline"] = float((log.action > 0).mean())
    triggers_per_customer = log.n / max(len(np.unique(log.groups)), 1)
    shown = "doubly robust, fatigue-matched" if fatigue_matched else "doubly robust"
    return {"table": before_after(est, sends, triggers_per_customer, shown), "estimates": est,
            "by_stage": _by_stage(log, codes, seed, baseline is None) if by_stage else pd.DataFrame(),
            "decisions": cand_dec.assign(stage=log.candidates["stage"].astype(str).to_numpy())}


def before_after(est: pd.DataFrame, sends: dict[str, float], triggers_per_customer: float,
                 estimator: str = "doubly robust") -> pd.DataFrame:
    """The seeds' before/after table from per-trigger estimates.

    Rates per message are per-trigger estimates divided by the policy's
    sends per trigger (known exactly for a replayed deterministic policy);
    per-customer values multiply by triggers per customer.
    """
    e = est[est["estimator"] == estimator].set_index(["metric", "policy"])
    rows = []
    for label, metric, scale in (("open rate", "open", "per_send"), ("click rate", "click", "per_send"),
                                 ("conversion rate", "conversion", "per_trigger"),
                                 ("revenue per customer", "net_revenue", "per_customer")):
        def k(policy: str, scale: str = scale) -> float:
            if scale == "per_send":
                return 1.0 / max(sends[policy], 1e-12)
            return triggers_per_customer if scale == "per_customer" else 1.0

        if (metric, "candidate") not in e.index:
            continue
        def v(policy: str, col: str, metric: str = metric) -> float:
            return float(e.at[(metric, policy), col])  # type: ignore[arg-type]

        base, cand = v("baseline", "value") * k("baseline"), v("candidate", "value") * k("candidate")
        # The paired per-trigger interval, rescaled; the baseline's own scale is taken as known
        # (exact when both scales agree: conversion and revenue rows).
        shift = v("baseline", "value") * (k("candidate") - k("baseline"))
        lo = v("candidate", "lift_lower") * k("candidate") + shift
        hi = v("candidate", "lift_upper") * k("candidate") + shift
        rows.append({"metric": label, "baseline": base, "candidate": cand, "lift": cand - base,
                     "lift_lower": lo, "lift_upper": hi, "estimator": estimator})
    mb, mc = sends["baseline"] * triggers_per_customer, sends["candidate"] * triggers_per_customer
    rows.append({"metric": "messages per customer", "baseline": mb, "candidate": mc, "lift": mc - mb,
                 "lift_lower": mc - mb, "lift_upper": mc - mb, "estimator": "exact (counted)"})
    return pd.DataFrame(rows)


def _by_stage(log: LoggedBandit, codes: dict[str, np.ndarray], seed: int, on_policy: bool) -> pd.DataFrame:
    stage = log.candidates["stage"].astype(str).to_numpy()
    out = []
    for s in sorted(set(stage)):
        rows = np.flatnonzero(stage == s)
        sub = log.subset(rows)
        for metric in ("conversion", "net_revenue"):
            dists: dict[str, Any] = {"baseline": ON_POLICY} if on_policy else {}
            dists.update({k: one_hot(c[rows]) for k, c in codes.items()})
            try:
                df = compare(sub.for_metric(metric), dists, [SNIPS()], reference="baseline", random_state=seed,
                             groups=sub.groups, min_ess=10)
            except ValueError:  # no logged decision of the stage matches the replayed ones
                out.append({"stage": s, "metric": metric, "triggers": len(rows), "baseline": np.nan,
                            "candidate": np.nan, "lift": np.nan, "lift_lower": np.nan, "lift_upper": np.nan,
                            "supported": False, "estimator": "replay"})
                continue
            cand = df[df["policy"] == "candidate"].iloc[0]
            base = df[df["policy"] == "baseline"].iloc[0]
            out.append({"stage": s, "metric": metric, "triggers": len(rows), "baseline": base["value"],
                        "candidate": cand["value"], "lift": cand["lift"], "lift_lower": cand["lift_lower"],
                        "lift_upper": cand["lift_upper"], "supported": bool(cand["supported"]),
                        "estimator": "replay"})
    return pd.DataFrame(out)





def format_table(t: pd.DataFrame) -> pd.DataFrame:
    """The before/after table with numbers formatted for a terminal or report (rates in %)."""

    def f(m: str, v: float, sign: bool = False) -> str:
        spec = "+.2%" if sign and "rate" in m else ".2%" if "rate" in m else "+.2f" if sign else ".2f"
        return format(v, spec)

    return pd.DataFrame({
        "metric": t["metric"],
        "baseline": [f(m, v) for m, v in zip(t["metric"], t["baseline"], strict=True)],
        "candidate": [f(m, v) for m, v in zip(t["metric"], t["candidate"], strict=True)],
        "lift": [f(m, v, True) for m, v in zip(t["metric"], t["lift"], strict=True)],
        "95% interval": [f"[{f(m, lo, True)}, {f(m, hi, True)}]" for m, lo, hi in
                         zip(t["metric"], t["lift_lower"], t["lift_upper"], strict=True)],
    })
