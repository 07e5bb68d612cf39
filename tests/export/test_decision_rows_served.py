"""The served model on decision rows: trigger candidates joined with customer features and scores.

Checks of the feature and score columns (a bad value holds its row, naming
the column), the fallback of rows lacking a family the policy decides with,
``eligible_at`` as the trigger time, the local clock computed from checked
values only, and the column lists against the feature layer's schema.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cadence.contract.actions import delay_choices
from cadence.deployment.serving import (
    CUSTOMER_KINDS,
    FAMILY_COLUMNS,
    INPUT_COLUMNS,
    MAX_COLUMNS,
    SCORE_KINDS,
    PolicyModel,
    check_rows,
    input_example,
)
from cadence.policies.rules import RulesPolicy

SECRET = "CUST-SECRET-9921"


class EmailNowWith:
    """A deterministic policy that decides with the given context families: email now, no incentive."""

    def __init__(self, context: tuple[str, ...]) -> None:
        self.context = context
        self.policy_id = "email-now-" + "-".join(context)
        self.seen: list[pd.DataFrame] = []

    def decide(self, candidates: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        self.seen.append(candidates)
        n = len(candidates)
        delay = [delay_choices(str(s))[0] for s in candidates["stage"]]
        return pd.DataFrame({"action": ["send"] * n, "channel": ["email"] * n, "delay_minutes": delay,
                             "incentive": ["none"] * n, "propensity": [1.0] * n}, index=candidates.index)


def rows(n: int = 1) -> pd.DataFrame:
    """``n`` copies of the example's first decision row (customer features and scores present)."""
    return pd.concat([input_example().iloc[[0]]] * n, ignore_index=True).assign(customer_id="x-1")


#: (column, bad value, hold reason after "hold (invalid input): ") for the feature and score columns.
BAD_EXTRA: list[tuple[str, object, str]] = [
    ("recency_days", "three days", "recency_days: not a number"),
    ("recency_days", SECRET, "recency_days: not a number"),
    ("recency_days", True, "recency_days: not a number"),
    ("recency_days", float("inf"), "recency_days: not finite"),
    ("orders_30d", -1, "orders_30d: negative"),
    ("orders_30d", 2.5, "orders_30d: not a whole number"),
    ("sessions_365d", "many", "sessions_365d: not a number"),
    ("zero_result_rate", 1.5, "zero_result_rate: above 1"),
    ("churn_risk_30d", -0.1, "churn_risk_30d: negative"),
    ("churn_risk_90d", 1.01, "churn_risk_90d: above 1"),
    ("p_alive", "high", "p_alive: not a number"),
    ("clv_365d", float("-inf"), "clv_365d: not finite"),
    ("repurchase_due_days", [1, 2], "repurchase_due_days: not a number"),
    ("top_category", 7, "top_category: not text"),
    ("last_unresolved_query", "q" * 5_000, "last_unresolved_query: longer than 4,096 characters"),
]


def test_bad_feature_and_score_values_are_held_naming_the_column() -> None:
    """Every bad value holds its row; the good row of the same request is decided (columns of mixed values,
    as JSON arrives)."""
    batch = rows(len(BAD_EXTRA) + 1).assign(customer_id=[f"{SECRET}-{i}" for i in range(len(BAD_EXTRA) + 1)])
    batch = batch.astype(object)
    for i, (col, value, _) in enumerate(BAD_EXTRA):
        batch.at[i, col] = value
    out = PolicyModel(EmailNowWith(("trigger", "customer", "scores")), epsilon=0.9, seed=2).predict(None, batch)
    assert out["reason"].iloc[:-1].tolist() == ["hold (invalid input): " + r for _, _, r in BAD_EXTRA]
    assert (out["action"].iloc[:-1] == "hold").all() and (out["propensity"].iloc[:-1] == 1.0).all()
    assert not out["reason"].iloc[-1].startswith(("hold", "rules")) and out["action"].iloc[-1] == "send"
    assert SECRET not in out.to_json()


@pytest.mark.parametrize(("col", "value", "reason"),
                         [b for b in BAD_EXTRA if isinstance(b[1], float | int) and not isinstance(b[1], bool)
                          and b[0] != "top_category"])
def test_bad_values_in_numeric_columns(col: str, value: float, reason: str) -> None:
    """The same checks on numeric columns (as a Parquet file gives them): the fast path misses nothing."""
    batch = rows(2)
    for c in (*CUSTOMER_KINDS, *SCORE_KINDS):
        batch[c] = pd.to_numeric(batch[c], errors="coerce") if c not in ("top_category", "last_unresolved_query") \
            else batch[c]
    batch[col] = np.array([value, batch[col].iloc[1]], dtype=float if isinstance(value, float) else np.int64)
    out = PolicyModel(EmailNowWith(("customer", "scores")), epsilon=0.0).predict(None, batch)
    assert out["reason"].tolist() == ["hold (invalid input): " + reason, ""]


def test_rows_lacking_a_family_fall_back_with_a_reason() -> None:
    batch = rows(4).assign(customer_id=["has-all", "no-features", "no-scores", "no-nothing"])
    batch.loc[[1, 3], list(CUSTOMER_KINDS)] = None  # customers absent from customer_features (a left join)
    batch.loc[[2, 3], list(SCORE_KINDS)] = None
    out = PolicyModel(EmailNowWith(("trigger", "customer", "scores")), epsilon=0.0).predict(None, batch)
    assert out["reason"].tolist() == ["", "rules fallback: missing customer features", "rules fallback: missing scores",
                                      "rules fallback: missing customer features; missing scores"]
    rules = RulesPolicy().decide(batch, np.random.default_rng(0))
    assert out["channel"].iloc[1:].tolist() == rules["channel"].iloc[1:].tolist()
    # A policy that does not decide with a family is not sent to the rules for lacking it.
    out = PolicyModel(EmailNowWith(("trigger", "customer")), epsilon=0.0).predict(None, batch)
    assert out["reason"].tolist() == ["", "rules fallback: missing customer features", "",
                                      "rules fallback: missing customer features"]
    # Features present but some of them null (a customer who never searched) is not a missing family.
    partial = rows(1)
    partial.loc[0, ["zero_result_rate", "recency_days", "top_category"]] = None
    assert PolicyModel(EmailNowWith(("customer",)), epsilon=0.0).predict(None, partial)["reason"].tolist() == [""]


class RoutedEmailNow(EmailNowWith):
    """A policy that routes rows lacking a family itself (as the learned policy's ``family_routes``): a
    learned fallback for rows lacking only the scores, the rules for rows lacking the customer features."""

    def family_routes(self, candidates: pd.DataFrame) -> pd.DataFrame:
        no_scores = candidates[list(SCORE_KINDS)].isna().all(axis=1).to_numpy()
        no_features = candidates[list(CUSTOMER_KINDS)].isna().all(axis=1).to_numpy()
        reason = np.where(no_features, "missing customer features",
                          np.where(no_scores, "fallback: trigger-only learned policy (missing scores)", ""))
        return pd.DataFrame({"rules": no_features, "reason": reason.astype(object)}, index=candidates.index)


def test_serving_routes_rows_lacking_a_family_as_the_policy_says() -> None:
    """The served model asks the policy (one routing): its learned fallback decides (and may explore), the
    rules decide what it hands to them, and a row also missing a column is the rules' whatever the policy says."""
    batch = rows(4).assign(customer_id=["has-all", "no-features", "no-scores", "no-scores-no-zone"])
    batch.loc[[1], list(CUSTOMER_KINDS)] = None
    batch.loc[[2, 3], list(SCORE_KINDS)] = None
    batch.loc[3, "timezone"] = None
    pol = RoutedEmailNow(("trigger", "customer", "scores"))
    out = PolicyModel(pol, epsilon=0.0).predict(None, batch)
    assert out["reason"].tolist() == ["", "rules fallback: missing customer features",
                                      "fallback: trigger-only learned policy (missing scores)",
                                      "rules fallback: missing timezone"]
    assert out["channel"].iloc[[0, 2]].tolist() == ["email", "email"]  # the policy decided them
    assert pol.seen[-1]["customer_id"].tolist() == ["has-all", "no-scores"]
    # The policy's learned fallback rows explore like its other rows (the rules' rows never do).
    many = pd.concat([batch.iloc[[2]]] * 400, ignore_index=True).assign(customer_id=[f"c{i}" for i in range(400)])
    explored = PolicyModel(pol, epsilon=0.5, seed=3).predict(None, many)
    assert explored["reason"].str.startswith("exploration").any()
    assert (explored["propensity"] < 1).all()


def test_a_request_without_the_family_columns_falls_back_whole() -> None:
    trigger_only = rows(3).drop(columns=list(FAMILY_COLUMNS["scores"]))
    out = PolicyModel(EmailNowWith(("trigger", "scores")), epsilon=0.0).predict(None, trigger_only)
    assert (out["reason"] == "rules fallback: missing scores").all()
    assert (PolicyModel(RulesPolicy(), epsilon=0.0).predict(None, trigger_only)["reason"] == "").all()


def test_eligible_at_is_the_trigger_time() -> None:
    base = rows(2).drop(columns="triggered_at")
    base["eligible_at"] = ["2025-03-01T09:30:00Z", "2025-03-01"]
    out = PolicyModel(RulesPolicy(), epsilon=0.0).predict(None, base)
    assert out["reason"].tolist() == ["", "hold (invalid input): eligible_at: no time zone"]
    assert out["send_at"].iloc[0] == pd.Timestamp("2025-03-01T09:50:00Z")  # push after 20 minutes
    # With both, triggered_at (the log's name) is the one read.
    both = rows(1).assign(eligible_at="not a time")
    assert PolicyModel(RulesPolicy(), epsilon=0.0).predict(None, both)["reason"].tolist() == [""]
    assert check_rows(base.drop(columns="eligible_at"))[0].tolist() == ["triggered_at: missing"] * 2


def test_the_policy_reads_the_local_clock_of_the_checked_values() -> None:
    """A caller's own ``local_hour``/``local_weekday`` never reach the policy (they would bypass the checks)."""
    pol = EmailNowWith(("trigger",))
    frame = rows(1).assign(local_hour=99.0, local_weekday=-5, triggered_at="2025-03-01T09:30:00Z",
                           timezone="Asia/Tokyo")
    PolicyModel(pol, epsilon=0.0).predict(None, frame)
    seen = pol.seen[-1]
    assert seen["local_hour"].tolist() == [18.5] and seen["local_weekday"].tolist() == [5]  # Saturday 18:30


def test_a_full_decision_row_is_within_the_column_limit() -> None:
    names = [c.name for c in INPUT_COLUMNS]
    assert len(names) == len(set(names)) and len(names) + 10 < MAX_COLUMNS <= 256
    assert set(input_example().columns) == set(names) - {"customer_id", "eligible_at"}


def test_columns_are_the_feature_layers() -> None:
    """The served model's lists are the feature schema's (written out so serving does not import the engine)."""
    from cadence.deployment.serving import _customer_kinds
    from cadence.features.customer import feature_columns

    schema = {c: t for c, t in feature_columns().items() if c != "customer_id"}
    kinds = _customer_kinds()
    assert list(kinds) == list(schema)
    for col, kind in kinds.items():
        assert (kind == "text") == (schema[col] == "string"), col
        assert (kind == "count") == schema[col].startswith("int"), col
    assert set(CUSTOMER_KINDS) == set(kinds) - {"orders_90d"}  # the trigger's own, as of the trigger


def test_score_columns_are_the_scoring_steps() -> None:
    scores = pytest.importorskip("cadence.models.scores", reason="the scoring step is not in this tree yet")
    assert tuple(SCORE_KINDS) == tuple(scores.SCORE_COLUMNS)


def test_only_a_policy_that_reads_a_family_needs_it() -> None:
    from cadence.deployment.serving import needed_families
    from cadence.policies.learned import UpliftPolicy

    assert needed_families(EmailNowWith(("trigger", "scores"))) == ("scores",)
    assert needed_families(RulesPolicy()) == ()
    # The uplift design decides from the trigger's columns, whatever its context says.
    t = UpliftPolicy(learner="t")
    t.context = ("trigger", "customer")  # type: ignore[misc]
    assert needed_families(t) == ()


def test_deciding_with_the_learned_policy_imports_neither_the_feature_engine_nor_the_scoring_models() -> None:
    """What a served learned policy imports when loaded (its modules' module-level imports): not ibis, duckdb,
    sqlglot, pyarrow or plotly, which only fitting and building the context need."""
    from cadence.deployment.export import imported_packages

    need = imported_packages(["cadence.policies.learned", "cadence.deployment.serving"], module_level=True)
    assert need.isdisjoint({"ibis", "duckdb", "sqlglot", "pyarrow", "plotly", "lifelines"}), sorted(need)
    # The context module's type-only import of the feature layer is not a requirement; its real imports are.
    assert "ibis" in imported_packages(["cadence.features.policy_context"], module_level=True)
