"""A small, valid shop built by hand: every contract table, a few rows each."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pandas as pd
import pytest


def _ts(*values: str) -> pd.Series:
    return pd.Series(pd.to_datetime(list(values), utc=True))


def shop() -> dict[str, pd.DataFrame]:
    """Return fresh, valid contract tables; callers may mutate them freely."""
    customers = pd.DataFrame(
        {
            "customer_id": ["c1", "c2", "c3"],
            "signup_at": _ts("2024-01-01T09:00Z", "2024-01-05T12:30Z", "2024-02-01T00:00Z"),
            "email": ["a@example.com", "b@example.com", None],
            "name": ["Ada", "Bo", None],
            "birth_date": [dt.date(1990, 5, 1), None, dt.date(1985, 12, 24)],
            "timezone": ["Europe/Berlin", "America/New_York", None],
            "opt_in_email": pd.array([True, False, True], dtype="boolean"),
            "opt_in_push": pd.array([True, None, False], dtype="boolean"),
            "opt_in_sms": pd.array([False, False, None], dtype="boolean"),
            "opt_in_whatsapp": pd.array([None, None, None], dtype="boolean"),
        }
    )
    products = pd.DataFrame(
        {
            "product_id": ["p1", "p2", "p3"],
            "title": ["Mug", "Teapot", "Spoon"],
            "category": ["kitchen", "kitchen", "cutlery"],
            "price": [9.0, 20.0, 5.0],
            "created_at": _ts("2023-12-01", "2023-12-01", "2024-01-15"),
        }
    )
    product_changes = pd.DataFrame(
        {
            "product_id": ["p1", "p1", "p2"],
            "ts": _ts("2024-02-01", "2024-02-10", "2024-02-01"),
            "price": [8.0, 8.0, 18.0],
            "in_stock": [True, False, True],
        }
    )
    events = pd.DataFrame(
        {
            "event_id": ["e1", "e2", "e3", "e4", "e5", "e6"],
            "customer_id": ["c1", "c1", "c1", "c2", "c2", "c3"],
            "ts": _ts(
                "2024-03-01T10:00Z",
                "2024-03-01T10:01Z",
                "2024-03-01T10:02Z",
                "2024-03-02T08:00Z",
                "2024-03-02T08:05Z",
                "2024-03-03T20:00Z",
            ),
            "event_type": ["page_view", "product_view", "add_to_cart", "search", "purchase", "page_view"],
            "product_id": [None, "p1", "p1", None, "p3", None],
            "query": [None, None, None, "teapot", None, None],
            "results_count": pd.array([None, None, None, 1, None, None], dtype="Int64"),
            "session_id": ["s1", "s1", "s1", "s2", "s2", None],
        }
    )
    orders = pd.DataFrame(
        {
            "order_id": ["o1", "o2"],
            "customer_id": ["c1", "c2"],
            "ts": _ts("2024-03-01T10:10Z", "2024-03-02T08:05Z"),
            "revenue": [38.0, 5.0],
        }
    )
    order_items = pd.DataFrame(
        {
            "order_id": ["o1", "o1", "o2"],
            "product_id": ["p1", "p2", "p3"],
            "quantity": [2, 1, 1],
            "price": [9.0, 20.0, 5.0],
        }
    )
    order_status = pd.DataFrame(
        {
            "order_id": ["o1", "o1", "o2"],
            "ts": _ts("2024-03-01T10:10Z", "2024-03-02T09:00Z", "2024-03-02T08:05Z"),
            "status": ["placed", "shipped", "placed"],
        }
    )
    messages = pd.DataFrame(
        {
            "message_id": ["m1", "m2", "m3"],
            "customer_id": ["c1", "c2", "c3"],
            "stage": ["cart_abandon", "browse_abandon", "win_back"],
            "triggered_at": _ts("2024-03-01T11:00Z", "2024-03-02T09:00Z", "2024-03-04T00:00Z"),
            "action": ["send", "hold", "send"],
            "sent_at": _ts("2024-03-01T11:05Z", None, "2024-03-04T08:00Z"),
            "channel": ["email", None, "push"],
            "incentive": ["none", None, "percent_code"],
            "items": ["p1", None, "p2|p3"],
            "policy_id": ["rules-v1", "rules-v1", "rules-v1"],
            "propensity": [1.0, 0.5, 0.25],
            "opened_at": _ts("2024-03-01T12:00Z", None, None),
            "clicked_at": _ts("2024-03-01T12:01Z", None, None),
            "converted_order_id": ["o1", None, None],
            "revenue": [38.0, None, None],
            "unsubscribed_at": _ts(None, None, None),
            "step": [1, 1, 1],
            "items_propensity": [1.0, None, 0.5],
            "item_candidates": ["p1", None, "p1|p2|p3"],
        }
    )
    return {
        "customers": customers,
        "products": products,
        "product_changes": product_changes,
        "events": events,
        "orders": orders,
        "order_items": order_items,
        "order_status": order_status,
        "messages": messages,
    }


@pytest.fixture
def tables() -> dict[str, pd.DataFrame]:
    return shop()


@pytest.fixture
def make_shop() -> Callable[[], dict[str, pd.DataFrame]]:
    """The builder itself, for tests that need more than one fresh copy."""
    return shop
