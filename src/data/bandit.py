"""The logged bandit: what a logging policy chose, with which probability, and what followed.

One frozen, validated type, :class:`LoggedBandit`, below every layer that
fits or judges a policy: the off-policy estimators
(:mod:`cadence.evaluation.estimators`) read its arrays directly, reward
models and learned policies read its context. Two constructors:

* any logged-bandit table: the arrays themselves (``LoggedBandit(action=...,
  reward=..., pscore=..., n_actions=...)``) or a DataFrame
  (:meth:`LoggedBandit.from_frame`: context columns, action, one or several
  rewards, propensity, optional groups);
* a shop's messages log: :func:`cadence.features.logged.log_from_tables` /
  :func:`~cadence.workflows.logs.load_log` (the candidates' context, the
  action codes, every metric's reward, customers as groups).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

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


def _frame(name: str, value: Any, n: int) -> pd.DataFrame:
    if not isinstance(value, pd.DataFrame):
        raise ValueError(f"{name}: expected a DataFrame, got {type(value).__name__}")
    if len(value) != n:
        raise ValueError(f"{name}: expected {n} rows like action, got {len(value)}")
    return value


@dataclass(frozen=True, eq=False, kw_only=True)
class LoggedBandit:
    """A validated logged-bandit table: one row per logged decision.

    Fields are keyword-only. Arrays are stored as read-only views (no copy)
    and frames as given (not copied; do not modify them); the constructor
    checks every field and
    raises ``ValueError("<field>: <problem>")``. Estimators read ``action``,
    ``reward``, ``pscore`` and ``n_actions``; reward models ``context`` (or
    ``candidates``); clustered intervals and customer splits ``groups``.

    Parameters
    ----------
    action : (n,) int array in ``[0, n_actions)``
        The action the logging policy took. At least one row.
    reward : (n,) float array, optional
        The observed reward the estimators read (e.g. converted 0/1, or
        revenue), finite. Give either ``reward`` or ``rewards``.
    pscore : (n,) float array in ``(0, 1]``
        The logging policy's probability of the logged action given the
        context (``messages.propensity``). ``1`` means the logging policy was
        deterministic in that context.
    n_actions : int
        Number of actions; columns of every ``action_dist`` and
        ``estimated_rewards``.
    context : (n, d) float array, optional
        Numeric features a generic reward model may use
        (:func:`~cadence.evaluation.reward_models.fit_reward_model`).
    action_names : sequence of n_actions str, optional
        Labels of the action codes, in code order.
    groups : (n,) int array >= 0, optional
        Cluster code per row (a shop's customer): rows of one group are
        resampled together by clustered intervals and kept together by
        :func:`split_customers`.
    candidates : DataFrame of n rows, optional
        The decision context as a table, what a target
        :class:`~cadence.contract.actions.Policy` is asked to decide on
        (a shop's trigger candidates, :func:`~cadence.features.logged.logged_candidates`).
    rewards : DataFrame of n rows, optional
        Several rewards (metrics) per row, one finite numeric column each;
        ``reward`` is then the column ``metric`` (see :meth:`for_metric`).
    metric : str, optional
        The column of ``rewards`` that ``reward`` holds (default: the first).
        Only with ``rewards``.

    Examples
    --------
    >>> import numpy as np
    >>> fb = LoggedBandit(action=np.array([0, 1, 1]), reward=np.array([0.0, 1.0, 0.0]),
    ...                   pscore=np.array([0.5, 0.5, 0.5]), n_actions=2)
    >>> fb.n
    3
    >>> import pandas as pd
    >>> log = LoggedBandit(action=np.array([0, 1]), pscore=np.array([0.5, 0.5]), n_actions=2,
    ...                    rewards=pd.DataFrame({"open": [1.0, 0.0], "click": [0.0, 0.0]}))
    >>> log.metric, log.reward.tolist(), log.for_metric("click").reward.tolist()
    ('open', [1.0, 0.0], [0.0, 0.0])
    """

    action: NDArray[np.integer[Any]]
    reward: FloatArray | None = None
    pscore: FloatArray
    n_actions: int
    context: FloatArray | None = None
    action_names: tuple[str, ...] | None = None
    groups: NDArray[np.int64] | None = None
    candidates: pd.DataFrame | None = None
    rewards: pd.DataFrame | None = None
    metric: str | None = None

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

        rewards, metric = self.rewards, self.metric
        if rewards is None:
            if metric is not None:
                raise ValueError(f"metric: {metric!r} names a column of rewards, but no rewards were given")
            if self.reward is None:
                raise ValueError("reward: expected a reward per row (reward, or rewards with metric)")
            reward = float_vector("reward", self.reward, n)
        else:
            if self.reward is not None:
                raise ValueError("reward: give reward or rewards (with metric), not both")
            rewards = _frame("rewards", rewards, n)
            if rewards.shape[1] == 0:
                raise ValueError("rewards: expected at least one column")
            for col in rewards.columns:
                float_vector(f"rewards.{col}", rewards[col].to_numpy(), n)
            if metric is None:
                metric = str(rewards.columns[0])
            if metric not in rewards:
                raise ValueError(f"metric: {metric!r} is not one of {tuple(rewards.columns)}")
            reward = float_vector("reward", rewards[metric].to_numpy(), n)

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

        groups = None
        if self.groups is not None:
            groups = np.asarray(self.groups)
            if groups.ndim != 1:
                raise ValueError(f"groups: expected a 1-d array (n,), got shape {groups.shape}")
            if groups.shape[0] != n:
                raise ValueError(f"groups: expected {n} rows like action, got {groups.shape[0]}")
            if not np.issubdtype(groups.dtype, np.integer):
                raise ValueError(
                    f"groups: expected integer codes, got dtype {groups.dtype} (from_frame codes any labels)"
                )
            negative = int(np.count_nonzero(groups < 0))
            if negative:
                raise ValueError(f"groups: {negative} rows are negative")
            groups = readonly(groups)

        candidates = None if self.candidates is None else _frame("candidates", self.candidates, n)

        object.__setattr__(self, "n_actions", k)
        object.__setattr__(self, "action", readonly(action))
        object.__setattr__(self, "reward", readonly(reward))
        object.__setattr__(self, "pscore", readonly(pscore))
        object.__setattr__(self, "context", context)
        object.__setattr__(self, "action_names", names)
        object.__setattr__(self, "groups", groups)
        object.__setattr__(self, "candidates", candidates)
        object.__setattr__(self, "metric", metric)

    @property
    def n(self) -> int:
        """Number of logged rows."""
        return int(self.action.shape[0])

    @cached_property
    def action_counts(self) -> NDArray[np.int64]:
        """(n_actions,) how often each action appears in the log."""
        return readonly(np.bincount(self.action, minlength=self.n_actions))

    def for_metric(self, metric: str) -> LoggedBandit:
        """The same log with ``reward`` = the column ``metric`` of ``rewards``.

        Raises ``ValueError("metric: ...")`` when ``metric`` is not a column.
        """
        if self.rewards is None:
            raise ValueError(f"metric: {metric!r} names a column of rewards, but no rewards were given")
        return replace(self, reward=None, metric=metric)

    def subset(self, rows: ArrayLike) -> LoggedBandit:
        """The rows ``rows`` (a boolean mask or indices) as their own log.

        Every per-row field is subset; ``groups`` keep their codes.
        """
        rows = np.asarray(rows)

        def frame(df: pd.DataFrame | None) -> pd.DataFrame | None:
            return None if df is None else df.iloc[rows].reset_index(drop=True)

        def array(arr: NDArray[Any] | None) -> NDArray[Any] | None:
            return None if arr is None else arr[rows]

        return replace(
            self,
            action=self.action[rows],
            reward=None if self.rewards is not None else self.reward[rows],
            pscore=self.pscore[rows],
            context=array(self.context),
            groups=array(self.groups),
            candidates=frame(self.candidates),
            rewards=frame(self.rewards),
        )

    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        *,
        action: str,
        reward: str | Sequence[str],
        pscore: str,
        actions: Sequence[Hashable] | None = None,
        context: Sequence[str] = (),
        groups: str | None = None,
        metric: str | None = None,
    ) -> LoggedBandit:
        """Build a log from any logged table, e.g. Cadence's ``messages``.

        Parameters
        ----------
        df : DataFrame
            One row per logged decision. Not modified.
        action, pscore : str
            Column names. The action column may hold any labels (``"send"``,
            ``"hold"``, channel names...); they are mapped to integer codes.
        reward : str or sequence of str
            The reward column, or several (they become ``rewards``; ``reward``
            is then ``metric``, default the first).
        actions : sequence, optional
            The action vocabulary in code order (= the column order of every
            ``action_dist``). Default: the categories of a categorical column,
            else the sorted distinct values. Pass it explicitly when the log
            may not contain every action.
        context : sequence of str
            Numeric feature columns (encode categoricals first).
        groups : str, optional
            A column of cluster labels (e.g. ``customer_id``); coded in sorted
            label order.
        metric : str, optional
            With several ``reward`` columns: the one ``reward`` holds.

        Returns
        -------
        LoggedBandit
            With ``action_names`` set to ``str`` of each action label.

        Examples
        --------
        >>> import pandas as pd
        >>> msgs = pd.DataFrame({"action": ["send", "hold", "send"], "customer_id": ["b", "a", "b"],
        ...                      "propensity": [0.8, 0.2, 0.8], "converted": [1.0, 0.0, 0.0]})
        >>> fb = LoggedBandit.from_frame(msgs, action="action", reward="converted",
        ...                              pscore="propensity", actions=["hold", "send"], groups="customer_id")
        >>> fb.action.tolist(), fb.action_names, fb.groups.tolist()
        ([1, 0, 1], ('hold', 'send'), [1, 0, 1])
        """
        reward_cols = [reward] if isinstance(reward, str) else list(reward)
        if not reward_cols:
            raise ValueError("reward: expected at least one reward column")
        named = [("action", action), *(("reward", c) for c in reward_cols), ("pscore", pscore)]
        for field_name, col in named:
            if col not in df.columns:
                raise ValueError(f"{field_name}: column {col!r} not in frame")
        for col in context:
            if col not in df.columns:
                raise ValueError(f"context: column {col!r} not in frame")
        if groups is not None and groups not in df.columns:
            raise ValueError(f"groups: column {groups!r} not in frame")

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
        group_codes = None
        if groups is not None:
            labels = df[groups]
            missing = int(labels.isna().sum())
            if missing:
                raise ValueError(f"groups: {missing} rows missing")
            group_codes = pd.Categorical(labels).codes.astype(np.int64)
        if isinstance(reward, str):
            one, several = numeric("reward", reward), None
        else:
            one = None
            several = pd.DataFrame({c: numeric("reward", c) for c in reward_cols})
        return cls(
            action=codes.astype(np.int64),
            reward=one,
            pscore=numeric("pscore", pscore),
            n_actions=len(vocab),
            context=ctx,
            action_names=tuple(str(a) for a in vocab),
            groups=group_codes,
            rewards=several,
            metric=metric,
        )


def split_customers(log: LoggedBandit, share: float = 0.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (fit, evaluate) splitting the log's rows by customer.

    Learned policies are fitted on one part and judged on the other, so
    their estimates are not flattered by the rows they were fitted on.
    """
    if log.groups is None:
        raise ValueError("groups: split_customers needs the log's groups (a customer code per row)")
    rng = np.random.default_rng(seed)
    in_fit = rng.random(int(log.groups.max()) + 1 if log.n else 0) < share
    fit_rows = in_fit[log.groups]
    return fit_rows, ~fit_rows
