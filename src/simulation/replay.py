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
  residuals (valid if either the model or the propensities are right).

Customers are independent, so the walk is partitioned by customer: across
processes in-process (default) or with Spark's ``mapInPandas`` for large
histories; both give identical decisions. Given a data directory instead of
a loaded log, :func:`replay_decisions` reads the log partition by partition
(customer hash buckets of about a million triggers, split from the Parquet
files in one pass), so memory stays bounded by the partition, not the shop.

Examples
--------
>>> import tempfile
>>> from cadence.synthetic import ShopConfig, generate_shop
>>> from cadence.features.logged import load_log
>>> from cadence.policies.orchestrator import OrchestratedPolicy, OrchestratorConfig
>>> from cadence.policies.rules import RulesPolicy
>>> log = load_log(generate_shop(ShopConfig(customers=300, days=60, seed=1), tempfile.mkdtemp() + "/s"))
>>> d = replay_decisions(log, OrchestratedPolicy(RulesPolicy(), OrchestratorConfig(max_per_7d=2)))
>>> len(d) == log.n and set(d["action"]) <= {"send", "hold"}
True
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from cadence.contract.actions import N_ACTIONS, Policy, delay_choices, encode_actions
from cadence.contract.clock import epoch_seconds
from cadence.data.bandit import LoggedBandit
from cadence.data.io import PathLike, table_path
from cadence.evaluation.compare import compare
from cadence.evaluation.estimators import ON_POLICY, SNIPS, DirectMethod, DoublyRobust
from cadence.features.decision_context import SENDS_WINDOW_DAYS
from cadence.features.logged import LOG_SKIP_COLUMNS, first_steps, log_from_tables
from cadence.features.send_history import SendHistory
from cadence.models.response import ResponseModel

Engine = Literal["process", "spark"]
ESTIMATORS = {"replay": SNIPS(), "model": DirectMethod(), "doubly robust": DoublyRobust()}
_DAY = 86_400
#: Rounds with fewer triggers than this are decided from a table precomputed in one call (for row-wise
#: policies): a live call's fixed cost (tens of ms for a learned policy) would dominate them.
_TABLE_ROUND = 1_000
#: Triggers per partition: more partitions than workers when the log is larger (bounded memory).
_PART_ROWS = 1_000_000


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
        return pd.DataFrame(columns=["action", "channel", "delay_minutes", "incentive", "propensity", "sends_7d"])
    return pd.concat(parts).loc[candidates.index]


def _bucket(customer_id: np.ndarray, n: int) -> np.ndarray:
    """Each row's partition: a stable hash of the customer id, modulo ``n``."""
    return (pd.util.hash_array(np.asarray(customer_id, dtype=object)) % n).astype(np.int64)


def _partitions(candidates: pd.DataFrame, n: int) -> Iterator[pd.DataFrame]:
    part = _bucket(candidates["customer_id"].astype(str).to_numpy(), n)
    for p in range(n):
        yield candidates[part == p]


def _walk_star(args: tuple[pd.DataFrame, Policy, int]) -> pd.DataFrame:
    return _walk(*args)


def replay_decisions(log: LoggedBandit | PathLike, policy: Policy, *, engine: Engine = "process",
                     workers: int | None = None, seed: int = 0, progress: bool = False,
                     spark: Any = None) -> pd.DataFrame:
    """The counterfactual send log: one decision per logged trigger (rows in log order).

    Columns: the policy's decision columns (plus ``reason``/``send_at`` when
    orchestrated) and ``sends_7d``, the replayed messages in the 7 days
    before each trigger. Partitioned by customer (``workers`` processes, all
    cores by default; or Spark); a log of more than a million triggers is
    walked in more partitions than workers.

    ``log`` may also be a data directory (Parquet tables): it is then read
    partition by partition, never whole, and the rows are those of
    :func:`~cadence.evaluation.offline.load_log` on it (index ``0..n-1``).
    """
    if not isinstance(log, LoggedBandit):
        if engine == "process" and _parquet_log(log):
            return _replay_dir(Path(log), policy, workers or os.cpu_count() or 1, seed, progress)
        from cadence.features.logged import load_log

        log = load_log(log)
    cands = log.candidates.drop(columns=["sends_7d"], errors="ignore")
    if engine == "spark":
        return _replay_spark(cands, policy, seed, spark, workers or 4)
    if engine != "process":
        raise ValueError(f"engine: expected 'process' or 'spark', got {engine!r}")
    workers = workers or os.cpu_count() or 1
    n_parts = max(workers, -(-len(cands) // _PART_ROWS))
    parts = [p for p in _partitions(cands, n_parts) if len(p)]
    if workers == 1 or len(parts) <= 1:
        out = [_walk(p, policy, seed) for p in tqdm(parts, desc="replay", disable=not progress)]
    else:
        with ProcessPoolExecutor(max_workers=workers) as ex:
            out = list(tqdm(ex.map(_walk_star, [(p, policy, seed) for p in parts]), total=len(parts),
                            desc="replay", disable=not progress))
    return pd.concat(out).loc[cands.index] if out else _walk(cands, policy, seed)


_LOG_TABLES = ("messages", "customers", "orders")


def _parquet_log(data_dir: PathLike) -> bool:
    paths = [table_path(data_dir, t) for t in _LOG_TABLES]
    return all(p is not None and p.suffix != ".csv" for p in paths)


def _split_log(data_dir: Path, parts: int, out: Path) -> int:
    """Write each log table's rows to ``out/<table>-<p>.arrow`` by customer bucket; returns the messages rows.

    One streaming pass per table (Arrow batches, only the columns the log
    needs); messages get ``_row``, their row number in the table.
    """
    import pyarrow as pa
    import pyarrow.dataset as ds

    n_rows = 0
    for table in _LOG_TABLES:
        data = ds.dataset(table_path(data_dir, table), format="parquet")
        cols = [c for c in data.schema.names if c not in LOG_SKIP_COLUMNS.get(table, ())]
        writers: dict[int, Any] = {}
        row = 0
        opts = pa.ipc.IpcWriteOptions(compression="lz4")
        for batch in data.to_batches(columns=cols, batch_size=1 << 19):
            if batch.num_rows == 0:
                continue
            batch = batch.replace_schema_metadata(None)
            if table == "messages":
                batch = batch.append_column("_row", pa.array(np.arange(row, row + batch.num_rows)))
            row += batch.num_rows
            b = _bucket(batch.column("customer_id").to_numpy(zero_copy_only=False), parts)
            order = np.argsort(b, kind="stable")
            ends = np.cumsum(np.bincount(b, minlength=parts))
            batch = batch.take(pa.array(order))
            for p in np.flatnonzero(np.bincount(b, minlength=parts)):
                if p not in writers:
                    writers[p] = pa.ipc.new_file(str(out / f"{table}-{p}.arrow"), batch.schema, options=opts)
                lo = 0 if p == 0 else int(ends[p - 1])
                writers[p].write_batch(batch.slice(lo, int(ends[p]) - lo))
        for w in writers.values():
            w.close()
        if table == "messages":
            n_rows = row
    return n_rows


def _read_part(folder: Path, table: str, p: int) -> pd.DataFrame | None:
    import pyarrow as pa

    path = folder / f"{table}-{p}.arrow"
    if not path.exists():
        return None
    with pa.memory_map(str(path)) as src:
        return pa.ipc.open_file(src).read_all().to_pandas()


def _replay_part(args: tuple[Path, int, Policy, int]) -> pd.DataFrame:
    """One partition's log, read from the split and walked; indexed by the messages row."""
    folder, p, policy, seed = args
    msgs = _read_part(folder, "messages", p)
    if msgs is None:
        return pd.DataFrame()
    customers = _read_part(folder, "customers", p)
    orders = _read_part(folder, "orders", p)
    if customers is None:
        customers = pd.DataFrame({"customer_id": pd.Series([], dtype=object)})
    if orders is None:
        orders = pd.DataFrame({"customer_id": pd.Series([], dtype=object),
                               "ts": pd.Series([], dtype="datetime64[us, UTC]")})
    rows = msgs.pop("_row").to_numpy()
    log = log_from_tables(msgs, customers, orders)
    rows = rows[first_steps(msgs.reset_index(drop=True)).index.to_numpy()]  # a trigger's first decision is its row
    cands = log.candidates.drop(columns=["sends_7d"], errors="ignore").set_axis(pd.Index(rows), axis=0)
    return _walk(cands, policy, seed)


def _replay_dir(data_dir: Path, policy: Policy, workers: int, seed: int, progress: bool) -> pd.DataFrame:
    """:func:`replay_decisions` on a data directory, read and walked partition by partition."""
    import pyarrow.dataset as ds

    n = ds.dataset(table_path(data_dir, "messages"), format="parquet").count_rows()
    n_parts = max(workers, -(-n // _PART_ROWS))
    with tempfile.TemporaryDirectory(prefix="cadence-replay-") as tmp:
        folder = Path(tmp)
        _split_log(data_dir, n_parts, folder)
        tasks = [(folder, p, policy, seed) for p in range(n_parts)]
        if workers == 1:
            out = [_replay_part(a) for a in tqdm(tasks, desc="replay", disable=not progress)]
        else:
            with ProcessPoolExecutor(max_workers=min(workers, n_parts)) as ex:
                out = list(tqdm(ex.map(_replay_part, tasks), total=n_parts, desc="replay", disable=not progress))
    out = [d for d in out if len(d)]
    if not out:
        from cadence.features.logged import load_log

        return replay_decisions(load_log(data_dir), policy, workers=1, seed=seed)
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
             by_stage: bool = True) -> dict[str, pd.DataFrame]:
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
    """
    cand_dec = replay_decisions(log, candidate, engine=engine, workers=workers, seed=seed, progress=progress,
                                spark=spark)
    policies: dict[str, Any] = {"candidate": cand_dec}
    if baseline is not None:
        policies["baseline"] = replay_decisions(log, baseline, engine=engine, workers=workers, seed=seed,
                                                spark=spark)
    codes = {k: replay_codes(log, d) for k, d in policies.items()}
    # The model scores each replayed action in its replayed context (replayed fatigue).
    contexts = {k: log.candidates.assign(sends_7d=d["sends_7d"].to_numpy()) for k, d in policies.items()}
    frames = []
    for metric in metrics:
        model = ResponseModel(random_state=seed).fit(log, metric)
        q = model.matrix([log.action])
        dists: dict[str, Any] = {}
        for k, c in codes.items():
            q[np.arange(log.n), c] = model.predict_at(contexts[k], c)
            dist = np.zeros((log.n, q.shape[1]), np.float32)
            dist[np.arange(log.n), c] = 1.0
            dists[k] = dist
        if baseline is None:
            dists = {"baseline": ON_POLICY, **dists}
        df = compare(log.for_metric(metric), dists, list(ESTIMATORS.values()), q, reference="baseline", alpha=alpha,
                     random_state=seed, groups=log.groups)
        df["estimator"] = df["estimator"].map({v.name: k for k, v in ESTIMATORS.items()})
        frames.append(df.assign(metric=metric))
    est = pd.concat(frames, ignore_index=True)
    sends = {k: float((c > 0).mean()) for k, c in codes.items()}
    if baseline is None:
        sends["baseline"] = float((log.action > 0).mean())
    triggers_per_customer = log.n / max(len(np.unique(log.groups)), 1)
    return {"table": before_after(est, sends, triggers_per_customer), "estimates": est,
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
            for k, c in codes.items():
                dist = np.zeros((len(rows), N_ACTIONS), np.float32)
                dist[np.arange(len(rows)), c[rows]] = 1.0
                dists[k] = dist
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
