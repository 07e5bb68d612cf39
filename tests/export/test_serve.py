"""``mlflow models serve --env-manager local`` on loopback: decisions, 4xx naming the column, 5xx without a payload."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest

from cadence.deployment.serving import input_example
from cadence.workflows.tracking import using_tracking

MODEL = "models:/cadence-learned@champion"


@pytest.fixture(scope="module")
def served(registry, live, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    cwd = tmp_path_factory.mktemp("serve")
    port = live.free_port()
    server = live.start(
        [live.mlflow, "models", "serve", "-m", MODEL, "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        f"http://127.0.0.1:{port}", cwd / "serve.log", cwd, live.env(MLFLOW_TRACKING_URI=registry.uri), "/ping")
    try:
        yield server.url
    finally:
        live.stop(server)


def post(url: str, body: bytes | None, content_type: str | None = "application/json") -> tuple[int, Any]:
    req = urllib.request.Request(url + "/invocations", data=body, method="POST")
    if content_type and body is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        text = e.read().decode()
        try:
            return e.code, json.loads(text)
        except json.JSONDecodeError:
            return e.code, {"message": text}


def records(frame: pd.DataFrame) -> bytes:
    return json.dumps({"dataframe_records": json.loads(frame.to_json(orient="records", date_format="iso"))}).encode()


def good_rows() -> pd.DataFrame:
    base = input_example()
    return pd.concat([base, base.assign(stage=["browse_abandon", "win_back", "new_arrivals"])], ignore_index=True) \
        .assign(customer_id=[f"example-{i}" for i in range(6)])


def test_good_rows_get_the_in_process_decisions(served: str, registry) -> None:
    import mlflow

    rows = good_rows()
    status, body = post(served, records(rows))
    assert status == 200, body
    got = pd.DataFrame(body["predictions"])
    assert list(got.columns) == ["action", "channel", "send_at", "delay_minutes", "incentive", "items", "priority",
                                 "propensity", "reason"]
    with using_tracking(registry.uri):
        expected = mlflow.pyfunc.load_model(MODEL).predict(rows)
    cols = ["action", "channel", "delay_minutes", "incentive", "propensity", "reason"]
    assert got[cols].astype(object).where(got[cols].notna(), None).values.tolist() == \
        expected[cols].astype(object).where(expected[cols].notna(), None).values.tolist()
    send = got["action"] == "send"
    assert pd.to_datetime(got.loc[send, "send_at"]).notna().all() and got.loc[~send, "send_at"].isna().all()
    assert post(served, records(rows)) == (status, body)  # same request, same answer


def test_unknown_categories_fall_back_with_a_reason(served: str) -> None:
    rows = input_example().assign(stage=["teleport", "birthday", "cart_abandon"],
                                  timezone=["Europe/Berlin", "Mars/Olympus", "Europe/Berlin"])
    status, body = post(served, records(rows))
    assert status == 200, body
    reasons = [p["reason"] for p in body["predictions"]]
    assert reasons[0] == "rules fallback: unknown stage 'teleport'"
    assert reasons[1] == "rules fallback: unknown timezone 'Mars/Olympus'"
    assert not reasons[2].startswith("rules fallback")
    optional = input_example().drop(columns=["timezone", "orders_90d"])
    status, body = post(served, records(optional))
    assert status == 200 and all("missing column(s) timezone, orders_90d" in p["reason"] for p in body["predictions"])


@pytest.mark.parametrize("column", ["stage", "triggered_at"])
def test_missing_required_column_is_4xx_naming_it(served: str, column: str) -> None:
    status, body = post(served, records(input_example().drop(columns=column)))
    assert 400 <= status < 500
    assert f"'{column}'" in body["message"]


@pytest.mark.parametrize(("column", "value"), [
    ("sends_7d", "many"), ("opt_in_email", "false"), ("triggered_at", 12345), ("stage", 7), ("orders_90d", 1.5),
])
def test_wrong_type_is_4xx_naming_the_column(served: str, column: str, value: Any) -> None:
    rows = input_example().astype(object)
    rows[column] = [value] * len(rows)
    status, body = post(served, records(rows))
    assert 400 <= status < 500, body
    assert column in body["message"]


def test_no_payload_is_5xx(served: str) -> None:
    status, _ = post(served, None)
    assert 500 <= status < 600
    # An empty body declared as JSON is a client error to MLflow's scoring server.
    status, body = post(served, b"")
    assert status == 400 and "valid JSON" in body["message"]
