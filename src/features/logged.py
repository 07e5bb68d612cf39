"""The messages log as a logged bandit: each decision's point-in-time context, its action and its rewards.

Every row of ``messages`` is a decision the logging policy took for one
trigger. This module turns it into a :class:`~cadence.data.bandit.LoggedBandit`
(:func:`log_from_tables`), what policies learn from and off-policy
evaluation judges:

* :func:`logged_candidates`: the candidate each decision was taken for, as a
  policy would have seen it then (stage, trigger time, time zone, the
  channel opt-ins at that moment, messages sent in the 7 days before), so a
  target policy can be asked what *it* would have done;
* :func:`logged_actions`: one integer code per decision in the action
  vocabulary :data:`~cadence.contract.actions.ACTION_NAMES`;
* :func:`logged_rewards`: the outcome of each row per metric
  (:data:`METRICS`): opened, clicked, converted, and net revenue (order
  revenue less the incentive's cost).

Examples
--------
>>> import tempfile
>>> from cadence.synthetic import ShopConfig, generate_shop
>>> log = load_log(generate_shop(ShopConfig(customers=200, days=40, seed=1), tempfile.mkdtemp() + "/s"))
>>> log.n == len(log.candidates) == len(log.rewards)
True
>>> list(log.rewards.columns) == list(METRICS)
True
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cadence.contract.actions import ACTION_NAMES, N_ACTIONS, encode_actions
from cadence.contract.clock import epoch_seconds
from cadence.contract.tables import CHANNELS
from cadence.contract.triggers import INCENTIVE_COST_FIXED, INCENTIVE_PERCENT
from cadence.data.bandit import LoggedBandit
from cadence.data.io import PathLike, read_table, table_paths

#: Outcomes a policy is judged on, per trigger.
METRICS: tuple[str, ...] = ("open", "click", "conversion", "net_revenue")
_DAY_S = 86_400












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


def sends_before(customer: np.ndarray, sent_s: np.ndarray, at_s: np.ndarray, who: np.ndarray,
                 window_s: int = 7 * _DAY_S) -> np.ndarray:
    """Per query row: sends of customer ``who`` in ``[at - window, at)``.

    ``customer``/``sent_s`` are the sends (integer customer codes, epoch
    seconds); ``who``/``at_s`` the queries.

    >>> sends_before(np.array([0, 0, 1]), np.array([10, 20, 5]), np.array([20, 21]), np.array([0, 0]), window_s=15)
    array([1, 2])
    """
    key = customer.astype(np.int64) * (1 << 40) + sent_s.astype(np.int64)
    key.sort()
    base = who.astype(np.int64) * (1 << 40)
    hi = np.searchsorted(key, base + at_s, side="left")
    lo = np.searchsorted(key, base + at_s - window_s, side="left")
    return (hi - lo).astype(np.int64)


KEY = 1 << 40  #: customer code * KEY + epoch seconds: one sortable key per (customer, time)


def orders_before(order_keys: np.ndarray, customer: np.ndarray, t: np.ndarray,
                  window_s: int = 90 * _DAY_S) -> tuple[np.ndarray, np.ndarray]:
    """Orders of each customer in ``[t - window, t)`` and the time of their last order before ``t``.

    ``order_keys`` are sorted ``customer * 2**40 + seconds``; the last time is
    a very negative number when there is none.

    >>> k = np.sort(np.array([0 * 2**40 + 5, 0 * 2**40 + 50, 1 * 2**40 + 7]))
    >>> n, last = orders_before(k, np.array([0, 1]), np.array([60, 7]), window_s=20)
    >>> n.tolist(), last.tolist()[0]
    ([1, 0], 50)
    """
    base = customer.astype(np.int64) * KEY
    hi = np.searchsorted(order_keys, base + t, side="left")
    lo = np.searchsorted(order_keys, base + t - window_s, side="left")
    prev = order_keys[np.maximum(hi - 1, 0)] if len(order_keys) else np.zeros(len(t), np.int64)
    own = (hi > 0) & (prev >= base) & (prev < base + KEY)
    return (hi - lo).astype(np.int64), np.where(own, prev - base, np.iinfo(np.int64).min)


def first_steps(messages: pd.DataFrame) -> pd.DataFrame:
    """The rows that are a trigger's first decision (``step`` 1 or no ``step`` column): the bandit's rows.

    >>> first_steps(pd.DataFrame({"step": [1, 2, 1]})).index.tolist()
    [0, 2]
    """
    if "step" not in messages.columns:
        return messages
    return messages[messages["step"].fillna(1).to_numpy() == 1]


def logged_candidates(messages: pd.DataFrame, customers: pd.DataFrame,
                      orders: pd.DataFrame | None = None, history: pd.DataFrame | None = None) -> pd.DataFrame:
    """The trigger candidate behind each logged decision, as the policy saw it then.

    Columns: ``customer_id``, ``stage``, ``triggered_at``, ``timezone``,
    ``opt_in_<channel>`` (opted in at signup and not unsubscribed from that
    channel at or before the trigger) and ``sends_7d`` (messages sent to the
    customer in the 7 days before the trigger) and, when ``orders`` are
    given, ``orders_90d`` and ``days_since_order`` (NaN when none) before the
    trigger. Rows are in the order of ``messages``. The trigger's product context is not in the log (``items``
    exist only for sent messages, so they would reveal the decision). ``history`` (default
    ``messages``) is the whole log the opt-ins and ``sends_7d`` are read from, e.g. including
    follow-up messages when ``messages`` are only the first steps.
    """
    for col in ("customer_id", "stage", "triggered_at", "sent_at", "channel", "unsubscribed_at"):
        if col not in messages.columns:
            raise ValueError(f"messages.{col}: missing column")
    cust = customers.set_index("customer_id")
    codes = pd.Categorical(messages["customer_id"], categories=cust.index).codes.astype(np.int64)
    if (codes < 0).any():
        raise ValueError(f"messages.customer_id: {int((codes < 0).sum())} rows not in customers")
    t = epoch_seconds(messages["triggered_at"])
    out = pd.DataFrame({
        "customer_id": messages["customer_id"].to_numpy(),
        "stage": messages["stage"].astype(str).to_numpy(),
        "triggered_at": messages["triggered_at"].to_numpy(),
        "timezone": cust["timezone"].to_numpy()[codes] if "timezone" in cust else None,
    })
    hist = messages if history is None else history
    h_codes = codes if history is None else pd.Categorical(hist["customer_id"], categories=cust.index).codes.astype(np.int64)
    unsub = hist["unsubscribed_at"].notna().to_numpy()
    for ch in CHANNELS:
        col = f"opt_in_{ch}"
        signup = cust[col].fillna(False).to_numpy(bool)[codes] if col in cust else np.zeros(len(codes), bool)
        rows = unsub & (hist["channel"] == ch).to_numpy()
        first = pd.Series(epoch_seconds(hist.loc[rows, "unsubscribed_at"]), index=h_codes[rows]).groupby(level=0).min()
        gone = np.full(len(cust), np.iinfo(np.int64).max)
        gone[first.index.to_numpy()] = first.to_numpy()
        out[col] = signup & (gone[codes] > t)
    sent = hist["sent_at"].notna().to_numpy()
    out["sends_7d"] = sends_before(h_codes[sent], epoch_seconds(hist.loc[sent, "sent_at"]), t, codes)
    if orders is not None:
        oc = pd.Categorical(orders["customer_id"], categories=cust.index).codes.astype(np.int64)
        keys = np.sort(oc[oc >= 0] * KEY + epoch_seconds(orders["ts"])[oc >= 0])
        n90, last = orders_before(keys, codes, t)
        out["orders_90d"] = n90
        out["days_since_order"] = np.where(last > np.iinfo(np.int64).min, (t - last) / _DAY_S, np.nan)
    return out


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



#: Columns :func:`load_log` leaves unread: large, and no part of a decision's context, action or outcome.
LOG_SKIP_COLUMNS: dict[str, tuple[str, ...]] = {
    "messages": ("message_id", "items", "policy_id"), "customers": ("email", "name"), "orders": ("order_id",)}


def _log_table(path: Path, table: str) -> pd.DataFrame:
    if path.suffix == ".csv":
        return read_table(path, table)
    import pyarrow.dataset as ds

    names = ds.dataset(path, format="parquet").schema.names
    return read_table(path, table, columns=[c for c in names if c not in LOG_SKIP_COLUMNS.get(table, ())])


def load_log(data_dir: PathLike) -> LoggedBandit:
    """Read ``messages`` and ``customers`` from a data directory into a :class:`LoggedBandit`.

    Only the columns a logged decision needs are read (not :data:`LOG_SKIP_COLUMNS`).
    """
    t = {n: _log_table(path, n) for n, path in table_paths(data_dir, ["messages", "customers", "orders"]).items()}
    return log_from_tables(t["messages"], t["customers"], t.get("orders"))


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
