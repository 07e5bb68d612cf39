"""How well do the uplift models rank customers? Qini, AUUC and uplift at k per stage, on held-out customers.

For each stage with enough randomised rows, every learner of
:mod:`cadence.models.uplift` is fitted on half of the customers and scored
on the other half: send-vs-hold (holds against sends without incentive) or
incentive-vs-none (among sends of the incentive stages). The Qini of a
ranking only means something next to random targeting (0) and the best
possible ranking; pass ``oracle`` (the true effects, where known, as in the
synthetic shop) to get that ceiling on the same rows.

Examples
--------
>>> import tempfile
>>> from cadence.synthetic import ShopConfig, generate_shop
>>> from cadence.workflows.logs import load_log
>>> log = load_log(generate_shop(ShopConfig(customers=2000, days=120, seed=1), tempfile.mkdtemp() + "/s"))
>>> table, curves = uplift_report(log, learners=("t",), min_rows=200)
>>> {"stage", "learner", "qini", "auuc", "uplift_at_30"} <= set(table.columns)
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from cadence.contract.actions import decode_action
from cadence.contract.triggers import INCENTIVE_STAGES, TRANSACTIONAL_STAGES
from cadence.data.bandit import LoggedBandit, split_customers
from cadence.features.context import context_features
from cadence.models.uplift import auuc, qini_coefficient, qini_curve, uplift_at_k
from cadence.policies.learned import Learner, make_learner


def treatment_rows(log: LoggedBandit, treatment: Literal["send", "incentive"]) -> tuple[np.ndarray, np.ndarray]:
    """(rows used, 0/1 treatment) for send-vs-hold or incentive-vs-none, randomised rows only."""
    inc = np.array([(decode_action(int(a)) or ("", 0, ""))[2] for a in log.action], dtype=object)
    send = log.action > 0
    randomised = log.pscore < 1
    if treatment == "send":
        rows = randomised & (~send | (inc == "none"))
        return rows, send.astype(int)
    if treatment == "incentive":
        rows = randomised & send & log.candidates["stage"].astype(str).isin(INCENTIVE_STAGES).to_numpy()
        return rows, (inc != "none").astype(int)
    raise ValueError(f"treatment: expected 'send' or 'incentive', got {treatment!r}")


def uplift_report(log: LoggedBandit, learners: Sequence[Learner] = ("s", "t", "x", "ct"), *,
                  treatment: Literal["send", "incentive"] = "send", oracle: np.ndarray | None = None,
                  min_rows: int = 500, seed: int = 0) -> tuple[pd.DataFrame, dict[tuple[str, str], pd.DataFrame]]:
    """Per stage and learner: Qini coefficient, AUUC, uplift at 30% on held-out customers (conversion).

    Returns the table (plus an ``oracle`` row per stage when ``oracle`` is
    given; random targeting is 0 by construction; stage ``all`` pools every
    stage's held-out rows) and the Qini curves keyed by ``(stage, learner)``.
    """
    rows, t = treatment_rows(log, treatment)
    fit_rows, test_rows = split_customers(log, 0.5, seed)
    x = context_features(log.candidates).to_numpy()
    y = log.rewards["conversion"].to_numpy()
    stage = log.candidates["stage"].astype(str).to_numpy()
    out: list[dict[str, object]] = []
    curves: dict[tuple[str, str], pd.DataFrame] = {}
    pooled: dict[str, list[np.ndarray]] = {}
    pooled_rows: list[np.ndarray] = []
    pooled_e: list[np.ndarray] = []
    for s in sorted(set(stage[rows]) - set(TRANSACTIONAL_STAGES)):
        tr, te = rows & fit_rows & (stage == s), rows & test_rows & (stage == s)
        if min(t[tr].sum(), (1 - t[tr]).sum(), t[te].sum(), (1 - t[te]).sum()) < min_rows // 5 or tr.sum() < min_rows:
            continue
        e_tr, e_te = np.full(int(tr.sum()), t[tr].mean()), np.full(int(te.sum()), t[te].mean())
        scores: dict[str, np.ndarray] = {
            str(name): make_learner(name, seed).fit(x[tr], t[tr], y[tr], propensity=e_tr).predict(x[te])
            for name in learners}
        if oracle is not None:
            scores["oracle"] = np.asarray(oracle)[te]
        pooled_rows.append(np.flatnonzero(te))
        pooled_e.append(e_te)
        for name, score in scores.items():
            pooled.setdefault(name, []).append(score)
            out.append(_scores_row(s, name, y[te], t[te], score, e_te, curves))
    if pooled_rows:
        # Every stage's held-out rows together: does the score rank triggers across stages too?
        idx, e_all = np.concatenate(pooled_rows), np.concatenate(pooled_e)
        for name, parts in pooled.items():
            out.append(_scores_row("all", name, y[idx], t[idx], np.concatenate(parts), e_all, curves))
    return pd.DataFrame(out), curves


def _scores_row(stage: str, name: str, y: np.ndarray, t: np.ndarray, score: np.ndarray, e: np.ndarray,
                curves: dict[tuple[str, str], pd.DataFrame]) -> dict[str, object]:
    curves[(stage, name)] = qini_curve(y, t, score, e)
    return {"stage": stage, "learner": name, "rows": len(y), "qini": qini_coefficient(y, t, score, e),
            "auuc": auuc(y, t, score, e), "uplift_at_30": uplift_at_k(y, t, score, 0.3, e),
            "average_effect": float(y[t == 1].mean() - y[t == 0].mean())}
