"""Send-time inputs: local time, engagement before the cutoff, the feature layer's sessions."""

from __future__ import annotations

import pandas as pd
import pytest

from cadence.features.engagement import send_time_frames
from cadence.features.purchases import duckdb_tables

MESSAGES = pd.DataFrame({
    "customer_id": ["a", "a", "b"], "channel": ["email", "push", "email"], "action": ["send", "send", "send"],
    "sent_at": pd.to_datetime(["2024-01-01 08:00", "2024-01-05 21:00", "2024-01-02 12:00"], utc=True),
    "opened_at": pd.to_datetime(["2024-01-01 09:00", None, "2024-01-09 12:00"], utc=True),
})
CUSTOMERS = pd.DataFrame({"customer_id": ["a", "b"], "timezone": ["Europe/Berlin", "America/New_York"]})
EVENTS = pd.DataFrame({"event_id": ["1", "2", "3"], "customer_id": ["a", "a", "a"], "event_type": ["page_view"] * 3,
                       "ts": pd.to_datetime(["2024-01-01 07:00", "2024-01-01 07:10", "2024-01-03 18:00"], utc=True)})


def frames(messages: pd.DataFrame, events: pd.DataFrame, as_of: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    con, t = duckdb_tables({"messages": messages, "customers": CUSTOMERS, "events": events})
    return send_time_frames(con, t, as_of)


def test_inputs_are_point_in_time_and_local() -> None:
    sends, sessions = frames(MESSAGES, EVENTS, "2024-01-06")
    assert sends["local_hour"].tolist() == [9.0, 22.0, 7.0]  # Berlin +1, New York -5 in January
    assert sends["weekday"].tolist() == [0, 4, 1]
    assert sends["engaged"].tolist() == [True, False, False]  # b's open comes after the cutoff
    assert sessions["local_hour"].tolist() == [8.0, 19.0]  # two sessions (30-minute gap)
    later_msg = pd.concat([MESSAGES, MESSAGES.assign(sent_at=pd.Timestamp("2024-01-06", tz="UTC"))])
    later_ev = pd.concat([EVENTS, EVENTS.assign(event_id=["4", "5", "6"], ts=pd.Timestamp("2024-01-07", tz="UTC"))])
    s2, e2 = frames(later_msg, later_ev, "2024-01-06")
    pd.testing.assert_frame_equal(s2, sends)
    pd.testing.assert_frame_equal(e2, sessions)


def test_no_events_no_sessions_and_unknown_zone_is_utc() -> None:
    con, t = duckdb_tables({"messages": MESSAGES.assign(customer_id="zz")})
    sends, sessions = send_time_frames(con, t, "2024-01-06")
    assert sends["local_hour"].tolist() == [8.0, 12.0, 21.0] and sessions.empty


def test_a_message_column_missing_is_named() -> None:
    con, t = duckdb_tables({"messages": MESSAGES.drop(columns="sent_at")})
    with pytest.raises(ValueError, match="messages.sent_at: column missing"):
        send_time_frames(con, t, "2024-01-06")
