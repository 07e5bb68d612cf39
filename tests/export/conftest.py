"""Shared fixtures: a shop with planted outcomes and PII canaries, registries, and live MLflow processes.

The shop's messages keep the logging policy's randomised decisions but get
*planted* outcomes: a send in the stage's first delay slot converts (order
value 80), nothing else does. The best policy is then known whatever the
synthetic world does, so the promotion gate has a certain answer: the
seed rules (first slot for every stage but email reminders) beat a policy
that always waits the longest.

One customer's id, email, name and birth date are replaced by canaries
that a test looks for in everything the exports logged.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from cadence.contract.actions import delay_slots
from cadence.synthetic import ShopConfig, generate_shop

CANARY = {
    "customer_id": "CANARY-CUST-7731",
    "email": "quintus.canaryfield7731@example.invalid",
    "name": "Quintus Canaryfield",
    "birth_date": "1911-11-11",
}
ORDER_VALUE = 80.0
BIN = Path(sys.executable).parent


def plant(src: Path, dest: Path) -> Path:
    """``messages``, ``customers`` and ``orders`` of ``src``: planted outcomes, one canary customer; the other tables copied."""
    dest.mkdir(parents=True)
    messages = pd.read_parquet(src / "messages.parquet")
    customers = pd.read_parquet(src / "customers.parquet")
    victim = messages["customer_id"].value_counts().index[0]
    messages["customer_id"] = messages["customer_id"].replace(victim, CANARY["customer_id"])
    row = customers["customer_id"] == victim
    customers["customer_id"] = customers["customer_id"].replace(victim, CANARY["customer_id"])
    customers.loc[row, "email"] = CANARY["email"]
    customers.loc[row, "name"] = CANARY["name"]
    customers.loc[row, "birth_date"] = pd.Timestamp(CANARY["birth_date"]).date()
    delay = ((messages["sent_at"] - messages["triggered_at"]).dt.total_seconds() / 60).fillna(-1).round()
    fast = (messages["action"] == "send").to_numpy() & (delay_slots(messages["stage"], delay.to_numpy()) == 0)
    messages["converted_order_id"] = np.where(fast, "O-PLANTED-" + messages.index.astype(str), None)
    messages["revenue"] = np.where(fast, ORDER_VALUE, np.nan)
    orders = pd.read_parquet(src / "orders.parquet")
    orders["customer_id"] = orders["customer_id"].replace(victim, CANARY["customer_id"])
    # The planted conversions are real orders of the messaged customer, so the shop passes the contract gate.
    planted = messages.loc[fast, ["converted_order_id", "customer_id", "sent_at"]]
    orders = pd.concat([orders, pd.DataFrame({
        "order_id": planted["converted_order_id"].to_numpy(), "customer_id": planted["customer_id"].to_numpy(),
        "ts": (planted["sent_at"] + pd.Timedelta(minutes=1)).astype(orders["ts"].dtype).to_numpy(),
        "revenue": np.full(len(planted), ORDER_VALUE, dtype=orders["revenue"].dtype)})], ignore_index=True)
    messages.to_parquet(dest / "messages.parquet", index=False)
    customers.to_parquet(dest / "customers.parquet", index=False)
    orders.to_parquet(dest / "orders.parquet", index=False)
    # The tables the learned policy's context reads besides those (customer features, scores); the canary's
    # events under its new id.
    events = pd.read_parquet(src / "events.parquet")
    events["customer_id"] = events["customer_id"].replace(victim, CANARY["customer_id"])
    events.to_parquet(dest / "events.parquet", index=False)
    for table in ("order_items", "products"):
        shutil.copy(src / f"{table}.parquet", dest / f"{table}.parquet")
    return dest


@pytest.fixture(scope="session")
def canary() -> dict[str, str]:
    return dict(CANARY)


#: A customer id the serving tests send with every bad row; no answer may repeat it.
SECRET = "CUST-SECRET-4411"
#: A value that stands for "the column is left out of the row".
ABSENT = "<absent>"
#: One bad value per row: (column, value, the hold reason after "hold (invalid input): ").
#: Used in-process (tests/export/test_serving.py) and against a served model (test_serve.py).
BAD_ROWS: list[tuple[str, object, str]] = [
    ("stage", "teleport", "stage: unknown value"),
    ("stage", "Cart_Abandon", "stage: unknown value"),  # misspelt (case)
    ("stage", "cart_abandn", "stage: unknown value"),
    ("stage", "", "stage: unknown value"),
    ("stage", None, "stage: missing"),
    ("stage", ABSENT, "stage: missing"),
    ("stage", 7, "stage: not text"),
    ("stage", {"nested": {"deep": [1, 2]}}, "stage: not text"),
    ("stage", SECRET, "stage: unknown value"),  # an id in the wrong column is not echoed
    ("triggered_at", None, "triggered_at: missing"),
    ("triggered_at", ABSENT, "triggered_at: missing"),
    ("triggered_at", 12345, "triggered_at: not a timestamp"),
    ("triggered_at", "yesterday", "triggered_at: not an ISO-8601 timestamp"),
    ("triggered_at", "2025-03-01T09:30:00", "triggered_at: no time zone"),
    ("triggered_at", "2025-03-01", "triggered_at: no time zone"),
    ("triggered_at", "1900-01-01T00:00:00Z", "triggered_at: before 1970-01-02"),
    ("triggered_at", "1970-01-01T00:00:00Z", "triggered_at: before 1970-01-02"),
    ("triggered_at", "2200-01-01T00:00:00Z", "triggered_at: more than 7 days in the future"),
    ("triggered_at", "2300-01-01T00:00:00Z", "triggered_at: more than 7 days in the future"),  # past pandas' range
    ("sends_7d", -1, "sends_7d: negative"),
    ("sends_7d", 1_001, "sends_7d: above 1,000, implausible"),
    ("sends_7d", 10**30, "sends_7d: above 1,000, implausible"),
    ("sends_7d", 1.5, "sends_7d: not a whole number"),
    ("sends_7d", "many", "sends_7d: not a number"),
    ("sends_7d", float("inf"), "sends_7d: not finite"),
    ("orders_90d", True, "orders_90d: not a number"),
    ("orders_90d", -3, "orders_90d: negative"),
    ("orders_90d", 10_001, "orders_90d: above 10,000, implausible"),
    ("days_since_order", -0.5, "days_since_order: negative"),
    ("days_since_order", 1e9, "days_since_order: before 1970-01-02"),
    ("days_since_order", "long ago", "days_since_order: not a number"),
    ("opt_in_email", "false", "opt_in_email: not true, false or null"),
    ("opt_in_push", 1, "opt_in_push: not true, false or null"),
    ("timezone", "Mars/Olympus", "timezone: unknown IANA time zone"),
    ("timezone", 1.5, "timezone: not text"),
    ("customer_id", 1.5, "customer_id: not text"),
    ("customer_id", "x" * 5_000, "customer_id: longer than 4,096 characters"),
    ("products", "P|" * 3_000, "products: longer than 4,096 characters"),
]


@pytest.fixture(scope="session")
def secret() -> str:
    return SECRET


@pytest.fixture(scope="session")
def bad_rows() -> list[tuple[str, object, str]]:
    return list(BAD_ROWS)


@pytest.fixture(scope="session")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("export-shop")
    raw = generate_shop(ShopConfig(customers=1500, days=120, seed=3), root / "raw")
    return plant(Path(raw), root / "planted")


@pytest.fixture(scope="session")
def policies_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cadence.deployment.registry import save_policy

    d = tmp_path_factory.mktemp("policies")
    save_policy("slow", "rules", {"abandon_push_delay": 720, "other_delay": 600}, policies_dir=d)
    return d


@dataclass
class Registry:
    """A SQLite tracking store with exported models; ``root`` also holds its artifacts."""

    root: Path
    uri: str
    exports: dict[str, dict[str, Any]]


@pytest.fixture(scope="session")
def registry(shop: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """Rules and learned policies exported (epsilon 0) and promoted to champion (first versions)."""
    from cadence.workflows.export import export_policy
    from cadence.workflows.promote import promote

    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root}/mlflow.db"
    exports = {}
    for policy in ("rules", "learned"):
        res = export_policy(shop, policy, f"cadence-{policy}", tracking_uri=uri, epsilon=0.0,
                            replay=(policy == "rules"))
        assert promote(f"cadence-{policy}", tracking_uri=uri)["promoted"]
        exports[policy] = res
    yield Registry(root, uri, exports)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path


def launch(args: list[str], url: str, log: Path, cwd: Path, env: dict[str, str]) -> Server:
    """Start ``args`` in its own process group (so its workers can be stopped with it); do not wait."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    return Server(url, proc, log)


def wait_ready(server: Server, ready: str, timeout: float = 120.0) -> Server:
    """Wait until ``url + ready`` answers 200; stop the server and fail with its log otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited with {server.proc.returncode}:\n{server.log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(server.url + ready, timeout=2) as r:
                if r.status == 200:
                    return server
        except OSError:
            time.sleep(0.5)
    stop(server)
    raise RuntimeError(f"server not ready after {timeout:.0f} s:\n{server.log.read_text()[-3000:]}")


def start(args: list[str], url: str, log: Path, cwd: Path, env: dict[str, str], ready: str,
          timeout: float = 120.0) -> Server:
    """:func:`launch`, then :func:`wait_ready`."""
    return wait_ready(launch(args, url, log, cwd, env), ready, timeout)


def stop(server: Server, grace: float = 3.0) -> None:
    """Stop the server's process group (it forks uvicorn workers): TERM, then KILL after ``grace`` seconds."""
    try:
        os.killpg(server.proc.pid, signal.SIGTERM)
        server.proc.wait(timeout=grace)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        pass
    try:  # workers outlive a parent that exits first
        os.killpg(server.proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    server.proc.wait(timeout=10)


def server_env(**extra: str) -> dict[str, str]:
    """The current environment with the venv's bin first (mlflow execs uvicorn by name)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def live() -> Any:
    """Helpers to start and stop live processes (a fixture, so test modules need not import conftest)."""

    class Live:
        free_port = staticmethod(free_port)
        start = staticmethod(start)
        stop = staticmethod(stop)
        env = staticmethod(server_env)
        bin = BIN
        mlflow = str(BIN / "mlflow")

    return Live


@pytest.fixture(scope="session", autouse=True)
def _tracking_server_launch(request: pytest.FixtureRequest,
                            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server | None]:
    """Launch the ``mlflow server`` process first thing when a collected test needs it.

    It takes tens of seconds to start; launched early, it starts while the
    shop is generated and the other tests run.
    """
    if not any("tracking_server" in getattr(item, "fixturenames", ()) for item in request.session.items):
        yield None
        return
    root = tmp_path_factory.mktemp("tracking-server")
    port = free_port()
    mlflow = str(BIN / "mlflow")
    server = launch([mlflow, "server", "--backend-store-uri", f"sqlite:///{root}/server.db",
                     "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1",
                     "--port", str(port), "--workers", "1"],
                    f"http://127.0.0.1:{port}", root / "server.log", root, server_env())
    try:
        yield server
    finally:
        stop(server)


@pytest.fixture(scope="session")
def tracking_server(_tracking_server_launch: Server | None) -> str:
    """URL of a live ``mlflow server`` (SQLite backend, proxied artifacts) on loopback."""
    assert _tracking_server_launch is not None
    return wait_ready(_tracking_server_launch, "/health").url
