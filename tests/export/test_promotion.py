"""The promotion gate cannot be fooled (issue 25): each attack is refused, each override is explicit and tagged.

The planted shop (conftest) makes the answers certain: the seed rules beat
the logging policy, the ``slow`` policy (always the longest wait) is worse.
Every test has its own model name in one SQLite registry.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cadence.cli import app
from cadence.data.io import fingerprint
from cadence.deployment.export import TABLES
from cadence.deployment.promotion import estimate_served
from cadence.deployment.serving import PolicyModel
from cadence.policies.rules import RulesPolicy
from cadence.workflows.export import export_policy
from cadence.workflows.logs import load_log
from cadence.workflows.promote import promote


@pytest.fixture(scope="module")
def uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('gate-registry')}/mlflow.db"


@pytest.fixture
def client(uri: str) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def copy_shop(shop: Path, dest: Path) -> Path:
    shutil.copytree(shop, dest)
    return dest


def aliases(client: mlflow.MlflowClient, name: str) -> dict[str, str]:
    return {a: str(v) for a, v in client.get_registered_model(name).aliases.items()}


def run(*argv: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(argv))
    return result.exit_code, result.output


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A working folder with the ``slow`` policy saved where the CLI looks (data/processed/policies)."""
    from cadence.deployment.registry import save_policy

    monkeypatch.chdir(tmp_path)
    save_policy("slow", "rules", {"abandon_push_delay": 720, "other_delay": 600},
                policies_dir=tmp_path / "data/processed/policies")
    yield tmp_path


def test_first_version_is_judged_against_logging(shop: Path, uri: str, client: mlflow.MlflowClient,
                                                 in_tmp: Path) -> None:
    """No free first champion; and an export on a conformed copy records the user's folder (promote finds it)."""
    name = "first-version"
    # Orders stored as CSV: the contract gate hands the export a conformed temporary copy.
    user = copy_shop(shop, in_tmp / "csv-shop")
    orders = pd.read_parquet(user / "orders.parquet")
    orders.assign(ts=orders["ts"].map(lambda t: t.isoformat())).to_csv(user / "orders.csv", index=False)
    (user / "orders.parquet").unlink()
    code, out = run("export", str(user), "--policy", "slow", "--model-name", name, "--tracking-uri", uri)
    assert code == 0, out
    tags = client.get_model_version(name, "1").tags
    assert tags["cadence.data_dir"] == str(user.resolve())
    assert tags["cadence.data_sha256"] == fingerprint(user, list(TABLES))

    # Without --data the recorded folder is found, gated and judged: slow is worse than logging.
    code, out = run("promote", name, "--tracking-uri", uri)
    assert code == 1, out
    assert "vs the logging policy (no champion yet)" in out and "refused" in out, out
    assert aliases(client, name) == {"challenger": "1"}
    tags = client.get_model_version(name, "1").tags
    assert tags["cadence.gate"] == "refused" and tags["cadence.gate_champion_version"] == "logging"
    assert float(tags["cadence.gate_diff_upper"]) < 0

    # Explicitly without a gate: promoted, and the version says so.
    code, out = run("promote", name, "--no-gate", "--tracking-uri", uri)
    assert code == 0, out
    assert "WITHOUT a gate" in out
    assert aliases(client, name) == {"challenger": "1", "champion": "1"}
    assert client.get_model_version(name, "1").tags["cadence.gate"] == "skipped"


def test_recorded_estimate_is_the_served_model(shop: Path, uri: str, client: mlflow.MlflowClient) -> None:
    """``--epsilon 0.999`` records the almost-random model's estimate, and it cannot block a better one."""
    name = "served-estimate"
    res = export_policy(shop, "rules", name, tracking_uri=uri, epsilon=0.999)
    log = load_log(shop)
    served = estimate_served(log, PolicyModel(RulesPolicy(), epsilon=0.999).action_distribution(log.candidates),
                             "rules", metrics=["net_revenue"])
    greedy = estimate_served(log, PolicyModel(RulesPolicy(), epsilon=0.0).action_distribution(log.candidates),
                             "rules", metrics=["net_revenue"])
    recorded = res["estimates"]["net_revenue"]
    assert recorded["value"] == pytest.approx(float(served.loc[served["policy"] == "rules", "value"].iloc[0]))
    assert recorded["upper"] < float(greedy.loc[greedy["policy"] == "rules", "lower"].iloc[0])
    tags = client.get_model_version(name, "1").tags
    assert tags["cadence.estimate_of"] == "served" and tags["cadence.epsilon"] == "0.999"
    # Whatever the first version is, the rules served with little exploration beat it and are promoted.
    first = promote(name, tracking_uri=uri)
    export_policy(shop, "rules", name, tracking_uri=uri, epsilon=0.05)
    second = promote(name, tracking_uri=uri)
    assert second["promoted"], second["message"]
    assert second["champion_before"] == ("1" if first["promoted"] else None)
    assert aliases(client, name)["champion"] == "2"


def test_other_evaluation_data_is_refused_unless_allowed(shop: Path, uri: str, client: mlflow.MlflowClient,
                                                         tmp_path: Path) -> None:
    name = "fingerprint"
    data = copy_shop(shop, tmp_path / "shop")
    export_policy(data, "rules", name, tracking_uri=uri, epsilon=0.05)
    before = dict(client.get_model_version(name, "1").tags)
    # Tampered after export: conversions worth twice as much.
    messages = pd.read_parquet(data / "messages.parquet")
    messages.assign(revenue=messages["revenue"] * 2).to_parquet(data / "messages.parquet", index=False)
    for argv in (["promote", name], ["promote", name, "--data", str(data)]):
        code, out = run(*argv, "--tracking-uri", uri)
        assert code == 1, out
        assert len(out.strip().splitlines()) == 1, out
        assert "the gate judges a version on the data it was exported with" in out and "--allow-other-data" in out
    assert aliases(client, name) == {"challenger": "1"}
    assert dict(client.get_model_version(name, "1").tags) == before  # nothing judged, nothing tagged
    with pytest.raises(ValueError, match="--allow-other-data"):
        promote(name, tracking_uri=uri, data_dir=data)

    res = promote(name, tracking_uri=uri, data_dir=data, allow_other_data=True)
    assert "other data than at export, allowed" in res["message"]
    tags = client.get_model_version(name, "1").tags
    assert tags["cadence.gate_data_matches_export"] == "false (allowed: --allow-other-data)"
    assert tags["cadence.gate_data_sha256"] == fingerprint(data, list(TABLES)) != tags["cadence.data_sha256"]


def test_unsupported_estimate_blocks_export_unless_forced(shop: Path, uri: str, client: mlflow.MlflowClient,
                                                          tmp_path: Path) -> None:
    """A log whose policy never explored (every propensity 1) cannot support another policy's estimate."""
    name = "unsupported"
    data = copy_shop(shop, tmp_path / "shop")
    messages = pd.read_parquet(data / "messages.parquet")
    messages.assign(propensity=np.ones(len(messages))).to_parquet(data / "messages.parquet", index=False)
    code, out = run("export", str(data), "--policy", "rules", "--model-name", name, "--tracking-uri", uri)
    assert code == 1, out
    assert "the log does not support its estimate (unsupported:" in out and "--force" in out, out
    assert client.search_model_versions(f"name = '{name}'") == []

    code, out = run("export", str(data), "--policy", "rules", "--model-name", name, "--force", "--tracking-uri", uri)
    assert code == 0, out
    assert "registered with --force although unsupported:" in out
    tags = client.get_model_version(name, "1").tags
    assert tags["cadence.estimate_supported"] == "false" and tags["cadence.forced"] == "true"
    assert tags["cadence.estimate_warning"].startswith("unsupported:")
    # The gate does not promote on an estimate the log cannot support.
    res = promote(name, tracking_uri=uri)
    assert not res["promoted"] and "refused: the log does not support the candidate's estimate" in res["message"]
    assert client.get_model_version(name, "1").tags["cadence.gate_supported"] == "false"
    assert "champion" not in aliases(client, name)
