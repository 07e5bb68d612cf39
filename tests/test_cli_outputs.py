"""`--out` at the command line: refused where data could be lost, one line, exit 2, nothing written or deleted."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner, Result

from cadence.cli import app
from cadence.data.io import OUTPUT_MARKER, output_marker

runner = CliRunner()
AS_OF = "2025-01-20"


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) and its bytes: what must stay untouched."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def generate(out: Path | str, *extra: str, seed: int = 1) -> Result:
    return runner.invoke(app, ["generate", "--customers", "50", "--days", "30", "--seed", str(seed),
                               "--quiet", "--out", str(out), *extra])


def assert_refused(result: Result, command: str, reason: str) -> None:
    """Exit 2 with exactly one line naming the command, the path and the reason; no traceback."""
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith(f"{command}: output folder ") and reason in lines[0], lines[0]
    assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def shop_bytes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """A tiny generated shop, once per module, as bytes (each test lays it out afresh)."""
    out = tmp_path_factory.mktemp("gen") / "shop"
    result = generate(out)
    assert result.exit_code == 0, result.output
    return snapshot(out)


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shop_bytes: dict[str, bytes]) -> Path:
    """The current folder: a shop at data/shop, a foreign folder notes/ and a loose file."""
    for name, data in shop_bytes.items():
        path = tmp_path / "data" / "shop" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "thesis.txt").write_text("three years of work")
    (tmp_path / "notes" / "figures").mkdir()
    (tmp_path / "notes" / "figures" / "f1.csv").write_text("a,b\n1,2\n")
    (tmp_path / "todo.txt").write_text("buy milk")
    monkeypatch.chdir(tmp_path)
    return tmp_path


REFUSED = [
    (["generate", "."], "is the current folder"),
    (["generate", "..", "--overwrite"], "contains the current folder"),
    (["generate", "notes"], "is not empty and not a cadence output (no .cadence-output marker); pass --overwrite"),
    (["generate", "todo.txt", "--overwrite"], "exists and is a file"),
    (["features", "."], "is the current folder"),
    (["features", "data/shop"], "is the input folder 'data/shop'"),
    (["features", "data/shop", "--overwrite"], "is the input folder 'data/shop'"),
    (["features", "data"], "contains the input folder 'data/shop'"),
    (["features", "data", "--overwrite"], "contains the input folder 'data/shop'"),
    (["features", "data/shop/_truth", "--overwrite"], "is inside the input folder 'data/shop'"),
    (["features", "notes"], "is not empty and not a cadence output"),
    (["demo", "."], "is the current folder"),
    (["demo", "notes"], "is not empty and not a cadence output"),
]


def _argv(command: str, out: str, extra: list[str]) -> list[str]:
    if command == "generate":
        return ["generate", "--customers", "50", "--days", "30", "--quiet", "--out", out, *extra]
    if command == "features":
        return ["features", "data/shop", "--as-of", AS_OF, "--quiet", "--out", out, *extra]
    return ["demo", "--customers", "50", "--days", "30", "--out", out, *extra]


@pytest.mark.parametrize(("args", "reason"), REFUSED, ids=[" ".join(a) for a, _ in REFUSED])
def test_out_is_refused_before_any_work_and_nothing_changes(work: Path, args: list[str], reason: str) -> None:
    before = snapshot(work)
    command, out, *extra = args
    result = runner.invoke(app, _argv(command, out, extra))
    assert_refused(result, command, reason)
    assert snapshot(work) == before
    assert sorted(p.name for p in work.iterdir()) == ["data", "notes", "todo.txt"]  # no temporaries either


def test_demo_refuses_a_foreign_features_folder_before_generating(work: Path) -> None:
    (work / "data" / "processed" / "demo-features").mkdir(parents=True)
    (work / "data" / "processed" / "demo-features" / "mine.parquet").write_bytes(b"not yours")
    before = snapshot(work)
    result = runner.invoke(app, _argv("demo", "data/raw/demo-shop", []))
    assert_refused(result, "demo", "is not empty and not a cadence output")
    assert "'data/processed/demo-features'" in result.output
    assert snapshot(work) == before and not (work / "data" / "raw").exists()


def test_overwrite_replaces_a_foreign_folder_and_nothing_else(work: Path) -> None:
    others = {k: v for k, v in snapshot(work).items() if not k.startswith("notes")}
    result = generate("notes", "--overwrite")
    assert result.exit_code == 0, result.output
    assert not (work / "notes" / "thesis.txt").exists() and not (work / "notes" / "figures").exists()
    assert output_marker(work / "notes") is not None
    assert (work / "notes" / "orders.parquet").is_file()
    assert {k: v for k, v in snapshot(work).items() if not k.startswith("notes")} == others
    assert sorted(p.name for p in work.iterdir()) == ["data", "notes", "todo.txt"]


def test_own_previous_output_is_replaced_and_a_second_run_works(work: Path) -> None:
    shop = work / "data" / "shop"
    inputs = snapshot(shop)
    for seed in (2, 3):
        result = generate("fresh", seed=seed)
        assert result.exit_code == 0, result.output
        assert '"seed": ' + str(seed) in (work / "fresh" / "_truth" / "shop.json").read_text()
    out = work / "feats"
    for as_of in ("2025-01-15", AS_OF):
        result = runner.invoke(app, ["features", str(shop), "--as-of", as_of, "--quiet", "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert sorted(p.name for p in out.iterdir()) == [OUTPUT_MARKER, "customer_features.parquet",
                                                         "trigger_candidates.parquet"]
        cands = pd.read_parquet(out / "trigger_candidates.parquet")
        assert (cands["eligible_at"] < pd.Timestamp(as_of, tz="UTC")).all()
    assert snapshot(shop) == inputs
    assert sorted(p.name for p in work.iterdir()) == ["data", "feats", "fresh", "notes", "todo.txt"]


def test_an_empty_folder_is_fine(work: Path) -> None:
    (work / "empty").mkdir()
    result = generate("empty")
    assert result.exit_code == 0, result.output
    assert output_marker(work / "empty") is not None


def test_a_copy_of_a_generated_shop_can_be_regenerated(work: Path) -> None:
    """A marked folder is ours wherever it was copied: the marker travels with it."""
    shutil.copytree(work / "data" / "shop", work / "copy")
    result = generate("copy", seed=4)
    assert result.exit_code == 0, result.output
    assert '"seed": 4' in (work / "copy" / "_truth" / "shop.json").read_text()
