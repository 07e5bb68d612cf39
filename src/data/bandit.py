"""The logged bandit: what a logging policy chose, with which probability, and what followed.

Two views of one log live here, below every layer that fits or judges a
policy: :class:`LoggedFeedback`, the generic frozen and validated arrays an
off-policy estimator reads (any action set), and :class:`LoggedBandit`, a
shop's messages log with the candidates' context beside the actions
(built by :func:`cadence.features.logged.log_from_tables`).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from cadence.contract.actions import ACTION_NAMES, N_ACTIONS

FloatArray = NDArray[np.float64]


def readonly(arr: NDArray[Any]) -> NDArray[Any]:
    # A read-only *view*: the caller's array keeps its own flags untouched.
    view = arr.view()
    view.flags.writeable = False
    return view


def is_real(arr: NDArray[Any]) -> bool:
    return bool(np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)) and not (
        np.issubdtype(arr.dtype, np.complexfloating)
    )


def float_vector(name: str, value: ArrayLike, n: int) -> FloatArray:
    arr = np.asarray(value)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-d array (n,), got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"{name}: expected {n} rows like action, got {arr.shape[0]}")
    if not is_real(arr):
        raise ValueError(f"{name}: expected numbers, got dtype {arr.dtype}")
    out = arr.astype(np.float64, copy=False)
    bad = int(np.count_nonzero(~np.isfinite(out)))
    if bad:
        raise ValueError(f"{name}: {bad} rows are not finite")
    return out


@dataclass(frozen=True, eq=False)
class LoggedFeedback:
    """A validated logged-bandit table: one row per logged decision.

    Arrays are stored as read-only views (no copy); the constructor checks
    every field and raises ``ValueError("<field>: <problem>")``.

    Parameters
    ----------
    action : (n,) int array in ``[0, n_actions)``
        The action the logging policy took.
    reward : (n,) float array
        The observed reward (e.g. converted 0/1, or revenue), finite.
    pscore : (n,) float array in ``(0, 1]``
        The logging policy's probability of the logged action given the
        context (``messages.propensity``). ``1`` means the logging policy was
        deterministic in that context.
    n_actions : int
        Number of actions; columns of every ``action_dist`` and
        ``estimated_rewards``.
    context : (n, d) float array, optional
        Features the reward model may use (:func:`fit_reward_model`).
    action_names : sequence of n_actions str, optional
        Labels of the action codes, in code order.

    Examples
    --------
    >>> import numpy as np
    >>> fb = LoggedFeedback(action=np.array([0, 1, 1]), reward=np.array([0.0, 1.0, 0.0]),
    ...                     pscore=np.array([0.5, 0.5, 0.5]), n_actions=2)
    >>> fb.n
    3
    """

    action: NDArray[np.integer[Any]]
    reward: FloatArray
    pscore: FloatArray
    n_actions: int
    context: FloatArray | None = None
    action_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        k = self.n_actions
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"n_actions: expected an int >= 1, got {k!r}")
        k = int(k)

        action = np.asarray(self.action)
        if action.ndim != 1:
            raise ValueError(f"action: expected a 1-d array (n,), got shape {action.shape}")
        n = action.shape[0]
        if n == 0:
            raise ValueError("action: empty log (0 rows)")
        if not np.issubdtype(action.dtype, np.integer):
            raise ValueError(f"action: expected integer codes, got dtype {action.dtype}")
        outside = int(np.count_nonzero((action < 0) | (action >= k)))
        if outside:
            raise ValueError(f"action: {outside} rows outside [0, {k})")

        reward = float_vector("reward", self.reward, n)
        pscore = np.asarray(self.pscore)
        if pscore.ndim == 1 and pscore.shape[0] == n and is_real(pscore):
            pscore = pscore.astype(np.float64, copy=False)
            # NaN fails both comparisons, so it is counted as outside.
            outside = int(np.count_nonzero(~((pscore > 0.0) & (pscore <= 1.0))))
            if outside:
                raise ValueError(f"pscore: {outside} rows outside (0, 1]")
        else:
            pscore = float_vector("pscore", pscore, n)  # raises the shape/dtype message

        context = None
        if self.context is not None:
            context = np.asarray(self.context)
            if context.ndim != 2:
                raise ValueError(f"context: expected a 2-d array (n, d), got shape {context.shape}")
            if context.shape[0] != n:
                raise ValueError(f"context: expected {n} rows like action, got {context.shape[0]}")
            if not is_real(context):
                raise ValueError(f"context: expected numbers, got dtype {context.dtype}")
            context = context.astype(np.float64, copy=False)
            bad = int(np.count_nonzero(~np.isfinite(context).all(axis=1)))
            if bad:
                raise ValueError(f"context: {bad} rows are not finite")
            context = readonly(context)

        names = None
        if self.action_names is not None:
            if isinstance(self.action_names, str):
                raise ValueError("action_names: expected a sequence of names, got a str")
            names = tuple(str(a) for a in self.action_names)
            if len(names) != k:
                raise ValueError(f"action_names: expected {k} names, got {len(names)}")
            dupes = sorted({a for a in names if names.count(a) > 1})
            if dupes:
                raise ValueError(f"action_names: duplicate names {dupes}")

        object.__setattr__(self, "n_actions", k)
        object.__setattr__(self, "action", readonly(action))
        object.__setattr__(self, "reward", readonly(reward))
        object.__setattr__(self, "pscore", readonly(pscore))
        object.__setattr__(self, "context", context)
        object.__setattr__(self, "action_names", names)

    @property
    def n(self) -> int:
        """Number of logged rows."""
        return int(self.action.shape[0])

    @cached_property
    def action_counts(self) -> NDArray[np.int64]:
        """(n_actions,) how often each action appears in the log."""
        return readonly(np.bincount(self.action, minlength=self.n_actions))

    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        *,
        action: str,
        reward: str,
        pscore: str,
        actions: Sequence[Hashable] | None = None,
        context: Sequence[str] = (),
    ) -> LoggedFeedback:
        """Build feedback from any logged table, e.g. Cadence's ``messages``.

        Parameters
        ----------
        df : DataFrame
            One row per logged decision. Not modified.
        action, reward, pscore : str
            Column names. The action column may hold any labels (``"send"``,
            ``"hold"``, channel names...); they are mapped to integer codes.
        actions : sequence, optional
            The action vocabulary in code order (= the column order of every
            ``action_dist``). Default: the categories of a categorical column,
            else the sorted distinct values. Pass it explicitly when the log
            may not contain every action.
        context : sequence of str
            Numeric feature columns (encode categoricals first).

        Returns
        -------
        LoggedFeedback
            With ``action_names`` set to ``str`` of each action label.

        Examples
        --------
        >>> import pandas as pd
        >>> msgs = pd.DataFrame({"action": ["send", "hold", "send"],
        ...                      "propensity": [0.8, 0.2, 0.8], "converted": [1.0, 0.0, 0.0]})
        >>> fb = LoggedFeedback.from_frame(msgs, action="action", reward="converted",
        ...                                pscore="propensity", actions=["hold", "send"])
        >>> fb.action.tolist(), fb.action_names
        ([1, 0, 1], ('hold', 'send'))
        """
        for field_name, col in (("action", action), ("reward", reward), ("pscore", pscore)):
            if col not in df.columns:
                raise ValueError(f"{field_name}: column {col!r} not in frame")
        for col in context:
            if col not in df.columns:
                raise ValueError(f"context: column {col!r} not in frame")

        raw = df[action]
        missing = int(raw.isna().sum())
        if missing:
            raise ValueError(f"action: {missing} rows missing")
        if actions is None:
            if isinstance(raw.dtype, pd.CategoricalDtype):
                vocab = list(raw.cat.categories)
            else:
                vocab = sorted(raw.unique().tolist())
        else:
            vocab = list(actions)
        if not vocab:
            raise ValueError("actions: expected at least one action")
        dupes = sorted({str(a) for a in vocab if vocab.count(a) > 1})
        if dupes:
            raise ValueError(f"actions: duplicate values {dupes}")
        codes = pd.Categorical(raw, categories=vocab).codes
        unknown = codes < 0
        if unknown.any():
            examples = sorted({str(v) for v in raw[unknown].unique()[:3]})
            raise ValueError(
                f"action: {int(unknown.sum())} rows have values not in actions, e.g. {examples}"
            )

        def numeric(field_name: str, col: str) -> FloatArray:
            series = df[col]
            if not (
                pd.api.types.is_numeric_dtype(series.dtype)
                or pd.api.types.is_bool_dtype(series.dtype)
            ):
                raise ValueError(
                    f"{field_name}: column {col!r} is not numeric (dtype {series.dtype})"
                    + ("; encode it first, e.g. pd.get_dummies" if field_name == "context" else "")
                )
            return series.to_numpy(dtype=np.float64, na_value=np.nan)

        ctx = None
        if context:
            ctx = np.column_stack([numeric("context", c) for c in context])
        return cls(
            action=codes.astype(np.int64),
            reward=numeric("reward", reward),
            pscore=numeric("pscore", pscore),
            n_actions=len(vocab),
            context=ctx,
            action_names=tuple(str(a) for a in vocab),
        )


@dataclass
class LoggedBandit:
    """A shop's messages log as a logged bandit (rows in ``messages`` order)."""

    candidates: pd.DataFrame
    actions: np.ndarray
    pscore: np.ndarray
    rewards: pd.DataFrame
    groups: np.ndarray  # customer codes, for cross-fitting by customer

    @property
    def n(self) -> int:
        return len(self.actions)

    def feedback(self, metric: str) -> LoggedFeedback:
        """The generic :class:`LoggedFeedback` for one metric."""
        if metric not in self.rewards:
            raise ValueError(f"metric: {metric!r} is not one of {tuple(self.rewards.columns)}")
        return LoggedFeedback(action=self.actions, reward=self.rewards[metric].to_numpy(),
                              pscore=self.pscore, n_actions=N_ACTIONS, action_names=ACTION_NAMES)

    def subset(self, rows: np.ndarray) -> LoggedBandit:
        """The rows ``rows`` (a boolean mask or indices) as their own log."""
        return LoggedBandit(self.candidates.iloc[rows].reset_index(drop=True), self.actions[rows],
                            self.pscore[rows], self.rewards.iloc[rows].reset_index(drop=True), self.groups[rows])


def split_customers(log: LoggedBandit, share: float = 0.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (fit, evaluate) splitting the log's rows by customer.

    Learned policies are fitted on one part and judged on the other, so
    their estimates are not flattered by the rows they were fitted on.
    """
    rng = np.random.default_rng(seed)
    in_fit = rng.random(int(log.groups.max()) + 1 if log.n else 0) < share
    fit_rows = in_fit[log.groups]
    return fit_rows, ~fit_rows
