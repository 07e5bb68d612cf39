"""`cadence features --scores` and `write_scores`: the scores file is written with the features, whole or not at all."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cadence.cli import app
from cadence.data.io import OUTPUT_MARKER, OutputError, read_tables
from cadence.models.scores import SCORE_TABLE_COLUMNS
from cadence.synthetic import ShopConfig, generate_shop
from cadence.workflows.scores import SCORES_FILE, write_scores

runner = CliRunner()
AS_OF = "2025-03-20"  # the shop below runs 2025-01-01 .. 2025-03-31


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_shop(ShopConfig(customers=600, days=90, seed=2), tmp_path_factory.mktemp("cli") / "shop")


def features(shop: Path, out: Path, *extra: str, as_of: str = AS_OF) -> tuple[int, str]:
    result = runner.invoke(app, ["features", str(shop), "--as-of", as_of, "--out", str(out), "--quiet", *extra])
    return result.exit_code, result.output


def test_scores_are_written_with_the_features(shop: Path, tmp_path: Path) -> None:
    code, output = features(shop, tmp_path / "f", "--scores")
    assert code == 0, output
    names = sorted(p.name for p in (tmp_path / "f").iterdir())
    assert names == sorted([OUTPUT_MARKER, "customer_features.parquet", "trigger_candidates.parquet", SCORES_FILE])
    scores = pd.read_parquet(tmp_path / "f" / SCORES_FILE)
    assert list(scores.columns) == list(SCORE_TABLE_COLUMNS)
    orders = read_tables(shop, ["orders"])["orders"]
    cut = pd.Timestamp(AS_OF, tz="UTC")
    assert scores["customer_id"].tolist() == sorted(orders.loc[orders["ts"] < cut, "customer_id"].unique())
    assert (scores["scored_at"] == cut).all()
    assert f"customer_scores: {len(scores):,} rows" in output
    # Same data, same bytes.
    code, output = features(shop, tmp_path / "g", "--scores")
    assert code == 0, output
    assert (tmp_path / "g" / SCORES_FILE).read_bytes() == (tmp_path / "f" / SCORES_FILE).read_bytes()


def test_without_the_flag_no_scores_are_written(shop: Path, tmp_path: Path) -> None:
    code, output = features(shop, tmp_path / "f")
    assert code == 0, output
    assert not (tmp_path / "f" / SCORES_FILE).exists() and "customer_scores" not in output


def test_a_failing_score_step_leaves_the_old_output_whole(shop: Path, tmp_path: Path) -> None:
    code, output = features(shop, tmp_path / "f")
    assert code == 0, output
    before = files(tmp_path / "f")
    # Between the shop's first event (03:30:51) and first order (03:33:11): the features can be computed,
    # the scores cannot; nothing is swapped in.
    code, output = features(shop, tmp_path / "f", "--scores", as_of="2025-01-01 03:32")
    assert code == 1
    lines = output.strip().splitlines()
    assert lines == ["features: orders: no order before as_of=2025-01-01 03:32:00+00:00: nothing to fit the "
                     "customer scores on"], output
    assert files(tmp_path / "f") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]  # no temporary left behind


def test_a_missing_order_items_table_is_a_warning_and_empty_column(shop: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for p in shop.glob("*.parquet"):
        if p.name != "order_items.parquet":
            (data / p.name).write_bytes(p.read_bytes())
    code, output = features(data, tmp_path / "f", "--scores")
    assert code == 0, output
    assert "features: warning: scores: the repurchase model was not fitted (order_items: missing table" in output
    assert pd.read_parquet(tmp_path / "f" / SCORES_FILE)["repurchase_due_days"].isna().all()


def test_write_scores_adds_the_file_next_to_the_features(shop: Path, tmp_path: Path) -> None:
    code, output = features(shop, tmp_path / "f")
    assert code == 0, output
    before = files(tmp_path / "f")
    run = write_scores(shop, AS_OF, tmp_path / "f")
    after = files(tmp_path / "f")
    assert run.path == tmp_path / "f" / SCORES_FILE and set(after) == set(before) | {SCORES_FILE}
    assert all(after[k] == v for k, v in before.items())
    assert run.rows == len(pd.read_parquet(run.path)) and run.failures == {}
    # A new folder is created with the marker; a foreign non-empty one is refused, untouched.
    assert OUTPUT_MARKER in files(write_scores(shop, AS_OF, tmp_path / "new").path.parent)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "thesis.txt").write_text("three years of work")
    with pytest.raises(OutputError, match="not a cadence output"):
        write_scores(shop, AS_OF, tmp_path / "notes")
    assert files(tmp_path / "notes") == {"thesis.txt": b"three years of work"}
