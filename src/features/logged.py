"""The messages log as a logged bandit: each decision's point-in-time context, its action and its rewards.

Every row of ``messages`` is a decision the logging policy took for one
trigger. This module turns it into a :class:`~cadence.data.bandit.LoggedBandit`
(:func:`log_from_tables`), what policies learn from and off-policy
evaluation judges:

* :func:`logged_candidates`: the candidate each decision was taken for, as a
  policy would have seen it then (stage, trigger time, time zone, the
  channel opt-ins at that moment, messages sent in the 7 days before, orders
  in the 90 days before, days since the last order), so a target policy can
  be asked what *it* would have done. The context is
  :mod:`cadence.features.decision_context`'s, run on DuckDB: the same
  definition ``cadence features`` writes into the trigger candidates;
* :func:`logged_actions`: one integer code per decision in the action
  vocabulary :data:`~cadence.contract.actions.ACTION_NAMES`;
* :func:`logged_rewards`: the outcome of each row per metric
  (:data:`METRICS`): opened, clicked, converted, and net revenue (order
  revenue less the incentive's cost).

Reading the tables from a data directory is the workflow layer's job
(:func:`cadence.workflows.logs.load_log`); this module takes tables.

Examples
--------
>>> import tempfile
>>> from cadence.data.io import read_tables
>>> from cadence.synthetic import ShopConfig, generate_shop
>>> t = read_tables(generate_shop(ShopConfig(customers=200, days=40, seed=1), tempfile.mkdtemp() + "/s"))
>>> log = log_from_tables(t["messages"], t["customers"], t["orders"])
>>> log.n == len(log.candidates) == len(log.rewards)
True
>>> list(log.rewards.columns) == list(METRICS)
True
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pandas as pd

from cadence.contract.actions import ACTION_NAMES, N_ACTIONS, encode_actions
from cadence.contract.triggers import INCENTIVE_COST_FIXED, INCENTIVE_PERCENT
from cadence.data.bandit import LoggedBandit
from cadence.features.decision_context import (
    MESSAGE_CONTEXT,
    OPT_IN_COLUMNS,
    ORDER_CONTEXT,
    context_frame,
    fetch_context,
    with_decision_context,
)

#: Outcomes a policy is judged on, per trigger.
METRICS: tuple[str, ...] = ("open", "click", "conversion", "net_revenue")


def _message_delays(messages: pd.DataFrame) -> np.ndarray:
    delay = (messages["sent_at"] - messages["triggered_at"]).dt.total_seconds() / 60
    return delay.fillna(0).round().to_numpy(dtype=np.int64)


def logged_decisions(messages: pd.DataFrame) -> pd.DataFrame:
    """The logged decisions in the policy-output shape (:data:`~cadence.contract.actions.DECISION_COLUMNS`)."""
    return pd.DataFrame({
        "action": messages["action"].to_numpy(),
        "channel": messages["channel"].to_numpy(),
        "delay_minutes": _message_delays(messages),
        "incentive": messages["incentive"].to_numpy(),
        "propensity": messages["propensity"].to_numpy(dtype=float),
    })


def logged_actions(messages: pd.DataFrame) -> np.ndarray:
    """Codes of the logged actions (delays read from ``sent_at - triggered_at``)."""
    try:
        return encode_actions(messages["stage"], logged_decisions(messages))
    except ValueError as e:
        raise ValueError(f"messages.{e}") from None


def first_steps(messages: pd.DataFrame) -> pd.DataFrame:
    """The rows that are a trigger's first decision (``step`` 1 or no ``step`` column): the bandit's rows.

    >>> first_steps(pd.DataFrame({"step": [1, 2, 1]})).index.tolist()
    [0, 2]
    """
    if "step" not in messages.columns:
        return messages
    return messages[messages["step"].fillna(1).to_numpy() == 1]


def logged_candidates(messages: pd.DataFrame, customers: pd.DataFrame,
                      orders: pd.DataFrame | None = None, history: pd.DataFrame | None = None,
                      *, con: Any = None) -> pd.DataFrame:
    """The trigger candidate behind each logged decision, as the policy saw it then.

    Columns: ``customer_id``, ``stage``, ``triggered_at`` and the decision
    context of :mod:`cadence.features.decision_context` as of
    ``triggered_at`` (the same definition ``cadence features`` writes into the
    trigger candidates): ``timezone``, ``opt_in_<channel>`` (opted in at
    signup and not unsubscribed from that channel at or before the trigger),
    ``sends_7d`` (messages sent to the customer in the 7 days before the
    trigger) and, when ``orders`` are given, ``orders_90d`` and
    ``days_since_order`` (NaN when none) before the trigger. Rows are in the
    order of ``messages``. The trigger's product context is not in the log
    (``items`` exist only for sent messages, so they would reveal the
    decision). ``history`` (default ``messages``) is the whole log the
    opt-ins and ``sends_7d`` are read from, e.g. including follow-up messages
    when ``messages`` are only the first steps. ``con`` is the Ibis backend
    that computes the context (a fresh DuckDB connection by default).

    >>> ts = lambda *s: pd.to_datetime(list(s), utc=True)
    >>> m = pd.DataFrame({"customer_id": ["a", "a"], "stage": ["cart_abandon"] * 2,
    ...                   "triggered_at": ts("2025-01-01", "2025-01-03"), "sent_at": ts("2025-01-01", None),
    ...                   "channel": ["email", None], "unsubscribed_at": ts(None, None)})
    >>> c = pd.DataFrame({"customer_id": ["a"], "opt_in_email": [True]})
    >>> logged_candidates(m, c)[["opt_in_email", "sends_7d"]].values.tolist()
    [[True, 0], [True, 1]]
    """
    from cadence.features.engine import connect, engine_name

    for col in ("customer_id", "stage", "triggered_at", "sent_at", "channel", "unsubscribed_at"):
        if col not in messages.columns:
            raise ValueError(f"messages.{col}: missing column")
    known = pd.Index(customers["customer_id"])
    unknown = ~messages["customer_id"].isin(known).to_numpy()
    if unknown.any():
        raise ValueError(f"messages.customer_id: {int(unknown.sum())} rows not in customers")
    hist = messages if history is None else history
    # Customers as integer codes: the engine partitions and joins on them faster than on strings.
    def code(ids: pd.Series) -> np.ndarray:
        return known.get_indexer(ids).astype(np.int64)

    cust = {"customer_id": np.arange(len(known))} | {c: customers[c].to_numpy() for c in ("timezone", *OPT_IN_COLUMNS)
                                                     if c in customers.columns}
    frames = {
        "_log_triggers": pd.DataFrame({"customer_id": code(messages["customer_id"]),
                                       "triggered_at": messages["triggered_at"].reset_index(drop=True),
                                       "_row": np.arange(len(messages))}),
        "_log_messages": pd.DataFrame({"customer_id": code(hist["customer_id"])} | {
            c: hist[c].reset_index(drop=True) for c in ("sent_at", "channel", "unsubscribed_at")}),
        "_log_customers": pd.DataFrame(cust),
    }
    if orders is not None:
        frames["_log_orders"] = pd.DataFrame({"customer_id": code(orders["customer_id"]),
                                              "ts": orders["ts"].reset_index(drop=True)})
    con = con or connect("duckdb")
    t = _upload(con, frames)
    schemas = tuple((name, tuple(table.schema().items())) for name, table in t.items())
    if engine_name(con) == "duckdb":
        # The query depends only on the tables' names and types: compiled once per process.
        ctx = context_frame(con.raw_sql(_context_sql(schemas)).fetch_arrow_table())
    else:
        ctx = fetch_context(con, _context_expr(t))
    out = pd.DataFrame({
        "customer_id": messages["customer_id"].to_numpy(),
        "stage": messages["stage"].astype(str).to_numpy(),
        # Nanoseconds, as the frame has always had them (it was built from Timestamp objects).
        "triggered_at": messages["triggered_at"].dt.as_unit("ns").reset_index(drop=True),
    })
    context = MESSAGE_CONTEXT + (ORDER_CONTEXT if orders is not None else ())
    if "timezone" not in customers.columns:  # as before the context moved to the feature layer
        context = tuple(c for c in context if c != "timezone")
        out["timezone"] = None
    for col in context:
        out[col] = ctx[col].to_numpy()
    return out


def _upload(con: Any, frames: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """The frames as tables on ``con``; on DuckDB as Arrow views, not copies (a third of the time at 20,000 customers)."""
    from cadence.features.engine import engine_name, register

    if engine_name(con) != "duckdb":
        return register(con, frames)
    import pyarrow as pa

    for name, df in frames.items():
        con.con.register(name, pa.Table.from_pandas(df, preserve_index=False))
    return {name: con.table(name) for name in frames}


def _context_expr(t: dict[str, Any]) -> Any:
    """The decision context of ``_log_triggers`` from the other ``_log_*`` tables, in trigger order."""
    tables = {"customers": t["_log_customers"], "messages": t["_log_messages"]}
    if "_log_orders" in t:
        tables["orders"] = t["_log_orders"]
    expr = with_decision_context(t["_log_triggers"], tables, at="triggered_at", orders="_log_orders" in t)
    return expr.order_by("_row")


@functools.lru_cache(maxsize=32)
def _context_sql(schemas: tuple[tuple[str, tuple[Any, ...]], ...]) -> str:
    """:func:`_context_expr`'s DuckDB SQL for tables of these names and types (compiling takes ~0.3 s)."""
    import ibis

    from cadence.features.engine import duckdb_sql

    return duckdb_sql(_context_expr({name: ibis.table(dict(schema), name=name) for name, schema in schemas}))


def net_revenue(revenue: np.ndarray, incentive: np.ndarray) -> np.ndarray:
    """Revenue less the incentive's cost (:func:`cadence.contract.triggers.incentive_cost`), vectorised.

    >>> net_revenue(np.array([100.0, 100.0, 0.0]), np.array(["percent_code", "free_shipping", "fixed_amount"])).tolist()
    [85.0, 94.0, 0.0]
    """
    revenue = np.nan_to_num(np.asarray(revenue, dtype=float))
    inc = pd.Series(incentive, dtype=object).fillna("none")
    fixed = inc.map(INCENTIVE_COST_FIXED).fillna(0.0).to_numpy(float)
    cost = np.where(inc.to_numpy() == "percent_code", INCENTIVE_PERCENT * revenue, fixed)
    return np.where(revenue > 0, revenue - cost, 0.0)


def logged_rewards(messages: pd.DataFrame) -> pd.DataFrame:
    """One column per metric of :data:`METRICS` (float), in the order of ``messages``."""
    converted = messages["converted_order_id"].notna().to_numpy()
    revenue = np.where(converted, messages["revenue"].fillna(0).to_numpy(float), 0.0)
    return pd.DataFrame({
        "open": messages["opened_at"].notna().to_numpy(float),
        "click": messages["clicked_at"].notna().to_numpy(float),
        "conversion": converted.astype(float),
        "net_revenue": net_revenue(revenue, messages["incentive"].to_numpy()),
    })


def one_hot(codes: np.ndarray) -> np.ndarray:
    """A deterministic policy's ``action_dist`` (float32): 1 at each row's code.

    >>> one_hot(np.array([0, 2]))[:, :3].tolist()
    [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    """
    dist = np.zeros((len(codes), N_ACTIONS), np.float32)
    dist[np.arange(len(codes)), codes] = 1.0
    return dist


def log_from_tables(messages: pd.DataFrame, customers: pd.DataFrame,
                    orders: pd.DataFrame | None = None) -> LoggedBandit:
    """A :class:`LoggedBandit` from in-memory ``messages``, ``customers`` (and ``orders``) tables.

    One row per trigger's first message: the action codes, ``pscore`` (the
    propensity), every metric of :data:`METRICS` as ``rewards`` (``reward``
    is the first, ``open``; pick one with :meth:`~LoggedBandit.for_metric`),
    the customers as ``groups`` and the decision contexts as ``candidates``.
    """
    history = messages.reset_index(drop=True)
    messages = first_steps(history).reset_index(drop=True)  # follow-ups are judged by sequence estimators
    groups = pd.Categorical(messages["customer_id"]).codes.astype(np.int64)
    return LoggedBandit(action=logged_actions(messages), pscore=messages["propensity"].to_numpy(float),
                        n_actions=N_ACTIONS, action_names=ACTION_NAMES, groups=groups,
                        candidates=logged_candidates(messages, customers, orders, history),
                        rewards=logged_rewards(messages))
