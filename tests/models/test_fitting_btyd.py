"""``cadence fit btyd`` on the CDNOW master file: every model, holdout, warnings, no ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cadence.cli import app

MASTER = Path("data/external/cdnow/master")


@pytest.mark.slow
def test_fit_btyd_on_the_master_file_reports_every_model(pytestconfig: pytest.Config, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    data = pytestconfig.rootpath / MASTER
    result = CliRunner().invoke(app, ["fit", "btyd", str(data), "--as-of", "1997-10-01", "--json", "--tracking-uri", uri])
    assert result.exit_code == 0, result.output
    m = json.loads(result.stdout)
    assert m["failed_models"] == {}
    for prefix, names in {"bgnbd": "r alpha a b", "pareto_nbd": "r alpha s beta", "mbgnbd": "r alpha a b",
                          "gamma_gamma": "p q v"}.items():
        for name in names.split():
            est, lo, hi = (m[f"{prefix}_{name}{s}"] for s in ("", "_lower_95", "_upper_95"))
            assert lo < est < hi, (prefix, name)
        assert m[f"{prefix}_converged"] == 1.0
    # The holdout 1997-10-01 .. 1998-06-30 of the 23,570 customers.
    assert m["n_customers"] == 23570
    for prefix in ("bgnbd", "pareto_nbd", "mbgnbd"):
        assert m[f"{prefix}_holdout_actual_total"] == m["holdout_actual_total"]
        # Each model under-forecasts CDNOW's holdout by 10-25 %.
        assert 0.75 < m[f"{prefix}_holdout_predicted_total"] / m["holdout_actual_total"] < 0.9, prefix
    # The one repeat buyer whose repeat spend averages 0 is set aside, and said so, by count.
    assert m["gamma_gamma_n_set_aside"] == 1
    assert any("set aside 1 of 9451 repeat buyers" in w for w in m["warnings"])
    assert m["clv_52w_total_lower_95"] < m["clv_52w_total"] < m["clv_52w_total_upper_95"]
    # No customer id (five-digit master ids) in the output.
    text = result.stdout
    assert "customer_id" not in text and not any(f'"{i:05d}"' in text for i in range(1, 100))
