"""A policy learner for any logged-bandit table, with the scikit-learn contract.

:class:`PolicyLearner` learns which of a finite set of actions to take in a
context from a log of what a (randomised) logging policy did: one row per
decision with its context ``X`` (columns of any kind: numbers, categories,
missing values), the action taken, the probability the logging policy had of
taking it (``pscore``) and the reward ``y`` that followed. It answers what the
evaluation layer reads: the target policy's ``action_dist``
(``(n_rounds, n_actions)``, rows summing to 1, columns in :attr:`actions_`
order, the convention of :mod:`cadence.evaluation.estimators`), the greedy
action with its propensity (optionally epsilon-greedy), and its own reward
predictions ``q(x, a)`` (``estimated_rewards`` for the direct method and the
doubly-robust family when it is fitted on other rows than it is judged on).

Method: a doubly-robust score regression
----------------------------------------
1. A **cross-fitted reward model** ``q(x, a)``: gradient boosting
   (:class:`~sklearn.ensemble.HistGradientBoostingRegressor`, categories and
   missing values handled natively, the action as a categorical feature) fitted
   on ``cv`` folds (split by ``groups``, e.g. the customer, when given) and
   evaluated on the held-out fold under every allowed action.
2. The **doubly-robust score** of every row and allowed action [1]_ [2]_::

       G[i, a] = q(x_i, a) + 1{a = a_i} (y_i - q(x_i, a_i)) / pscore_i

   Its conditional mean is the true expected reward of ``a`` in ``x_i``
   whenever the propensities are right, however wrong ``q`` is; ``q`` only
   lowers its variance.
3. A **linear decision model** ``theta(x, a) = z(x) B phi(a)``: a ridge
   regression of the scores on the encoded context ``z(x)`` (median-imputed,
   standardised numbers, or B-splines with ``n_knots``; missing-value
   indicators; one-hot categories, via :class:`~sklearn.compose.ColumnTransformer`)
   for every (row, allowed action) pair, with ``phi(a)`` the action's features
   (``action_features``; by default one indicator per action, i.e. a free
   model per action). With features such as channel, delay and incentive the
   actions share strength: the shop's 49 actions cost 13 coefficient columns.
4. **Decision**: ``argmax`` over the row's allowed actions of
   ``theta(x, a) - cost(a)``; with ``epsilon > 0``, ``1 - epsilon`` on that
   action and ``epsilon`` spread evenly over the allowed ones.

Why this method. The scores make the learner as unbiased as the propensities
allow (the logging policy may favour actions by context, as a shop's does);
the boosting model gives them low variance on any kind of column, and is only
needed when fitting. Deciding is a dense matrix product, so batch scoring
stays far above 100,000 decisions per second where scoring a boosting model
for each of 49 actions would not. The price is that the decision model is
additive in the encoded context (per action, or per action feature): effects
that hinge on an interaction of two context columns are averaged over.
``scores="dm"`` regresses ``q`` itself (less variance, the model's bias) and
``scores="ips"`` drops the reward model (``G = 1{a = a_i} y_i / pscore_i``,
the multi-action transformed outcome [3]_). ``scores="reward"`` drops it too
and fits the decision model on the logged ``(row, action)`` pairs only, with
the observed reward as target: an outcome regression, with free actions one
ridge regression per action on the rows that took it (a T-learner). It uses
no propensities, so it is unbiased only where the logging policy's choice
depends on nothing but the columns in ``X`` (a randomised experiment, or
the randomised rows of a log), and an action never logged predicts 0. It is
what the shop's per-stage design fits (:mod:`cadence.policies.linear`).

The **allowed actions per row** (``allowed``, an ``(n, n_actions)`` boolean
mask) restrict both the fit (scores only where the logging policy could have
acted) and the decision; a shop's channel opt-ins and stage rules are one
such mask (:mod:`cadence.policies.learned`).

References
----------
.. [1] Dudík, M., Langford, J. & Li, L. (2011). Doubly robust policy
   evaluation and learning. ICML.
.. [2] Athey, S. & Wager, S. (2021). Policy learning with observational
   data. Econometrica 89(1), 133-161.
.. [3] Athey, S. & Imbens, G. W. (2016). Recursive partitioning for
   heterogeneous causal effects. PNAS 113(27), 7353-7360.

Examples
--------
>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> n = 3000
>>> X = pd.DataFrame({"age": rng.integers(18, 80, n).astype(float),
...                   "segment": rng.choice(["new", "loyal"], n)})
>>> arm = rng.choice(["control", "discount"], n)
>>> lift = np.where(X["segment"] == "new", 1.0, -1.0)          # the discount pays for new customers only
>>> y = rng.normal(size=n) + (arm == "discount") * lift
>>> learner = PolicyLearner(actions=["control", "discount"]).fit(X, y, action=arm, pscore=np.full(n, 0.5))
>>> learner.predict(pd.DataFrame({"age": [30.0, 30.0], "segment": ["new", "loyal"]})).tolist()
['discount', 'control']
>>> learner.action_dist(X.head(2)).shape
(2, 2)
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator
from sklearn.utils import Tags
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_array, check_is_fitted, validate_data
from threadpoolctl import threadpool_limits

FloatArray = NDArray[np.float64]


def _kinds(X: pd.DataFrame) -> tuple[list[Hashable], list[Hashable]]:
    """Numeric and categorical columns of a frame; other kinds are refused by name."""
    numeric, categorical = [], []
    for col, dtype in X.dtypes.items():
        if pd.api.types.is_bool_dtype(dtype) or (
            pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype)
        ):
            numeric.append(col)
        elif isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_object_dtype(dtype) or (
            pd.api.types.is_string_dtype(dtype)
        ):
            categorical.append(col)
        else:
            raise ValueError(
                f"X: column {col!r} has dtype {dtype}; give numbers or categories "
                "(derive numbers from times first, e.g. days since)"
            )
    return numeric, categorical


def _vector(name: str, value: Any, n: int, *, numeric: bool = True) -> NDArray[Any]:
    if value is None:
        raise ValueError(f"{name}: required, one value per row of X")
    arr = np.asarray(value.to_numpy() if isinstance(value, pd.Series | pd.Index) else value)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-d array (n,), got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"{name}: expected {n} rows like X, got {arr.shape[0]}")
    if not numeric:
        return arr
    try:
        out = arr.astype(np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: expected numbers, got dtype {arr.dtype}") from err
    bad = int(np.count_nonzero(~np.isfinite(out)))
    if bad:
        raise ValueError(f"{name}: {bad} rows are missing or not finite")
    return out


def _encode(encoder: Any, X: Any) -> FloatArray:
    """``encoder.transform(X)``: the same numbers, by a shorter path where the encoder is the one ``_encoder`` builds.

    Deciding is a matrix product; the :class:`~sklearn.compose.ColumnTransformer`'s
    own transform (validation, a copy and a dispatch per part) cost as much
    as the rest of a decision. On a frame, an encoder of the parts ``_encoder``
    builds (median imputation then standardisation, missing-value indicators,
    one-hot categories without infrequent or dropped ones) is applied here
    with the fitted statistics and the same operations in the same order,
    so the numbers are the transformer's exactly (a test pins it); anything
    else (splines, pooled categories, an array) goes through ``transform``.
    """
    if not isinstance(X, pd.DataFrame):
        return np.asarray(encoder.transform(X), dtype=np.float64)
    plan = _fast_plan(encoder)
    # Numbers as plain numpy floats of 64 bits or integers (float32 stays float32 in the transformer,
    # nullable columns take its own conversion): anything else takes the transformer's path.
    numeric = {c for kind, cols, _ in plan or () if kind != "cat" for c in cols}
    if plan is None or any(not isinstance(t, np.dtype) or t.kind not in "fiub" or (t.kind == "f" and t.itemsize != 8)
                           for c, t in X.dtypes.items() if c in numeric):
        return np.asarray(encoder.transform(X), dtype=np.float64)
    parts: list[NDArray[Any]] = []
    numbers: dict[tuple[Any, ...], FloatArray] = {}  # the imputer's and the indicator's columns are the same
    for kind, cols, fitted in plan:
        x = None
        if kind != "cat":
            key = tuple(cols)
            if key not in numbers:
                numbers[key] = X[cols].to_numpy(dtype=np.float64, na_value=np.nan)
            x = numbers[key].copy() if kind == "num" else numbers[key]
        if kind == "num":
            assert x is not None
            statistics, mean, scale = fitted
            missing = np.isnan(x)
            if missing.any():
                x[missing] = np.broadcast_to(statistics, x.shape)[missing]
            if mean is not None:
                x -= mean
            if scale is not None:
                x /= scale
            parts.append(x)
        elif kind == "missing":
            assert x is not None
            parts.append(np.isnan(x if fitted is None else x[:, fitted]))
        else:
            for col, categories in zip(cols, fitted, strict=True):
                codes = pd.Categorical(X[col].to_numpy(dtype=object), categories=categories).codes
                hot = np.zeros((len(X), len(categories)))
                known = np.flatnonzero(codes >= 0)
                hot[known, codes[known]] = 1.0
                parts.append(hot)
    # The transformer's own assembly (np.hstack: bool indicators become 0/1 floats, C order).
    return np.hstack(parts) if parts else np.zeros((len(X), 0))


def _fast_plan(encoder: Any) -> list[tuple[str, list[Any], Any]] | None:
    """The fitted parts of ``encoder`` as plain arrays, or None when it is not one ``_encoder`` builds."""
    from sklearn.impute import MissingIndicator, SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    plan: list[tuple[str, list[Any], Any]] = []
    for name, part, cols in getattr(encoder, "transformers_", ()):
        if name == "remainder" and part == "drop":
            continue
        cols = list(cols)
        if not cols or any(isinstance(c, bool | np.bool_ | Integral) for c in cols):
            return None
        if name == "num" and isinstance(part, Pipeline) and len(part.steps) == 2:
            imputer, scaler = part.steps[0][1], part.steps[1][1]
            if not (isinstance(imputer, SimpleImputer) and isinstance(scaler, StandardScaler)
                    and imputer.keep_empty_features and not imputer.add_indicator
                    and _is_nan(imputer.missing_values)):
                return None
            plan.append(("num", cols, (np.asarray(imputer.statistics_, np.float64),
                                       scaler.mean_ if scaler.with_mean else None,
                                       scaler.scale_ if scaler.with_std else None)))
        elif name == "missing" and isinstance(part, MissingIndicator) and _is_nan(part.missing_values):
            if part.features == "missing-only":
                plan.append(("missing", cols, part.features_ if part.features_.size < len(cols) else None))
            else:
                plan.append(("missing", cols, None))
        elif name == "cat" and isinstance(part, OneHotEncoder):
            infrequent = getattr(part, "infrequent_categories_", None) or []
            if (part.drop_idx_ is not None or any(c is not None for c in infrequent) or part.dtype is not np.float64
                    or any(not all(isinstance(v, str) for v in cats) for cats in part.categories_)):
                return None
            plan.append(("cat", cols, [list(cats) for cats in part.categories_]))
        else:
            return None
    return plan


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and np.isnan(value)


class PolicyLearner(BaseEstimator):
    """Learn a policy over a finite action set from a logged bandit; see the module docstring.

    Parameters
    ----------
    actions : sequence of hashable, optional
        The action set, in the column order of every ``action_dist``.
        Default: the sorted distinct logged actions (pass it when the log may
        lack an action).
    action_costs : sequence of float or mapping, optional
        A cost per action subtracted from its predicted reward before
        deciding, in the reward's unit (e.g. an incentive's expected margin,
        an SMS's price); a mapping gives some actions a cost, the rest 0.
    action_features : (n_actions, m) array-like, optional
        Numeric features of each action (rows in ``actions`` order) through
        which actions share the decision model; default: one indicator per
        action.
    scores : {"dr", "dm", "ips", "reward"}
        What the decision model regresses: doubly-robust scores, the reward
        model itself, inverse-propensity scores (no reward model), or the
        observed rewards at the logged actions (no reward model, no weights).
    alpha : float >= 0
        Ridge penalty of the decision model (in rows: ``alpha=1`` weighs like
        one row).
    n_knots : int >= 2, optional
        B-spline knots per numeric column (an additive non-linear model);
        ``None`` keeps numbers linear (standardised).
    max_categories : int >= 2
        Most one-hot columns per categorical column (rarer values are pooled).
    cv : int >= 2
        Cross-fitting folds of the reward model.
    max_iter : int >= 1
        Boosting iterations of the reward model.
    epsilon : float in [0, 1)
        Exploration: the share of probability spread evenly over each row's
        allowed actions.
    random_state : int or None
        Seeds the folds and the reward model; exploration draws take their own
        generator (:meth:`decide`).

    Attributes
    ----------
    actions_ : (n_actions,) array
    n_actions_ : int
    costs_ : (n_actions,) float array
    coef_ : (d + 1, n_actions) float array
        ``theta(x, a) = [z(x), 1] @ coef_[:, a]``.
    encoder_ : ColumnTransformer
        ``z(x)``.
    n_features_in_, feature_names_in_
        As in scikit-learn.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> X = rng.normal(size=(2000, 2)); a = rng.integers(0, 3, 2000)
    >>> y = rng.normal(size=2000) + (a == 2) * X[:, 0]           # arm 2 pays where x0 > 0
    >>> pol = PolicyLearner(epsilon=0.1).fit(X, y, action=a, pscore=np.full(2000, 1 / 3))
    >>> pol.predict(np.array([[2.0, 0.0], [-2.0, 0.0]]))[0]
    np.int64(2)
    >>> pol.action_dist(np.array([[2.0, 0.0]])).round(3).tolist()
    [[0.033, 0.033, 0.933]]
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "actions": ["array-like", None],
        "action_costs": ["array-like", Mapping, None],
        "action_features": ["array-like", None],
        "scores": [StrOptions({"dr", "dm", "ips", "reward"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "n_knots": [Interval(Integral, 2, None, closed="left"), None],
        "max_categories": [Interval(Integral, 2, None, closed="left")],
        "cv": [Interval(Integral, 2, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "epsilon": [Interval(Real, 0, 1, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        actions: ArrayLike | None = None,
        *,
        action_costs: ArrayLike | Mapping[Hashable, float] | None = None,
        action_features: ArrayLike | None = None,
        scores: str = "dr",
        alpha: float = 1.0,
        n_knots: int | None = None,
        max_categories: int = 16,
        cv: int = 2,
        max_iter: int = 100,
        epsilon: float = 0.0,
        random_state: int | None = 0,
    ) -> None:
        self.actions = actions
        self.action_costs = action_costs
        self.action_features = action_features
        self.scores = scores
        self.alpha = alpha
        self.n_knots = n_knots
        self.max_categories = max_categories
        self.cv = cv
        self.max_iter = max_iter
        self.epsilon = epsilon
        self.random_state = random_state

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.categorical = True
        tags.target_tags.required = True
        tags.non_deterministic = False
        return tags

    # ------------------------------------------------------------------ #
    # Fitting
    # ------------------------------------------------------------------ #

    def fit(
        self,
        X: Any,
        y: ArrayLike | None = None,
        *,
        action: ArrayLike | None = None,
        pscore: ArrayLike | None = None,
        allowed: ArrayLike | None = None,
        groups: ArrayLike | None = None,
    ) -> PolicyLearner:
        """Learn the policy from a log: one row of ``X`` per logged decision.

        Parameters
        ----------
        X : DataFrame or (n, d) array
            The context the logging policy saw (numbers, categories, missing
            values; an array is all numbers).
        y : (n,) float array
            The reward that followed (e.g. converted 0/1, net revenue).
        action : (n,) array of labels
            The logged action (values of ``actions``).
        pscore : (n,) float array in (0, 1]
            The logging policy's probability of the logged action.
        allowed : (n, n_actions) bool array, optional
            The actions the logging policy could take in each row (default:
            all); the logged action must be among them.
        groups : (n,) array, optional
            Cluster labels (e.g. the customer): the reward model's folds keep
            a cluster together.

        Returns
        -------
        self
        """
        from sklearn.model_selection import GroupKFold, KFold

        self._validate_params()
        X = self._check_X(X, reset=True)
        n = len(X)
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None "
                "(y: the reward of each logged row)"
            )
        if n < self.cv:
            raise ValueError(f"X: {n} sample(s); at least cv = {self.cv} rows are needed (1 sample is too few)")
        reward = _vector("y", y, n)
        labels = _vector("action", action, n, numeric=False)
        if pd.isna(labels).any():
            raise ValueError(f"action: {int(pd.isna(labels).sum())} rows missing")
        vocab = list(pd.unique(labels)) if self.actions is None else list(np.asarray(self.actions).ravel())
        if self.actions is None:
            vocab = sorted(vocab)
        if len(vocab) < 1:
            raise ValueError("actions: expected at least one action")
        if len(set(vocab)) != len(vocab):
            raise ValueError(f"actions: duplicate values {sorted({str(a) for a in vocab if vocab.count(a) > 1})}")
        codes = pd.Categorical(labels, categories=vocab).codes.astype(np.int64)
        if (codes < 0).any():
            examples = sorted({str(v) for v in labels[codes < 0][:3]})
            raise ValueError(f"action: {int((codes < 0).sum())} rows have values not in actions, e.g. {examples}")
        k = len(vocab)
        p = _vector("pscore", pscore, n)
        outside = int(np.count_nonzero(~((p > 0) & (p <= 1))))
        if outside:
            raise ValueError(f"pscore: {outside} rows outside (0, 1]")
        mask = self._check_allowed(allowed, n, k)
        off = int(np.count_nonzero(~mask[np.arange(n), codes]))
        if off:
            raise ValueError(f"allowed: the logged action is not allowed in {off} rows")
        group_codes = None
        if groups is not None:
            g = _vector("groups", groups, n, numeric=False)
            if pd.isna(g).any():
                raise ValueError(f"groups: {int(pd.isna(g).sum())} rows missing")
            group_codes = pd.Categorical(g).codes
            if len(np.unique(group_codes)) < self.cv:
                raise ValueError(f"groups: {len(np.unique(group_codes))} groups, fewer than cv = {self.cv} folds")

        self.actions_ = np.asarray(vocab)
        if self.actions_.ndim != 1:  # labels that numpy would nest (tuples): keep them whole
            self.actions_ = np.empty(k, dtype=object)
            self.actions_[:] = vocab
        self.n_actions_ = k
        self.costs_ = self._costs(vocab)
        phi = self._action_matrix(k)

        # Scores G (n, k), defined where allowed (``"reward"``: at the logged action only).
        if self.scores == "reward":
            mask = np.zeros((n, k), bool)
            mask[np.arange(n), codes] = True
            q = np.where(mask, reward[:, None], 0.0)
        elif self.scores == "ips":
            q = np.zeros((n, k))
        else:
            folds = (GroupKFold(n_splits=self.cv).split(X, groups=group_codes) if group_codes is not None
                     else KFold(n_splits=self.cv, shuffle=True, random_state=self.random_state).split(X))
            q = self._cross_fitted_rewards(X, reward, codes, mask, folds, phi)
        scores = np.where(mask, q, 0.0)
        if self.scores in ("dr", "ips"):
            residual = reward - q[np.arange(n), codes]
            scores[np.arange(n), codes] += residual / p

        self.encoder_ = self._encoder(X)
        z = self.encoder_.fit_transform(X)
        self.coef_ = self._ridge(np.column_stack([z, np.ones(n)]), scores, mask, phi)
        return self

    def _check_X(self, X: Any, *, reset: bool) -> Any:
        if isinstance(X, pd.DataFrame):
            validate_data(self, X, reset=reset, skip_check_array=True)
            if reset:
                _kinds(X)  # refuse unsupported kinds now, with the column's name
            if len(X) == 0:
                raise ValueError("X: 0 rows (an empty log); at least one row is required")
            return X
        return validate_data(self, X, reset=reset, dtype="numeric", ensure_all_finite="allow-nan")

    def _check_allowed(self, allowed: ArrayLike | None, n: int, k: int) -> NDArray[np.bool_]:
        if allowed is None:
            return np.ones((n, k), bool)
        mask = np.asarray(allowed)
        if mask.shape != (n, k):
            raise ValueError(f"allowed: expected shape (n, n_actions) = {(n, k)}, got {mask.shape}")
        if mask.dtype != np.bool_:
            raise ValueError(f"allowed: expected booleans, got dtype {mask.dtype}")
        empty = int(np.count_nonzero(~mask.any(axis=1)))
        if empty:
            raise ValueError(f"allowed: {empty} rows allow no action")
        return mask

    def _costs(self, vocab: list[Any]) -> FloatArray:
        k = len(vocab)
        if self.action_costs is None:
            return np.zeros(k)
        if isinstance(self.action_costs, Mapping):
            unknown = [a for a in self.action_costs if a not in vocab]
            if unknown:
                raise ValueError(f"action_costs: {unknown[:3]} are not actions")
            costs = np.array([float(self.action_costs.get(a, 0.0)) for a in vocab])
        else:
            costs = np.asarray(self.action_costs, dtype=float).ravel()
            if costs.shape != (k,):
                raise ValueError(f"action_costs: expected {k} costs (one per action), got {costs.shape[0]}")
        if not np.isfinite(costs).all():
            raise ValueError("action_costs: expected finite numbers")
        return costs

    def _action_matrix(self, k: int) -> FloatArray | None:
        """``[1, phi(a)]`` per action, or None for one indicator per action."""
        if self.action_features is None:
            return None
        phi = check_array(self.action_features, dtype="numeric", input_name="action_features")
        if phi.shape[0] != k:
            raise ValueError(f"action_features: expected {k} rows (one per action), got {phi.shape[0]}")
        return np.column_stack([np.ones(k), phi])

    def _encoder(self, X: Any) -> Any:
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import MissingIndicator, SimpleImputer
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import OneHotEncoder, SplineTransformer, StandardScaler

        if isinstance(X, pd.DataFrame):
            numeric, categorical = _kinds(X)
        else:
            numeric, categorical = list(range(X.shape[1])), []
        shape = (StandardScaler() if self.n_knots is None
                 else SplineTransformer(n_knots=self.n_knots, knots="quantile", extrapolation="constant"))
        parts: list[tuple[str, Any, list[Any]]] = []
        if numeric:
            parts += [
                ("num", make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), shape), numeric),
                ("missing", MissingIndicator(features="missing-only", error_on_new=False), numeric),
            ]
        if categorical:
            parts.append(("cat", OneHotEncoder(handle_unknown="infrequent_if_exist", sparse_output=False,
                                               max_categories=self.max_categories), categorical))
        return ColumnTransformer(parts, sparse_threshold=0.0, verbose_feature_names_out=False)

    def _cross_fitted_rewards(self, X: Any, reward: FloatArray, codes: NDArray[np.int64],
                              mask: NDArray[np.bool_], folds: Any, phi: FloatArray | None) -> FloatArray:
        """``q(x_i, a)`` for every row and allowed action, from models fitted on the other folds."""
        from sklearn.preprocessing import OrdinalEncoder

        n, k = mask.shape
        if isinstance(X, pd.DataFrame):
            numeric, categorical = _kinds(X)
            parts = [X[numeric].to_numpy(dtype=np.float64, na_value=np.nan)]
            if categorical:
                # HGB's native categories: ordinal codes, missing and unseen values as NaN.
                coder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan,
                                       encoded_missing_value=np.nan, max_categories=254)
                parts.insert(0, coder.fit_transform(X[categorical]))
            base, n_cat = np.column_stack(parts), len(categorical)
        else:
            base, n_cat = np.asarray(X, dtype=np.float64), 0
        # The action as one more categorical column (codes fit HGB's 255 bins up to 254 actions),
        # then its features, through which the trees can share what actions have in common.
        codes_k = np.arange(k, dtype=np.float64)
        actions = codes_k[:, None] if phi is None else np.column_stack([codes_k, phi[:, 1:]])
        categorical_mask = np.r_[np.arange(base.shape[1]) < n_cat, k <= 254, np.zeros(actions.shape[1] - 1, bool)]
        q = np.zeros((n, k))
        # One thread: OpenMP's spinning threads slow to a crawl on a shared machine, and the folds are small.
        with threadpool_limits(1):
            for train, test in folds:
                self._fit_fold(base, reward, codes, mask, actions, categorical_mask, train, test, q)
        return q

    def _fit_fold(self, base: FloatArray, reward: FloatArray, codes: NDArray[np.int64], mask: NDArray[np.bool_],
                  actions: FloatArray, categorical_mask: NDArray[np.bool_], train: NDArray[np.intp],
                  test: NDArray[np.intp], q: FloatArray) -> None:
        from sklearn.ensemble import HistGradientBoostingRegressor

        model = HistGradientBoostingRegressor(
            max_iter=self.max_iter, categorical_features=categorical_mask if categorical_mask.any() else None,
            random_state=self.random_state,
        )
        empty = np.isnan(base[train]).all(axis=0)
        if empty.any():  # a column missing in every training row says nothing, and HGB's binning fails on it
            base = np.where(empty, 0.0, base)
        model.fit(np.column_stack([base[train], actions[codes[train]]]), reward[train])
        rows, acts = np.nonzero(mask[test])
        q[test[rows], acts] = model.predict(np.column_stack([base[test][rows], actions[acts]]))

    def _ridge(self, z: FloatArray, scores: FloatArray, mask: NDArray[np.bool_],
               phi: FloatArray | None) -> FloatArray:
        """``coef_`` (d + 1, k) of the masked ridge ``min sum_{i,a allowed} (G_ia - z_i B phi_a)^2``."""
        d1 = z.shape[1]
        penalty = np.full(d1, float(self.alpha))
        penalty[-1] = 1e-8 * max(1.0, float(len(z)))  # the intercept: (almost) free
        # Rows share a Gram matrix when their actions are allowed alike: one per distinct mask column.
        columns, inverse = np.unique(mask, axis=1, return_inverse=True)
        inverse = np.asarray(inverse).ravel()
        grams = [z.T @ (z * col[:, None]) for col in columns.T]
        rhs = z.T @ np.where(mask, scores, 0.0)  # (d1, k)
        if phi is None:
            coef = np.empty((d1, mask.shape[1]))
            for a in range(mask.shape[1]):
                coef[:, a] = np.linalg.solve(grams[inverse[a]] + np.diag(penalty), rhs[:, a])
            return coef
        m = phi.shape[1]
        system = np.zeros((d1 * m, d1 * m))
        for a in range(mask.shape[1]):
            system += np.kron(grams[inverse[a]], np.outer(phi[a], phi[a]))
        system += np.diag(np.repeat(penalty, m))
        b = np.linalg.solve(system, (rhs @ phi).ravel()).reshape(d1, m)
        return b @ phi.T

    # ------------------------------------------------------------------ #
    # Deciding
    # ------------------------------------------------------------------ #

    def predict_reward(self, X: Any) -> FloatArray:
        """``(n, n_actions)`` predicted reward ``theta(x, a)`` of every action (costs not subtracted).

        Fitted on other rows than ``X``, it is a valid ``estimated_rewards``
        for the direct method and the doubly-robust estimators.
        """
        check_is_fitted(self)
        X = self._check_X(X, reset=False)
        z = _encode(self.encoder_, X)
        return np.asarray(z @ self.coef_[:-1] + self.coef_[-1], dtype=np.float64)

    def _greedy(self, X: Any, allowed: ArrayLike | None) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
        net = self.predict_reward(X)
        net -= self.costs_
        mask = self._check_allowed(allowed, net.shape[0], self.n_actions_)
        if allowed is not None:
            net[~mask] = -np.inf
        return np.argmax(net, axis=1), mask

    def predict(self, X: Any, allowed: ArrayLike | None = None) -> NDArray[Any]:
        """The greedy action of each row (an ``actions_`` label): the best allowed net reward."""
        best, _ = self._greedy(X, allowed)
        return self.actions_[best]

    def action_dist(self, X: Any, allowed: ArrayLike | None = None) -> FloatArray:
        """``(n, n_actions)`` the policy's probability of each action per row: ``action_dist``.

        ``1 - epsilon`` on the greedy action plus ``epsilon`` spread evenly
        over the row's allowed actions; with ``epsilon=0`` a one-hot row.
        """
        best, mask = self._greedy(X, allowed)
        n = len(best)
        dist = mask * (self.epsilon / mask.sum(axis=1, keepdims=True))
        dist[np.arange(n), best] += 1.0 - self.epsilon
        return dist

    def decide(self, X: Any, allowed: ArrayLike | None = None,
               rng: np.random.Generator | None = None) -> pd.DataFrame:
        """One decision per row: ``action`` (label), ``propensity`` and ``greedy``.

        With ``epsilon > 0`` a row explores with probability ``epsilon``
        (drawn with ``rng``, required then) and takes an allowed action
        uniformly at random; ``propensity`` is the probability of the action
        taken under :meth:`action_dist`, what a log of these decisions needs.
        """
        best, mask = self._greedy(X, allowed)
        n = len(best)
        chosen = best
        propensity = np.ones(n)
        if self.epsilon > 0 and n:
            if rng is None:
                raise ValueError("rng: epsilon > 0 draws exploration; pass a numpy Generator")
            k = mask.sum(axis=1)
            explore = rng.random(n) < self.epsilon
            nth = np.minimum((rng.random(n) * k).astype(np.int64), k - 1)
            picked = np.argmax(np.cumsum(mask, axis=1) == (nth + 1)[:, None], axis=1)
            chosen = np.where(explore, picked, best)
            propensity = self.epsilon / k + (1.0 - self.epsilon) * (chosen == best)
        return pd.DataFrame({"action": self.actions_[chosen], "propensity": propensity, "greedy": chosen == best},
                            index=X.index if isinstance(X, pd.DataFrame) else None)
