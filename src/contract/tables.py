"""The data contract: the tables Cadence reads, their columns and vocabularies.

This module is the single source of truth for table and column names. Schemas
(:mod:`cadence.data.schemas`), the synthetic shop, the CDNOW adapter and the
feature pipeline all import from here, so a name is spelled once.

Conventions
-----------
* Keys (``customer_id``, ``product_id``, ``order_id``, ``event_id``,
  ``session_id``, ``message_id``) are strings: real exports mix UUIDs and
  numbers with leading zeros (CDNOW's ``00001``).
* Every timestamp is timezone-aware UTC (``datetime64[ns, UTC]``).
* ``messages.items`` is a ``|``-separated list of product ids so that the
  table round-trips through CSV as well as Parquet; the optional
  ``messages.items_propensity`` is the probability with which the policy
  chose that set of items given the send (so the joint probability of the
  logged decision is ``propensity * items_propensity``) and the optional
  ``messages.item_candidates`` the trigger's candidate set they were chosen
  from (logged for holds too).

Examples
--------
>>> from cadence.contract.tables import TABLES, STAGES
>>> TABLES["orders"].key
('order_id',)
>>> "cart_abandon" in STAGES
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ColumnKind = Literal["str", "int", "float", "bool", "timestamp", "date"]

EVENT_TYPES: tuple[str, ...] = (
    "page_view",
    "product_view",
    "add_to_cart",
    "remove_from_cart",
    "checkout_start",
    "search",
    "purchase",
)

STAGES: tuple[str, ...] = (
    "cart_abandon",
    "checkout_abandon",
    "browse_abandon",
    "search_abandon",
    "follow_up",
    "birthday",
    "anniversary",
    "price_drop",
    "back_in_stock",
    "new_arrivals",
    "buy_again",
    "win_back",
    "order_status",
)

CHANNELS: tuple[str, ...] = ("email", "push", "sms", "whatsapp")
INCENTIVES: tuple[str, ...] = ("none", "free_shipping", "fixed_amount", "percent_code")
ACTIONS: tuple[str, ...] = ("send", "hold")
ORDER_STATUSES: tuple[str, ...] = ("placed", "shipped", "delivered", "delayed", "cancelled")

#: Separator of product ids inside ``messages.items``.
ITEMS_SEP = "|"


@dataclass(frozen=True)
class Column:
    """One column of a contract table.

    ``required`` columns must be present; ``nullable`` ones may hold nulls.
    ``allowed`` restricts values to a vocabulary; ``min_value`` and
    ``min_exclusive``/``max_value`` bound numbers.
    """

    name: str
    kind: ColumnKind
    required: bool = True
    nullable: bool = False
    allowed: tuple[str, ...] | None = None
    min_value: float | None = None
    min_exclusive: bool = False
    max_value: float | None = None
    pii: bool = False


@dataclass(frozen=True)
class ForeignKey:
    """``column`` of this table must exist in ``table.ref_column``."""

    column: str
    table: str
    ref_column: str


@dataclass(frozen=True)
class Table:
    """A contract table: its columns, primary key and references."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    foreign_keys: tuple[ForeignKey, ...] = field(default_factory=tuple)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def required_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"table {self.name!r} has no column {name!r}")


def _c(name: str, kind: ColumnKind, **kw: object) -> Column:
    return Column(name, kind, **kw)  # type: ignore[arg-type]


def _opt(name: str, kind: ColumnKind, **kw: object) -> Column:
    return Column(name, kind, required=False, nullable=True, **kw)  # type: ignore[arg-type]


TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        Table(
            "customers",
            (
                _c("customer_id", "str"),
                _c("signup_at", "timestamp"),
                _opt("email", "str", pii=True),
                _opt("name", "str", pii=True),
                _opt("birth_date", "date", pii=True),
                _opt("timezone", "str"),
                _opt("opt_in_email", "bool"),
                _opt("opt_in_push", "bool"),
                _opt("opt_in_sms", "bool"),
                _opt("opt_in_whatsapp", "bool"),
            ),
            key=("customer_id",),
        ),
        Table(
            "products",
            (
                _c("product_id", "str"),
                _c("title", "str"),
                _c("category", "str"),
                _c("price", "float", min_value=0.0),
                _c("created_at", "timestamp"),
            ),
            key=("product_id",),
        ),
        Table(
            "product_changes",
            (
                _c("product_id", "str"),
                _c("ts", "timestamp"),
                _c("price", "float", min_value=0.0),
                _c("in_stock", "bool"),
            ),
            key=("product_id", "ts"),
            foreign_keys=(ForeignKey("product_id", "products", "product_id"),),
        ),
        Table(
            "events",
            (
                _c("event_id", "str"),
                _c("customer_id", "str"),
                _c("ts", "timestamp"),
                _c("event_type", "str", allowed=EVENT_TYPES),
                _opt("product_id", "str"),
                _opt("query", "str"),
                _opt("results_count", "int", min_value=0),
                _opt("session_id", "str"),
            ),
            key=("event_id",),
            foreign_keys=(
                ForeignKey("customer_id", "customers", "customer_id"),
                ForeignKey("product_id", "products", "product_id"),
            ),
        ),
        Table(
            "orders",
            (
                _c("order_id", "str"),
                _c("customer_id", "str"),
                _c("ts", "timestamp"),
                _c("revenue", "float", min_value=0.0),
            ),
            key=("order_id",),
            foreign_keys=(ForeignKey("customer_id", "customers", "customer_id"),),
        ),
        Table(
            "order_items",
            (
                _c("order_id", "str"),
                _c("product_id", "str"),
                _c("quantity", "int", min_value=1),
                _c("price", "float", min_value=0.0),
            ),
            key=("order_id", "product_id"),
            foreign_keys=(
                ForeignKey("order_id", "orders", "order_id"),
                ForeignKey("product_id", "products", "product_id"),
            ),
        ),
        Table(
            "order_status",
            (
                _c("order_id", "str"),
                _c("ts", "timestamp"),
                _c("status", "str", allowed=ORDER_STATUSES),
            ),
            key=("order_id", "ts", "status"),
            foreign_keys=(ForeignKey("order_id", "orders", "order_id"),),
        ),
        Table(
            "messages",
            (
                _c("message_id", "str"),
                _c("customer_id", "str"),
                _c("stage", "str", allowed=STAGES),
                _c("triggered_at", "timestamp"),
                _c("action", "str", allowed=ACTIONS),
                _opt("sent_at", "timestamp"),
                _opt("channel", "str", allowed=CHANNELS),
                _opt("incentive", "str", allowed=INCENTIVES),
                _opt("items", "str"),
                _c("policy_id", "str"),
                _c("propensity", "float", min_value=0.0, min_exclusive=True, max_value=1.0),
                _opt("opened_at", "timestamp"),
                _opt("clicked_at", "timestamp"),
                _opt("converted_order_id", "str"),
                _opt("revenue", "float", min_value=0.0),
                _opt("unsubscribed_at", "timestamp"),
                # A sequence's later messages (a follow-up is step 2); absent means every row is step 1.
                _opt("step", "int", min_value=1),
                # Probability with which the policy chose the shown ``items`` given the send (the
                # action's own is ``propensity``); absent or null when items were not randomised.
                _opt("items_propensity", "float", min_value=0.0, min_exclusive=True, max_value=1.0),
                # The products the message could show (``|``-joined): the trigger's candidate set,
                # context logged for sends and holds alike; what item-level off-policy estimators need.
                _opt("item_candidates", "str"),
            ),
            key=("message_id",),
            foreign_keys=(
                ForeignKey("customer_id", "customers", "customer_id"),
                ForeignKey("converted_order_id", "orders", "order_id"),
            ),
        ),
    )
}

#: Tables a data directory may hold; ``customers`` is the only one always required.
TABLE_NAMES: tuple[str, ...] = tuple(TABLES)
REQUIRED_TABLES: tuple[str, ...] = ("customers",)

#: Columns that hold personal data and never leave the raw layer.
PII_COLUMNS: dict[str, tuple[str, ...]] = {
    name: tuple(c.name for c in t.columns if c.pii) for name, t in TABLES.items()
}
