"""Reward models ``q(x, a)`` of a shop's messages log: open, click, conversion and net revenue per action.

The direct-method and doubly-robust estimators read these; so do the learned
policy's tuning and the promotion gate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from cadence.contract.actions import N_ACTIONS
from cadence.data.bandit import LoggedBandit
from cadence.features.context import context_features, with_actions


class ResponseModel:
    """Cross-fitted reward model ``q(x, a)`` of one metric, scored only where needed.

    Parameters
    ----------
    estimator
        A scikit-learn regressor (default: gradient boosting, 100 trees of
        31 leaves, on one thread: fast and reproducible here).
    folds
        Cross-fitting folds, split by customer.
    """

    def __init__(self, estimator: Any | None = None, folds: int = 2, random_state: int = 0) -> None:
        self.estimator = estimator
        self.folds = folds
        self.random_state = random_state

    def _model(self) -> Any:
        from sklearn.base import clone
        from sklearn.ensemble import HistGradientBoostingRegressor

        if self.estimator is not None:
            return clone(self.estimator)
        return HistGradientBoostingRegressor(max_iter=100, learning_rate=0.1, random_state=self.random_state)

    def fit(self, log: LoggedBandit, metric: str, resample: np.ndarray | None = None) -> ResponseModel:
        """Fit one model per fold on the other folds' rows.

        ``resample`` (optional, ``(n,)`` integers >= 0) is each row's
        multiplicity in a bootstrap resample: a row is repeated that many
        times in training (0 leaves it out) and every row is still scored.
        """
        x = context_features(log.candidates).to_numpy()
        y = log.rewards[metric].to_numpy()
        self.fold_ = (log.groups * 2654435761 + self.random_state) % self.folds
        self.x_ = x
        self.models_ = []
        with threadpool_limits(1):
            for f in range(self.folds):
                train = np.flatnonzero(self.fold_ != f)
                if resample is not None:
                    train = np.repeat(train, np.asarray(resample)[train])
                self.models_.append(self._model().fit(with_actions(x[train], log.action[train]), y[train]))
        return self

    def predict_at(self, candidates: pd.DataFrame, codes: np.ndarray) -> np.ndarray:
        """Out-of-fold ``q`` at other contexts of the same logged rows (e.g. replayed fatigue)."""
        x = context_features(candidates).to_numpy()
        out = np.empty(len(codes))
        with threadpool_limits(1):
            for f, model in enumerate(self.models_):
                rows = self.fold_ == f
                out[rows] = model.predict(with_actions(x[rows], codes[rows]))
        return out

    def matrix(self, code_sets: Sequence[np.ndarray]) -> np.ndarray:
        """``(n, n_actions)`` predictions filled at every row's codes in ``code_sets`` (0 elsewhere).

        Estimators only read ``q`` at the logged action and where a target
        policy puts mass, so the rest of the matrix is never used.
        """
        n = len(self.fold_)
        q = np.zeros((n, N_ACTIONS))
        done = np.zeros((n, N_ACTIONS), bool)
        for codes in code_sets:
            rows = np.flatnonzero(~done[np.arange(n), codes])
            if rows.size:
                q[rows, codes[rows]] = self._predict_rows(rows, codes[rows])
                done[rows, codes[rows]] = True
        return q

    def _predict_rows(self, rows: np.ndarray, codes: np.ndarray) -> np.ndarray:
        out = np.empty(len(rows))
        with threadpool_limits(1):
            for f, model in enumerate(self.models_):
                sel = self.fold_[rows] == f
                if sel.any():
                    out[sel] = model.predict(with_actions(self.x_[rows[sel]], codes[sel]))
        return out
