"""``cadence evaluate --recommenders`` and ``cadence export --recommender/--items``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cadence.cli import app
from cadence.workflows.recommendations import DEFAULT_RECOMMENDER

runner = CliRunner()


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli-recs") / "shop"
    result = runner.invoke(app, ["generate", "--customers", "500", "--days", "120", "--seed", "3", "--out", str(out),
                                 "--quiet"])
    assert result.exit_code == 0, result.output
    return out


def test_evaluate_compares_recommenders(shop: Path) -> None:
    result = runner.invoke(app, ["evaluate", str(shop), "--policy", "rules", "--refits", "0", "--recommenders",
                                 "--json"])
    assert result.exit_code == 0, result.output
    recs = json.loads(result.output.strip().splitlines()[-1])["recommenders"]
    ranking = recs["ranking"]
    assert {r["recommender"] for r in ranking} == {"recently_viewed", "popularity", DEFAULT_RECOMMENDER}
    assert all(r["lower"] <= r["value"] <= r["upper"] for r in ranking)
    assert recs["offline"] is None and "item_candidates" in recs["offline_note"]  # this shop has no tastes
    assert recs["as_of"] < recs["until"]
    table = runner.invoke(app, ["evaluate", str(shop), "--policy", "rules", "--refits", "0", "--recommenders"])
    assert table.exit_code == 0 and "ndcg@10" in table.output and "Off-policy value of item rules" in table.output


def test_export_refuses_an_unknown_recommender(shop: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", str(shop), "--policy", "rules", "--model-name", "x", "--tracking-uri",
                                 f"sqlite:///{tmp_path}/mlflow.db", "--recommender", "magic"])
    assert result.exit_code == 2
    assert "--recommender: expected default, none or one of popularity" in result.output
