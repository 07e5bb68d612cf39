"""What the learned policy decides with: families of context columns, their encoding, and the rows that lack one.

Three families (:data:`CONTEXT_FAMILIES`), each a set of columns of a trigger
candidate row:

* ``"trigger"`` -- the candidate's own decision context (what ``cadence
  features`` writes into ``trigger_candidates`` and the messages log carries):
  stage, local hour and weekend, channel opt-ins, ``sends_7d``,
  ``orders_90d``, ``days_since_order``. Never missing.
* ``"customer"`` -- the customer's features as of the trigger
  (:data:`~cadence.features.policy_context.CUSTOMER_COLUMNS`, the 69
  columns of ``customer_features`` but the id and ``orders_90d``, which the trigger has exactly), joined on by
  :class:`~cadence.features.policy_context.PolicyContext` or, when serving,
  by joining ``customer_features`` on ``customer_id``. The learner reads
  either all of them (``customer_columns="all"``) or a compact set,
  :data:`CUSTOMER_CORE` (``"core"``): long-run orders, revenue and order
  value, tenure, sessions, product views, session depth, opens per send
  and days since the last open -- what the trigger's recency and
  frequency lack. Why a compact set: the linear decision model gives every
  column 13 coefficients (one per action feature), and at a few thousand
  training customers 69 columns cost more in noise than they find
  (``benchmarks/RESULTS.md``).
* ``"scores"`` -- the models' scores as of the trigger
  (:data:`~cadence.models.scores.SCORE_COLUMNS`: churn risk at 30/60/90
  days, P(alive), expected purchases in 90 days, CLV over 365 days, days
  until the predicted repurchase), from the scoring step
  (:func:`cadence.workflows.scores.score_snapshots`).

A family is **missing** on a row when every one of its columns is absent
or null (:func:`missing_families`): a customer without a feature snapshot
yet, or a serving row that was not joined. Scores exist only for customers
with an order before the scoring time, so a row whose trigger context says
the customer never ordered (``days_since_order`` null) is not missing its
scores: they are null by definition and the learner reads that. The learned policy hands such
rows to the rules and says why (:func:`fallback_reasons`).

Encoding (:func:`encode_context`), for the policy learner's linear decision
model: counts, amounts and day spans as ``log1p`` of the value (clipped at
0; they are heavily right-skewed), rates and shares as they are, opens
per send over every channel as ``open_rate`` (:func:`open_rate`, the
engagement a count of opens alone confounds with how often the customer
was messaged),
``top_category`` as a category, ``last_unresolved_query`` as a 0/1 flag (the
query text itself is not a decision input), the days until a predicted
repurchase as a signed ``log1p``. Nulls stay null: the learner adds its own
missing-value indicators.

:class:`WithContext` wraps any policy so that it receives the context
columns: the world re-run (``simulate_truth``) and the replay give a policy
only the trigger family, and the wrapper as-of-joins the rest by
``customer_id`` and ``triggered_at`` before the inner policy decides.

Examples
--------
>>> import pandas as pd
>>> rows = pd.DataFrame({"customer_id": ["a", "b"], "tenure_days": [30.0, None], "orders_all": [2.0, None]})
>>> missing_families(rows).values.tolist()
[[False, True], [True, True]]
>>> fallback_reasons(rows, ("trigger", "customer")).tolist()
['', 'no customer features']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cadence.contract.actions import Policy
from cadence.contract.clock import local_time
from cadence.contract.tables import CHANNELS, STAGES
from cadence.policies.rules import opt_in_matrix

if TYPE_CHECKING:
    from cadence.features.policy_context import PolicyContext

#: The customer family's columns: :data:`cadence.features.policy_context.CUSTOMER_COLUMNS`, written out
#: (a test pins them) so that deciding -- a served model -- does not import the feature engine and the
#: scoring models (ibis, duckdb, sqlglot, pyarrow and plotly in its requirements): only fitting needs them.
CUSTOMER_COLUMNS: tuple[str, ...] = (
    *(f"{m}_{w}" for m in ("orders",) for w in ("30d", "365d", "all")),
    *(f"{m}_{w}" for m in ("revenue", "aov") for w in ("30d", "90d", "365d", "all")),
    "recency_days", "first_order_days_ago", "tenure_days", "gap_mean_days", "gap_std_days", "gap_last_days",
    "recency_gap_ratio",
    *(f"{m}_{w}d" for m in ("sessions", "product_views", "cart_adds", "checkout_starts", "cart_abandons",
                            "checkout_abandons") for w in (30, 90, 365)),
    "avg_session_depth", "last_session_days_ago",
    *(f"searches_{w}d" for w in (30, 90, 365)),
    "zero_result_rate", "search_click_rate", "search_purchase_rate", "last_unresolved_query",
    *(f"sends_{c}_{w}d" for c in CHANNELS for w in (30, 90, 365)),
    *(f"{m}_{c}" for m in ("opens", "clicks") for c in CHANNELS),
    "last_open_days_ago", "unsubscribed_channels", "top_category", "top_category_share")
#: The scores family's columns: :data:`cadence.models.scores.SCORE_COLUMNS`, written out (as above).
SCORE_COLUMNS: tuple[str, ...] = ("churn_risk_30d", "churn_risk_60d", "churn_risk_90d", "p_alive",
                                  "expected_purchases_90d", "clv_365d", "repurchase_due_days")

#: The context families, in encoding order; the learned policy's default is all of them.
CONTEXT_FAMILIES: tuple[str, ...] = ("trigger", "customer", "scores")
#: The :class:`~cadence.policies.learned.UpliftPolicy` designs (``learner``) that decide with its
#: ``context``; its uplift learners read the trigger's columns only.
CONTEXT_DESIGNS: tuple[str, ...] = ("dr", "linear")
#: The trigger family's input columns (besides ``stage``, ``triggered_at`` and ``timezone``).
TRIGGER_COLUMNS: tuple[str, ...] = (*(f"opt_in_{c}" for c in CHANNELS), "sends_7d", "orders_90d", "days_since_order")
#: Customer columns used as they are (rates, shares, a small count); every other number is log1p'd.
_AS_IS = frozenset({"zero_result_rate", "search_click_rate", "search_purchase_rate", "top_category_share",
                    "unsubscribed_channels", "churn_risk_30d", "churn_risk_60d", "churn_risk_90d", "p_alive"})
_REASONS = {"customer": "no customer features", "scores": "no model scores"}
#: The customer family's compact set (encoded names, :func:`customer_context`): what the
#: trigger's seven columns lack of the customer's recency, frequency and value (long-run orders,
#: revenue and order value), tenure, browsing (sessions, product views, session depth) and
#: engagement (opens per send, days since the last open). ``customer_columns="all"`` reads all 69.
CUSTOMER_CORE: tuple[str, ...] = ("log_orders_all", "log_revenue_365d", "log_aov_all", "log_tenure_days",
                                  "log_sessions_90d", "log_product_views_90d", "log_avg_session_depth",
                                  "open_rate", "log_last_open_days_ago")


def family_columns(family: str) -> tuple[str, ...]:
    """The input columns of a context family (:data:`CONTEXT_FAMILIES`)."""
    if family == "trigger":
        return ("stage", "triggered_at", "timezone", *TRIGGER_COLUMNS)
    if family == "customer":
        return CUSTOMER_COLUMNS
    if family == "scores":
        return SCORE_COLUMNS
    raise ValueError(f"context: unknown family {family!r}; choose from {CONTEXT_FAMILIES}")


def check_families(context: Sequence[str]) -> tuple[str, ...]:
    """``context`` as a tuple in :data:`CONTEXT_FAMILIES` order; unknown or no families raise ``ValueError``."""
    if isinstance(context, str):
        context = (context,)
    unknown = [f for f in context if f not in CONTEXT_FAMILIES]
    if unknown or not context:
        raise ValueError(f"context: expected some of {CONTEXT_FAMILIES}, got {tuple(context)!r}")
    return tuple(f for f in CONTEXT_FAMILIES if f in context)


def missing_families(candidates: pd.DataFrame) -> pd.DataFrame:
    """Per row, whether the ``customer`` and ``scores`` families are missing (every column absent or null).

    One boolean column per family that can be missing, rows in ``candidates``'
    order (its index). The trigger family is the candidate itself and is
    never missing. Scores are not missing on a row whose ``days_since_order``
    is null (present and null: the customer never ordered, so has no scores).
    """
    out = {family: _all_null(candidates, family_columns(family)) for family in ("customer", "scores")}
    if "days_since_order" in candidates.columns:
        out["scores"] &= candidates["days_since_order"].notna().to_numpy()
    return pd.DataFrame(out, index=candidates.index)


def _all_null(candidates: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """Per row, whether every one of ``columns`` is absent or null.

    Column by column on the rows still all null: a row with any value drops
    out at its first, so the usual batch (every row has the family) costs
    one column's test, not a copy of the family's 69.
    """
    out = np.ones(len(candidates), bool)
    rows = np.arange(len(candidates))
    for col in columns:
        if not rows.size:
            break
        if col not in candidates.columns:
            continue
        null = candidates[col].isna().to_numpy()[rows]
        out[rows[~null]] = False
        rows = rows[null]
    return out


def fallback_reasons(candidates: pd.DataFrame, context: Sequence[str] = CONTEXT_FAMILIES) -> np.ndarray:
    """Per row, why a policy that reads ``context`` cannot decide it: ``""`` when it can.

    Reasons: ``"no customer features"``, ``"no model scores"`` (joined by
    ``"; "`` when both).
    """
    fams = check_families(context)
    miss = missing_families(candidates)
    out = np.full(len(candidates), "", dtype=object)
    for family in ("customer", "scores"):
        if family in fams:
            m = miss[family].to_numpy()
            out[m] = np.where(out[m] == "", _REASONS[family], out[m] + "; " + _REASONS[family])
    return out


def _log1p(x: np.ndarray) -> np.ndarray:
    return np.log1p(np.clip(x, 0, None))


def _numbers(candidates: pd.DataFrame, col: str) -> np.ndarray:
    if col not in candidates.columns:
        return np.full(len(candidates), np.nan)
    s = candidates[col]
    if isinstance(s.dtype, np.dtype) and s.dtype.kind in "fiu":  # already numbers (the checked frame's case)
        x = s.to_numpy(dtype=float)
    else:
        x = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return np.where(np.isfinite(x), x, np.nan)  # a score can be infinite (no finite prediction): unknown


def trigger_context(candidates: pd.DataFrame) -> dict[str, Any]:
    """The trigger family's encoded columns (the learned policy's seven-column context)."""
    n = len(candidates)
    hour, weekday = local_time(candidates)
    out: dict[str, Any] = {
        "stage": pd.Categorical(candidates["stage"].astype(str).to_numpy(), categories=list(STAGES)),
        "hour_sin": np.sin(2 * np.pi * hour / 24), "hour_cos": np.cos(2 * np.pi * hour / 24),
        "weekend": (weekday >= 5).astype(float)}
    opt = opt_in_matrix(candidates)
    for i, ch in enumerate(CHANNELS):
        out[f"opt_in_{ch}"] = opt[:, i].astype(float)
    for col in ("sends_7d", "orders_90d"):
        out[col] = np.nan_to_num(_numbers(candidates, col)) if col in candidates else np.zeros(n)
    out["log_days_since_order"] = _log1p(_numbers(candidates, "days_since_order"))  # NaN: never ordered
    return out


def open_rate(candidates: pd.DataFrame) -> np.ndarray:
    """Opens per send over every channel (opens of all history over sends in 365 days, at most 1); null without sends."""
    opens = sum(np.nan_to_num(_numbers(candidates, f"opens_{c}")) for c in CHANNELS)
    sends = sum(np.nan_to_num(_numbers(candidates, f"sends_{c}_365d")) for c in CHANNELS)
    rate = np.minimum(opens / np.where(sends > 0, sends, np.nan), 1.0)
    rate[np.isnan(_numbers(candidates, "tenure_days"))] = np.nan  # no features: unknown, not 0
    return rate


def customer_context(candidates: pd.DataFrame, columns: str | Sequence[str] = "all") -> dict[str, Any]:
    """The customer family's encoded columns (see the module docstring); all null where absent.

    ``columns``: ``"all"`` (the 69 features and ``open_rate``), ``"core"``
    (:data:`CUSTOMER_CORE`) or a sequence of encoded names; only those are
    computed (deciding with the core set reads 16 input columns, not 69).
    """
    names = _customer_names(columns)
    return {name: _customer_column(candidates, name) for name in (_CUSTOMER_ENCODED if names is None else names)}


def _encoded_name(col: str) -> str:
    if col == "last_unresolved_query":
        return "has_unresolved_query"
    return col if col in _AS_IS or col == "top_category" else f"log_{col}"


#: Every encoded customer column, in :data:`CUSTOMER_COLUMNS` order, then ``open_rate``.
_CUSTOMER_ENCODED: tuple[str, ...] = (*(_encoded_name(c) for c in CUSTOMER_COLUMNS), "open_rate")
#: The input columns each encoded customer column reads.
_CUSTOMER_SOURCES: dict[str, tuple[str, ...]] = {
    **{_encoded_name(c): (c,) for c in CUSTOMER_COLUMNS},
    "has_unresolved_query": ("last_unresolved_query", "tenure_days"),
    "open_rate": (*(f"opens_{c}" for c in CHANNELS), *(f"sends_{c}_365d" for c in CHANNELS), "tenure_days"),
}


def _customer_column(candidates: pd.DataFrame, name: str) -> Any:
    """One encoded customer column (a name of :data:`_CUSTOMER_ENCODED`)."""
    if name == "open_rate":
        return open_rate(candidates)
    if name == "top_category":
        vals = candidates[name] if name in candidates.columns else pd.Series([None] * len(candidates))
        return pd.Categorical(vals.to_numpy(dtype=object))
    if name == "has_unresolved_query":
        col = "last_unresolved_query"
        have = col in candidates.columns
        flag = candidates[col].notna().to_numpy(float) if have else np.zeros(len(candidates))
        # The flag is only a fact where the family is present (tenure is always set then).
        flag[np.isnan(_numbers(candidates, "tenure_days"))] = np.nan
        return flag
    if name in _AS_IS:
        return _numbers(candidates, name)
    return _log1p(_numbers(candidates, name.removeprefix("log_")))


def _customer_names(columns: str | Sequence[str]) -> tuple[str, ...] | None:
    """The encoded customer columns ``columns`` names (None: all); unknown names raise ``ValueError``."""
    if isinstance(columns, str):
        if columns in ("all", "core"):
            return None if columns == "all" else CUSTOMER_CORE
        columns = (columns,)
    unknown = [c for c in columns if c not in _CUSTOMER_ENCODED]
    if unknown or not columns:
        raise ValueError(f"customer_columns: expected 'all', 'core' or encoded customer columns "
                         f"(e.g. {CUSTOMER_CORE[:3]}), got unknown {unknown or tuple(columns)}")
    return tuple(columns)


def score_context(candidates: pd.DataFrame) -> dict[str, Any]:
    """The scores family's encoded columns; all null where absent."""
    out: dict[str, Any] = {}
    for col in SCORE_COLUMNS:
        x = _numbers(candidates, col)
        if col in _AS_IS:
            out[col] = x
        elif col == "repurchase_due_days":  # negative: overdue
            out["signed_log_repurchase_due_days"] = np.sign(x) * np.log1p(np.abs(x))
        else:
            out[f"log_{col}"] = _log1p(x)
    return out


def source_columns(context: Sequence[str] = CONTEXT_FAMILIES,
                   customer_columns: str | Sequence[str] = "all") -> tuple[str, ...]:
    """The input columns :func:`encode_context` reads for ``context`` (what a decision needs of a row).

    >>> len(source_columns(("customer",), "core")), source_columns(("scores",))[:2]
    (16, ('churn_risk_30d', 'churn_risk_60d'))
    """
    fams = check_families(context)
    cols: dict[str, None] = {}
    if "trigger" in fams:
        cols |= dict.fromkeys(("stage", "triggered_at", "timezone", "local_hour", "local_weekday", *TRIGGER_COLUMNS))
    if "customer" in fams:
        names = _customer_names(customer_columns)
        for name in _CUSTOMER_ENCODED if names is None else names:
            cols |= dict.fromkeys(_CUSTOMER_SOURCES[name])
    if "scores" in fams:
        cols |= dict.fromkeys(SCORE_COLUMNS)
    return tuple(cols)


def encode_context(candidates: pd.DataFrame, context: Sequence[str] = CONTEXT_FAMILIES,
                   customer_columns: str | Sequence[str] = "all") -> pd.DataFrame:
    """The policy learner's context of trigger candidates (index 0..n-1): the families of ``context``, encoded.

    >>> import pandas as pd
    >>> c = pd.DataFrame({"stage": ["cart_abandon"], "triggered_at": pd.to_datetime(["2025-01-01 12:00"], utc=True),
    ...                   "timezone": ["UTC"], "opt_in_email": [True], "tenure_days": [9.0]})
    >>> x = encode_context(c)
    >>> x.shape[1], round(float(x["log_tenure_days"].iloc[0]), 3), bool(np.isnan(x["p_alive"].iloc[0]))
    (88, 2.303, True)
    >>> list(encode_context(c, ("customer",), customer_columns="core")) == list(CUSTOMER_CORE)
    True
    """
    fams = check_families(context)
    parts: dict[str, Any] = {}
    if "trigger" in fams:
        parts |= trigger_context(candidates)
    if "customer" in fams:
        parts |= customer_context(candidates, customer_columns)
    if "scores" in fams:
        parts |= score_context(candidates)
    return pd.DataFrame(parts, copy=False)  # the encoded arrays are new: no second copy


@dataclass
class WithContext:
    """``policy`` deciding on candidates with ``context``'s columns as-of-joined by ``customer_id`` and ``triggered_at``.

    What the world re-run and the replay need: they hand a policy the
    trigger's own columns only. The context comes from the *logged* data (a
    :class:`~cadence.features.policy_context.PolicyContext` built from the
    shop's tables); in a re-run under another policy the message-driven part
    of a customer's history (sends, opens, conversions and the orders they
    cause) differs from the logged one, so the wrapped policy reads the
    logged history's features there: an approximation, small where messages
    change few orders.

    >>> from cadence.features.policy_context import PolicyContext
    >>> from cadence.policies.rules import RulesPolicy
    >>> WithContext(RulesPolicy(), PolicyContext()).policy_id == RulesPolicy().policy_id
    True
    """

    policy: Policy
    context: PolicyContext

    @property
    def policy_id(self) -> str:
        return self.policy.policy_id

    @property
    def row_wise(self) -> bool:
        """Row-wise when the inner policy is (the join is per row)."""
        return bool(getattr(self.policy, "row_wise", False))

    def decide(self, candidates: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        """The inner policy's decisions on ``candidates`` with the context attached."""
        return self.policy.decide(self.context.attach(candidates), rng)

    def reset(self) -> None:
        """Reset the inner policy's state, if it keeps any."""
        if hasattr(self.policy, "reset"):
            self.policy.reset()


__all__ = ["CONTEXT_DESIGNS", "CONTEXT_FAMILIES", "CUSTOMER_CORE", "TRIGGER_COLUMNS", "WithContext", "check_families",
           "customer_context", "encode_context", "fallback_reasons", "family_columns", "missing_families",
           "open_rate", "score_context", "source_columns", "trigger_context"]
