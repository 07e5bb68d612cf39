"""Benchmark: batch scoring of the policy learner against today's learned policy, in one run.

Target (issue 22): batch scoring -- a greedy decision and its propensity for
every row of a DataFrame -- at >= 100,000 decisions per second on 2 cores;
the baseline is today's learned policy (``UpliftPolicy(learner="t")``).

Scored, each on ``--rows`` rows, best and median of ``--repeats``:

* ``learner, experiment table``: :class:`~cadence.policies.learner.PolicyLearner`
  (epsilon 0.05) fitted on a three-arm experiment table (numbers, categories,
  missing values), ``decide`` on the table's rows: action, propensity;
* ``learner, shop rows``: the shop's configuration (49 actions, allowed mask,
  epsilon 0.05) on a shop's logged trigger candidates: ``shop_context``,
  ``allowed_actions`` and ``decide``;
* ``UpliftPolicy(learner=...).decide`` for ``"t"`` (today's) and ``"dr"`` (the
  learner inside) on the same candidates (greedy, propensity 1);
* the served model (:class:`~cadence.deployment.serving.PolicyModel`,
  epsilon 0.05, in process, no MLflow: what ``benchmarks/bench_export.py``
  measured at 62,209/s) around the rules, ``"t"`` and ``"dr"``, the
  ``--rows`` scored as requests of :data:`~cadence.deployment.serving.MAX_ROWS`
  rows (the most one request may carry), on two inputs: the log's trigger
  candidates, and **decision rows** -- ``cadence features``'
  ``trigger_candidates`` joined with ``customer_features`` and per-customer
  scores (:func:`cadence.features.decision_rows.decision_rows`, ~91 columns,
  every feature and score column checked by the model);
* the built-in ``learned`` policy (:data:`cadence.deployment.registry.LEARNED_PARAMS`:
  the per-stage linear design on the trigger's columns, the customer's
  features and the scores), fitted on the log with its context
  (:func:`cadence.workflows.logs.load_context`), served on the same inputs:
  on the log's trigger rows every row lacks the customer and score families
  and is decided with them at the fit's medians (with the reason); the
  decision rows are its real input;
* the rules, ``"dr"`` and ``learned`` served models also **as a serving team runs them**:
  logged to MLflow with the export's signature (a scratch SQLite store) and
  loaded back with ``mlflow.pyfunc.load_model`` (``..., loaded``), so
  MLflow's own input handling is timed too;
* the same served models with the **previous code** (``--baseline-ref``,
  default ``main``: its ``src/`` exported by ``git archive`` and imported as
  ``cadence`` in a child process of this run, fitting the same policies on the
  same log, the ``learned`` one on the same log with context), for the ratio,
  and a check that both give the same decisions (for ``learned``: on the
  rows with every context family, since rows lacking one now go to a
  learned fallback rather than the rules).
  The previous code does not read ``eligible_at``: it gets the decision rows
  with the column renamed ``triggered_at``.

Rates are decisions per second of wall time, best / median; the machine is
shared with other work, so each line also gives the rate per second of the
process's CPU time (best), which the load moves less. The score columns are
random values of the right kinds (probabilities, counts, days) unless
``cadence.models.scores`` can score the shop: only their checks cost time.

Run: ``.venv/bin/python benchmarks/bench_policy.py [--rows 100000] [--baseline-ref main]``
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import pickle
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def experiment_table(n: int, seed: int = 0) -> pd.DataFrame:
    """A three-arm experiment log with every kind of column (uniform arms)."""
    rng = np.random.default_rng(seed)
    recency = np.where(rng.random(n) < 0.2, np.nan, rng.exponential(90.0, n))
    table = pd.DataFrame({
        "recency": recency, "orders": rng.poisson(2.0, n), "aov": rng.lognormal(4.0, 0.4, n),
        "open_rate": np.where(rng.random(n) < 0.15, np.nan, rng.beta(2, 5, n)),
        "segment": pd.Series(rng.choice(["new", "regular", "vip", None], n), dtype=object),
        "device": rng.choice(["mobile", "desktop", "tablet"], n),
        "region": pd.Categorical(rng.choice(["north", "south", "east", "west"], n)),
        "arm": rng.choice(["control", "discount", "free_shipping"], n),
    })
    lift = np.where(table["arm"] == "discount", 5.0 * np.isnan(recency), 0.0) + np.where(
        table["arm"] == "free_shipping", 10.0 * np.nan_to_num(table["open_rate"].to_numpy()), 0.0)
    table["revenue"] = rng.random(n) * 20 + lift
    return table


def rate(fn: Callable[[], Any], rows: int, repeats: int) -> tuple[float, float]:
    return timed(fn, rows, repeats)[:2]


def timed(fn: Callable[[], Any], rows: int, repeats: int) -> tuple[float, float, float]:
    """(best, median) decisions per wall second and the best per CPU second of this process."""
    fn()  # warm-up
    times, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return rows / min(times), rows / statistics.median(times), rows / min(cpu)


def in_requests(model: Any, frame: pd.DataFrame, size: int) -> Callable[[], list[pd.DataFrame]]:
    """Score ``frame`` as consecutive requests of at most ``size`` rows, as a client of the server would."""
    parts = [frame.iloc[i:i + size] for i in range(0, len(frame), size)]
    return lambda: [model.predict(None, p) for p in parts]


def served_rates(policies: dict[str, Any], inputs: dict[str, pd.DataFrame], repeats: int,
                 out_dir: Path | None = None) -> dict[str, list[float]]:
    """``{"policy on input": [best, median, cpu]}`` of ``PolicyModel(policy, epsilon=0.05)``, in requests."""
    from cadence.deployment.serving import MAX_ROWS, PolicyModel

    rates = {}
    for kind, pol in policies.items():
        model = PolicyModel(pol, epsilon=0.05)
        for name, frame in inputs.items():
            fn = in_requests(model, frame, MAX_ROWS)
            key = f"{kind} on {name}"
            if out_dir is not None and kind in ("rules", "dr", "learned"):
                # As a serving team runs it: logged to MLflow with the export's signature, loaded back.
                loaded = logged_and_loaded(model, out_dir / "mlflow")
                rates[f"{key}, loaded"] = list(timed(lambda m=loaded, f=frame: [
                    m.predict(f.iloc[i:i + MAX_ROWS]) for i in range(0, len(f), MAX_ROWS)], len(frame), repeats))
            rates[key] = list(timed(fn, len(frame), repeats))
            if out_dir is not None:  # the first request's answers, to compare old and new code
                model.predict(None, frame.iloc[:MAX_ROWS]).drop(columns="send_at").to_parquet(
                    out_dir / f"{key.replace(' ', '_')}.parquet")
    return rates


def logged_and_loaded(model: Any, store: Path) -> Any:
    """``model`` logged with the export's signature into a scratch SQLite store and loaded back as pyfunc."""
    import logging
    import warnings

    import mlflow

    from cadence.deployment.serving import model_signature

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    store.mkdir(exist_ok=True)
    mlflow.set_tracking_uri(f"sqlite:///{store}/mlflow.db")
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="policy", python_model=model, signature=model_signature(),
                                       pip_requirements=["mlflow"])
    return mlflow.pyfunc.load_model(info.model_uri)


# The previous code's side, run in a child process whose only `cadence` is the exported tree.
CHILD = r"""
import json, pickle, sys
code, shop, data, out, repeats = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
chosen, context_log = sys.argv[7].split(","), sys.argv[8]
sys.path[:] = [code] + [p for p in sys.path if "__editable__" not in p and not p.rstrip("/").endswith("/src")]
sys.path.insert(0, sys.argv[6])  # the benchmark's folder, for its helpers
import pandas as pd
import bench_policy as b
from pathlib import Path
from cadence.policies.learned import UpliftPolicy
from cadence.policies.rules import RulesPolicy
from cadence.workflows.logs import load_log
assert b.__name__ == "bench_policy"
import cadence
assert cadence.__file__.startswith(code), cadence.__file__
log = load_log(shop)
policies = {"rules": RulesPolicy()}
for k in ("t", "dr"):
    if k in chosen:  # the trigger's columns, as this run fits them
        policies[k] = UpliftPolicy(learner=k, context=("trigger",)).fit(log)
if "learned" in chosen:
    from cadence.deployment.registry import build_policy
    with open(context_log, "rb") as f:  # the log with its context, as this run computed it
        with_context = pickle.load(f)
    policies["learned"] = build_policy("learned", with_context)  # the previous code's built-in learned policy
policies = {k: v for k, v in policies.items() if k in chosen}
inputs = {n: pd.read_parquet(f"{data}/{n.replace(' ', '_')}.parquet") for n in ("trigger rows", "decision rows")}
inputs["decision rows"] = inputs["decision rows"].rename(columns={"eligible_at": "triggered_at"})
print(json.dumps(b.served_rates(policies, inputs, repeats, Path(out))))
"""


def baseline(ref: str, shop: Path, data: Path, repeats: int, tmp: Path, chosen: list[str],
             context_log: Path) -> dict[str, list[float]] | None:
    """The previous code's served rates (``ref``'s ``src/``, in a child process), or None if it cannot run."""
    root = Path(subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                               cwd=Path(__file__).parent).stdout.strip() or ".")
    code = tmp / "baseline"
    code.mkdir()
    archive = subprocess.run(["git", "archive", ref, "src"], cwd=root, capture_output=True)
    if archive.returncode:
        print(f"baseline: cannot export {ref!r}: {archive.stderr.decode().strip()}")
        return None
    subprocess.run(["tar", "-x", "-C", str(code)], input=archive.stdout, check=True)
    (code / "src").rename(code / "cadence")
    out = tmp / "baseline-out"
    out.mkdir()
    run = subprocess.run([sys.executable, "-c", CHILD, str(code), str(shop), str(data), str(out), str(repeats),
                          str(Path(__file__).parent), ",".join(chosen), str(context_log)],
                         capture_output=True, text=True, cwd=tmp)
    if run.returncode:
        print(f"baseline: the previous code failed:\n{run.stderr[-2000:]}")
        return None
    rates: dict[str, list[float]] = json.loads(run.stdout.strip().splitlines()[-1])
    return rates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--customers", type=int, default=5000)
    ap.add_argument("--days", type=int, default=180)
    ap.add_argument("--baseline-ref", default="main", help="git ref of the previous code ('' to skip)")
    ap.add_argument("--served", default="rules,t,dr,learned",
                    help="served models to time, comma-separated (rules, t, dr, learned, linear)")
    args = ap.parse_args()

    from cadence.policies.context import CONTEXT_FAMILIES
    from cadence.policies.learned import UpliftPolicy, allowed_actions, shop_context
    from cadence.policies.learner import PolicyLearner
    from cadence.policies.rules import opt_in_matrix
    from cadence.synthetic import ShopConfig, generate_shop
    from cadence.workflows.logs import load_log

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"load average {os.getloadavg()[0]:.2f} at start")
    results: list[tuple[str, float, float]] = []

    # A generic experiment table.
    table = experiment_table(30_000)
    context = ["recency", "orders", "aov", "open_rate", "segment", "device", "region"]
    t = time.perf_counter()
    learner = PolicyLearner(epsilon=0.05).fit(table[context], table["revenue"], action=table["arm"],
                                              pscore=np.full(len(table), 1 / 3))
    print(f"learner fitted on the 30,000-row experiment table in {time.perf_counter() - t:.1f} s")
    rows = experiment_table(args.rows, seed=1)[context]
    rng = np.random.default_rng(0)
    results.append(("learner, experiment table (3 actions)",
                    *rate(lambda: learner.decide(rows, rng=rng), args.rows, args.repeats)))

    # A shop's trigger candidates.
    root = Path(tempfile.mkdtemp(prefix="cadence-bench-policy-"))
    log = load_log(generate_shop(ShopConfig(customers=args.customers, days=args.days, seed=0), root / "shop"))
    reps = -(-args.rows // log.n)
    cands = pd.concat([log.candidates] * reps, ignore_index=True).head(args.rows)
    policies = {}
    for kind in ("t", "dr"):
        t = time.perf_counter()
        # The policy learner on the trigger's columns (the messages log carries no other context family).
        policies[kind] = UpliftPolicy(learner=kind, context=("trigger",)).fit(log)
        print(f"UpliftPolicy(learner={kind!r}) fitted on {log.n:,} logged rows in {time.perf_counter() - t:.1f} s")
    shop_learner = policies["dr"].learner_
    assert shop_learner is not None
    # The fitted shop learner with exploration on (epsilon is read when deciding, not fitting).
    explorer = copy.deepcopy(shop_learner).set_params(epsilon=0.05)

    def shop_decide() -> pd.DataFrame:
        allowed = allowed_actions(cands["stage"].to_numpy(), opt_in_matrix(cands))
        return explorer.decide(shop_context(cands), allowed=allowed, rng=rng)

    results.append(("learner, shop rows (49 actions, mask, epsilon 0.05)", *rate(shop_decide, args.rows, args.repeats)))
    for kind, pol in policies.items():
        results.append((f"UpliftPolicy(learner={kind!r}).decide",
                        *rate(lambda pol=pol: pol.decide(cands, rng), args.rows, args.repeats)))

    base = dict((name, best) for name, best, _ in results)["UpliftPolicy(learner='t').decide"]
    print(f"\n{args.rows:,} rows per batch, best / median of {args.repeats}:")
    for name, best, median in results:
        print(f"  {name:<62} {best:>10,.0f} / {median:>10,.0f} decisions/s  ({best / base:.2f}x today's decide)")

    # The served model, on the log's candidates and on the feature pipeline's decision rows.
    from cadence.deployment.serving import SCORE_KINDS
    from cadence.features.decision_rows import decision_rows
    from cadence.policies.rules import RulesPolicy
    from cadence.workflows.features import build_features

    as_of = pd.Timestamp(log.candidates["triggered_at"].max()).ceil("D")
    t = time.perf_counter()
    build_features(root / "shop", as_of, root / "features")
    print(f"\ncadence features on the shop in {time.perf_counter() - t:.1f} s")
    trig = pd.read_parquet(root / "features" / "trigger_candidates.parquet")
    feats = pd.read_parquet(root / "features" / "customer_features.parquet")
    scores = score_table(feats["customer_id"], as_of)
    joined = decision_rows(trig, feats, scores)
    joined = pd.concat([joined] * -(-args.rows // len(joined)), ignore_index=True).head(args.rows)
    print(f"decision rows: {len(trig):,} candidates x {joined.shape[1]} columns (repeated to {args.rows:,}); "
          f"score columns: {', '.join(SCORE_KINDS)}")
    data = root / "inputs"
    data.mkdir()
    inputs = {"trigger rows": cands, "decision rows": joined}
    for name, frame in inputs.items():
        frame.to_parquet(data / f"{name.replace(' ', '_')}.parquet")
    from cadence.deployment.registry import build_policy
    from cadence.workflows.logs import load_context

    chosen = args.served.split(",")
    context_log = root / "log_with_context.pkl"
    if "learned" in chosen or "linear" in chosen:
        t = time.perf_counter()
        with_context = load_log(root / "shop", context=load_context(root / "shop"))
        t_ctx = time.perf_counter() - t
        with open(context_log, "wb") as f:  # for the previous code's run: the same context, not recomputed
            pickle.dump(with_context, f)
    if "learned" in chosen:
        t = time.perf_counter()
        policies["learned"] = build_policy("learned", with_context)  # type: ignore[assignment]
        print(f"learned (registry.LEARNED_PARAMS): context in {t_ctx:.1f} s, fitted on {with_context.n:,} rows in "
              f"{time.perf_counter() - t:.1f} s")
    if "linear" in chosen:
        t = time.perf_counter()
        policies["linear"] = UpliftPolicy(learner="linear", context=CONTEXT_FAMILIES, alpha=10.0,
                                          min_rows=100).fit(with_context)
        print(f"linear (the per-stage linear design, every family): fitted on {with_context.n:,} rows in "
              f"{time.perf_counter() - t:.1f} s")
    served = {k: v for k, v in {"rules": RulesPolicy(), **policies}.items() if k in chosen}
    new_out = root / "new-out"
    new_out.mkdir()
    mine = served_rates(served, inputs, args.repeats, new_out)
    print(f"load average {os.getloadavg()[0]:.2f} before the previous code's run")
    old = (baseline(args.baseline_ref, root / "shop", data, args.repeats, root, chosen, context_log)
           if args.baseline_ref else None)
    print(f"\nPolicyModel(policy, epsilon=0.05).predict, {args.rows:,} rows in requests of 10,000: decisions/s, "
          f"wall best / median, CPU best{'' if old is None else f'; previous code ({args.baseline_ref})'}")
    for key, (best, median, cpu) in mine.items():
        line = f"  {key:<34} {best:>9,.0f} / {median:>9,.0f}  cpu {cpu:>9,.0f}"
        if old is not None and key in old:
            ob, om, oc = old[key]
            same = same_decisions(new_out, root / "baseline-out", key.removesuffix(", loaded"))
            line += (f"  | previous {ob:>9,.0f} / {om:>9,.0f}  cpu {oc:>9,.0f}  -> {best / ob:.2f}x wall, "
                     f"{cpu / oc:.2f}x cpu; same decisions: {same}")
        print(line)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


def score_table(customer_id: pd.Series, as_of: pd.Timestamp) -> pd.DataFrame:
    """Per-customer scores: the scoring step's when it exists, else random values of the right kinds."""
    from cadence.deployment.serving import SCORE_KINDS

    rng = np.random.default_rng(0)
    n = len(customer_id)
    values = {"share": rng.random(n), "number": rng.gamma(2.0, 30.0, n)}
    return pd.DataFrame({"customer_id": customer_id.to_numpy(), "scored_at": as_of,
                         **{c: values[k] for c, k in SCORE_KINDS.items()}}).sample(frac=0.95, random_state=0)


def same_decisions(new: Path, old: Path, key: str) -> str:
    """Whether the first request's decisions, propensities and reasons agree between the two codes."""
    name = key.replace(" ", "_") + ".parquet"
    if not (new / name).exists() or not (old / name).exists():
        return "n/a"
    a, b = pd.read_parquet(new / name), pd.read_parquet(old / name)
    cols = ["action", "channel", "delay_minutes", "incentive", "propensity", "reason"]
    rows = np.ones(len(a), bool)
    if key.startswith("learned"):
        # Rows lacking a context family: the previous code's rules, now a learned fallback (by design).
        fell = b["reason"].str.match(r"rules fallback: missing (customer features|scores)").to_numpy()
        rows = ~fell
        cols = [*cols[:-1], "reason"] if "decision" not in key else cols[:-1]
    elif "decision" in key:  # the previous code ignores the feature columns
        cols = cols[:-1]
    diff = (a[cols].astype(str) != b[cols].astype(str)).any(axis=1).to_numpy() & rows
    what = "" if rows.all() else f" on the {int(rows.sum())} rows with every family"
    return f"yes{what}" if not diff.any() else f"no ({int(diff.sum())} of {int(rows.sum())} rows differ{what})"


if __name__ == "__main__":
    main()
