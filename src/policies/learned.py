"""The learned policy: send, and pick the channel, delay and incentive, where predicted net gain is positive.

Three designs, chosen by ``learner``.

**Uplift models** (``learner`` one of ``"s", "t", "x", "ct"``; default
``"t"``), fitted per marketing stage on the randomised messages log:

* a **send-vs-hold** uplift model (conversion; hold against a send without
  incentive) gives ``p0(x)`` and ``tau_send(x)``;
* an **incentive-vs-none** uplift model per incentive (among sends) gives
  ``tau_k(x)``;
* channel and delay shifts ``delta_c``, ``delta_d`` of the conversion rate
  among sends, read from the randomised log per stage (channels are
  randomised among the customer's opt-ins, delays uniformly);
* the stage's mean order value ``V``.

For a candidate the predicted conversion of a send through channel ``c``
after delay ``d`` with incentive ``k`` is
``p = p0 + tau_send + tau_k + delta_c + delta_d``; its **net uplift** over
holding is ``(p - p0) V - p cost_k(V) - fatigue_cost``. The policy takes the
best ``(c, d, k)`` among what the customer can receive and sends when that
net uplift exceeds ``threshold``. The uplift learner is any of
:mod:`cadence.models.uplift` (S, T, X or class transformation).

**The policy learner** (``learner="dr"``): the shop as one configuration of
the generic :class:`~cadence.policies.learner.PolicyLearner`
(:func:`make_policy_learner`), fitted on the randomised marketing rows:

* context (:func:`shop_context`, :mod:`cadence.policies.context`): the
  families of ``context`` (default all three): the trigger's own (the stage,
  a category; local hour, a point on the clock, and weekend; channel
  opt-ins, ``sends_7d``, ``orders_90d`` and the log of ``days_since_order``,
  missing for customers who never ordered: the learner adds the indicator
  itself), the customer's features as of the trigger (``customer_columns``:
  all 69, or the compact :data:`~cadence.policies.context.CUSTOMER_CORE`) and the models'
  scores as of the trigger (attached to the log by
  ``cadence.workflows.logs.load_log(data_dir, context=...)``; in a re-run or
  replay by :class:`~cadence.policies.context.WithContext`). Rows missing a
  family the policy reads are decided by a policy learner fitted, in the same
  ``fit`` on the same log, on the families they have (the seven trigger
  columns for a row with neither; :attr:`UpliftPolicy.fallback`,
  :meth:`UpliftPolicy.family_routes`); the rules only where no such learner
  could be fitted;
* actions: the 49 codes of :data:`~cadence.contract.actions.ACTION_NAMES`,
  sharing one decision model through their features (send, channel, delay
  slot, incentive: :data:`~cadence.features.context.ACTION_FEATURES`);
* allowed per row (:func:`allowed_actions`): hold, or a channel the customer
  is opted in to x the stage's delays x the incentives its stage carries
  (none only with ``incentives=False``); only hold once ``max_sends_7d`` is
  reached;
* reward: net revenue per trigger; every send costs ``fatigue_cost`` and
  must beat holding by ``threshold`` (the learner's ``action_costs``).

Why ``"t"`` stays the default: on a 5,000-customer x 180-day shop (seed 3,
fitted on half the customers, judged on the other half) the offline DR
estimate of net revenue per trigger is 2.704 [1.904, 3.725] for the uplift
design and 2.585 [1.831, 3.625] for the policy learner; re-running the world
of a held-out seed under each gives 2.765 and 2.605 (rules: 2.334). In
today's world the observable context carries little of the customers'
heterogeneity, and the learner's context-by-action interactions (delays and
channels that vary with the hour or recency) cost more in noise than they
find: with the stage as its only context it reached 2.756, with
``scores="dm"`` 2.654. See ``benchmarks/RESULTS.md``.

**Per-stage linear models** (``learner="linear"``,
:mod:`cadence.policies.linear`): one ridge regression of net revenue per
stage and action group (hold; a send with each incentive) on the encoded
context families (``context``, ``customer_columns``), with channel and
delay shifts; it sends with the best group when that beats holding. In the
realised-response truth study it is the design whose decisions gain from
the customer's features (``benchmarks/RESULTS.md``).

In all designs stages with too few randomised rows, and transactional ones,
follow :class:`~cadence.policies.rules.RulesPolicy`; every parameter is a
plain constructor argument, so ``cadence tune`` can search over them.

Examples
--------
>>> import tempfile
>>> from cadence.synthetic import ShopConfig, generate_shop
>>> from cadence.workflows.logs import load_log
>>> shop = generate_shop(ShopConfig(customers=2000, days=120, seed=2), tempfile.mkdtemp() + "/s")
>>> pol = UpliftPolicy(min_rows=100).fit(load_log(shop))
>>> "cart_abandon" in pol.stages_ and "order_status" not in pol.stages_
True
>>> allowed_actions(np.array(["birthday", "cart_abandon"]), np.array([[1, 0, 0, 0], [1, 1, 0, 0]], bool)).sum(axis=1).tolist()
[13, 7]
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from cadence.contract.actions import (
    CODE_CHANNEL,
    CODE_INCENTIVE,
    N_ACTIONS,
    allowed_actions,
    code_delays,
    decode_action,
    delay_choices,
)
from cadence.contract.tables import CHANNELS, INCENTIVES
from cadence.contract.triggers import (
    INCENTIVE_COST_FIXED,
    INCENTIVE_PERCENT,
    INCENTIVE_STAGES,
    TRANSACTIONAL_STAGES,
)
from cadence.data.bandit import LoggedBandit
from cadence.features.context import ACTION_FEATURES, context_features
from cadence.policies.context import (
    CONTEXT_DESIGNS,
    CONTEXT_FAMILIES,
    check_families,
    encode_context,
    family_columns,
    missing_families,
    source_columns,
)
from cadence.policies.learner import PolicyLearner
from cadence.policies.rules import RulesPolicy, decisions_frame, opt_in_matrix

Learner = Literal["s", "t", "x", "ct"]
#: How a reason names a family a row lacks.
FAMILY_LABELS: dict[str, str] = {"customer": "customer features", "scores": "scores"}
#: What :class:`UpliftPolicy` learns with: the policy learner (``"dr"``) or an uplift learner.
Method = Literal["dr", "linear", "s", "t", "x", "ct"]


def shop_context(candidates: pd.DataFrame, context: Sequence[str] = ("trigger",),
                 customer_columns: str | Sequence[str] = "all") -> pd.DataFrame:
    """The learner's context of trigger candidates (index 0..n-1): :func:`~cadence.policies.context.encode_context`.

    The default is the trigger family alone (the seven columns); the policy
    passes its own ``context`` and ``customer_columns``.
    """
    return encode_context(candidates, context, customer_columns)


def make_learner(kind: Learner, random_state: int = 0) -> Any:
    """An uplift learner of :mod:`cadence.models.uplift` by short name."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from cadence.models import uplift

    base = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=500))
    if kind == "s":
        return uplift.SLearner(base=base)
    if kind == "t":
        return uplift.TLearner(base=base)
    if kind == "x":
        return uplift.XLearner(base=base)
    if kind == "ct":
        return uplift.ClassTransformation()
    raise ValueError(f"learner: expected one of s, t, x, ct, got {kind!r}")


def make_policy_learner(threshold: float = 0.0, fatigue_cost: float = 0.0, random_state: int = 0,
                        alpha: float = 1.0, scores: str = "dr") -> PolicyLearner:
    """The shop's configuration of :class:`~cadence.policies.learner.PolicyLearner` (module docstring)."""
    send_cost = np.r_[0.0, np.full(N_ACTIONS - 1, fatigue_cost + threshold)]
    return PolicyLearner(actions=list(range(N_ACTIONS)), action_costs=send_cost.tolist(),
                         action_features=ACTION_FEATURES, random_state=random_state, alpha=alpha, scores=scores)


def _cost(incentive: str, value: float) -> float:
    return INCENTIVE_PERCENT * value if incentive == "percent_code" else INCENTIVE_COST_FIXED[incentive]


@dataclass
class _StageModel:
    send: Any  # uplift model, hold vs send-without-incentive
    incentive: dict[str, Any]  # incentive -> uplift model vs none
    channel_shift: np.ndarray  # (4,) conversion shift per channel
    delay_shift: np.ndarray  # (3,) per delay slot
    value: float
    hold_rate: float  # conversion when held (for learners that only predict the effect)


@dataclass
class UpliftPolicy:
    """Uplift-driven send policy; see the module docstring."""

    #: Each row's decision depends on that row alone (the replay may batch decisions).
    row_wise = True

    learner: Method = "t"
    threshold: float = 0.0
    fatigue_cost: float = 0.0
    incentives: bool = True
    max_sends_7d: int | None = None
    min_rows: int = 300
    random_state: int = 0
    policy_id: str = field(default="learned-uplift-v1")
    #: Context families the policy reads (``learner="dr"`` or ``"linear"``), some of
    #: :data:`~cadence.policies.context.CONTEXT_FAMILIES`.
    context: tuple[str, ...] = CONTEXT_FAMILIES
    #: Ridge penalty of the policy learner's decision model (``learner="dr"``), in rows; of the
    #: per-stage regressions on standardised columns (``learner="linear"``).
    alpha: float = 1.0
    #: What the policy learner's decision model regresses (``learner="dr"``): doubly-robust
    #: scores, the reward model (``"dm"``) or inverse-propensity scores.
    scores: str = "dr"
    #: The customer family's columns (``learner="dr"`` or ``"linear"``): ``"core"``
    #: (:data:`~cadence.policies.context.CUSTOMER_CORE`, the default: all 69 cost more in noise
    #: than they find at a few thousand customers, ``benchmarks/RESULTS.md``), ``"all"`` or encoded names.
    customer_columns: str | tuple[str, ...] = "core"
    #: Rows lacking a context family the policy reads (``learner="dr"``): ``"families"`` (default) fits, in
    #: the same ``fit`` on the same log, one more policy learner per combination of families a row can
    #: have (always with the trigger's columns, e.g. the seven-column one for a row with neither customer
    #: features nor scores), each on the rows that have those families, and such a row is decided by the
    #: one for the families it has; ``"trigger"`` fits the seven-column one only, for every such row;
    #: ``"rules"`` hands such rows to the rules. The rules remain the last resort (a combination with
    #: fewer than ``min_rows`` rows to learn from). Why: in the truth study
    #: (``benchmarks/RESULTS.md``) handing those rows to the rules cost 0.037 [0.028, 0.046] net revenue per trigger.
    #: The linear design does not read it: its own models decide such rows with the lacking columns at the
    #: fit's medians and their missing indicators (:meth:`family_routes` gives the reason).
    fallback: str = "families"

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters (scikit-learn style, for tuning and export metadata)."""
        return {k: getattr(self, k) for k in ("learner", "threshold", "fatigue_cost", "incentives",
                                               "max_sends_7d", "min_rows", "random_state", "policy_id", "context", "alpha", "scores",
                                               "customer_columns", "fallback")}

    def set_params(self, **params: Any) -> UpliftPolicy:
        """Set constructor parameters (scikit-learn style); unknown names raise ``ValueError``."""
        valid = self.get_params()
        for k, v in params.items():
            if k not in valid:
                raise ValueError(f"UpliftPolicy: unknown parameter {k!r}; valid: {', '.join(valid)}")
            setattr(self, k, v)
        return self

    def missing_families(self, candidates: pd.DataFrame) -> pd.DataFrame:
        """Per candidate, which context families it lacks (:func:`cadence.policies.context.missing_families`)."""
        return missing_families(candidates)

    def family_routes(self, candidates: pd.DataFrame) -> pd.DataFrame:
        """Per candidate, what decides it given the context families it has: the one routing, for decide and serving.

        Columns ``rules`` (bool: the rules decide it for a family it lacks)
        and ``reason``: ``""`` when the row has every family the policy reads
        (or the policy reads none beyond the trigger's), ``"fallback:
        trigger-only learned policy (missing customer features)"`` when a
        policy learner fitted on the families it has decides it
        (:attr:`fallback`), ``"missing customer features"`` (``"; missing
        scores"``) when the rules do. The linear design decides every row
        with its own models, the lacking family's columns at the fit's medians
        (``"fallback: learned policy with median customer features (missing
        customer features)"``). Stages without a model are not considered
        here (:meth:`fallback_reasons`).

        The served model (:class:`cadence.deployment.serving.PolicyModel`)
        asks this method, so it routes exactly the rows this policy's
        ``decide`` does.
        """
        models, route, reason = self._routes(candidates)
        return pd.DataFrame({"rules": route < 0, "reason": reason}, index=candidates.index)

    def _routes(self, candidates: pd.DataFrame) -> tuple[list[tuple[tuple[str, ...], PolicyLearner | None]],
                                                          np.ndarray, np.ndarray]:
        """``(models, route, reason)``: the ``(families, learner)`` that can decide, each row's index into
        them (-1: the rules) and its reason (:meth:`family_routes`)."""
        n = len(candidates)
        reason = np.full(n, "", dtype=object)
        if self.learner not in CONTEXT_DESIGNS:
            return [((), None)], np.zeros(n, np.int64), reason
        fams = check_families(self.context)
        models: list[tuple[tuple[str, ...], PolicyLearner | None]] = [(fams, getattr(self, "learner_", None))]
        route = np.zeros(n, np.int64)
        missable = [f for f in ("customer", "scores") if f in fams]
        if not missable or not n:
            return models, route, reason
        lacks = missing_families(candidates)
        pattern = np.zeros(n, np.int64)
        for i, family in enumerate(missable):
            pattern |= lacks[family].to_numpy().astype(np.int64) << i
        if self.learner == "linear":
            # The design's own models decide every row: a lacking family's columns take the fit's medians, and their
            # missing indicators carry what rows without the family earned in the fit.
            for p in np.unique(pattern[pattern > 0]):
                missing = [FAMILY_LABELS[f] for i, f in enumerate(missable) if p >> i & 1]
                reason[pattern == p] = (f"fallback: learned policy with median {' and '.join(missing)} "
                                        f"({', '.join(f'missing {m}' for m in missing)})")
            return models, route, reason
        fallbacks = getattr(self, "fallbacks_", {})  # a policy pickled before the fallback learners has none
        index: dict[tuple[str, ...], int] = {}
        for p in np.unique(pattern[pattern > 0]):
            missing = [f for i, f in enumerate(missable) if p >> i & 1]
            what = "; ".join(f"missing {FAMILY_LABELS[f]}" for f in missing)
            have = tuple(f for f in CONTEXT_FAMILIES if f == "trigger" or (f in fams and f not in missing))
            key = have if have in fallbacks else ("trigger",) if ("trigger",) in fallbacks else None
            rows = pattern == p
            if key is None:
                route[rows], reason[rows] = -1, what
                continue
            label = "trigger-only" if key == ("trigger",) else "+".join(key)
            if key not in index:
                index[key] = len(models)
                models.append((key, fallbacks[key]))
            route[rows] = index[key]
            reason[rows] = f"fallback: {label} learned policy ({', '.join(what.split('; '))})"
        return models, route, reason

    def fallback_reasons(self, candidates: pd.DataFrame) -> np.ndarray:
        """Per candidate, why the fitted policy's own model does not decide it, ``""`` where it does.

        Reasons: ``"stage not modelled"`` (transactional, or too few
        randomised rows to learn from: the rules decide) or, for the policy
        learner, a missing context family (:meth:`family_routes`: a learned
        fallback, ``"fallback: trigger-only learned policy (missing customer
        features)"``, or the rules, ``"missing customer features"``).
        """
        if not hasattr(self, "stages_"):
            raise RuntimeError("UpliftPolicy is not fitted: call fit(log) first")
        stage = candidates["stage"].astype(str).to_numpy()
        out = np.full(len(candidates), "", dtype=object)
        if self.learner in CONTEXT_DESIGNS:
            out = self._routes(candidates)[2]
            if self.learner == "dr" and self.learner_ is None:
                out[:] = "stage not modelled"
        out[~np.isin(stage, list(self.stages_))] = "stage not modelled"
        return out

    def fit(self, log: LoggedBandit) -> UpliftPolicy:
        """Fit on the randomised rows of a messages log: the policy learner, or the per-stage uplift models."""
        if log.candidates is None or log.rewards is None or "net_revenue" not in log.rewards:
            raise ValueError("log: UpliftPolicy needs a messages log (candidates and a net_revenue reward, load_log)")
        if self.learner == "dr":
            return self._fit_learner(log)
        if self.learner == "linear":
            return self._fit_linear(log)
        self.learner_: PolicyLearner | None = None
        conv = log.rewards["conversion"].to_numpy()
        net = log.rewards["net_revenue"].to_numpy()
        x_all = context_features(log.candidates).to_numpy()
        stage = log.candidates["stage"].astype(str).to_numpy()
        decoded = [decode_action(int(a)) for a in log.action]
        send = log.action > 0
        ch = np.array([CHANNELS.index(d[0]) if d else -1 for d in decoded])
        slot = np.array([d[1] if d else -1 for d in decoded])
        inc = np.array([d[2] if d else "" for d in decoded], dtype=object)
        randomised = log.pscore < 1
        self.stages_: dict[str, _StageModel | None] = {}
        for s in np.unique(stage):
            rows = (stage == s) & randomised
            if s in TRANSACTIONAL_STAGES or (rows & send).sum() < self.min_rows or (rows & ~send).sum() < 50:
                continue
            plain = rows & (~send | (inc == "none"))
            send_model = make_learner(self.learner, self.random_state).fit(
                x_all[plain], send[plain].astype(int), conv[plain],
                propensity=np.full(int(plain.sum()), float(send[plain].mean())))
            inc_models: dict[str, Any] = {}
            if self.incentives and s in INCENTIVE_STAGES:
                for k in INCENTIVES[1:]:
                    sub = rows & send & np.isin(inc, ["none", k])
                    t = (inc[sub] == k).astype(int)
                    if t.sum() >= self.min_rows // 4 and (1 - t).sum() >= self.min_rows // 4:
                        inc_models[k] = make_learner(self.learner, self.random_state).fit(
                            x_all[sub], t, conv[sub], propensity=np.full(int(sub.sum()), float(t.mean())))
            sent_rows = rows & send
            base = conv[sent_rows].mean()
            ch_shift = np.array([conv[sent_rows & (ch == c)].mean() - base if (sent_rows & (ch == c)).sum() >= 30
                                 else -np.inf for c in range(len(CHANNELS))])
            d_shift = np.array([conv[sent_rows & (slot == d)].mean() - base if (sent_rows & (slot == d)).sum() >= 30
                                else -np.inf for d in range(3)])
            # Order value without any incentive cost: conversions of holds and plain sends.
            converted = plain & (conv > 0)
            value = float(net[converted].mean()) if converted.any() else 0.0
            hold_rate = float(conv[rows & ~send].mean())
            self.stages_[str(s)] = _StageModel(send_model, inc_models, ch_shift, d_shift, value, hold_rate)
        self.fallback_ = RulesPolicy()
        return self

    def _fit_linear(self, log: LoggedBandit) -> UpliftPolicy:
        from cadence.policies.linear import fit_linear_stages

        self.learner_ = None
        self.linear_ = fit_linear_stages(log, check_families(self.context), self.customer_columns, self.min_rows,
                                         self.alpha, self.incentives)
        self.stages_ = {s: None for s in self.linear_.stages}
        self.fallback_ = RulesPolicy()
        return self

    def _fit_learner(self, log: LoggedBandit) -> UpliftPolicy:
        assert log.candidates is not None and log.rewards is not None  # checked by fit
        fams = check_families(self.context)
        if self.fallback not in ("families", "trigger", "rules"):
            raise ValueError(f"fallback: expected 'families', 'trigger' or 'rules', got {self.fallback!r}")
        for family in fams:
            if family != "trigger" and not any(c in log.candidates.columns for c in family_columns(family)):
                raise ValueError(
                    f"log.candidates: no column of the {family!r} context family; attach it "
                    "(cadence.workflows.logs.load_log(data_dir, context=...)) or leave it out of context")
        stage = log.candidates["stage"].astype(str).to_numpy()
        missable: list[str] = [f for f in ("customer", "scores") if f in fams]
        lacks = missing_families(log.candidates) if missable else None
        has = {f: np.ones(log.n, bool) if lacks is None or f not in missable else ~lacks[f].to_numpy()
               for f in CONTEXT_FAMILIES}
        # The policy's own model learns from the rows with every family it reads; rows lacking one are its
        # fallbacks' (family_routes), in the fit as in decide.
        randomised = (log.pscore < 1) & np.logical_and.reduce([has[f] for f in fams])
        send = log.action > 0
        modelled = [s for s in np.unique(stage) if s not in TRANSACTIONAL_STAGES
                    and (randomised & send & (stage == s)).sum() >= self.min_rows
                    and (randomised & ~send & (stage == s)).sum() >= 50]
        in_model = np.isin(stage, modelled)
        rows = np.flatnonzero(randomised & in_model)
        self.stages_ = {str(s): None for s in modelled}
        self.fallback_ = RulesPolicy()
        self.learner_ = None
        self.fallbacks_: dict[tuple[str, ...], PolicyLearner] = {}
        if rows.size == 0:
            return self
        self.learner_ = self._fit_rows(log, rows, fams, stage)
        for key in self._fallback_keys(fams, missable):
            sub = np.flatnonzero((log.pscore < 1) & in_model & np.logical_and.reduce([has[f] for f in key]))
            if sub.size >= self.min_rows:
                self.fallbacks_[key] = self._fit_rows(log, sub, key, stage)
        return self

    def _fallback_keys(self, fams: tuple[str, ...], missable: list[str]) -> list[tuple[str, ...]]:
        """The families of each fallback learner :attr:`fallback` asks for, trigger's first."""
        if not missable or self.fallback == "rules":
            return []
        if self.fallback == "trigger":
            return [("trigger",)]
        keys = []
        for r in range(len(missable)):  # every proper subset of the families a row can lack
            for present in itertools.combinations(missable, r):
                keys.append(tuple(f for f in CONTEXT_FAMILIES if f == "trigger" or f in present))
        return keys

    def _fit_rows(self, log: LoggedBandit, rows: np.ndarray, fams: tuple[str, ...], stage: np.ndarray) -> PolicyLearner:
        """A policy learner on ``fams``' context, fitted on the log's ``rows``."""
        assert log.candidates is not None and log.rewards is not None
        cands = log.candidates.iloc[rows]
        action = log.action[rows]
        allowed = allowed_actions(stage[rows], opt_in_matrix(cands))
        allowed[np.arange(rows.size), action] = True  # whatever the log did was possible
        return make_policy_learner(self.threshold, self.fatigue_cost, self.random_state, self.alpha, self.scores).fit(
            shop_context(cands, fams, self.customer_columns), log.rewards["net_revenue"].to_numpy()[rows], action=action,
            pscore=log.pscore[rows], allowed=allowed, groups=None if log.groups is None else log.groups[rows])

    def decide(self, candidates: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        """Deterministic decisions (propensity 1); stages without a model follow the rules."""
        if not hasattr(self, "stages_"):
            raise RuntimeError("UpliftPolicy is not fitted: call fit(log) first")
        out = self.fallback_.decide(candidates, rng)
        n = len(candidates)
        if n == 0:
            return out
        from sklearn import config_context

        # The replay calls this once per round with small frames: skip scikit-learn's
        # per-call input validation (our features are finite floats by construction).
        with config_context(assume_finite=True, skip_parameter_validation=True):
            if self.learner == "dr":
                return self._decide_learner(candidates, out)
            if self.learner == "linear":
                return self._decide_linear(candidates, out)
            return self._decide(candidates, out)

    def _decide_linear(self, candidates: pd.DataFrame, out: pd.DataFrame) -> pd.DataFrame:
        d = self.linear_.decide(candidates, self.threshold, self.fatigue_cost, self.incentives)
        send = d["send"]
        if self.max_sends_7d is not None and "sends_7d" in candidates:
            send &= candidates["sends_7d"].fillna(0).to_numpy() < self.max_sends_7d
        rows = np.flatnonzero(d["stage_modelled"])
        if rows.size == 0:
            return out
        stage = candidates["stage"].astype(str).to_numpy()[rows]
        delay = np.array([delay_choices(s)[k] for s, k in zip(stage, d["slot"][rows], strict=True)], dtype=np.int64)
        learned = decisions_frame(send[rows], np.where(send[rows], d["channel"][rows], -1), delay,
                                  np.where(send[rows], d["incentive"][rows], 0), np.ones(rows.size),
                                  candidates.index[rows])
        for j, col in enumerate(out.columns):
            out.iloc[rows, j] = learned[col].to_numpy()
        return out

    def _decide_learner(self, candidates: pd.DataFrame, out: pd.DataFrame) -> pd.DataFrame:
        if self.learner_ is None:
            return out
        stage = candidates["stage"].astype(str).to_numpy()
        modelled = np.isin(stage, list(self.stages_))
        if not modelled.any():
            return out
        models, route, _ = self._routes(candidates)
        n = len(candidates)
        code = np.full(n, -1, np.int64)
        for i, (fams, learner) in enumerate(models):
            rows = np.flatnonzero(modelled & (route == i))
            if rows.size == 0 or learner is None:
                continue
            # Most of the rows: encode them all and pick (each row's encoding is its own), rather than copy
            # the rows' ~95 columns; a few: copy only the columns the model reads.
            whole = rows.size * 2 >= n
            part = candidates if whole else self._rows(candidates, rows, fams)
            pick = rows if whole and rows.size < n else slice(None)
            allowed = allowed_actions(stage[rows], opt_in_matrix(part)[pick], self.incentives)
            if self.max_sends_7d is not None and "sends_7d" in part:
                allowed[part["sends_7d"].fillna(0).to_numpy()[pick] >= self.max_sends_7d, 1:] = False
            x = shop_context(part, fams, self.customer_columns)
            code[rows] = learner.predict(x if isinstance(pick, slice) else x.iloc[pick], allowed=allowed)
        rows = np.flatnonzero(code >= 0)
        if rows.size == 0:
            return out
        code = code[rows]
        learned = decisions_frame(code > 0, CODE_CHANNEL[code], code_delays(stage[rows], code),
                                  np.maximum(CODE_INCENTIVE[code], 0), np.ones(rows.size), candidates.index[rows])
        for j, col in enumerate(out.columns):
            out.iloc[rows, j] = learned[col].to_numpy()
        return out

    def _rows(self, candidates: pd.DataFrame, rows: np.ndarray, fams: tuple[str, ...]) -> pd.DataFrame:
        """``candidates``' ``rows``, with only the columns a decision on ``fams`` reads (a decision row has ~95)."""
        cols = dict.fromkeys((*source_columns(fams, self.customer_columns), "stage", "sends_7d",
                              *(f"opt_in_{c}" for c in CHANNELS)))
        keep = [c for c in candidates.columns if c in cols]
        return candidates[keep].iloc[rows]

    def _decide(self, candidates: pd.DataFrame, out: pd.DataFrame) -> pd.DataFrame:
        n = len(candidates)
        stage = candidates["stage"].astype(str).to_numpy()
        opt = opt_in_matrix(candidates)
        x = context_features(candidates).to_numpy()
        sends_7d = (candidates["sends_7d"].fillna(0).to_numpy() if "sends_7d" in candidates else np.zeros(n))
        send = np.zeros(n, bool)
        channel = np.full(n, -1)
        delay = np.zeros(n, np.int64)
        incentive = np.zeros(n, np.int64)
        modelled = np.zeros(n, bool)
        for s, m in self.stages_.items():
            rows = np.flatnonzero(stage == s)
            if rows.size == 0 or m is None:  # None: a stage of the policy learner's (learner="dr")
                continue
            modelled[rows] = True
            mu0, mu1 = self._outcomes(m.send, x[rows], m.hold_rate)
            tau = mu1 - mu0
            ch_score = np.where(opt[rows], m.channel_shift[None, :], -np.inf)
            best_ch = np.argmax(ch_score, axis=1)
            reachable = np.isfinite(ch_score.max(axis=1))
            best_slot = int(np.argmax(m.delay_shift))
            lift = tau + np.where(reachable, ch_score.max(axis=1), 0.0) + m.delay_shift[best_slot]
            p = np.clip(mu0 + lift, 0.0, 1.0)
            best_net = (p - mu0) * m.value
            best_inc = np.zeros(rows.size, np.int64)
            for k, model in m.incentive.items():
                lo, hi = self._outcomes(model, x[rows], 0.0)
                pk = np.clip(p + (hi - lo), 0.0, 1.0)
                net_k = (pk - mu0) * m.value - pk * _cost(k, m.value)
                better = net_k > best_net
                best_net = np.where(better, net_k, best_net)
                best_inc = np.where(better, INCENTIVES.index(k), best_inc)
            go = reachable & (best_net - self.fatigue_cost > self.threshold)
            if self.max_sends_7d is not None:
                go &= sends_7d[rows] < self.max_sends_7d
            send[rows] = go
            channel[rows] = best_ch
            delay[rows] = delay_choices(s)[best_slot]
            incentive[rows] = best_inc
        learned = decisions_frame(send, channel, delay, incentive, np.ones(n), candidates.index)
        rows = np.flatnonzero(modelled)
        out.iloc[rows] = learned.iloc[rows]
        return out

    @staticmethod
    def _outcomes(model: Any, x: np.ndarray, base_rate: float) -> tuple[np.ndarray, np.ndarray]:
        if hasattr(model, "predict_outcomes"):
            # The baseline from the outcome model, the effect from the learner itself
            # (for the X-learner they differ from the first stage's difference).
            mu0 = np.asarray(model.predict_outcomes(x)[0], float)
            return mu0, mu0 + np.asarray(model.predict(x), float)
        # Effect-only learners (class transformation): the baseline is the stage's hold rate.
        tau = np.asarray(model.predict(x), float)
        return np.full_like(tau, base_rate), base_rate + tau
