"""``cadence evaluate``, ``tune`` and ``simulate`` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cadence.cli import app
from cadence.synthetic import ShopConfig, generate_shop

runner = CliRunner()


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_shop(ShopConfig(customers=2000, days=120, seed=3), tmp_path_factory.mktemp("cli") / "shop")


@pytest.fixture()
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return tmp_path


def test_evaluate_table_and_json(shop: Path, workdir: Path) -> None:
    # Few refits of the direct method's model keep this fast; the table shows DR.
    r = runner.invoke(app, ["evaluate", str(shop), "--policy", "rules", "--policy", "learned", "--refits", "2"])
    assert r.exit_code == 0, r.output
    assert "lift vs logging" in r.output and "learned policies fitted on" in r.output
    r = runner.invoke(app, ["evaluate", str(shop), "--policy", "rules", "--json", "--refits", "2"])
    out = json.loads(r.output)
    assert out["rows_fitted"] == 0
    est = {(e["metric"], e["policy"], e["estimator"]): e for e in out["estimates"]}
    assert ("net_revenue", "rules", "DR") in est and ("open", "logging", "IPS") in est
    assert est[("net_revenue", "rules", "DM")]["interval"] == "refit-bootstrap"


def test_evaluate_unknown_policy_is_one_clear_message(shop: Path, workdir: Path) -> None:
    r = runner.invoke(app, ["evaluate", str(shop), "--policy", "nope"])
    assert r.exit_code == 1
    assert "unknown policy 'nope': built in are logging, rules, learned" in r.output
    assert "Traceback" not in r.output


def test_tune_saves_a_policy_that_evaluate_finds(shop: Path, workdir: Path) -> None:
    r = runner.invoke(app, ["tune", str(shop), "--family", "rules", "--trials", "3", "--name", "my-rules", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output.strip().splitlines()[-1])
    assert res["trials"] == 3 and (workdir / "data/processed/policies/my-rules.json").is_file()
    assert res["lower"] <= res["best_dr_net_revenue"] <= res["upper"]
    r = runner.invoke(app, ["evaluate", str(shop), "--policy", "my-rules", "--json", "--refits", "0"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["tune", str(shop), "--family", "magic"])
    assert r.exit_code == 1 and "family: 'magic' is not one of" in r.output
    r = runner.invoke(app, ["tune", str(shop), "--family", "rules", "--trials", "2", "--max-weekly", "0.01"])
    assert r.exit_code == 1 and "no trial met the constraint" in r.output


def test_simulate_prints_the_before_after_table(shop: Path, workdir: Path) -> None:
    r = runner.invoke(app, ["simulate", str(shop), "--policy", "rules", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output.strip().splitlines()[-1])
    assert [row["metric"] for row in out["table"]] == ["open rate", "click rate", "conversion rate",
                                                       "revenue per customer", "messages per customer"]
    assert out["meta"]["orchestrator"]["max_per_7d"] == 3
    r = runner.invoke(app, ["simulate", str(shop), "--policy", "rules", "--fatigue-matched"])
    assert r.exit_code == 0, r.output
    assert "(doubly-robust, fatigue-matched; 95% intervals)" in r.output and "revenue per customer" in r.output
    r = runner.invoke(app, ["simulate", str(shop), "--policy", "logging"])
    assert r.exit_code == 1 and "replay another policy" in r.output
