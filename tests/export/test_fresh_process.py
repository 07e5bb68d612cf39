"""A serving team's view: a fresh Python without ``cadence`` loads ``@champion`` and gets our decisions.

Also: nothing an export logs carries PII (canaries planted in the shop).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cadence.data.bandit import split_customers
from cadence.deployment.registry import build_policy
from cadence.policies.context import missing_families
from cadence.policies.rules import RulesPolicy
from cadence.workflows.logs import load_log
from cadence.workflows.tracking import using_tracking

DECISION = ["action", "channel", "delay_minutes", "incentive"]

# Runs in the child. The venv's editable install would make `cadence` importable:
# drop it from sys.path, so the only `cadence` is the copy the model carries.
CHILD = r"""
import importlib.abc, importlib.util, json, os, sys
sys.path[:] = [p for p in sys.path if "__editable__" not in p and not p.rstrip("/").endswith("/src")]
class Blocked(importlib.abc.MetaPathFinder):  # packages the exported models do not list must not be needed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in os.environ.get("BLOCKED", "").split(","):
            raise ImportError(f"{name} is not among the model's requirements")
sys.meta_path.insert(0, Blocked())
assert "cadence" not in sys.modules
assert importlib.util.find_spec("cadence") is None, "cadence is importable before the model is loaded"
import mlflow, pandas as pd
uri, data, out, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(",")
mlflow.set_tracking_uri(uri)
df = pd.read_parquet(data)
for name in names:
    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    pred = model.predict(df)
    pred.assign(send_at=pd.to_datetime(pred["send_at"], utc=True)).to_parquet(f"{out}/{name}.parquet")
print(json.dumps({"cadence": sys.modules["cadence"].__file__}))
"""


def _norm(df: pd.DataFrame) -> pd.DataFrame:
    out = df[DECISION].reset_index(drop=True).astype(object)
    return out.where(out.notna(), None).assign(delay_minutes=lambda d: d["delay_minutes"].astype(int))


def _challenger_in_fresh_process(uri: str, data: Path, tmp_path: Path, name: str) -> pd.DataFrame:
    """The decisions of ``name``'s challenger, loaded by alias in a fresh process on the rows in ``data``."""
    child = CHILD.replace("@champion", "@challenger")
    done = subprocess.run([sys.executable, "-c", child, uri, str(data), str(tmp_path), name],
                          cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return pd.read_parquet(tmp_path / f"{name}.parquet")


def _decision_reason(reason: pd.Series) -> pd.Series:
    """The policy's part of a served ``reason``, without the item selector's fallback."""
    from cadence.deployment.serving import ITEMS_FALLBACK

    return reason.fillna("").str.replace(rf"(^|; ){ITEMS_FALLBACK}.*$", "", regex=True)


def test_fresh_process_reproduces_in_project_decisions(registry, shop: Path, tmp_path: Path) -> None:
    from cadence.workflows.policies import named_context

    # The log's triggers with the customer's features and scores as of each (what the export fitted and
    # judged the learned policy on; the same computation as the export's, kept from it in this process).
    log = load_log(shop, context=named_context(shop, ["learned"]))
    fit_rows, eval_rows = split_customers(log, 0.5, 0)
    candidates = log.candidates[eval_rows].reset_index(drop=True)
    data = tmp_path / "candidates.parquet"
    candidates.to_parquet(data)
    names = ["cadence-rules", "cadence-learned"]
    # Packages the policies' modules import only to fit (the churn model's lifelines, the Spark engine) are
    # not in the learned model's requirements: loading and deciding must not need them.
    pins = {r.split("==")[0] for r in registry.exports["learned"]["requirements"]}
    blocked = {"lifelines", "autograd", "pyspark"} - pins
    assert blocked == {"lifelines", "autograd", "pyspark"}
    run = subprocess.run([sys.executable, "-c", CHILD, registry.uri, str(data), str(tmp_path), ",".join(names)],
                         cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "BLOCKED": ",".join(blocked)},
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    loaded_from = json.loads(run.stdout.strip().splitlines()[-1])["cadence"]
    assert "/code/cadence/" in loaded_from and "__editable__" not in loaded_from, loaded_from

    rng = np.random.default_rng(0)
    expected = {
        "cadence-rules": RulesPolicy().decide(candidates, rng),
        "cadence-learned": build_policy("learned", log.subset(fit_rows)).decide(candidates, rng),  # type: ignore[union-attr]
    }
    # Customers without a feature snapshot or scores yet (their first week) lack a family the learned policy reads.
    lacks = missing_families(candidates).any(axis=1).to_numpy()
    assert 0 < lacks.mean() < 0.2
    for name in names:
        got = pd.read_parquet(tmp_path / f"{name}.parquet")
        assert len(got) == len(candidates)
        pd.testing.assert_frame_equal(_norm(got), _norm(expected[name]))
        assert (got["propensity"] == 1.0).all()
        fell = lacks if name == "cadence-learned" else np.zeros(len(got), bool)
        decided = _decision_reason(got["reason"])  # the items' own fallbacks are tested below
        assert (decided[~fell] == "").all()
        # Rows lacking a family: the learned policy (the linear design) decides them with the family at the
        # fit's medians, served as in project (the frames compared above), with the policy's own reason.
        assert decided[fell].str.fullmatch(r"fallback: learned policy with median (customer features|scores)"
                                           r"( and scores)? \(missing (customer features|scores)(, missing scores)?\)"
                                           ).all()
        send = got["action"] == "send"
        sent_at = candidates["triggered_at"] + pd.to_timedelta(got["delay_minutes"], unit="min")
        assert (got.loc[send, "send_at"] == sent_at[send]).all()
        assert got.loc[~send, "send_at"].isna().all()
    # The learned policy really is different from the rules here (else the check above is weak).
    assert not _norm(expected["cadence-learned"]).equals(_norm(expected["cadence-rules"]))


def _pii_found(blob: bytes, canary: dict[str, str], ids: set[str], emails: set[str], names: set[str]) -> list[str]:
    found = [v for v in canary.values() if v.encode() in blob]
    text = blob.decode("latin-1")
    tokens = set(re.findall(r"[\w.@+-]{6,}", text))
    pairs = set(re.findall(r"[A-Z][a-z'-]+ [A-Z][a-z'-]+", text))
    return found + sorted(tokens & ids) + sorted(tokens & emails) + sorted(pairs & names)


def test_no_pii_in_anything_logged(registry, shop: Path, canary: dict[str, str]) -> None:
    """Every artifact, param, tag and metric (all in the SQLite file or under mlruns/) is free of PII."""
    customers = pd.read_parquet(shop / "customers.parquet")
    pii = (canary, set(customers["customer_id"].astype(str)), set(customers["email"].dropna().astype(str)),
           set(customers["name"].dropna().astype(str)))
    some = customers.iloc[5]
    planted = f"x {some['customer_id']}, {some['email']}; {some['name']}.".encode()
    assert len(_pii_found(planted, *pii)) == 3  # the scan does find PII
    files = [p for p in sorted(registry.root.rglob("*")) if p.is_file()]
    assert {"mlflow.db", "python_model.pkl", "input_example.json", "ope_estimates.json",
            "sequences.json"} <= {p.name for p in files}
    for path in files:
        assert not _pii_found(path.read_bytes(), *pii), f"PII in {path.relative_to(registry.root)}"


@pytest.mark.parametrize("policy", ["rules", "learned"])
def test_export_metadata(registry, policy: str) -> None:
    import mlflow

    res = registry.exports[policy]
    client = mlflow.MlflowClient(tracking_uri=registry.uri, registry_uri=registry.uri)
    mv = client.get_model_version(f"cadence-{policy}", res["version"])
    tags = mv.tags
    assert len(tags["cadence.data_sha256"]) == 64 and tags["cadence.as_of"].startswith("20")
    assert tags["cadence.git_commit"] == "unknown" or re.fullmatch(r"[0-9a-f]{40}", tags["cadence.git_commit"])
    assert tags["cadence.policy_family"] == policy
    # The first version of the name was judged against the logging policy, and beat it.
    assert tags["cadence.gate"] == "passed" and tags["cadence.gate_champion_version"] == "logging"
    assert float(tags["cadence.gate_diff_lower"]) > 0 and tags["cadence.gate_data_matches_export"] == "true"
    assert tags["cadence.estimate_of"] == "served" and tags["cadence.estimate_supported"] == "true"
    assert set(mv.aliases) == {"challenger", "champion"}
    run = client.get_run(res["run_id"])
    for metric in ("open", "click", "conversion", "net_revenue"):
        lo, v, hi = (run.data.metrics[f"dr_{metric}{s}"] for s in ("_lower", "", "_upper"))
        assert lo <= v <= hi
    with using_tracking(registry.uri):
        model = mlflow.models.get_model_info(f"models:/cadence-{policy}/{res['version']}")
    assert model.signature.inputs is None  # the model checks its inputs itself
    meta = model.metadata["cadence"]
    from cadence.deployment.serving import INPUT_COLUMNS

    assert set(meta["inputs"]) == {c.name for c in INPUT_COLUMNS}  # documented there instead
    assert meta["estimates_of"].startswith("the model as served (epsilon = 0,") and meta["estimate_supported"]
    assert meta["estimates"]["net_revenue"]["lower"] <= meta["estimates"]["net_revenue"]["value"]
    assert meta["orchestrator"]["max_per_7d"] == 3
    from cadence.policies.sequences import CART_ABANDON, from_dict

    assert from_dict(meta["sequences"][0]) == CART_ABANDON  # the sequences travel with the policy
    if policy == "rules":  # exported with --replay: the lift table travels with the model
        assert [r["metric"] for r in meta["replay_lift"]][-1] == "messages per customer"
        assert "replay_conversion_rate_lift" in run.data.metrics
    else:
        assert meta["replay_lift"] is None
    pins = res["requirements"]
    assert all("==" in r for r in pins) and not any(r.startswith("cadence") for r in pins)
    # This shop has order lines and events: every export's items are the recommender's, whose model needs
    # scikit-learn whatever the policy.
    assert meta["items"]["source"].startswith("chosen per stage")
    assert any(r.startswith("scikit-learn==") for r in pins)


@pytest.fixture(scope="module")
def learned_dr(registry, shop: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """``UpliftPolicy(learner="dr")`` (with every context family when the policy takes them) exported
    with epsilon 0 into the session's registry: alias ``challenger``."""
    import inspect

    from cadence.deployment.registry import save_policy
    from cadence.policies.learned import UpliftPolicy
    from cadence.workflows.export import export_policy

    params: dict[str, object] = {"learner": "dr"}
    if "context" in inspect.signature(UpliftPolicy).parameters:
        # The trigger's columns: export_policy fits on the shop's messages log, which does not carry the
        # customer and score families yet; the fallback of rows lacking a family is tested in-process
        # (tests/export/test_decision_rows_served.py).
        params["context"] = ["trigger"]
    policies = tmp_path_factory.mktemp("dr-policies")
    save_policy("learned-dr", "learned", params, policies_dir=policies)
    res = export_policy(shop, "learned-dr", "cadence-learned-dr", tracking_uri=registry.uri, epsilon=0.0,
                        policies_dir=policies, force=True)
    return {"export": res, "policies": policies}


def test_fresh_process_scores_the_feature_pipelines_rows(registry, shop: Path, learned_dr: dict[str, object],
                                                         tmp_path: Path) -> None:
    """What ``cadence features`` wrote (plus per-customer scores), joined by ``decision_rows`` and nothing else,
    goes to the exported learned policy loaded by alias in a fresh process: the decisions are the in-project
    policy's, and rows of customers lacking a family the policy decides with are the rules', with the reason."""
    from cadence.deployment.registry import build_policy
    from cadence.deployment.serving import MAX_ROWS, SCORE_KINDS
    from cadence.features.decision_rows import decision_rows
    from cadence.workflows.features import build_features

    log = load_log(shop)
    as_of = pd.Timestamp(log.candidates["triggered_at"].max()).ceil("D")
    # The raw shop beside the planted one has every table the features read.
    import inspect

    with_scores = "scores" in inspect.signature(build_features).parameters  # the scoring step
    run = build_features(shop.parent / "raw", as_of, tmp_path / "features", since=as_of - pd.Timedelta(days=10),
                         **({"scores": True} if with_scores else {}))
    trig = pd.read_parquet(run.out_dir / "trigger_candidates.parquet")
    feats = pd.read_parquet(run.out_dir / "customer_features.parquet")
    customers = feats["customer_id"].to_numpy()
    if with_scores:
        scores = pd.read_parquet(run.out_dir / "customer_scores.parquet")
        assert set(SCORE_KINDS) <= set(scores.columns)
    else:  # before the scoring step existed: its columns and kinds, values drawn
        rng = np.random.default_rng(5)
        scores = pd.DataFrame({"customer_id": customers, "scored_at": as_of,
                               **{c: rng.random(len(customers)) * (1 if k == "share" else 90)
                                  for c, k in SCORE_KINDS.items()}})
    # A tenth of the customers have no features, another tenth no scores.
    no_features, no_scores = customers[::10], customers[5::10]
    rows = decision_rows(trig, feats[~feats["customer_id"].isin(no_features)],
                         scores[~scores["customer_id"].isin(no_scores)])
    assert 200 < len(rows) <= MAX_ROWS and rows.shape[1] > 80
    data = tmp_path / "decision_rows.parquet"
    rows.to_parquet(data)

    name = "cadence-learned-dr"
    got = _challenger_in_fresh_process(registry.uri, data, tmp_path, name)

    # In project: the same policy fitted on the same customers, deciding on the rows as the pipeline wrote
    # them (the log's name for the trigger time); the rules where a family it decides with is missing.
    fit_rows, _ = split_customers(log, 0.5, 0)
    policy = build_policy("learned-dr", log.subset(fit_rows), policies_dir=learned_dr["policies"])  # type: ignore[arg-type]
    assert policy is not None and policy.learner == "dr"  # type: ignore[attr-defined]
    in_project = rows.rename(columns={"eligible_at": "triggered_at"})
    rng = np.random.default_rng(0)
    expected = policy.decide(in_project, rng)
    families = set(getattr(policy, "context", None) or ())
    lacking = np.zeros(len(rows), bool)
    reason = np.full(len(rows), "", dtype=object)
    for family, missing in (("customer", rows["customer_id"].isin(no_features)),
                            ("scores", rows["customer_id"].isin(no_scores))):
        if family in families:
            lacking |= missing.to_numpy()
            label = "customer features" if family == "customer" else "scores"
            reason = np.where(missing, np.where(reason == "", f"rules fallback: missing {label}",
                                                reason + f"; missing {label}"), reason)
    if lacking.any():
        rules = RulesPolicy().decide(in_project, rng)
        expected = expected.where(np.repeat(~lacking[:, None], expected.shape[1], axis=1), rules)
    assert len(got) == len(rows)
    pd.testing.assert_frame_equal(_norm(got), _norm(expected))
    assert _decision_reason(got["reason"]).tolist() == reason.tolist()
    assert (got["propensity"] == 1.0).all()
    # The policy really decides here (not the rules everywhere), and it reads the rows' own times.
    assert not _norm(expected).equals(_norm(RulesPolicy().decide(in_project, rng)))
    send = (got["action"] == "send").to_numpy()
    sent_at = pd.to_datetime(rows["eligible_at"], utc=True) + pd.to_timedelta(got["delay_minutes"], unit="min")
    assert (pd.to_datetime(got.loc[send, "send_at"], utc=True) == sent_at[send]).all()


def test_fresh_process_fills_the_recommenders_items(registry, shop: Path, tmp_path: Path) -> None:
    """An export carries the default recommender's item selector: loaded by alias in a fresh process, the
    served model shows the same items, with the same fallback reasons, as the in-project selector fitted
    the same way (same cutoff, seed and pseudonymisation key) on the pipeline's rows."""
    import mlflow

    from cadence.deployment.serving import PolicyModel
    from cadence.workflows.export import export_policy
    from cadence.workflows.features import build_features
    from cadence.workflows.recommendations import DEFAULT_RECOMMENDER, fit_served_items

    raw = shop.parent / "raw"  # every table the recommender is fitted on
    name = "cadence-items"
    res = export_policy(raw, "rules", name, tracking_uri=registry.uri, epsilon=0.0, force=True, n_items=4)
    assert DEFAULT_RECOMMENDER in res["items"]
    with using_tracking(registry.uri):
        info = mlflow.models.get_model_info(f"models:/{name}/{res['version']}")
        key = mlflow.pyfunc.load_model(f"models:/{name}@challenger").unwrap_python_model().items.key
    meta = info.metadata["cadence"]["items"]
    assert meta["recommender"] == DEFAULT_RECOMMENDER and meta["n_items"] == 4 and "key" not in meta
    assert any(r.startswith("implicit==") for r in res["requirements"])  # the selector's ALS needs it to unpickle
    assert not any(r.startswith("pyspark==") for r in res["requirements"])

    as_of = pd.Timestamp(res["as_of"])
    run = build_features(raw, as_of.ceil("D"), tmp_path / "features", since=as_of - pd.Timedelta(days=10))
    rows = pd.read_parquet(run.out_dir / "trigger_candidates.parquet")
    data = tmp_path / "rows.parquet"
    rows.to_parquet(data)
    got = _challenger_in_fresh_process(registry.uri, data, tmp_path, name)

    again = fit_served_items(raw, res["as_of"], recommender=DEFAULT_RECOMMENDER, n_items=4, seed=0, key=key)
    expected = PolicyModel(RulesPolicy(), epsilon=0.0, items=again).predict(None, rows)
    assert got["items"].tolist() == expected["items"].tolist()
    assert got["reason"].tolist() == expected["reason"].tolist()
    send = (got["action"] == "send").to_numpy()
    chosen = send & (got["reason"] == "").to_numpy() & got["items"].notna().to_numpy()
    # The items are the recommender's, not the trigger's products: most sends that show items differ.
    assert chosen.sum() > 100
    assert (got.loc[chosen, "items"] != rows.loc[chosen, "products"].fillna("")).mean() > 0.5
