"""One feature layer: a trigger's decision context is defined once and read the same way everywhere (issue 21).

The policy context of a logged message (:func:`cadence.workflows.logs.load_log`) is what the feature
layer (:mod:`cadence.features.decision_context`) computes for the same trigger and cutoff, on DuckDB and
Spark; the trigger candidates ``build_features`` writes carry the same context; the context is point in
time; and the online send counter the replay and orchestrator use agrees with the batch definition.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from cadence.contract.clock import epoch_seconds
from cadence.data.io import read_tables
from cadence.features.decision_context import CONTEXT_COLUMNS, fetch_context, with_decision_context
from cadence.features.engine import FLOAT_DECIMALS, connect
from cadence.features.logged import first_steps, log_from_tables, logged_candidates
from cadence.features.send_history import SendHistory
from cadence.synthetic import ShopConfig, generate_shop
from cadence.workflows.features import build_features, load_tables

CONTEXT = list(CONTEXT_COLUMNS)
AS_OF = "2025-03-01"  # the shop below ends 2025-02-28


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Randomised follow-ups, so the log's history holds more sends than its first steps."""
    return generate_shop(ShopConfig(customers=400, days=90, seed=7, logging_followup=0.5),
                         tmp_path_factory.mktemp("one") / "shop")


@pytest.fixture(scope="module")
def tables(shop: Path) -> dict[str, pd.DataFrame]:
    return read_tables(shop, ["messages", "customers", "orders"])


@pytest.fixture(scope="module")
def logged(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The policy context of each logged trigger (first steps), by message id."""
    m = tables["messages"]
    log = log_from_tables(m, tables["customers"], tables["orders"])
    ids = first_steps(m)["message_id"].to_numpy()
    assert len(first_steps(m)) < len(m)  # follow-ups: sends the first steps alone would miss
    return log.candidates.assign(message_id=ids).sort_values("message_id").reset_index(drop=True)


def _con(engine: str, request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue("spark_con") if engine == "spark" else connect("duckdb")


@pytest.mark.parametrize("engine", ["duckdb", "spark"])
def test_the_logged_policy_context_is_the_feature_layers(shop: Path, logged: pd.DataFrame, engine: str,
                                                         request: pytest.FixtureRequest) -> None:
    con = _con(engine, request)
    t = load_tables(con, shop, ["customers", "messages", "orders"])
    m = t["messages"]
    firsts = m.filter(m.step.isnull() | (m.step == 1)).select("message_id", "customer_id", "triggered_at")
    got = fetch_context(con, with_decision_context(firsts, t, at="triggered_at"))
    got = got.sort_values("message_id").reset_index(drop=True)
    # Same values and the same dtypes (int64 counts, bool opt-ins, float64 days with NaN, object time zones).
    pd.testing.assert_frame_equal(got[CONTEXT], logged[CONTEXT], check_exact=True)
    assert logged["sends_7d"].max() >= 3 and logged["days_since_order"].isna().any()
    assert (~logged["opt_in_email"]).any() and logged["orders_90d"].max() >= 2


@pytest.mark.parametrize("engine", ["duckdb", "spark"])
def test_the_candidates_build_features_writes_carry_the_logged_context(
        shop: Path, tables: dict[str, pd.DataFrame], engine: str, request: pytest.FixtureRequest,
        tmp_path: Path) -> None:
    if engine == "spark":
        request.getfixturevalue("spark_con")  # one session per run
    build_features(shop, AS_OF, tmp_path / "f", engine=engine, validate=False)  # type: ignore[arg-type]
    cands = pd.read_parquet(tmp_path / "f" / "trigger_candidates.parquet")
    assert list(cands.columns[-len(CONTEXT):]) == CONTEXT and len(cands) > 1000
    # The same triggers through the logged path: each candidate as a (not yet decided) message.
    as_messages = pd.DataFrame({"customer_id": cands["customer_id"], "stage": cands["stage"],
                                "triggered_at": cands["eligible_at"], "sent_at": pd.NaT, "channel": None,
                                "unsubscribed_at": pd.NaT})
    want = logged_candidates(as_messages, tables["customers"], tables["orders"], history=tables["messages"])
    exact = [c for c in CONTEXT if c != "days_since_order"]
    pd.testing.assert_frame_equal(cands[exact], want[exact], check_exact=True)
    # The file rounds floats to FLOAT_DECIMALS places, as every feature file does.
    days, wanted = cands["days_since_order"].to_numpy(), want["days_since_order"].to_numpy()
    np.testing.assert_array_equal(np.isnan(days), np.isnan(wanted))
    assert np.nanmax(np.abs(days - wanted)) <= 0.5 * 10.0**-FLOAT_DECIMALS + 1e-12  # half a unit, and float noise
    assert cands["days_since_order"].dtype == np.float64 and cands["sends_7d"].dtype == np.int64
    assert cands["sends_7d"].max() >= 1 and cands["orders_90d"].max() >= 1


@pytest.mark.parametrize("quantile", [0.3, 0.7])
def test_rows_at_or_after_a_trigger_do_not_change_its_context(tables: dict[str, pd.DataFrame],
                                                              quantile: float) -> None:
    m, customers, orders = tables["messages"], tables["customers"], tables["orders"]
    firsts = first_steps(m).reset_index(drop=True)
    cut = firsts["triggered_at"].quantile(quantile).floor("s")
    before = logged_candidates(firsts, customers, orders, history=m)
    # Every customer gets a send at the cut (on every channel), an order at the cut and an
    # unsubscription one second after it. (An unsubscription at the trigger's very second counts:
    # the opt-in is "not unsubscribed at or before the trigger".)
    ids = customers["customer_id"].to_numpy()
    later = pd.DataFrame({"customer_id": np.repeat(ids, 4), "channel": np.tile(["email", "push", "sms", "whatsapp"], len(ids)),
                          "triggered_at": cut, "sent_at": cut, "unsubscribed_at": cut + pd.Timedelta(seconds=1)})
    more_orders = pd.DataFrame({"customer_id": ids, "ts": cut})
    after = logged_candidates(firsts, customers, pd.concat([orders[["customer_id", "ts"]], more_orders]),
                              history=pd.concat([m, later], ignore_index=True))
    old = (firsts["triggered_at"] <= cut).to_numpy()
    assert 100 < old.sum() < len(firsts)
    pd.testing.assert_frame_equal(after[old], before[old], check_exact=True)
    assert not after[~old][CONTEXT].equals(before[~old][CONTEXT])  # the later triggers do see them


def test_the_online_counter_agrees_with_the_batch_context(tables: dict[str, pd.DataFrame],
                                                          logged: pd.DataFrame) -> None:
    """Walk the log in time order: record each send when it happens, ask at each trigger."""
    m = tables["messages"]
    code = pd.Index(tables["customers"]["customer_id"])
    sent = m[m["sent_at"].notna()]
    firsts = first_steps(m).sort_values("message_id")
    events = pd.concat([
        pd.DataFrame({"c": code.get_indexer(sent["customer_id"]), "s": epoch_seconds(sent["sent_at"]), "kind": 1,
                      "i": -1}),
        pd.DataFrame({"c": code.get_indexer(firsts["customer_id"]), "s": epoch_seconds(firsts["triggered_at"]),
                      "kind": 0, "i": np.arange(len(firsts))}),
    ]).sort_values(["s", "kind"], kind="stable")  # a trigger is asked before the sends of its own second
    history = SendHistory()
    got = np.zeros(len(firsts), np.int64)
    for c, s, kind, i in events.itertuples(index=False):
        if kind == 1:
            history.record(np.array([c]), np.array([s]))
        else:
            got[i] = history.sends_before(np.array([c]), np.array([s]), 7 * 86_400)[0]
    np.testing.assert_array_equal(got, logged["sends_7d"].to_numpy())
    assert got.max() >= 3
