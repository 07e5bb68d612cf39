"""Policy evaluation on a shop's log: the logging reference, lifts, diagnostics, names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cadence.data.io import read_tables
from cadence.deployment.registry import build_policy, load_policy_spec, save_policy
from cadence.evaluation.offline import evaluate, summary_table, target_codes
from cadence.features.logged import log_from_tables
from cadence.policies.rules import RulesPolicy
from cadence.synthetic import ShopConfig, generate_shop
from cadence.workflows.logs import load_log
from cadence.workflows.policies import POLICIES_DIR, evaluate_named


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_shop(ShopConfig(customers=1500, days=150, seed=11), tmp_path_factory.mktemp("ev") / "shop")


@pytest.fixture(scope="module")
def results(shop: Path) -> pd.DataFrame:
    # Few refits: the direct method's refit interval is tested in tests/evaluation/test_ope.py.
    return evaluate(load_log(shop), {"rules": RulesPolicy(), "no-incentive": RulesPolicy(incentive="none")},
                    n_refit=3)


def test_logging_reference_is_the_observed_mean(shop: Path, results: pd.DataFrame) -> None:
    m = read_tables(shop, ["messages"])["messages"]
    conv = m["converted_order_id"].notna().mean()
    got = results.query("metric == 'conversion' and policy == 'logging' and estimator == 'IPS'").iloc[0]
    assert got["value"] == pytest.approx(conv)
    assert got["lower"] < conv < got["upper"]
    assert (results.query("policy == 'logging'")[["lift", "lift_lower", "lift_upper"]] == 0).all().all()


def test_every_estimate_has_an_interval_and_diagnostics(results: pd.DataFrame) -> None:
    assert set(results["metric"]) == {"open", "click", "conversion", "net_revenue"}
    assert set(results["estimator"]) == {"IPS", "SNIPS", "DM", "DR", "SwitchDR(tau=50)"}
    assert (results["lower"] <= results["value"]).all() and (results["value"] <= results["upper"]).all()
    rules = results[results["policy"] == "rules"]
    assert (rules["lift_lower"] <= rules["lift"]).all() and (rules["lift"] <= rules["lift_upper"]).all()
    assert rules["supported"].all() and (rules["ess"] > 100).all()
    # Lifts are paired differences on the same rows: never wider than the value's interval plus the reference's.
    ref = results[results["policy"] == "logging"].set_index(["metric", "estimator"])
    r = rules.set_index(["metric", "estimator"])
    assert ((r["lift_upper"] - r["lift_lower"]) <= (r["upper"] - r["lower"]) + (ref["upper"] - ref["lower"])).all()


def test_summary_table(results: pd.DataFrame) -> None:
    t = summary_table(results, "DR")
    assert list(t.columns) == ["metric", "policy", "value", "lift vs logging", "supported"]
    assert t["value"].str.contains(r"\[").all()
    with pytest.raises(ValueError, match="estimator: 'XYZ' not in the results"):
        summary_table(results, "XYZ")


def test_a_deterministic_log_cannot_support_evaluation(shop: Path) -> None:
    t = read_tables(shop, ["messages", "customers"])
    m = t["messages"].assign(propensity=1.0)  # as if nothing had been randomised
    df = evaluate(log_from_tables(m, t["customers"]), {"rules": RulesPolicy()}, metrics=("conversion",),
                  reward_model=False)
    row = df[df["policy"] == "rules"].iloc[0]
    assert not row["supported"]
    assert "randomised holdout" in row["reason"]


def test_stochastic_policies_are_refused(shop: Path) -> None:
    from cadence.synthetic import RandomizedLoggingPolicy

    log = load_log(shop)
    with pytest.raises(ValueError, match="stochastic decisions"):
        target_codes(RandomizedLoggingPolicy(), log.candidates)


def test_saved_policies_by_name(tmp_path: Path, shop: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "data" / "processed" / "policies"
    save_policy("pct", "rules", {"incentive": "percent_code"}, policies_dir=folder, meta={"why": "test"})
    assert load_policy_spec("pct", folder)["meta"] == {"why": "test"}
    assert build_policy("pct", None, policies_dir=folder) == RulesPolicy(incentive="percent_code")
    assert build_policy("logging", None) is None
    with pytest.raises(ValueError, match="unknown policy 'nope'.*saved are pct"):
        build_policy("nope", None, policies_dir=folder)
    # The library has no default folder: without one only the built-in names exist.
    with pytest.raises(ValueError, match="unknown policy 'pct'.*none saved yet"):
        build_policy("pct", None)
    with pytest.raises(TypeError, match="policies_dir"):
        save_policy("pct2", "rules", {})  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="is built in"):
        save_policy("rules", "rules", {}, policies_dir=folder)
    with pytest.raises(TypeError):
        save_policy("bad", "rules", {"colour": "red"}, policies_dir=folder)
    assert not (folder / "bad.json").exists()
    # The commands' default folder is data/processed/policies under the current directory.
    assert POLICIES_DIR == Path("data/processed/policies")
    monkeypatch.chdir(tmp_path)
    df = evaluate_named(shop, ["pct", "rules"], metrics=("conversion",))
    assert df.attrs["rows_fitted"] == 0 and sorted(df["policy"].unique()) == ["logging", "pct", "rules"]
    assert np.isfinite(df["value"]).all()
