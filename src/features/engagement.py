"""Engagement inputs of the send-time model, point in time: sends with their outcome, session starts.

:func:`engagement_sends` and :func:`session_starts` are Ibis expressions
(DuckDB or Spark, :mod:`cadence.features.engine`) over the contract's
``messages``, ``events`` and ``customers``; sessions are the feature layer's
(:func:`cadence.features.customer.sessionised_events`), the same sessions
the customer features count. :func:`send_time_frames` runs both and turns
each UTC time into the customer's local hour and weekday with the one
local-clock helper, :func:`cadence.contract.clock.local_clock` (time-zone
rules are Python's, so the conversion is the same whatever the engine).

Only what happened strictly before ``as_of`` is read: a send at or after
it is left out, and an open or click at or after it does not count as
engagement.

Examples
--------
>>> import pandas as pd
>>> from cadence.features.purchases import duckdb_tables
>>> con, t = duckdb_tables({
...     "messages": pd.DataFrame({"customer_id": ["a"], "channel": ["email"], "action": ["send"],
...                               "sent_at": pd.to_datetime(["2024-01-01 08:00"], utc=True),
...                               "opened_at": pd.to_datetime(["2024-01-01 09:00"], utc=True)}),
...     "customers": pd.DataFrame({"customer_id": ["a"], "timezone": ["Europe/Berlin"]})})
>>> sends, sessions = send_time_frames(con, t, "2024-02-01")
>>> sends[["local_hour", "engaged"]].values.tolist()
[[9.0, True]]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ibis
import pandas as pd

from cadence.contract.clock import local_clock, utc
from cadence.contract.triggers import TriggerRules
from cadence.features.customer import DEFAULT_RULES, require_columns, sessionised_events
from cadence.features.engine import as_of_literal
from cadence.features.purchases import fetch_frame

Tables = Mapping[str, ibis.Table]
#: Columns of the model's send table (:func:`send_time_frames`).
SEND_COLUMNS: tuple[str, ...] = ("customer_id", "channel", "local_hour", "weekday", "engaged")
#: Columns of the model's session table.
SESSION_COLUMNS: tuple[str, ...] = ("customer_id", "local_hour")
_MESSAGE_COLUMNS = ("customer_id", "action", "sent_at", "channel")


def _timezones(tables: Tables) -> ibis.Table | None:
    customers = tables.get("customers")
    if customers is None or "timezone" not in customers.columns:
        return None
    return customers.select(tz_customer=customers.customer_id.cast("string"), timezone=customers.timezone)


def _with_timezone(t: ibis.Table, zones: ibis.Table | None) -> ibis.Table:
    """``t`` with each customer's ``timezone`` (null when unknown: read as UTC)."""
    if zones is None:
        return t.mutate(timezone=ibis.null("string"))
    return t.left_join(zones, t.customer_id == zones.tz_customer).drop("tz_customer")


def engagement_sends(tables: Tables, as_of: Any) -> ibis.Table:
    """Messages sent before ``as_of``: ``customer_id``, ``channel``, ``sent_at``, ``engaged``, ``timezone``.

    ``engaged`` is an open or a click before ``as_of``; ``timezone`` is the
    customer's (null when unknown).

    Raises
    ------
    ValueError
        ``messages`` lacks one of ``customer_id``, ``action``, ``sent_at``,
        ``channel`` (the message names it).

    Examples
    --------
    >>> import pandas as pd
    >>> from cadence.features.purchases import duckdb_tables, fetch_frame
    >>> con, t = duckdb_tables({"messages": pd.DataFrame({
    ...     "customer_id": ["a", "a"], "channel": ["email"] * 2, "action": ["send"] * 2,
    ...     "sent_at": pd.to_datetime(["2024-01-01", "2024-01-03"], utc=True),
    ...     "clicked_at": pd.to_datetime(["2024-01-02", None], utc=True)})})
    >>> fetch_frame(con, engagement_sends(t, "2024-01-02"), ["sent_at"])["engaged"].tolist()
    [False]
    """
    if "messages" not in tables:
        raise ValueError("messages: missing table (the send-time model needs it)")
    for col in _MESSAGE_COLUMNS:
        if col not in tables["messages"].columns:
            raise ValueError(f"messages.{col}: column missing; the send-time model needs it")
    m = tables["messages"]
    # Opens and clicks are optional: typed nulls when absent (or all null, which pandas uploads untyped).
    m = m.mutate(**{c: m[c].cast("timestamp('UTC')") if c in m.columns else ibis.null("timestamp('UTC')")
                    for c in ("opened_at", "clicked_at")})
    cutoff = as_of_literal(utc(as_of, "as_of"))
    m = m.filter((m.action == "send") & (m.sent_at < cutoff))
    engaged = ibis.coalesce(m.opened_at < cutoff, False) | ibis.coalesce(m.clicked_at < cutoff, False)
    m = m.select(customer_id=m.customer_id.cast("string"), channel=m.channel.cast("string"), sent_at=m.sent_at,
                 engaged=engaged)
    return _with_timezone(m, _timezones(tables))


def session_starts(tables: Tables, as_of: Any, rules: TriggerRules = DEFAULT_RULES) -> ibis.Table:
    """One row per session started before ``as_of``: ``customer_id``, ``started_at``, ``timezone``.

    Sessions are :func:`cadence.features.customer.sessionised_events`'
    (``session_id`` where given, else ``rules.session_timeout_minutes`` of
    inactivity); a session starts at its first event.

    Examples
    --------
    >>> import pandas as pd
    >>> from cadence.features.purchases import duckdb_tables, fetch_frame
    >>> con, t = duckdb_tables({"events": pd.DataFrame({"event_id": ["1", "2", "3"], "customer_id": ["a"] * 3,
    ...     "event_type": ["page_view"] * 3,
    ...     "ts": pd.to_datetime(["2024-01-01 07:00", "2024-01-01 07:10", "2024-01-03 18:00"], utc=True)})})
    >>> fetch_frame(con, session_starts(t, "2024-02-01"), ["started_at"])["started_at"].dt.hour.tolist()
    [7, 18]
    """
    events = require_columns(tables, "events")
    if events is None:
        raise ValueError("events: missing table (session starts need it)")
    ev = sessionised_events(events, as_of_literal(utc(as_of, "as_of")), rules)
    starts = ev.group_by([ev.customer_id, ev.sess]).aggregate(started_at=ev.ts.min())
    starts = starts.select(customer_id=starts.customer_id.cast("string"), started_at=starts.started_at)
    return _with_timezone(starts, _timezones(tables))


def send_time_frames(con: Any, tables: Tables, as_of: Any, *,
                     rules: TriggerRules = DEFAULT_RULES) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The send-time model's ``(sends, sessions)`` frames as of ``as_of``, in local time.

    Parameters
    ----------
    con
        The backend ``tables`` live on (:func:`cadence.features.engine.connect`).
    tables : mapping of str to ibis.Table
        ``messages`` (required), ``customers`` (``timezone``, optional:
        UTC when absent), ``events`` (optional: no sessions when absent).
    as_of : timestamp-like
        Exclusive cutoff, required.
    rules : TriggerRules
        ``session_timeout_minutes`` sessionises events without ``session_id``.

    Returns
    -------
    tuple of DataFrame
        ``sends`` (:data:`SEND_COLUMNS`; sorted by customer and send time)
        and ``sessions`` (:data:`SESSION_COLUMNS`; sorted by customer and
        start): local hour of day (float) and weekday (0 = Monday).

    Examples
    --------
    >>> import pandas as pd
    >>> from cadence.features.purchases import duckdb_tables
    >>> con, t = duckdb_tables({"messages": pd.DataFrame({"customer_id": ["a"], "channel": ["sms"],
    ...     "action": ["send"], "sent_at": pd.to_datetime(["2024-01-01 08:30"], utc=True)})})
    >>> send_time_frames(con, t, "2024-02-01")[0]["local_hour"].tolist()
    [8.5]
    """
    s = fetch_frame(con, engagement_sends(tables, as_of), ["customer_id", "sent_at", "channel"])
    hour, weekday = local_clock(s["sent_at"], s["timezone"])
    sends = pd.DataFrame({"customer_id": s["customer_id"].astype(object).to_numpy(),
                          "channel": s["channel"].astype(object).to_numpy(), "local_hour": hour,
                          "weekday": weekday, "engaged": s["engaged"].astype(bool).to_numpy()})
    if "events" not in tables:
        return sends, pd.DataFrame({"customer_id": pd.Series([], dtype=object),
                                    "local_hour": pd.Series([], dtype=float)})
    e = fetch_frame(con, session_starts(tables, as_of, rules), ["customer_id", "started_at"])
    hour, _ = local_clock(e["started_at"], e["timezone"])
    return sends, pd.DataFrame({"customer_id": e["customer_id"].astype(object).to_numpy(), "local_hour": hour})


__all__ = ["engagement_sends", "session_starts", "send_time_frames", "SEND_COLUMNS", "SESSION_COLUMNS"]
