"""`cadence demo` end to end on a small shop: every stage runs and the report is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from cadence.demo import run_demo


def test_demo_runs_every_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # from a folder outside the repository: report notebooks ship with the package
    lines: list[str] = []
    summary = run_demo(tmp_path / "shop", customers=800, days=90, seed=5, reports_dir=tmp_path / "reports",
                       features_dir=tmp_path / "features", tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
                       echo=lines.append)
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
    # The churn stage: fitted before the last 30 days (a third of 90), its table printed, its run logged.
    assert "churn" in summary.seconds and (tmp_path / "mlflow.db").is_file()
    assert summary.churn is not None and summary.churn["model"].tolist() == ["survival", "BG/NBD"]
    start = next(i for i, line in enumerate(lines) if line.startswith("[5/10] fitting the churn model"))
    assert "evaluating both on the last 30 days" in lines[start]
    table = lines[start + 2].splitlines()
    print("\n".join(lines[start:start + 3]))
    assert table[0].split() == ["model", "concordance", "integrated", "Brier", "ECE", "30d", "ECE", "60d",
                                "ECE", "90d", "holdout", "MAE"]
    assert [row.split()[0] for row in table[1:]] == ["survival", "BG/NBD"]
    assert table[1].split()[1:4] != ["-", "-", "-"]  # concordance, Brier and 30-day ECE computed
    steps = [f"[{i}/10]" for i in range(1, 11)]
    steps.insert(6, "[6b/10]")  # the recommenders
    assert [line.split(" ")[0] for line in lines if line.startswith("[")] == steps
    # The recommender step: per stage with intervals, and off-policy (the demo shop randomises its items).
    recs = summary.recommenders
    assert recs is not None and {"recently_viewed", "popularity"} < set(recs.ranking["recommender"])
    assert recs.offline is not None and (recs.offline["lower"] <= recs.offline["upper"]).all()
    # The export fills items with the recommender; the demo shows them for the latest triggers.
    assert "chosen per stage by" in summary.export["items"]
    assert any(line.startswith("The served model fills each send's items by stage") for line in lines)
    # The send-time stage: rules with and without learned send times, with intervals.
    st = summary.send_time
    assert st is not None and {"rules", "rules + send time", "logging"} == set(st["policy"])
    assert st["value"].str.contains(r"\[").all()
    # The sequence stage: both steps' lifts with intervals; the export stage: a champion to load.
    assert summary.sequence is not None and len(summary.sequence) == 2
    assert (summary.sequence["conversion_lower"] <= summary.sequence["conversion_upper"]).all()
    assert summary.export is not None and summary.export["promoted"] and summary.export["version"] == "1"
    assert any("mlflow.pyfunc.load_model('models:/cadence-demo@champion')" in line for line in lines)
    # Exported with the policy: the sequences and the send-time settings (shop level, no customer).
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri, uri)
    run_id = client.get_model_version("cadence-demo", "1").run_id
    assert {"sequences.json", "send_time.json"} <= {a.path for a in client.list_artifacts(run_id)}
