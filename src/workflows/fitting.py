"""Fit, evaluate on a later holdout, and log to MLflow: what ``cadence fit`` runs.

:func:`fit_model` reads a data directory, fits one model kind on the orders
before ``as_of``, evaluates it on ``[as_of, holdout_until)`` through
:func:`cadence.models.evaluation.time_split`, and logs parameters,
aggregate metrics, plotly figures (HTML with plotly.js embedded, no CDN), the
feature list and a SHA-256 fingerprint of the table files read. Nothing
per-customer is logged: no ids, emails, names or birth dates.

Examples
--------
>>> import tempfile
>>> uri = f"sqlite:///{tempfile.mkdtemp()}/mlflow.db"
>>> m = fit_model("btyd", "data/external/cdnow/sample", "1997-10-01", tracking_uri=uri)
>>> {k: round(m[k], 3) for k in ("r", "alpha", "a", "b")}
{'r': 0.243, 'alpha': 4.414, 'a': 0.793, 'b': 2.426}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from cadence.contract.clock import utc
from cadence.data.io import PathLike, fingerprint, read_tables
from cadence.features import purchases
from cadence.models import clv
from cadence.models import evaluation as ev
from cadence.models.btyd import BetaGeoModel
from cadence.models.repurchase import GAP_COLUMNS, RepurchaseInterval
from cadence.models.survival import DEFAULT_FEATURES, PARAMETRIC_FAMILIES, TimeToNextPurchase
from cadence.workflows.clv import btyd_inputs
from cadence.workflows.splits import holdout_cutoff
from cadence.workflows.tracking import experiment_id
from cadence.workflows.tracking import tracking_uri as resolve_uri

Kind = Literal["churn", "repurchase", "btyd"]
#: Churn-risk horizons (days) evaluated and logged.
HORIZONS: tuple[int, ...] = (30, 60, 90)
#: Named covariate sets for tuning.
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "full": DEFAULT_FEATURES,
    "no_recency": ("frequency", "purchase_tenure_days", "mean_gap_days", "monetary"),
    "rfm": ("frequency", "elapsed_days", "monetary"),
}




def training_cutoffs(orders: pd.DataFrame, as_of: pd.Timestamp, n: int = 6,
                     recent: float = 0.5) -> list[pd.Timestamp]:
    """``n`` cutoffs evenly spaced (whole days) over the most recent ``recent`` share of the history.

    The history runs from the first order to ``as_of``; cutoffs fall at
    ``as_of - k * step`` for ``k = n..1`` with ``step = recent * history / (n + 1)``.
    Recent cutoffs because a snapshot's covariates only mean at a cutoff what
    they mean at ``as_of`` once the history behind them is about as long:
    early in the data every customer looks new (measured on the synthetic
    shop, churn risk calibrates better with the last half than with the
    whole history).

    Examples
    --------
    >>> import pandas as pd
    >>> o = pd.DataFrame({"ts": pd.to_datetime(["2024-01-01", "2024-06-01"], utc=True)})
    >>> [str(c.date()) for c in training_cutoffs(o, pd.Timestamp("2024-07-10", tz="UTC"), n=3)]
    ['2024-05-02', '2024-05-25', '2024-06-17']
    """
    if n < 1 or not 0 < recent <= 1:
        raise ValueError(f"need n >= 1 and 0 < recent <= 1, got n={n}, recent={recent}")
    first = orders["ts"].min().floor("D")
    step = max(int((as_of - first).days * recent) // (n + 1), 1)
    return [as_of - pd.Timedelta(step * k, "D") for k in range(n, 0, -1)]


def _snapshots(con: Any, t: dict[str, Any], cutoffs: list[pd.Timestamp], until: pd.Timestamp) -> pd.DataFrame:
    """The feature layer's snapshots at ``cutoffs`` (stacked), followed up to ``until``."""
    return purchases.fetch_frame(con, purchases.stacked_snapshots(t, cutoffs, until), ["as_of", "customer_id"])


def _gaps(tables: dict[str, pd.DataFrame], as_of: pd.Timestamp) -> pd.DataFrame:
    """The feature layer's repurchase gaps before ``as_of``, in purchase order within each pair."""
    con, t = purchases.duckdb_tables(tables)
    gaps = purchases.fetch_frame(con, purchases.purchase_gaps(t, as_of), ["customer_id", "product_id", "day"])
    return gaps[list(GAP_COLUMNS)]


def _default_until(orders: pd.DataFrame, as_of: pd.Timestamp) -> pd.Timestamp | None:
    later = orders["ts"][orders["ts"] >= as_of]
    return None if later.empty else later.max().floor("D") + pd.Timedelta(1, "D")


# ---------------------------------------------------------------------------
# The three kinds
# ---------------------------------------------------------------------------


def _parameter_metrics(prefix: str, model: Any) -> dict[str, float]:
    """Estimate, standard error and 95 % interval of each parameter, plus the log-likelihood."""
    out: dict[str, float] = {}
    for name, row in model.summary_.iterrows():
        out[f"{prefix}_{name}"] = float(row["estimate"])
        out[f"{prefix}_{name}_se"] = float(row["std_error"])
        out[f"{prefix}_{name}_lower_95"] = float(row["lower_95"])
        out[f"{prefix}_{name}_upper_95"] = float(row["upper_95"])
    out[f"{prefix}_log_likelihood"] = float(model.log_likelihood_)
    out[f"{prefix}_converged"] = float(model.converged_)
    return out


def _fit_btyd(tables: dict[str, pd.DataFrame], as_of: pd.Timestamp, until: pd.Timestamp | None) -> tuple[
    dict[str, Any], dict[str, float], dict[str, go.Figure], list[str], dict[str, Any]
]:
    """Every BTYD model that fits, each reported on its own; one failing never loses the others."""
    inputs = btyd_inputs(tables["orders"], as_of, until)
    rfm, start, notes = inputs.rfm, inputs.start, list(inputs.notes)
    fit = clv.fit_btyd_models(rfm)
    notes.extend(fit.warnings)
    fitted, failed = fit.models, dict(fit.failures)
    metrics: dict[str, float] = {"n_customers": float(len(rfm))}
    for key, model in fitted.items():
        metrics.update(_parameter_metrics(key, model))
    # The names the paper uses, kept at the top level (BG/NBD and Gamma-Gamma).
    if "bgnbd" in fitted:
        metrics.update(fitted["bgnbd"].params_)
    if "gamma_gamma" in fitted:
        gg = fitted["gamma_gamma"]
        metrics.update({**gg.params_, "gamma": gg.params_["v"], "gamma_gamma_n_customers": float(gg.n_customers_),
                        "gamma_gamma_n_set_aside": float(gg.n_set_aside_)})
    params = {"time_unit": "W", "calibration_start": str(start.date()), "as_of": str(as_of),
              "models_fitted": ",".join(fitted), "models_failed": ",".join(failed) or "none"}
    figures: dict[str, go.Figure] = {}
    counts = fit.count_models
    if until is not None and inputs.holdout is not None and inputs.days is not None:
        weeks = (until - as_of) / pd.Timedelta(7, "D")
        actual = inputs.holdout
        for key, model in counts.items():
            metrics.update({f"{key}_holdout_{k}": v
                            for k, v in ev.count_metrics(model.predict(rfm, weeks), actual).items()})
        if "bgnbd" in counts:
            bg = counts["bgnbd"]
            metrics.update({f"holdout_{k}": v for k, v in ev.count_metrics(bg.predict(rfm, weeks), actual).items()})
            table = ev.calibration_table(ev.bgnbd_churn_risk(bg, rfm, weeks), (actual == 0).astype(float))
            metrics["holdout_churn_ece"] = ev.expected_calibration_error(table)
            figures["calibration"] = ev.calibration_figure({"BG/NBD": table})
        if counts:
            figures["tracking"] = clv.tracking_figure(
                {clv.BTYD_MODELS[k][0]: clv.tracking_table(m, inputs.days, start=start, as_of=as_of, until=until)
                 for k, m in counts.items()}, as_of)
            figures["conditional_expectations"] = clv.conditional_expectations_figure(
                {clv.BTYD_MODELS[k][0]: clv.conditional_expectations_table(m, rfm, actual, weeks) for k, m in counts.items()})
    if "bgnbd" in counts and "gamma_gamma" in fitted:
        try:
            value = clv.clv_interval(counts["bgnbd"], fitted["gamma_gamma"], rfm, horizon=52.0, discount_rate=0.01,
                                     period=52 / 12, n_draws=100, random_state=0)
            metrics.update({"clv_52w_total": value.attrs["total"], "clv_52w_total_lower_95": value.attrs["total_lower"],
                            "clv_52w_total_upper_95": value.attrs["total_upper"],
                            "clv_52w_mean": value.attrs["total"] / len(rfm)})
        except ValueError as e:  # a covariance that is not finite: no interval, say so
            failed["clv_interval"] = f"ValueError: {e}"
    extra = {"warnings": notes, "failed_models": failed}
    return params, metrics, figures, ["frequency", "recency", "T", "monetary_value"], extra


def _churn_model(train: pd.DataFrame, family: str, penalizer: float, features: list[str] | None,
                 random_state: int, max_samples: int | None = 200_000) -> TimeToNextPurchase:
    return TimeToNextPurchase(family=family, penalizer=penalizer,  # type: ignore[arg-type]
                              features=features, random_state=random_state,
                              max_samples=max_samples).fit(train, train)


def churn_metrics(model: TimeToNextPurchase, snap: pd.DataFrame) -> dict[str, float]:
    """Concordance, IBS and calibration of churn risk on a follow-up snapshot."""
    left = snap["duration_days"].to_numpy() - snap["elapsed_days"].to_numpy()  # days after the cutoff
    event = snap["event"].to_numpy()
    horizon = float(left.max())
    times = np.arange(1.0, np.floor(horizon) + 1.0)
    curves = model.predict_survival_function(snap, times, conditional_after=snap["elapsed_days"]).to_numpy()
    out = {
        "concordance": ev.concordance(left, event, 1 - model.churn_risk(snap, min(30.0, horizon))),
        "integrated_brier": ev.integrated_brier_score(curves, times, left, event),
    }
    for h in HORIZONS:
        if h <= horizon:
            quiet = ~((event == 1) & (left <= h))
            table = ev.calibration_table(model.churn_risk(snap, h), quiet.astype(float))
            out[f"churn_ece_{h}d"] = ev.expected_calibration_error(table)
    return out


def _fit_churn(tables: dict[str, pd.DataFrame], as_of: pd.Timestamp, until: pd.Timestamp | None, *,
               family: str = "auto", penalizer: float = 0.0, features: list[str] | None = None,
               random_state: int = 0, max_samples: int | None = 200_000,
               ) -> tuple[dict[str, Any], dict[str, float], dict[str, go.Figure], list[str]]:
    orders = tables["orders"]
    cutoffs = training_cutoffs(orders, as_of)
    # The orders are uploaded once; every snapshot below is a query on them.
    con, t = purchases.duckdb_tables({"orders": orders})
    train = _snapshots(con, t, cutoffs, until=as_of)
    model = _churn_model(train, family, penalizer, features, random_state, max_samples)
    params = {"family": family, "family_chosen": model.family_, "penalizer": penalizer, "max_samples": max_samples,
              "as_of": str(as_of), "training_cutoffs": ",".join(str(c.date()) for c in cutoffs),
              "n_training_rows": model.n_rows_}
    metrics: dict[str, float] = {"train_concordance": model.concordance_}
    metrics.update({f"cv_loglik_{k}": v for k, v in getattr(model, "cv_log_likelihood_", {}).items()})
    # Scoring rows: nothing at or after as_of exists yet, so every follow-up is censored at the horizon.
    past = {"orders": t["orders"].filter(t["orders"].ts < as_of)}
    now = purchases.fetch_frame(con, purchases.purchase_snapshots(past, as_of, horizon_days=max(HORIZONS)),
                                ["customer_id"])
    risks = {f"{h} days": model.churn_risk(now, h) for h in HORIZONS}
    figures: dict[str, go.Figure] = {"churn_risk_distribution": ev.risk_distribution_figure(risks)}
    seg = pd.cut(now["frequency"], [-1, 0, 2, 5, np.inf], labels=["1 purchase", "2-3", "4-6", "7+"])
    curves = model.predict_survival_function(now, np.arange(0.0, 366.0, 3.0))
    by_seg = curves.T.groupby(seg.to_numpy(), observed=True).mean().T
    figures["survival_by_segment"] = ev.survival_curves_figure(by_seg, "Survival by purchase count")
    if until is not None:
        snap = _snapshots(con, t, [as_of], until)
        metrics.update(churn_metrics(model, snap))
        # Counts side by side with BG/NBD on the same customers (days as the unit).
        h = int((until - as_of) / pd.Timedelta(1, "D"))
        held = purchases.fetch_frame(con, purchases.holdout_frequency(t, as_of, until), ["customer_id"])
        actual = held.set_index("customer_id")["holdout_frequency"].reindex(snap["customer_id"], fill_value=0).to_numpy()
        surv = model.expected_purchases(snap, h)
        rfm = purchases.fetch_frame(con, purchases.rfm_summary(t, as_of, time_unit="D"), ["customer_id"])
        rfm = rfm.set_index("customer_id").reindex(snap["customer_id"])
        bg = BetaGeoModel().fit(rfm)
        for name, pred in (("survival", surv), ("bgnbd", bg.predict(rfm, float(h)))):
            metrics.update({f"{name}_holdout_{k}": v for k, v in ev.count_metrics(pred, actual).items()})
        tabs = {}
        left = snap["duration_days"].to_numpy() - snap["elapsed_days"].to_numpy()
        # Ranking and survival curves of BG/NBD on the same clock as churn_metrics.
        times = np.arange(1.0, np.floor(left.max()) + 1.0)
        bg_curves = np.array([ev.bgnbd_churn_risk(bg, rfm, t) for t in times])
        metrics["bgnbd_concordance"] = ev.concordance(
            left, snap["event"].to_numpy(), 1 - ev.bgnbd_churn_risk(bg, rfm, min(30.0, float(left.max()))))
        metrics["bgnbd_integrated_brier"] = ev.integrated_brier_score(bg_curves, times, left, snap["event"].to_numpy())
        for hz in HORIZONS:
            if hz <= h:
                quiet = (~((snap["event"].to_numpy() == 1) & (left <= hz))).astype(float)
                bg_table = ev.calibration_table(ev.bgnbd_churn_risk(bg, rfm, hz), quiet)
                metrics[f"bgnbd_churn_ece_{hz}d"] = ev.expected_calibration_error(bg_table)
                tabs[f"survival {hz}d"] = ev.calibration_table(model.churn_risk(snap, hz), quiet)
                tabs[f"BG/NBD {hz}d"] = bg_table
        figures["calibration"] = ev.calibration_figure(tabs)
    return params, metrics, figures, list(model.features_)


def _fit_repurchase(tables: dict[str, pd.DataFrame], as_of: pd.Timestamp, until: pd.Timestamp | None) -> tuple[
    dict[str, Any], dict[str, float], dict[str, go.Figure], list[str]
]:
    if "order_items" not in tables:
        raise ValueError("the repurchase model needs order_items")
    gaps = _gaps(tables, as_of)
    if gaps.empty:
        raise ValueError(f"no repeat purchase of a product before {as_of}: nothing to fit")
    model = RepurchaseInterval().fit(gaps)
    params = {"min_history": model.min_history, "prior_strength": model.prior_strength, "as_of": str(as_of)}
    metrics: dict[str, float] = {
        "n_products": float(len(model.product_intervals_)),
        "n_pairs": float(len(model.customer_intervals_)),
        "median_product_interval_days": float(model.product_intervals_["interval_days"].median())
        if len(model.product_intervals_) else float("nan"),
        "sigma2": model.sigma2_, "tau2": model.tau2_, "kappa": model.kappa_,
    }
    fig = go.Figure(go.Histogram(x=model.product_intervals_["interval_days"], nbinsx=40))
    fig.update_layout(title="Repurchase interval per product", xaxis_title="days", yaxis_title="products")
    if until is not None:
        # The first gap that closes in the holdout for pairs bought before as_of.
        later = _gaps(tables, until)
        seen = set(map(tuple, gaps[["customer_id", "product_id"]].drop_duplicates().to_numpy()))
        keys = list(map(tuple, later[["customer_id", "product_id"]].to_numpy()))
        n_before = gaps.groupby(["customer_id", "product_id"]).size()
        rank = later.groupby(["customer_id", "product_id"]).cumcount().to_numpy()
        prior = np.array([n_before.get(k, 0) for k in keys])
        new = later[(rank == prior) & np.array([k in seen for k in keys], dtype=bool)]
        if len(new):
            pred = model.predict(new)
            metrics["holdout_pairs"] = float(len(new))
            metrics["holdout_mae_days"] = float(np.mean(np.abs(pred - new["gap_days"].to_numpy())))
            metrics["holdout_mae_log"] = float(np.mean(np.abs(np.log(pred / new["gap_days"].to_numpy()))))
    return params, metrics, {"interval_distribution": fig}, ["customer_id x product_id log gaps"]


# ---------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------


def _log(uri: str, experiment: str, kind: str, params: dict[str, Any], metrics: dict[str, float],
         figures: dict[str, go.Figure], features: list[str], digest: str, nested: bool = False) -> str:
    import mlflow

    mlflow.set_tracking_uri(uri)
    exp = experiment_id(experiment, uri)
    with mlflow.start_run(experiment_id=exp, run_name=f"fit-{kind}", nested=nested) as run:
        mlflow.set_tags({"cadence.kind": kind, "cadence.data_sha256": digest})
        mlflow.log_params({k: ("None" if v is None else v) for k, v in params.items()})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if np.isfinite(v)})
        mlflow.log_dict({"features": features}, "features.json")
        for name, fig in figures.items():
            mlflow.log_text(fig.to_html(include_plotlyjs=True, full_html=True), f"figures/{name}.html")
        return str(run.info.run_id)


def fit_model(
    kind: Kind,
    data_dir: PathLike,
    as_of: Any,
    *,
    holdout_until: Any = None,
    tracking_uri: str | None = None,
    experiment: str = "cadence",
    return_figures: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Fit ``kind`` on orders before ``as_of``, evaluate on the holdout, log to MLflow.

    Parameters
    ----------
    kind : {'churn', 'repurchase', 'btyd'}
        ``churn``: :class:`TimeToNextPurchase` on snapshots at three earlier
        cutoffs followed up to ``as_of``, compared with BG/NBD on the
        holdout. ``repurchase``: :class:`RepurchaseInterval`. ``btyd``:
        BG/NBD and Gamma-Gamma in weeks, calibration starting on the first
        order day (the CDNOW convention of Fader, Hardie & Lee 2005).
    data_dir : path
        A contract data directory (needs ``orders``; ``order_items`` for
        repurchase).
    as_of : timestamp-like
        End of the calibration period (exclusive).
    holdout_until : timestamp-like, optional
        End of the holdout (exclusive); by default the day after the last
        order. No holdout metrics when there is no order at or after as_of.
    tracking_uri : str, optional
        See :func:`cadence.workflows.tracking.tracking_uri`.
    experiment : str
        MLflow experiment name.
    return_figures : bool
        Also return the logged plotly figures under ``"figures"`` (for
        notebooks and reports).
    **options
        ``churn`` only: ``family``, ``penalizer``, ``features``, ``random_state``,
        ``max_samples`` (see :class:`TimeToNextPurchase`).

    Returns
    -------
    dict
        The logged metrics (``btyd``: ``r, alpha, a, b, p, q, v, gamma`` and
        holdout counts), plus ``run_id`` and ``data_sha256``.
    """
    if kind not in ("churn", "repurchase", "btyd"):
        raise ValueError(f"kind must be 'churn', 'repurchase' or 'btyd', got {kind!r}")
    if options and kind != "churn":
        raise TypeError(f"unexpected options for {kind!r}: {sorted(options)}")
    needed = ["orders", "order_items"] if kind == "repurchase" else ["orders"]
    tables = read_tables(data_dir, needed)
    cutoff = utc(as_of, "as_of")
    orders = tables["orders"]
    until = utc(holdout_until, "holdout_until") if holdout_until is not None else _default_until(orders, cutoff)
    if until is not None:
        ev.time_split(orders, cutoff, until)  # refuses empty periods
    extra: dict[str, Any] = {}
    if kind == "btyd":
        params, metrics, figures, features, extra = _fit_btyd(tables, cutoff, until)
        # Counts only (the warnings never name a customer); MLflow params hold up to 6,000 characters.
        params["data_warnings"] = " | ".join(extra["warnings"])[:6000] or "none"
    elif kind == "churn":
        params, metrics, figures, features = _fit_churn(tables, cutoff, until, **options)
    else:
        params, metrics, figures, features = _fit_repurchase(tables, cutoff, until)
    params["holdout_until"] = None if until is None else str(until)
    params["data_dir_name"] = Path(data_dir).name
    digest = fingerprint(data_dir, needed)
    run_id = _log(resolve_uri(tracking_uri), experiment, kind, params, metrics, figures, features, digest)
    out: dict[str, Any] = {**metrics, **extra, "run_id": run_id, "data_sha256": digest}
    if return_figures:
        out["figures"] = figures
    return out


def default_as_of(data_dir: PathLike, holdout_days: int = 90) -> pd.Timestamp:
    """The cutoff that leaves the last ``holdout_days`` of orders (at most a third of them) as a holdout."""
    orders = read_tables(data_dir, ["orders"])["orders"]
    first, end = orders["ts"].min().floor("D"), orders["ts"].max().floor("D") + pd.Timedelta(1, "D")
    return holdout_cutoff(first, end, holdout_days, whole_days=True)


def tune_churn(
    data_dir: PathLike,
    as_of: Any,
    n_trials: int = 20,
    *,
    validation_days: int = 60,
    tracking_uri: str | None = None,
    experiment: str = "cadence",
    seed: int = 0,
) -> dict[str, Any]:
    """Optuna search over family, penalizer and feature set; one nested MLflow run per trial.

    The objective is the integrated Brier score (lower is better; comparable
    across families, Cox included) on a validation snapshot at
    ``as_of - validation_days`` followed up to ``as_of``; training snapshots
    end at the validation cutoff, so nothing at or after ``as_of`` is read.

    Returns
    -------
    dict
        ``best_params``, ``best_integrated_brier``, ``run_id`` (parent run).
    """
    import mlflow
    import optuna

    orders = read_tables(data_dir, ["orders"])["orders"]
    cutoff = utc(as_of, "as_of")
    val_cut = cutoff - pd.Timedelta(validation_days, "D")
    con, t = purchases.duckdb_tables({"orders": orders})
    train = _snapshots(con, t, training_cutoffs(orders, val_cut), until=val_cut)
    val = _snapshots(con, t, [val_cut], until=cutoff)
    uri = resolve_uri(tracking_uri)
    mlflow.set_tracking_uri(uri)
    exp = experiment_id(experiment, uri)
    digest = fingerprint(data_dir, ["orders"])

    def objective(trial: optuna.Trial) -> float:
        family = trial.suggest_categorical("family", [*PARAMETRIC_FAMILIES, "cox"])
        penalizer = trial.suggest_float("penalizer", 1e-4, 1.0, log=True)
        feature_set = trial.suggest_categorical("feature_set", list(FEATURE_SETS))
        with mlflow.start_run(experiment_id=exp, run_name=f"trial-{trial.number}", nested=True):
            model = _churn_model(train, family, penalizer, list(FEATURE_SETS[feature_set]), seed)
            m = churn_metrics(model, val)
            mlflow.log_params({"family": family, "penalizer": penalizer, "feature_set": feature_set})
            mlflow.log_metrics({f"val_{k}": v for k, v in m.items() if np.isfinite(v)})
            return m["integrated_brier"]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with mlflow.start_run(experiment_id=exp, run_name="tune-churn") as parent:
        mlflow.set_tags({"cadence.kind": "tune-churn", "cadence.data_sha256": digest})
        mlflow.log_params({"n_trials": n_trials, "validation_days": validation_days, "as_of": str(cutoff)})
        study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
        study.optimize(objective, n_trials=n_trials)
        mlflow.log_params({f"best_{k}": v for k, v in study.best_params.items()})
        mlflow.log_metric("best_val_integrated_brier", study.best_value)
        mlflow.log_dict({"feature_sets": {k: list(v) for k, v in FEATURE_SETS.items()}}, "features.json")
    return {"best_params": study.best_params, "best_integrated_brier": float(study.best_value),
            "run_id": parent.info.run_id}


__all__ = ["fit_model", "tune_churn", "churn_metrics", "training_cutoffs", "FEATURE_SETS"]
