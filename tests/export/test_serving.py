"""The served policy in-process: holds, fallbacks, bounds, exploration, reproducibility (no MLflow store)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from cadence.contract.actions import allowed_actions, delay_choices, encode_actions
from cadence.contract.tables import CHANNELS, STAGES
from cadence.contract.triggers import INCENTIVE_STAGES, TRANSACTIONAL_STAGES
from cadence.deployment.export import imported_packages, pickled_packages, pinned_requirements
from cadence.deployment.serving import (
    CONTEXT_COLUMNS,
    INPUT_COLUMNS,
    MAX_COLUMNS,
    MAX_ROWS,
    PolicyModel,
    ServingInputError,
    input_example,
    model_signature,
)
from cadence.features.context import context_features
from cadence.policies.rules import RulesPolicy
from cadence.workflows.logs import load_log

DROP = "<absent>"  # as in conftest.bad_rows: the column is left out


class EmailNow:
    """A deterministic non-rules policy (so every context column counts as read): email now, no incentive."""

    policy_id = "email-now"

    def decide(self, candidates: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        n = len(candidates)
        delay = [delay_choices(str(s))[0] for s in candidates["stage"]]
        return pd.DataFrame({"action": ["send"] * n, "channel": ["email"] * n, "delay_minutes": delay,
                             "incentive": ["none"] * n, "propensity": [1.0] * n}, index=candidates.index)


@pytest.fixture(scope="module")
def candidates(shop: Path) -> pd.DataFrame:
    return load_log(shop).candidates


def row(**change: object) -> pd.DataFrame:
    base = input_example().iloc[[0]].reset_index(drop=True).assign(customer_id="x-1")
    for k, v in change.items():
        if isinstance(v, str) and v == DROP:
            base[k] = pd.Series([None], dtype=object)  # a column absent from a JSON record arrives as null
            if k not in ("stage", "triggered_at"):
                base = base.drop(columns=k)
        else:
            base[k] = pd.Series([v], dtype=object)
    return base


@pytest.mark.parametrize(("policy", "change", "reason"), [
    ("rules", {}, ""),
    ("rules", {"timezone": None}, ""),  # the rules do not read the time zone
    ("rules", {"opt_in_fax": True}, "rules fallback: unknown channel 'fax'"),
    ("rules", {"opt_in_fax": False}, ""),
    ("rules", {"opt_in_sms": DROP}, "rules fallback: missing column(s) opt_in_sms"),
    ("rules", {"sends_7d": DROP, "products": DROP, "timezone": DROP}, ""),
    ("email", {}, ""),
    ("email", {"timezone": None}, "rules fallback: missing timezone"),
    ("email", {"sends_7d": None}, "rules fallback: missing sends_7d"),
    ("email", {"days_since_order": None}, ""),  # null = never ordered
    ("email", {"orders_90d": DROP, "days_since_order": DROP},
     "rules fallback: missing column(s) orders_90d, days_since_order"),
])
def test_fallback_reasons(policy: str, change: dict[str, object], reason: str) -> None:
    pol = RulesPolicy() if policy == "rules" else EmailNow()
    frame = row(**change)
    out = PolicyModel(pol, epsilon=0.0).predict(None, frame)
    assert out["reason"].tolist() == [reason]
    if reason:  # the row gets the rules' decision for it, deterministically
        expected = RulesPolicy().decide(frame, np.random.default_rng(0))
        assert out[["action", "channel", "delay_minutes"]].values.tolist() == \
            expected[["action", "channel", "delay_minutes"]].values.tolist()
        assert out["propensity"].tolist() == [1.0]
    elif policy == "email":
        assert out["channel"].tolist() == ["email"]


@pytest.mark.parametrize("policy", ["rules", "email"])
def test_invalid_values_are_held_naming_the_column(policy: str, bad_rows: list[tuple[str, object, str]],
                                                   secret: str) -> None:
    pol = RulesPolicy() if policy == "rules" else EmailNow()
    frames = [row(**{column: value}) for column, value, _ in bad_rows]
    frames = [f if column == "customer_id" else f.assign(customer_id=f"{secret}-{i}")
              for i, (f, (column, _, _)) in enumerate(zip(frames, bad_rows, strict=True))]
    good = row().assign(customer_id="x-2")
    # One batch, with a good row (still decided) and heavy exploration: no bad row is ever sent.
    batch = pd.concat([*frames, good], ignore_index=True)
    out = PolicyModel(pol, epsilon=0.9, seed=1).predict(None, batch)
    wrong = [(column, value, reason, got) for (column, value, reason), got
             in zip(bad_rows, out["reason"].iloc[:-1], strict=True) if got != "hold (invalid input): " + reason]
    assert not wrong, wrong
    held = out.iloc[:-1]
    assert (held["action"] == "hold").all() and (held["propensity"] == 1.0).all()
    assert held["channel"].isna().all() and held["items"].isna().all()
    # None, not NaT: beside real send times the server's JSON writer would print NaT as the text "NaT".
    assert all(v is None for v in held["send_at"]), held["send_at"].tolist()
    assert not out["reason"].iloc[-1].startswith("hold")
    assert secret not in out.to_json()  # nothing in the answer repeats the caller's ids
    # The served distribution (what export estimates and the gate judges) holds them too.
    dist = PolicyModel(pol, epsilon=0.9, seed=1).action_distribution(batch)
    assert (dist[:-1, 0] == 1.0).all()


def test_reasons_never_echo_values(secret: str) -> None:
    frame = pd.concat([row(stage=secret), row(timezone=secret), row(triggered_at=secret), row(sends_7d=secret),
                       row(opt_in_sms=secret), row(customer_id=secret * 500)], ignore_index=True)
    out = PolicyModel(RulesPolicy(), epsilon=0.5).predict(None, frame)
    assert (out["action"] == "hold").all()
    assert not out["reason"].str.contains("CUST-SECRET").any(), out["reason"].tolist()


def test_future_is_relative_to_the_clock() -> None:
    soon = (pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=6)).isoformat()
    late = (pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=8)).isoformat()
    out = PolicyModel(RulesPolicy(), epsilon=0.0).predict(None, pd.concat([row(triggered_at=soon),
                                                                           row(triggered_at=late)]))
    assert out["action"].tolist() == ["send", "hold"]


@pytest.mark.parametrize(("frame", "message"), [
    (pd.concat([input_example()] * (MAX_ROWS // 3 + 1), ignore_index=True), f"at most {MAX_ROWS:,} per request"),
    (pd.concat([input_example(), pd.DataFrame(0, index=range(3), columns=[f"x{i}" for i in range(MAX_COLUMNS)])],
               axis=1), f"columns, at most {MAX_COLUMNS}"),
])
def test_requests_are_bounded(frame: pd.DataFrame, message: str, secret: str) -> None:
    with pytest.raises(ServingInputError, match=message) as err:
        PolicyModel(RulesPolicy()).predict(None, frame.assign(customer_id=secret))
    assert not isinstance(err.value, MlflowException)  # MLflow would prefix its message with the request
    assert secret not in str(err.value)


def test_a_bound_sized_request_is_served() -> None:
    frame = pd.concat([input_example()] * (MAX_ROWS // 3 + 1), ignore_index=True).head(MAX_ROWS).astype(object)
    out = PolicyModel(RulesPolicy()).predict(None, frame)
    assert len(out) == MAX_ROWS and (out["reason"].str.startswith("hold") == False).all()  # noqa: E712


def test_signature_has_no_input_schema_and_the_inputs_are_documented() -> None:
    sig = model_signature()
    # MLflow enforces nothing (its errors echo the request, its enforcement costs more than deciding):
    # the model checks and holds. The inputs are documented by INPUT_COLUMNS (the export's metadata).
    assert sig.inputs is None
    assert [c.name for c in sig.outputs.inputs] == ["action", "channel", "send_at", "delay_minutes", "incentive",
                                                    "items", "priority", "propensity", "reason"]
    assert set(CONTEXT_COLUMNS) <= {c.name for c in INPUT_COLUMNS}
    assert "customer_id" not in input_example()


def test_context_columns_are_what_the_features_read(candidates: pd.DataFrame) -> None:
    """If context_features starts reading another column, serving must list it (and vice versa)."""
    c = candidates.head(500)
    full = context_features(c)
    for col in c.columns:
        changed = not context_features(c.drop(columns=col)).equals(full) if col not in ("stage", "triggered_at") \
            else True
        if col in CONTEXT_COLUMNS:
            assert changed or c[col].nunique() <= 1, f"{col} is listed but not read"
        elif col not in ("customer_id", "stage", "triggered_at", "products"):
            assert not changed, f"context_features reads {col}: add it to serving.CONTEXT_COLUMNS"


def test_epsilon_zero_is_the_policy(candidates: pd.DataFrame) -> None:
    out = PolicyModel(RulesPolicy(), epsilon=0.0).predict(None, candidates)
    expected = RulesPolicy().decide(candidates, np.random.default_rng(0))
    cols = ["action", "channel", "delay_minutes", "incentive"]
    def norm(d: pd.DataFrame) -> pd.DataFrame:
        return d[cols].astype(object).where(d[cols].notna(), "-")

    assert norm(out).equals(norm(expected))
    assert (out["propensity"] == 1).all() and (out["reason"] == "").all()
    assert out.index.equals(candidates.index)


def test_exploration_propensities(candidates: pd.DataFrame) -> None:
    eps = 0.2
    model = PolicyModel(RulesPolicy(), epsilon=eps, seed=3)
    out = model.predict(None, candidates)
    dist = model.action_distribution(candidates)
    stage = candidates["stage"].to_numpy()
    opt = candidates[[f"opt_in_{c}" for c in CHANNELS]].to_numpy(bool)
    valid = allowed_actions(stage, opt)
    # A distribution over the valid actions only, summing to one.
    np.testing.assert_allclose(dist.sum(axis=1), 1.0)
    assert (dist[~valid] == 0).all()
    # The reported propensity is the probability of the action chosen.
    chosen = encode_actions(candidates["stage"], out)
    np.testing.assert_allclose(out["propensity"].to_numpy(), dist[np.arange(len(out)), chosen])
    assert valid[np.arange(len(out)), chosen].all()
    # Per row: (1 - eps) + eps / K on the greedy action, eps / K elsewhere; none for transactional rows.
    k = valid.sum(axis=1)
    transactional = np.isin(stage, list(TRANSACTIONAL_STAGES))
    greedy = encode_actions(candidates["stage"], RulesPolicy().decide(candidates, np.random.default_rng(0)))
    expect = np.where(chosen == greedy, 1 - eps + eps / k, eps / k)
    np.testing.assert_allclose(out["propensity"].to_numpy(), np.where(transactional, 1.0, expect))
    # Exploration happens at rate eps among marketing rows (binomial, 5 standard errors).
    explored = (out["reason"] != "").to_numpy()
    n = int((~transactional).sum())
    rate = explored[~transactional].sum() / n
    hit_greedy = float(np.mean(1 / k[~transactional]))  # explorations that drew the greedy action
    target = eps * (1 - hit_greedy)
    assert abs(rate - target) < 5 * np.sqrt(target * (1 - target) / n)
    assert not explored[transactional].any()


def test_valid_actions_follow_stage_and_opt_ins() -> None:
    v = allowed_actions(np.array(["birthday", "cart_abandon", "birthday"]),
                      np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]], bool))
    assert v.sum(axis=1).tolist() == [1 + 2 * 3 * 4, 1 + 2 * 3 * 1, 1]
    assert "birthday" in INCENTIVE_STAGES and "cart_abandon" not in INCENTIVE_STAGES


def test_same_row_same_decision_in_any_batch(candidates: pd.DataFrame) -> None:
    model = PolicyModel(RulesPolicy(), epsilon=0.3, seed=7)
    c = candidates.head(2000)
    a = model.predict(None, c)
    shuffled = c.sample(frac=1.0, random_state=1)
    b = model.predict(None, shuffled).loc[c.index]
    pd.testing.assert_frame_equal(a, b)
    one = model.predict(None, c.iloc[[17]])
    pd.testing.assert_frame_equal(one, a.iloc[[17]])
    # Text timestamps give the same draws as datetimes.
    text = model.predict(None, c.head(50).assign(triggered_at=c["triggered_at"].head(50).map(lambda t: t.isoformat())))
    pd.testing.assert_frame_equal(text, a.head(50))
    # Another seed explores differently.
    other = PolicyModel(RulesPolicy(), epsilon=0.3, seed=8).predict(None, c)
    assert not other["reason"].equals(a["reason"])


def test_empty_input() -> None:
    out = PolicyModel(RulesPolicy()).predict(None, input_example().head(0))
    assert len(out) == 0 and "propensity" in out


def test_every_stage_is_served() -> None:
    frame = pd.concat([input_example().iloc[[0]]] * len(STAGES), ignore_index=True).assign(stage=list(STAGES))
    out = PolicyModel(RulesPolicy(), epsilon=0.5).predict(None, frame)
    assert not out["reason"].str.startswith(("rules fallback", "hold")).any()
    assert out["send_at"].notna().sum() == (out["action"] == "send").sum()


def test_requirements_are_what_the_model_imports() -> None:
    from cadence.policies.learned import UpliftPolicy

    rules = imported_packages(["cadence.deployment.serving", "cadence.policies.rules"])
    learned = imported_packages(["cadence.deployment.serving", "cadence.policies.learned"])
    assert "sklearn" not in rules and "sklearn" in learned
    pins = pinned_requirements(learned | pickled_packages(PolicyModel(UpliftPolicy())))
    import sklearn

    assert f"scikit-learn=={sklearn.__version__}" in pins
    assert any(p.startswith("mlflow==") for p in pins) and not any(p.startswith("cadence") for p in pins)


def test_timestamp_objects_and_nullable_dtypes() -> None:
    """In-process callers pass timestamps as objects or datetime columns, and pandas' nullable dtypes."""
    naive = input_example().assign(triggered_at=pd.to_datetime(input_example()["triggered_at"]).dt.tz_localize(None))
    out = PolicyModel(RulesPolicy(), epsilon=0.0).predict(None, naive)
    assert (out["reason"] == "hold (invalid input): triggered_at: no time zone").all()
    objects = input_example().astype(object)
    objects["triggered_at"] = [pd.Timestamp("2025-03-01 09:30", tz="Europe/Berlin"),
                               pd.Timestamp("2025-03-01 09:30"), pd.Timestamp("1960-01-01", tz="UTC")]
    out = PolicyModel(RulesPolicy(), epsilon=0.0).predict(None, objects)
    assert out["reason"].tolist() == ["", "hold (invalid input): triggered_at: no time zone",
                                      "hold (invalid input): triggered_at: before 1970-01-02"]
    assert out["send_at"].iloc[0] == pd.Timestamp("2025-03-01 08:50", tz="UTC")  # 09:30 Berlin + 20 min
    nullable = input_example().astype({"stage": "string", "sends_7d": "Int64", "opt_in_email": "boolean"})
    nullable.loc[1, ["stage", "sends_7d", "opt_in_email"]] = pd.NA
    out = PolicyModel(RulesPolicy(), epsilon=0.0).predict(None, nullable)
    assert out["reason"].tolist() == ["", "hold (invalid input): stage: missing", ""]
