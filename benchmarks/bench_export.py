"""Benchmark: the exported policy's batch throughput and single-row HTTP latency.

Exports a policy (default ``learned``, epsilon 0.05) from a synthetic shop
into a scratch SQLite registry, then

* loads ``models:/<name>@champion`` with ``mlflow.pyfunc.load_model`` and
  times ``predict`` on ``--rows`` candidate rows (the log's candidates,
  repeated with fresh customer ids): decisions per second, best and median
  of ``--repeats``;
* starts ``mlflow models serve --env-manager local`` on loopback and times
  ``--requests`` single-row POSTs to ``/invocations`` (one at a time, after
  a warm-up): p50 and p99 latency in milliseconds.

Run: ``.venv/bin/python benchmarks/bench_export.py [--policy learned] [--rows 100000]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

from cadence.deployment.serving import MAX_ROWS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", default="learned")
    ap.add_argument("--customers", type=int, default=5000)
    ap.add_argument("--days", type=int, default=180)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--epsilon", type=float, default=0.05)
    ap.add_argument("--recommender", default="default",
                    help="recommender the served model fills items with ('default': the workflows' default; "
                         "'none': the trigger's products, as before the item selector)")
    args = ap.parse_args()

    import mlflow

    from cadence.synthetic import ShopConfig, generate_shop
    from cadence.workflows.export import export_policy
    from cadence.workflows.logs import load_log
    from cadence.workflows.promote import promote
    from cadence.workflows.tracking import using_tracking

    root = Path(tempfile.mkdtemp(prefix="cadence-bench-export-"))
    shop = generate_shop(ShopConfig(customers=args.customers, days=args.days, seed=0), root / "shop")
    uri = f"sqlite:///{root}/mlflow.db"
    t0 = time.perf_counter()
    from cadence.workflows.recommendations import DEFAULT_RECOMMENDER

    recommender = {"default": DEFAULT_RECOMMENDER, "none": None}.get(args.recommender, args.recommender)
    res = export_policy(shop, args.policy, "bench-policy", tracking_uri=uri, epsilon=args.epsilon,
                        recommender=recommender, force=True)
    export_s = time.perf_counter() - t0
    # Timed whether or not the gate promotes it (a small shop may not support the estimate).
    alias = "champion" if promote("bench-policy", tracking_uri=uri)["promoted"] else "challenger"

    cands = load_log(shop).candidates
    reps = -(-args.rows // len(cands))
    # The first copy keeps the shop's customers (the recommender knows them); later copies are new customers.
    batch = pd.concat([cands.assign(customer_id=cands["customer_id"] + (f"-{k}" if k else "")) for k in range(reps)],
                      ignore_index=True).head(args.rows)
    with using_tracking(uri):
        model = mlflow.pyfunc.load_model(f"models:/bench-policy@{alias}")
    model.predict(batch.head(1000))  # warm-up
    times = []
    # A request holds at most MAX_ROWS rows (the served model refuses more), so the batch goes in requests.
    parts = [batch.iloc[i:i + MAX_ROWS] for i in range(0, len(batch), MAX_ROWS)]
    for _ in range(args.repeats):
        t = time.perf_counter()
        out = pd.concat([model.predict(p) for p in parts], ignore_index=True)
        times.append(time.perf_counter() - t)
    assert len(out) == len(batch)

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(MLFLOW_TRACKING_URI=uri, PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    log = open(root / "serve.log", "wb")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m",
                             f"models:/bench-policy@{alias}", "--env-manager", "local", "-h", "127.0.0.1",
                             "-p", str(port)], env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                with urllib.request.urlopen(url + "/ping", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        rows = json.loads(cands.head(args.requests + 20).to_json(orient="records", date_format="iso"))
        lat = []
        for i, r in enumerate(rows):
            req = urllib.request.Request(url + "/invocations", json.dumps({"dataframe_records": [r]}).encode(),
                                         {"Content-Type": "application/json"}, method="POST")
            t = time.perf_counter()
            with urllib.request.urlopen(req, timeout=30) as resp:
                resp.read()
            if i >= 20:  # warm-up
                lat.append((time.perf_counter() - t) * 1000)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    print(json.dumps({
        "policy": args.policy, "epsilon": args.epsilon, "items": res["items"], "alias": alias, "log_rows": len(cands), "export_s": round(export_s, 1),
        "requirements": res["requirements"], "batch_rows": len(batch),
        "batch_decisions_per_s_best": round(len(batch) / min(times)),
        "batch_decisions_per_s_median": round(len(batch) / float(np.median(times))),
        "http_single_row_ms_p50": round(float(np.percentile(lat, 50)), 1),
        "http_single_row_ms_p99": round(float(np.percentile(lat, 99)), 1),
        "items_filled_share": round(float(out["items"].notna().mean()), 3),
        "items_fallback_share": round(float(out["reason"].str.contains("items fallback").mean()), 3),
        "requests": len(lat), "cpus": os.cpu_count(), "python": platform.python_version(),
    }, indent=2))


if __name__ == "__main__":
    main()
