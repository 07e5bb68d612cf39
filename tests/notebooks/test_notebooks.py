"""Every notebook runs top to bottom on a small shop, and is committed without outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import papermill as pm
import pytest

from cadence.synthetic import ShopConfig, generate_shop

ROOT = Path(__file__).resolve().parents[2]
SERIES = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
#: The series and the report notebooks shipped in the package.
ALL = sorted([*(ROOT / "notebooks").rglob("*.ipynb"), *(ROOT / "src").rglob("*.ipynb")])


@pytest.fixture(scope="module")
def small_shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Like the demo shop, its logging policy randomises follow-ups (notebook 8.0 judges a sequence).
    return generate_shop(ShopConfig(customers=1_000, days=120, seed=8, logging_followup=0.5),
                         tmp_path_factory.mktemp("nb") / "shop")


def test_the_series_exists() -> None:
    assert SERIES, "no numbered notebooks in notebooks/"


@pytest.mark.parametrize("notebook", SERIES, ids=[p.name for p in SERIES])
def test_notebook_runs_top_to_bottom(notebook: Path, small_shop: Path, tmp_path: Path) -> None:
    out = tmp_path / notebook.name
    params = {"data_dir": str(small_shop)}
    if "out_dir" in notebook.read_text():
        params["out_dir"] = str(tmp_path / "out")
    pm.execute_notebook(str(notebook), str(out), parameters=params,
                        progress_bar=False, kernel_name="python3", cwd=str(ROOT))
    executed = nbformat.read(out, as_version=4)
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors


@pytest.mark.parametrize("notebook", ALL, ids=[str(p.relative_to(ROOT)) for p in ALL])
def test_committed_without_outputs(notebook: Path) -> None:
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None, f"{notebook.name}: strip outputs"
    params = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, f"{notebook.name}: needs exactly one 'parameters' cell for papermill"
