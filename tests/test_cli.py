"""The command line: every command runs, bad input gets one clear message and writes nothing."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cadence.cli import app, parse_value

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "shop"
    result = runner.invoke(app, ["generate", "--customers", "400", "--days", "90", "--seed", "2", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return out


def _copy_tables(shop: Path, dest: Path) -> Path:
    """The shop's contract tables (not its truth) in a scratch folder, to spoil."""
    dest.mkdir()
    for p in shop.glob("*.parquet"):
        (dest / p.name).write_bytes(p.read_bytes())
    return dest


def test_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("generate", "validate", "features", "report", "fit", "demo"):
        assert command in result.output


def test_generate_and_validate(shop: Path) -> None:
    assert (shop / "_truth" / "shop.json").is_file()
    result = runner.invoke(app, ["validate", str(shop)])
    assert result.exit_code == 0 and "no problems found" in result.output


def test_validate_reports_problems_with_exit_1(shop: Path, tmp_path: Path) -> None:
    bad = _copy_tables(shop, tmp_path / "bad")
    orders = pd.read_parquet(bad / "orders.parquet")
    orders.loc[:1, "revenue"] = -5.0
    orders.to_parquet(bad / "orders.parquet")
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 1
    assert "orders.revenue: value out of range, must be >= 0 (2 rows)" in result.output
    assert "Traceback" not in result.output


def test_generate_refuses_nonsense(tmp_path: Path) -> None:
    result = runner.invoke(app, ["generate", "--customers", "0", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert not (tmp_path / "x").exists()


def test_features_writes_both_tables(shop: Path, tmp_path: Path) -> None:
    out = tmp_path / "features"
    result = runner.invoke(app, ["features", str(shop), "--as-of", "2025-03-01", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [".cadence-output", "customer_features.parquet",
                                                     "trigger_candidates.parquet"]
    cands = pd.read_parquet(out / "trigger_candidates.parquet")
    assert (cands["eligible_at"] < pd.Timestamp("2025-03-01", tz="UTC")).all()


def test_features_stops_on_contract_violations_and_writes_nothing(shop: Path, tmp_path: Path) -> None:
    bad = _copy_tables(shop, tmp_path / "bad")
    ev = pd.read_parquet(bad / "events.parquet")
    ev["ts"] = ev["ts"].dt.tz_localize(None)
    ev.to_parquet(bad / "events.parquet")
    out = tmp_path / "features"
    result = runner.invoke(app, ["features", str(bad), "--as-of", "2025-03-01", "--out", str(out)])
    assert result.exit_code == 1
    assert "events.ts: timestamp without time zone" in result.output
    assert not out.exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--as-of", "not-a-date"], "--as-of 'not-a-date' is not a timestamp"),
    (["--as-of", "2025-03-01", "--engine", "polars"], "unknown engine 'polars'"),
])
def test_features_bad_arguments(shop: Path, tmp_path: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["features", str(shop), "--out", str(tmp_path / "f"), *args])
    assert result.exit_code == 2 and message in result.output


def test_report_parameters_and_unknown_report(tmp_path: Path) -> None:
    assert parse_value("60") == 60 and parse_value("null") is None and parse_value("a/b") == "a/b"
    result = runner.invoke(app, ["report", "nope", "-p", "data_dir", "x", "--out-dir", str(tmp_path)])
    assert result.exit_code == 1 and "no report 'nope'" in result.output
    result = runner.invoke(app, ["report", "summary", "-p", "data_dir"])
    assert result.exit_code == 2 and "expected -p KEY VALUE" in result.output


CDNOW = ROOT / "data/external/cdnow/sample"


def test_fit_btyd_reproduces_the_paper_as_json(tmp_path: Path) -> None:
    import json

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    result = runner.invoke(app, ["fit", "btyd", str(CDNOW), "--as-of", "1997-10-01", "--json", "--tracking-uri", uri])
    assert result.exit_code == 0, result.output
    assert len(result.stdout.strip().splitlines()) == 1  # one JSON object, nothing else on stdout
    m = json.loads(result.stdout)
    # Fader, Hardie & Lee (2005) and Fader & Hardie's Gamma-Gamma note, CDNOW 1/10 sample.
    published = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426, "p": 6.25, "q": 3.74, "gamma": 15.44}
    for name, value in published.items():
        assert m[name] == pytest.approx(value, rel=0.005), name
    assert len(m["run_id"]) == 32 and len(m["data_sha256"]) == 64
    assert (tmp_path / "mlflow.db").is_file()


def test_fit_prints_a_table_and_uses_the_environment_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/env.db")
    result = runner.invoke(app, ["fit", "btyd", str(CDNOW), "--as-of", "1997-10-01", "--until", "1998-01-01"])
    assert result.exit_code == 0, result.output
    assert "holdout_mae" in result.stdout and "MLflow run" in result.stdout
    assert (tmp_path / "env.db").is_file()


@pytest.mark.parametrize(("args", "code", "message"), [
    (["fit", "survival", str(CDNOW), "--as-of", "1997-10-01"], 2,
     "fit: unknown kind 'survival': choose one of churn, repurchase, btyd"),
    (["fit", "btyd", str(CDNOW), "--as-of", "not-a-date"], 2, "fit: --as-of 'not-a-date' is not a timestamp"),
    (["fit", "btyd", str(CDNOW), "--as-of", "1997-10-01", "--until", "soon"], 2,
     "fit: --until 'soon' is not a timestamp"),
    (["fit", "btyd", "no/such/dir", "--as-of", "1997-10-01"], 1,
     "fit: data directory 'no/such/dir' does not exist or is not a folder"),
    (["fit", "btyd", str(CDNOW), "--as-of", "1997-10-01", "--until", "1997-09-01"], 1, "must be after as_of"),
])
def test_fit_bad_arguments(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    result = runner.invoke(app, [*args, "--json", "--tracking-uri", uri])
    assert result.exit_code == code, result.output
    assert message in result.output and "Traceback" not in result.output
    assert result.stdout == ""  # no JSON for a failed fit
    assert not (tmp_path / "mlflow.db").exists()
