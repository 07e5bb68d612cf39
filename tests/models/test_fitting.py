"""fit_model and tune_churn: the paper through the entry point, holdouts, MLflow without PII."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from cadence.synthetic import ShopConfig, generate_shop
from cadence.workflows.fitting import fit_model, tune_churn
from cadence.workflows.tracking import artifact_location, tracking_uri

CDNOW = "data/external/cdnow/sample"


@pytest.fixture()
def uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/mlflow.db"


@pytest.fixture(scope="module")
def cdnow(pytestconfig: pytest.Config) -> Path:
    return pytestconfig.rootpath / CDNOW


def test_btyd_reproduces_the_paper_through_fit_model(cdnow: Path, uri: str) -> None:
    m = fit_model("btyd", cdnow, "1997-10-01", tracking_uri=uri)
    published = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426, "p": 6.25, "q": 3.74, "gamma": 15.44}
    for name, value in published.items():
        assert m[name] == pytest.approx(value, rel=0.005), name
    assert m["n_customers"] == 2357
    # The default holdout runs to the day after the last order (1998-06-30): 39 weeks.
    assert m["holdout_actual_total"] == 1882
    assert 0.8 < m["holdout_predicted_total"] / m["holdout_actual_total"] < 1.0


def test_churn_holdout_side_by_side_with_bgnbd(cdnow: Path, uri: str) -> None:
    m = fit_model("churn", cdnow, "1997-10-01", holdout_until="1998-07-01", tracking_uri=uri)
    print(
        "\nCDNOW 39-week holdout, repeat purchases per customer:"
        f"\n  survival ({m['run_id'][:6]}): MAE {m['survival_holdout_mae']:.3f}, "
        f"total {m['survival_holdout_predicted_total']:.0f}"
        f"\n  BG/NBD:   MAE {m['bgnbd_holdout_mae']:.3f}, total {m['bgnbd_holdout_predicted_total']:.0f}"
        f"\n  actual total {m['survival_holdout_actual_total']:.0f}"
        f"\n  concordance {m['concordance']:.3f}, IBS {m['integrated_brier']:.4f}, "
        + ", ".join(f"ECE {h}d survival {m[f'churn_ece_{h}d']:.4f} / BG/NBD {m[f'bgnbd_churn_ece_{h}d']:.4f}"
                    for h in (30, 60, 90))
    )
    assert m["bgnbd_holdout_actual_total"] == m["survival_holdout_actual_total"] == 1882
    assert m["bgnbd_holdout_mae"] < 1.0
    # Ranking and churn-risk calibration of the survival model on the observed holdout.
    assert m["concordance"] > 0.7
    assert m["integrated_brier"] < 0.15
    for h in (30, 60, 90):
        assert m[f"churn_ece_{h}d"] < 0.05


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_shop(ShopConfig(customers=800, days=240, seed=11), tmp_path_factory.mktemp("s") / "shop")


def _logged_text(uri: str) -> tuple[list[str], list[str]]:
    """All params and tags (as 'key=value'), and every artifact's text, of every run."""
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    values, artifacts = [], []
    for run in mlflow.search_runs(search_all_experiments=True, output_format="list"):
        data = client.get_run(run.info.run_id).data
        values += [f"{k}={v}" for k, v in {**data.params, **data.tags}.items()]
        stack = [""]
        while stack:
            for item in client.list_artifacts(run.info.run_id, stack.pop() or None):
                if item.is_dir:
                    stack.append(item.path)
                else:
                    local = client.download_artifacts(run.info.run_id, item.path)
                    artifacts.append(Path(local).read_text(errors="replace"))
    return values, artifacts


def test_mlflow_logs_figures_and_no_pii(shop: Path, uri: str) -> None:
    import mlflow

    as_of = "2025-06-15"
    churn = fit_model("churn", shop, as_of, tracking_uri=uri, family="weibull")
    rep = fit_model("repurchase", shop, as_of, tracking_uri=uri)
    assert churn["data_sha256"] != rep["data_sha256"]  # different tables read
    assert rep["n_products"] > 0
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(search_all_experiments=True)
    assert len(runs) == 2
    assert artifact_location(uri) in runs["artifact_uri"].iloc[0]
    values, artifacts = _logged_text(uri)
    figures = [a for a in artifacts if a.lstrip().lower().startswith("<!doctype html")]
    assert len(figures) == 4
    for html in figures:  # plotly.js embedded, not fetched from a CDN
        assert 'src="https://cdn.plot.ly' not in html and len(html) > 1_000_000
    customers = pd.read_parquet(shop / "customers.parquet")
    pii = set(customers["customer_id"]) | set(customers["email"].dropna()) | set(customers["name"].dropna())
    pii |= {str(d) for d in customers["birth_date"].dropna()}
    blob = "\n".join(values + artifacts)
    leaked = sorted(s for s in pii if s in blob)
    assert not leaked, leaked[:5]
    assert any(v.startswith("cadence.data_sha256=") for v in values)


def test_tune_churn_runs_nested_trials(shop: Path, uri: str) -> None:
    import mlflow

    best = tune_churn(shop, "2025-06-15", n_trials=3, validation_days=45, tracking_uri=uri)
    assert set(best["best_params"]) == {"family", "penalizer", "feature_set"}
    assert 0 < best["best_integrated_brier"] < 0.25
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(search_all_experiments=True)
    children = runs[runs["tags.mlflow.parentRunId"] == best["run_id"]]
    assert len(children) == 3
    assert children["metrics.val_integrated_brier"].min() == pytest.approx(best["best_integrated_brier"])


def test_tracking_uri_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert tracking_uri(environ={}) == f"sqlite:///{tmp_path.as_posix()}/mlflow.db"
    assert artifact_location(tracking_uri(environ={})) == (tmp_path / "mlruns").as_uri()
    assert tracking_uri(environ={"MLFLOW_TRACKING_URI": "http://x:5000"}) == "http://x:5000"
    assert tracking_uri("sqlite:///a.db", environ={"MLFLOW_TRACKING_URI": "http://x"}) == "sqlite:///a.db"
    assert artifact_location("http://x:5000") is None


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"kind": "uplift"}, ValueError, "kind must be"),
        ({"kind": "btyd", "family": "cox"}, TypeError, "unexpected options"),
        ({"kind": "btyd", "holdout_until": "1997-09-01"}, ValueError, "must be after as_of"),
    ],
)
def test_fit_model_bad_inputs(cdnow: Path, uri: str, kwargs: dict, error: type, message: str) -> None:
    kind = kwargs.pop("kind")
    with pytest.raises(error, match=message):
        fit_model(kind, cdnow, "1997-10-01", tracking_uri=uri, **kwargs)
