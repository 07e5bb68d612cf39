"""``load_log`` on the demo shop: this checkout against a baseline checkout, measured in the same run.

The demo's shop (:func:`cadence.demo.run_demo`'s config: 20,000 customers, one
year, seed 0, randomised follow-ups) is generated once, or ``--shop`` is
used. Each side runs in fresh processes, alternating, ``--repeat`` times: a
process imports the side's ``load_log`` (timed apart), then times its first
call (what one command pays: on this checkout that includes loading Ibis's
DuckDB backend and compiling the decision-context query) and a second call
in the same process. Bytecode is cached under a temporary
``PYTHONPYCACHEPREFIX`` for both sides (one untimed warm-up process each),
as an installed package has it; neither checkout is written to. Each
process also prints a digest of the log it built, so the run shows whether
both sides computed the same log.

Prints each side's median and minimum, the ratios, and the load average
before and after (other jobs on the machine inflate every figure).

Usage: ``python benchmarks/bench_load_log.py --baseline /work/wt-base [--shop DIR] [--repeat 5]``
(the baseline is a checkout with its own ``.venv``; its entry point is
``--baseline-entry``, by default ``cadence.policies.evaluation:load_log``, where
``load_log`` lived at commit 71fbaf8).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CURRENT_ENTRY = "cadence.workflows.logs:load_log"

#: Run in each timed process: import, first call, second call, and a digest of the log.
CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import importlib
module, name = sys.argv[1].split(":")
load_log = getattr(importlib.import_module(module), name)
import numpy as np, pandas as pd
t1 = time.perf_counter()
log = load_log(sys.argv[2])
t2 = time.perf_counter()
log = load_log(sys.argv[2])
t3 = time.perf_counter()
c = log.candidates
action = getattr(log, "action", None)
action = log.actions if action is None else action
cols = [k for k in ("customer_id", "stage", "timezone", "opt_in_email", "opt_in_push", "opt_in_sms",
                    "opt_in_whatsapp", "sends_7d", "orders_90d", "days_since_order") if k in c]
frame = c[cols].assign(triggered_s=pd.to_datetime(c["triggered_at"], utc=True).astype("datetime64[us, UTC]")
                       .astype("int64") // 10**6, action=np.asarray(action, np.int64))
for k in ("sends_7d", "orders_90d"):
    frame[k] = frame[k].astype("int64")
digest = int(pd.util.hash_pandas_object(frame.astype(object), index=False).sum() % 2**61)
print(json.dumps({"import": t1 - t0, "first": t2 - t1, "second": t3 - t2, "rows": int(log.n), "digest": digest,
                  "rewards": float(log.rewards.to_numpy().sum())}))
"""


def run_side(python: Path, entry: str, shop: Path, pyc: Path) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(pyc)
    out = subprocess.run([str(python), "-c", CHILD, entry, str(shop)], capture_output=True, text=True, env=env,
                         cwd=tempfile.gettempdir(), check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", type=Path, required=True, help="a checkout with its own .venv")
    ap.add_argument("--baseline-entry", default="cadence.policies.evaluation:load_log")
    ap.add_argument("--shop", type=Path, default=None)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    here = Path(__file__).resolve().parents[1]
    sides = {"baseline": (args.baseline / ".venv" / "bin" / "python", args.baseline_entry),
             "this checkout": (here / ".venv" / "bin" / "python", CURRENT_ENTRY)}
    with tempfile.TemporaryDirectory(prefix="cadence-bench-log-") as tmp:
        shop = args.shop
        if shop is None:
            from cadence.demo import DEMO_FOLLOWUP
            from cadence.synthetic import ShopConfig, generate_shop

            shop = generate_shop(ShopConfig(logging_followup=DEMO_FOLLOWUP), Path(tmp) / "shop")
        load_before = os.getloadavg()
        pyc = {name: Path(tmp) / f"pyc-{k}" for k, name in enumerate(sides)}
        for name, (python, entry) in sides.items():
            run_side(python, entry, shop, pyc[name])  # warm-up: writes the bytecode cache
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
        for _ in range(args.repeat):
            for name, (python, entry) in sides.items():
                runs[name].append(run_side(python, entry, shop, pyc[name]))
        load_after = os.getloadavg()
    print(f"shop {shop}: {runs['baseline'][0]['rows']:,} logged decisions; {os.cpu_count()} cores; "
          f"load average before {load_before[0]:.2f}/{load_before[1]:.2f}/{load_before[2]:.2f}, "
          f"after {load_after[0]:.2f}/{load_after[1]:.2f}/{load_after[2]:.2f}")
    summary = {}
    for name, rs in runs.items():
        summary[name] = {k: (statistics.median(r[k] for r in rs), min(r[k] for r in rs))
                         for k in ("import", "first", "second")}
        s = summary[name]
        print(f"{name:14s} import {s['import'][0]:.2f} s (min {s['import'][1]:.2f}); "
              f"load_log first call {s['first'][0]:.2f} s (min {s['first'][1]:.2f}); "
              f"second call {s['second'][0]:.2f} s (min {s['second'][1]:.2f})  [median of {len(rs)}]")
    for k in ("first", "second"):
        ratio = summary["this checkout"][k][0] / summary["baseline"][k][0]
        print(f"{k} call: this checkout / baseline = {ratio:.2f} (medians)")
    same = {(r["rows"], r["digest"], round(r["rewards"], 6)) for rs in runs.values() for r in rs}
    print("both sides built the same log (rows, actions, context, rewards):", "yes" if len(same) == 1 else f"no: {same}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
