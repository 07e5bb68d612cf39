"""`cadence demo` end to end on a small shop: every stage runs and the report is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from cadence.demo import run_demo

ROOT = Path(__file__).resolve().parents[1]


def test_demo_runs_every_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # report notebooks are found relative to the project root
    lines: list[str] = []
    summary = run_demo(tmp_path / "shop", customers=800, days=90, seed=5, reports_dir=tmp_path / "reports",
                       features_dir=tmp_path / "features", echo=lines.append)
    assert summary.problems == []
    assert summary.rows["customers"] == 800 and summary.rows["features: customer_features"] > 0
    assert {"generate", "validate", "holdout", "features", "report"} <= set(summary.seconds)
    assert summary.report is not None and summary.report.is_file()
    assert lines[-1] == f"Summary report: {summary.report}"
    assert summary.holdout is not None and "all" in set(summary.holdout["stage"])
    assert not any("@example.com" in line for line in lines)
    assert {"policies", "replay"} <= set(summary.seconds)
    assert summary.policies is not None and {"rules", "learned", "logging"} == set(summary.policies["policy"])
    assert summary.replay is not None and summary.replay["metric"].tolist()[-1] == "messages per customer"
    assert any("replaying history under the learned policy" in line for line in lines)
