"""Multi-step message sequences: a small declarative structure, checked, walked and drawn.

A :class:`Sequence` is a named graph of steps that starts when a customer
enters a stage (a trigger) and ends at an :class:`Exit` or when nothing
follows:

* :class:`Send` a message (channel, incentive, recommendation flag);
* :class:`Wait` a number of hours;
* :class:`CheckGoal` — did the customer order since the sequence started? —
  and go on to one step or another (``None`` ends the sequence);
* :class:`Branch` on a :class:`Condition` over the candidate row (its opt-ins
  and customer features);
* :class:`Split` into arms with weights (an A/B test inside the sequence):
  fixed, or learned from the arms' outcomes with :func:`learned_weights`;
* :class:`Exit` the sequence, optionally handing the customer to another stage.

:func:`validate` refuses a definition that cannot run — a branch to an unknown
step, a cycle with no wait in it, weights that do not sum to 1, a step no path
reaches, a cycle with no expiry — with a message naming the step.
:func:`walk` runs a sequence for one trigger against what the shop knows
(the customer's order times), giving the sends with their probabilities (the
product of the split weights on the path, so logs stay evaluable) and the path
taken; :func:`walk_many` runs it for a table of triggers, and
:func:`step_counts` / :func:`sequence_figure` draw the sequence with the counts
that passed each step.

Written by hand: marketing platforms keep their flow builders closed, and
general workflow engines (Airflow, Prefect, state-machine libraries) run live
tasks rather than replaying a flow over history with propensities.

Examples
--------
>>> runs = walk_many(CART_ABANDON, pd.DataFrame({
...     "customer_id": ["a", "b"], "triggered_at": pd.to_datetime(["2025-01-01", "2025-01-01"], utc=True),
...     "opt_in_push": [True, False]}), orders=pd.DataFrame({"customer_id": [], "ts": []}))
>>> [(r.step, r.channel, r.delay_minutes) for r in runs.itertuples()]
[('push', 'push', 20), ('email', 'email', 720), ('email', 'email', 720)]
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from cadence.contract.actions import FOLLOWUP_COLUMNS
from cadence.contract.clock import epoch_seconds
from cadence.contract.tables import CHANNELS, INCENTIVES, STAGES

#: Trigger stages a sequence may start from: the contract's stages plus
#: ``welcome`` (signup), which shops run as a chain although no trigger rule emits it yet.
SEQUENCE_STAGES: tuple[str, ...] = (*STAGES, "welcome")
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
}
_HOUR = 3600


class SequenceError(ValueError):
    """A sequence definition that cannot run; the message names the sequence and the step."""


@dataclass(frozen=True)
class Condition:
    """``column op value`` over a candidate row, e.g. ``Condition("opt_in_push", "==", True)``.

    A missing column or value is false, so a branch never fails on missing data.

    >>> Condition("orders_90d", ">=", 1).holds({"orders_90d": 2})
    True
    >>> Condition("orders_90d", ">=", 1).holds({})
    False
    """

    column: str
    op: str
    value: Any

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise SequenceError(f"condition on {self.column!r}: operator {self.op!r} is not one of {sorted(_OPS)}")

    def holds(self, row: Mapping[str, Any]) -> bool:
        v = row.get(self.column)
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
            return False
        return bool(_OPS[self.op](v, self.value))


@dataclass(frozen=True)
class Send:
    """Send a message now; then go to ``next`` (``None`` ends the sequence)."""

    channel: str
    next: str | None = None
    incentive: str = "none"
    recommend: bool = False


@dataclass(frozen=True)
class Wait:
    """Wait ``hours``; then go to ``next``."""

    hours: float
    next: str | None = None


@dataclass(frozen=True)
class CheckGoal:
    """Did the customer order since the sequence started? Go to ``if_met`` or ``if_not``."""

    if_met: str | None = None
    if_not: str | None = None


@dataclass(frozen=True)
class Branch:
    """Go to ``then`` where ``when`` holds for the candidate row, else to ``otherwise``."""

    when: Condition
    then: str | None = None
    otherwise: str | None = None


@dataclass(frozen=True)
class Split:
    """An A/B split: go to each arm (a step name) with its weight; weights sum to 1.

    ``learned=True`` marks weights that :func:`learned_weights` may update.
    """

    arms: Mapping[str, float]
    learned: bool = False


@dataclass(frozen=True)
class Exit:
    """Leave the sequence, handing the customer to ``to_stage`` (another sequence) when given."""

    to_stage: str | None = None


Step = Send | Wait | CheckGoal | Branch | Split | Exit


def _targets(step: Step) -> list[str | None]:
    if isinstance(step, Send | Wait):
        return [step.next]
    if isinstance(step, CheckGoal):
        return [step.if_met, step.if_not]
    if isinstance(step, Branch):
        return [step.then, step.otherwise]
    if isinstance(step, Split):
        return list(step.arms)
    return []


@dataclass(frozen=True)
class Sequence:
    """A named sequence for one trigger stage; checked by :func:`validate` on creation.

    ``expire_days``: no send more than this long after the trigger (the
    seeds' reminder sequences expire after 14 days); ``None`` for no expiry,
    allowed only for sequences without cycles.
    """

    name: str
    stage: str
    start: str
    steps: Mapping[str, Step] = field(default_factory=dict)
    expire_days: float | None = 14.0

    def __post_init__(self) -> None:
        validate(self)

    def with_weights(self, step: str, weights: Mapping[str, float]) -> Sequence:
        """A copy with the split ``step``'s arm weights replaced (checked again)."""
        split = self.steps.get(step)
        if not isinstance(split, Split):
            raise SequenceError(f"sequence {self.name!r} step {step!r}: not a split")
        steps = dict(self.steps)
        steps[step] = Split(dict(weights), learned=split.learned)
        return Sequence(self.name, self.stage, self.start, steps, self.expire_days)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready definition (exported with the policy); :func:`from_dict` reads it back."""
        steps = {}
        for name, s in self.steps.items():
            d: dict[str, Any] = {"type": type(s).__name__}
            if isinstance(s, Branch):
                d.update(when=[s.when.column, s.when.op, s.when.value], then=s.then, otherwise=s.otherwise)
            elif isinstance(s, Split):
                d.update(arms=dict(s.arms), learned=s.learned)
            else:
                d.update(vars(s))
            steps[name] = d
        return {"name": self.name, "stage": self.stage, "start": self.start, "expire_days": self.expire_days,
                "steps": steps}


_TYPES: dict[str, type] = {t.__name__: t for t in (Send, Wait, CheckGoal, Branch, Split, Exit)}


def from_dict(d: Mapping[str, Any]) -> Sequence:
    """The :class:`Sequence` of a :meth:`Sequence.to_dict` definition (validated).

    >>> from_dict(CART_ABANDON.to_dict()) == CART_ABANDON
    True
    """
    steps: dict[str, Step] = {}
    for name, s in d["steps"].items():
        s = dict(s)
        kind = s.pop("type", None)
        if kind not in _TYPES:
            raise SequenceError(f"sequence {d.get('name')!r} step {name!r}: unknown type {kind!r} "
                                f"(one of {sorted(_TYPES)})")
        if kind == "Branch":
            s["when"] = Condition(*s["when"])
        steps[name] = _TYPES[kind](**s)
    return Sequence(d["name"], d["stage"], d["start"], steps, d.get("expire_days", 14.0))


def validate(seq: Sequence) -> None:
    """Raise :class:`SequenceError` naming the step when ``seq`` cannot run.

    >>> try:
    ...     Sequence("s", "cart_abandon", "a", {"a": Send("email", next="b")})  # validated on creation
    ... except SequenceError as e:
    ...     print(e)
    sequence 's' step 'a': goes to unknown step 'b'
    """
    where = f"sequence {seq.name!r}"
    if seq.stage not in SEQUENCE_STAGES:
        raise SequenceError(f"{where}: stage {seq.stage!r} is not one of {SEQUENCE_STAGES}")
    if seq.start not in seq.steps:
        raise SequenceError(f"{where}: start step {seq.start!r} is not defined")
    for name, step in seq.steps.items():
        at = f"{where} step {name!r}"
        if not isinstance(step, Step):
            raise SequenceError(f"{at}: {type(step).__name__} is not a step")
        for target in _targets(step):
            if target is not None and target not in seq.steps:
                raise SequenceError(f"{at}: goes to unknown step {target!r}")
        if isinstance(step, Send):
            if step.channel not in CHANNELS:
                raise SequenceError(f"{at}: channel {step.channel!r} is not one of {CHANNELS}")
            if step.incentive not in INCENTIVES:
                raise SequenceError(f"{at}: incentive {step.incentive!r} is not one of {INCENTIVES}")
        if isinstance(step, Wait) and not step.hours > 0:
            raise SequenceError(f"{at}: a wait needs hours > 0, got {step.hours}")
        if isinstance(step, Split):
            w = np.array(list(step.arms.values()), float)
            if len(w) < 2:
                raise SequenceError(f"{at}: a split needs at least two arms")
            if (w < 0).any() or not np.isclose(w.sum(), 1.0):
                raise SequenceError(f"{at}: weights {dict(step.arms)} must be >= 0 and sum to 1 (sum {w.sum():g})")
        if isinstance(step, Exit) and step.to_stage is not None and step.to_stage not in SEQUENCE_STAGES:
            raise SequenceError(f"{at}: exits to unknown stage {step.to_stage!r}")
    reached = _reachable(seq)
    for name in seq.steps:
        if name not in reached:
            raise SequenceError(f"{where} step {name!r}: no path from the start reaches it")
    cycle = _cycle(seq, skip_waits=True)
    if cycle:
        raise SequenceError(f"{where} step {cycle[0]!r}: cycle {' -> '.join(cycle)} has no wait, it would never end")
    cycle = _cycle(seq, skip_waits=False)
    if cycle and seq.expire_days is None:
        raise SequenceError(f"{where} step {cycle[0]!r}: cycle {' -> '.join(cycle)} needs expire_days to end")


def _reachable(seq: Sequence) -> set[str]:
    seen, todo = set(), [seq.start]
    while todo:
        s = todo.pop()
        if s in seen:
            continue
        seen.add(s)
        todo.extend(t for t in _targets(seq.steps[s]) if t is not None)
    return seen


def _cycle(seq: Sequence, skip_waits: bool) -> list[str]:
    """A cycle as a path of step names (first repeated at the end), or ``[]``."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    path: list[str] = []

    def visit(s: str) -> list[str]:
        if skip_waits and isinstance(seq.steps[s], Wait):
            return []
        if state.get(s) == 1:
            return [*path[path.index(s):], s]
        if state.get(s) == 2:
            return []
        state[s] = 1
        path.append(s)
        for t in _targets(seq.steps[s]):
            if t is not None and (found := visit(t)):
                return found
        path.pop()
        state[s] = 2
        return []

    for s in seq.steps:
        if found := visit(s):
            return found
    return []


@dataclass(frozen=True)
class SequenceSend:
    """One send of a walked sequence."""

    step: str
    at_s: int
    channel: str
    incentive: str
    recommend: bool
    probability: float


@dataclass(frozen=True)
class SequenceRun:
    """What :func:`walk` did for one trigger: the sends, the path and why it ended."""

    sends: tuple[SequenceSend, ...]
    path: tuple[str, ...]
    ended: str  # "end", "goal", "exit", "expired"
    exit_to: str | None = None


def walk(seq: Sequence, row: Mapping[str, Any], start_s: int, order_s: np.ndarray,
         rng: np.random.Generator, max_steps: int = 1_000) -> SequenceRun:
    """Run ``seq`` for one trigger at ``start_s`` (epoch seconds).

    ``order_s`` are the customer's order times (sorted, epoch seconds); a
    goal check at time ``t`` sees the orders in ``(start_s, t]`` only, i.e.
    what was known then. Splits draw with ``rng``.

    >>> run = walk(CART_ABANDON, {"opt_in_push": True}, 0, np.array([3_600]), np.random.default_rng(0))
    >>> run.path, run.ended, [s.step for s in run.sends]
    (('push_opted_in', 'wait_20m', 'purchased_20m', 'push', 'wait_12h', 'purchased_12h'), 'goal', ['push'])
    """
    t, prob = int(start_s), 1.0
    expire = None if seq.expire_days is None else start_s + seq.expire_days * 86_400
    sends: list[SequenceSend] = []
    path: list[str] = []
    name: str | None = seq.start
    for _ in range(max_steps):
        if name is None:
            return SequenceRun(tuple(sends), tuple(path), "end")
        if expire is not None and t > expire:
            return SequenceRun(tuple(sends), tuple(path), "expired")
        path.append(name)
        step = seq.steps[name]
        if isinstance(step, Send):
            sends.append(SequenceSend(name, t, step.channel, step.incentive, step.recommend, prob))
            name = step.next
        elif isinstance(step, Wait):
            t += int(round(step.hours * _HOUR))
            name = step.next
        elif isinstance(step, CheckGoal):
            k = np.searchsorted(order_s, start_s, side="right")
            met = k < len(order_s) and order_s[k] <= t
            if met and step.if_met is None:
                return SequenceRun(tuple(sends), tuple(path), "goal")
            name = step.if_met if met else step.if_not
        elif isinstance(step, Branch):
            name = step.then if step.when.holds(row) else step.otherwise
        elif isinstance(step, Split):
            arms, w = list(step.arms), np.array(list(step.arms.values()), float)
            j = int(rng.choice(len(arms), p=w / w.sum()))
            prob *= float(w[j])
            name = arms[j]
        else:
            return SequenceRun(tuple(sends), tuple(path), "exit", step.to_stage)
    raise SequenceError(f"sequence {seq.name!r}: more than {max_steps} steps for one trigger")


def walk_many(seq: Sequence, triggers: pd.DataFrame, orders: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Walk ``seq`` for every row of ``triggers`` (``customer_id``, ``triggered_at`` and the
    row's features); one row per send: the trigger's index (``trigger``), ``step``,
    ``send_at``, ``delay_minutes``, ``channel``, ``incentive``, ``recommend``,
    ``propensity``. The path of every trigger is in ``.attrs["paths"]``.
    """
    ts = epoch_seconds(orders["ts"]) if len(orders) else np.zeros(0, np.int64)
    by_customer = {str(c): np.sort(g.to_numpy()) for c, g in
                   pd.Series(ts, index=orders["customer_id"].astype(str)).groupby(level=0)}
    start = epoch_seconds(triggers["triggered_at"])
    rng = np.random.default_rng(seed)
    rows, paths = [], []
    none = np.zeros(0, np.int64)
    records: list[dict[str, Any]] = triggers.to_dict("records")  # type: ignore[assignment]
    for i, (rec, t0) in enumerate(zip(records, start, strict=True)):
        run = walk(seq, rec, int(t0), by_customer.get(str(rec["customer_id"]), none), rng)
        paths.append(run)
        rows += [(triggers.index[i], s.step, s.at_s, (s.at_s - t0) // 60, s.channel, s.incentive, s.recommend,
                  s.probability) for s in run.sends]
    out = pd.DataFrame(rows, columns=["trigger", "step", "send_s", "delay_minutes", "channel", "incentive",
                                      "recommend", "propensity"])
    out.insert(2, "send_at", pd.to_datetime(out.pop("send_s"), unit="s", utc=True))
    out["delay_minutes"] = out["delay_minutes"].astype(np.int64)
    out.attrs["paths"] = paths
    return out


def step_counts(seq: Sequence, runs: Iterable[SequenceRun]) -> pd.DataFrame:
    """Transitions ``source -> target`` with how many triggers passed each (``end``/``goal``/
    ``expired``/``exit:<stage>`` as final targets).

    >>> step_counts(CART_ABANDON, [walk(CART_ABANDON, {}, 0, np.zeros(0), np.random.default_rng(0))]).values.tolist()[-1]
    ['email', 'end', 1]
    """
    counts: dict[tuple[str, str], int] = {}
    for run in runs:
        final = f"exit:{run.exit_to}" if run.ended == "exit" and run.exit_to else run.ended
        for a, b in zip(run.path, [*run.path[1:], final], strict=True):
            counts[(a, b)] = counts.get((a, b), 0) + 1
    order = {s: i for i, s in enumerate(seq.steps)}
    t = pd.DataFrame([(a, b, n) for (a, b), n in counts.items()], columns=["source", "target", "count"])
    return t.sort_values(["source", "target"], key=lambda c: c.map(lambda s: order.get(s, len(order)))).reset_index(drop=True)


def sequence_figure(seq: Sequence, counts: pd.DataFrame) -> go.Figure:
    """The sequence as a Sankey diagram whose link widths are the counts that passed each step."""
    nodes = list(dict.fromkeys([*seq.steps, *counts["source"], *counts["target"]]))
    idx = {n: i for i, n in enumerate(nodes)}

    def label(n: str) -> str:
        s = seq.steps.get(n)
        if isinstance(s, Send):
            return f"{n}: {s.channel}" + (f" + {s.incentive}" if s.incentive != "none" else "")
        if isinstance(s, Wait):
            return f"{n}: wait {s.hours:g} h"
        return n

    fig = go.Figure(go.Sankey(
        node={"label": [label(n) for n in nodes], "pad": 18},
        link={"source": [idx[s] for s in counts["source"]], "target": [idx[t] for t in counts["target"]],
              "value": counts["count"].tolist()},
    ))
    return fig.update_layout(title=f"Sequence {seq.name} ({seq.stage}): triggers through each step")


def learned_weights(successes: Mapping[str, float], trials: Mapping[str, float], *, floor: float = 0.05,
                    draws: int = 4_000, seed: int = 0) -> dict[str, float]:
    """Split weights from the arms' outcomes: the posterior probability that each arm is best
    (Beta(1, 1) prior on each arm's conversion rate), with every arm kept at ``floor`` or more
    so the split keeps exploring and its logs stay evaluable.

    >>> w = learned_weights({"a": 5, "b": 40}, {"a": 100, "b": 100})
    >>> round(w["a"], 2), round(w["b"], 2)
    (0.05, 0.95)
    """
    arms = list(trials)
    if not 0 <= floor * len(arms) <= 1:
        raise ValueError(f"floor {floor} x {len(arms)} arms must be within [0, 1]")
    rng = np.random.default_rng(seed)
    s = np.array([successes.get(a, 0.0) for a in arms], float)
    n = np.array([trials[a] for a in arms], float)
    post = rng.beta(1 + s, 1 + np.maximum(n - s, 0), size=(draws, len(arms)))
    best = np.bincount(post.argmax(axis=1), minlength=len(arms)) / draws
    w = floor + (1 - floor * len(arms)) * best
    return {a: float(x) for a, x in zip(arms, w / w.sum(), strict=True)}


def first_sends(seq: Sequence, row: Mapping[str, Any], rng: np.random.Generator) -> tuple[list[tuple[SequenceSend, float]], float]:
    """The sends a sequence plans for a trigger before any goal is known, with the
    probability of each send given the previous one, and the probability of the plan.

    Goal checks take their ``if_not`` branch: whoever runs the plan (the world,
    the orchestrator) stops it when the goal happens.
    """
    run = walk(seq, row, 0, np.zeros(0, np.int64), rng)
    out, prev = [], 1.0
    for s in run.sends:
        out.append((s, round(s.probability / prev, 12)))
        prev = s.probability
    return out, (run.sends[-1].probability if run.sends else _plan_probability(seq, run))


def _plan_probability(seq: Sequence, run: SequenceRun) -> float:
    p = 1.0
    for a, b in zip(run.path, run.path[1:], strict=False):
        step = seq.steps[a]
        if isinstance(step, Split):
            p *= float(step.arms[b])
    return p


class SequencePolicy:
    """A policy that runs sequences on their stages and another policy elsewhere.

    For a stage with a sequence, the first send is the decision (its delay is
    the waits before it) and the second is planned as a follow-up (the
    optional decision columns :data:`~cadence.contract.actions.FOLLOWUP_COLUMNS`), which the
    synthetic world sends unless the goal happened first. ``single=True``
    keeps only the first send: the sequence's single-message version, to judge
    what the later steps add. A send on a channel the candidate is not opted
    in to (``opt_in_<channel>`` false) is planned as a hold, as the world and
    the orchestrator would hold it. ``base`` decides every other row (it is asked for
    all rows, so a stochastic base draws as it would alone); ``None`` holds them.

    Sequences whose goal check continues to another send when the goal *is*
    met, or that plan more than two sends, are refused: the world and the
    offline estimators follow one goal-stopped follow-up.

    Examples
    --------
    >>> c = pd.DataFrame({"stage": ["cart_abandon", "birthday"], "opt_in_push": [True, True]})
    >>> d = SequencePolicy({"cart_abandon": CART_ABANDON}).decide(c, np.random.default_rng(0))
    >>> d[["action", "channel", "delay_minutes", "followup_channel", "followup_delay_minutes"]].values.tolist()
    [['send', 'push', 20, 'email', 720], ['hold', None, 0, None, 0]]
    """

    row_wise = True

    def __init__(self, sequences: Mapping[str, Sequence], base: Any = None, single: bool = False) -> None:
        for stage, seq in sequences.items():
            if seq.stage != stage:
                raise SequenceError(f"sequence {seq.name!r} is for stage {seq.stage!r}, given for {stage!r}")
            for name, step in seq.steps.items():
                if isinstance(step, CheckGoal) and step.if_met is not None:
                    raise SequenceError(f"sequence {seq.name!r} step {name!r}: a goal check that continues when the "
                                        "goal is met cannot be followed offline; end the sequence there (if_met=None)")
        self.sequences = dict(sequences)
        self.base = base
        self.single = single

    def _plan(self, seq: Sequence, rec: Mapping[str, Any], rng: np.random.Generator) -> list[Any]:
        """The decision and follow-up columns of one trigger."""
        sends, p_plan = first_sends(seq, rec, rng)
        if len(sends) > 2:
            raise SequenceError(f"sequence {seq.name!r} step {sends[2][0].step!r}: a third send; the world and "
                                "the offline estimators follow one follow-up")
        # A send on a channel the customer is not opted in to cannot go out: plan it as a hold.
        reach = [bool(rec.get(f"opt_in_{s.channel}", True)) for s, _ in sends]
        first = ["send", sends[0][0].channel, sends[0][0].at_s // 60, sends[0][0].incentive, sends[0][0].probability] \
            if sends and reach[0] else ["hold", None, 0, None, sends[0][0].probability if sends else p_plan]
        second = sends[1] if len(sends) > 1 and not self.single and reach[0] and reach[1] else None
        follow = ["send", second[0].channel, second[0].at_s // 60, second[0].incentive, second[1]] \
            if second else [None, None, 0, None, 1.0]
        return first + follow

    @property
    def policy_id(self) -> str:
        names = "+".join(s.name for s in self.sequences.values())
        return f"sequences[{names}{'/single' if self.single else ''}]" + (f"+{self.base.policy_id}" if self.base else "")

    def decide(self, candidates: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        n = len(candidates)
        if self.base is not None:
            out = self.base.decide(candidates, rng).copy()
        else:
            out = pd.DataFrame({"action": ["hold"] * n, "channel": [None] * n, "delay_minutes": np.zeros(n, np.int64),
                                "incentive": [None] * n, "propensity": np.ones(n)}, index=candidates.index)
        for col, empty in zip(FOLLOWUP_COLUMNS, (None, None, 0, None, 1.0), strict=True):
            if col not in out:
                out[col] = empty
        out = out.astype({c: object for c in ("action", "channel", "incentive", "followup_action", "followup_channel",
                                               "followup_incentive")})
        stage = candidates["stage"].astype(str).to_numpy()
        cols = out.columns.get_indexer(["action", "channel", "delay_minutes", "incentive", "propensity",
                                        *FOLLOWUP_COLUMNS])
        for st, seq in self.sequences.items():
            rows = np.flatnonzero(stage == st)
            if not len(rows):
                continue
            conditions = [step.when for step in seq.steps.values() if isinstance(step, Branch)]
            random = any(isinstance(step, Split) for step in seq.steps.values())
            cache: dict[tuple[bool, ...], list[Any]] = {}
            plans = []
            # Column names are str; pandas-stubs types the records' keys as Hashable.
            records = cast(list[dict[str, Any]], candidates.iloc[rows].to_dict("records"))
            for rec in records:
                # Without splits a plan depends only on the branch conditions and the opt-ins.
                sig = (*(c.holds(rec) for c in conditions), *(bool(rec.get(f"opt_in_{ch}", True)) for ch in CHANNELS))
                if random or sig not in cache:
                    cache[sig] = self._plan(seq, rec, rng)
                plans.append(cache[sig])
            out.iloc[rows, cols] = pd.DataFrame(plans, index=out.index[rows]).to_numpy(dtype=object)
        out["delay_minutes"] = out["delay_minutes"].astype(np.int64)
        out["followup_delay_minutes"] = out["followup_delay_minutes"].astype(np.int64)
        out["propensity"] = out["propensity"].astype(float)
        out["followup_propensity"] = out["followup_propensity"].astype(float)
        return out


# The seeds' defaults, expressed as sequences.
#: Cart abandon: push at 20 minutes (when opted in to push), email at 12 hours,
#: stop on purchase, expire at 14 days.
CART_ABANDON = Sequence(
    "cart_abandon_reminders", "cart_abandon", "push_opted_in",
    {
        "push_opted_in": Branch(Condition("opt_in_push", "==", True), then="wait_20m", otherwise="wait_12h_email_only"),
        "wait_20m": Wait(1 / 3, next="purchased_20m"),
        "purchased_20m": CheckGoal(if_met=None, if_not="push"),
        "push": Send("push", next="wait_12h"),
        "wait_12h": Wait(12 - 1 / 3, next="purchased_12h"),
        "wait_12h_email_only": Wait(12, next="purchased_12h"),
        "purchased_12h": CheckGoal(if_met=None, if_not="email"),
        "email": Send("email"),
    },
    expire_days=14.0,
)

#: The welcome chain: welcome, wait, check goal, resend (an A/B split on the
#: incentive), wait, check goal, and move to reactivation (win-back) if nothing happened.
WELCOME = Sequence(
    "welcome_chain", "welcome", "welcome",
    {
        "welcome": Send("email", next="wait_3d"),
        "wait_3d": Wait(72, next="first_order_3d"),
        "first_order_3d": CheckGoal(if_met=None, if_not="resend_split"),
        "resend_split": Split({"resend_free_shipping": 0.5, "resend_plain": 0.5}, learned=True),
        "resend_free_shipping": Send("email", incentive="free_shipping", next="wait_7d"),
        "resend_plain": Send("email", next="wait_7d"),
        "wait_7d": Wait(168, next="first_order_10d"),
        "first_order_10d": CheckGoal(if_met=None, if_not="to_reactivation"),
        "to_reactivation": Exit("win_back"),
    },
    expire_days=14.0,
)

DEFAULT_SEQUENCES: dict[str, Sequence] = {s.stage: s for s in (CART_ABANDON, WELCOME)}
