"""Trigger rules: when each lifecycle stage fires, as one config object.

The synthetic shop uses these rules to know its own trigger moments; the
feature pipeline detects trigger candidates from data with the same rules, so
the two cross-check each other. Defaults are the seed defaults of
ARCHITECTURE.md.

Examples
--------
>>> rules = TriggerRules()
>>> rules.follow_up_days
10.0
>>> TriggerRules(win_back_days=60.0).win_back_days
60.0
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from cadence.contract.tables import STAGES

#: Stages that may carry an incentive / item recommendations (seed defaults).
INCENTIVE_STAGES: frozenset[str] = frozenset(
    {
        "search_abandon",
        "follow_up",
        "birthday",
        "anniversary",
        "back_in_stock",
        "new_arrivals",
        "buy_again",
        "win_back",
    }
)
RECOMMENDATION_STAGES: frozenset[str] = INCENTIVE_STAGES | {"browse_abandon", "price_drop"}
#: Abandonment stages whose reminder sequences expire.
ABANDON_STAGES: frozenset[str] = frozenset(
    {"cart_abandon", "checkout_abandon", "browse_abandon", "search_abandon"}
)
#: Transactional stages: always sent, never part of a marketing experiment.
TRANSACTIONAL_STAGES: frozenset[str] = frozenset({"order_status"})
assert INCENTIVE_STAGES | RECOMMENDATION_STAGES | ABANDON_STAGES | TRANSACTIONAL_STAGES <= set(STAGES)


@dataclass(frozen=True)
class TriggerRules:
    """Parameters of every stage rule (durations in hours or days as named).

    Attributes
    ----------
    cart_abandon_wait_hours
        ``cart_abandon``: the cart was updated in a session (and no checkout
        started), and no purchase followed within this long after the
        session's last event; fires at last event + wait.
    checkout_abandon_wait_hours
        ``checkout_abandon``: as above for a session with a checkout start.
    session_timeout_minutes
        Inactivity that ends a session (sessionisation when ``session_id`` is
        absent); ``browse_abandon`` and ``search_abandon`` fire this long
        after the session's last event.
    browse_min_views
        ``browse_abandon``: at least this many product views in a session,
        and no cart add (a variant uses ``browse_min_views_variant``).
    follow_up_days
        ``follow_up``: this long after each order, once per order.
    price_drop_lookback_days
        ``price_drop``/``back_in_stock``: the product was viewed or carted
        this long before the drop/restock.
    new_arrivals_lookback_days
        ``new_arrivals``: a weekly digest (Mondays at ``digest_hour_utc``)
        for customers who viewed, in this many days before it, a category
        that got new products during the previous 7 days.
    buy_again_min_repeats
        ``buy_again``: a product's typical inter-purchase interval (median
        gap between a customer's consecutive purchases of it) is used once
        at least this many such gaps are seen; the candidate fires that long
        after each purchase unless the product was bought again before.
    occasion_local_hour
        ``birthday`` (Feb 29 birthdays on Feb 28 in other years) and
        ``anniversary`` (yearly on the signup date) fire at this hour of the
        day in the customer's own time zone (UTC when unknown).
    win_back_days
        ``win_back``: no purchase for this long after the last one.
    reminder_expiry_days
        Abandonment reminder sequences expire after this long.
    attribution_days
        A conversion is attributed to a trigger if the order follows within
        this long.
    """

    cart_abandon_wait_hours: float = 1.0
    checkout_abandon_wait_hours: float = 1.0
    session_timeout_minutes: float = 30.0
    browse_min_views: int = 2
    browse_min_views_variant: int = 10
    follow_up_days: float = 10.0
    price_drop_lookback_days: float = 30.0
    new_arrivals_lookback_days: float = 30.0
    digest_hour_utc: int = 10
    buy_again_min_repeats: int = 5
    occasion_local_hour: int = 9
    win_back_days: float = 90.0
    reminder_expiry_days: float = 14.0
    attribution_days: float = 7.0

    def to_dict(self) -> dict[str, float | int]:
        """Plain dict, for MLflow params and reports."""
        return asdict(self)


#: Business cost of each incentive for an order of ``revenue`` (currency units).
INCENTIVE_COST_FIXED: dict[str, float] = {"none": 0.0, "free_shipping": 6.0, "fixed_amount": 10.0}
INCENTIVE_PERCENT: float = 0.15


def incentive_cost(incentive: str, revenue: float) -> float:
    """Margin given away by ``incentive`` on an order worth ``revenue``.

    >>> incentive_cost("percent_code", 100.0)
    15.0
    >>> incentive_cost("none", 50.0)
    0.0
    """
    if incentive == "percent_code":
        return INCENTIVE_PERCENT * revenue
    return INCENTIVE_COST_FIXED[incentive]
