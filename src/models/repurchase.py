"""Repurchase intervals per (customer, product), shrunk to the product's typical interval.

A customer who bought the same coffee three times 28, 30 and 33 days apart is
due again in about a month; one who bought it twice is better served by
the product's typical cycle, nudged toward their own. This is empirical
Bayes on log gaps (a normal-normal model):

.. math::

    \\log g_{cpj} \\sim N(\\theta_{cp}, \\sigma^2), \\qquad
    \\theta_{cp} \\sim N(\\mu_p, \\tau^2), \\qquad
    \\hat\\theta_{cp} = \\frac{n_{cp}\\, \\bar y_{cp} + \\kappa\\, \\hat\\mu_p}{n_{cp} + \\kappa},
    \\quad \\kappa = \\sigma^2 / \\tau^2 ,

with ``n_cp`` gaps of customer ``c`` on product ``p``. ``sigma^2`` is the
pooled within-pair variance of log gaps, ``tau^2`` the method-of-moments
between-pair variance (variance of pair means minus the average sampling
variance ``sigma^2 / n``, floored at a small positive value), both over all
products. The product mean ``mu_p`` is itself shrunk to the global mean with
the same formula at the product level. ``prior_strength`` fixes ``kappa``
instead of estimating it. Intervals are reported as ``exp(theta)``, the
median gap of a log-normal cycle.

References
----------
.. [1] Efron, B. & Morris, C. (1975). Data analysis using Stein's estimator
   and its generalizations. *JASA* 70(350), 311-319.

Examples
--------
>>> import pandas as pd
>>> gaps = pd.DataFrame({
...     "customer_id": ["a", "a", "b", "b", "c"],
...     "product_id": ["p", "p", "p", "p", "p"],
...     "gap_days": [28.0, 32.0, 60.0, 58.0, 30.0],
... })
>>> model = RepurchaseInterval(min_history=3, prior_strength=1.0).fit(gaps)
>>> model.product_intervals_[["product_id", "interval_days"]].round(1)
  product_id  interval_days
0          p           39.3
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils import Tags
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted, validate_data

GAP_COLUMNS: tuple[str, str, str] = ("customer_id", "product_id", "gap_days")


class RepurchaseInterval(BaseEstimator):
    """Empirical-Bayes repurchase interval per (customer, product) and per product.

    Parameters
    ----------
    min_history : int
        Gaps a product needs (over all its buyers) to get an interval of its
        own; products with fewer are left out, so no ``buy_again`` fires on
        them (as the trigger default does with ``buy_again_min_repeats``).
    prior_strength : float, optional
        ``kappa``, the prior's weight in gaps. None estimates it as
        ``sigma^2 / tau^2`` (empirical Bayes).

    Attributes
    ----------
    product_intervals_ : DataFrame
        ``product_id``, ``interval_days``, ``n_gaps``, ``n_customers``.
    customer_intervals_ : DataFrame
        ``customer_id``, ``product_id``, ``interval_days``, ``n_gaps``.
    global_interval_days_ : float
    sigma2_, tau2_, kappa_ : float
        Within-pair variance, between-pair variance, prior weight used.
    n_features_in_ : int
        3: customer, product, gap.

    Examples
    --------
    >>> import pandas as pd
    >>> gaps = pd.DataFrame({"customer_id": ["a", "a", "b"], "product_id": ["p"] * 3,
    ...                      "gap_days": [10.0, 12.0, 30.0]})
    >>> m = RepurchaseInterval(min_history=2, prior_strength=2.0).fit(gaps)
    >>> m.predict(pd.DataFrame({"customer_id": ["a", "z"], "product_id": ["p", "p"]})).round(1).tolist()
    [13.0, 15.3]
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "min_history": [Interval(Integral, 1, None, closed="left")],
        "prior_strength": [Interval(Real, 0, None, closed="left"), None],
    }

    def __init__(self, min_history: int = 3, prior_strength: float | None = None) -> None:
        self.min_history = min_history
        self.prior_strength = prior_strength

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        tags.input_tags.string = True
        return tags

    @staticmethod
    def _frame(X: Any, n_cols: int) -> pd.DataFrame:
        if isinstance(X, pd.DataFrame):
            cols = list(GAP_COLUMNS[:n_cols])
            missing = [c for c in cols if c not in X.columns]
            if missing:
                raise ValueError(f"X lacks column(s) {missing}; expected {cols}")
            return X[cols].reset_index(drop=True)
        arr = np.asarray(X, dtype=object)
        if arr.ndim != 2 or arr.shape[1] < n_cols:
            raise ValueError(f"X must have {n_cols} columns {list(GAP_COLUMNS[:n_cols])}, got shape {arr.shape}")
        return pd.DataFrame(arr[:, :n_cols], columns=list(GAP_COLUMNS[:n_cols]))

    def fit(self, X: Any, y: None = None) -> RepurchaseInterval:
        """Fit on a gap table (see :func:`cadence.features.purchases.purchase_gaps`) or an (n, 3) array of the same."""
        self._validate_params()
        df = self._frame(X, 3)
        gap = validate_data(self, df[["gap_days"]].to_numpy(dtype="float64"), reset=True)[:, 0]
        self.n_features_in_ = 3
        if np.any(gap <= 0):
            raise ValueError("Negative values in data: gap_days must be > 0")
        df = df.assign(y=np.log(gap))
        pair = df.groupby(["customer_id", "product_id"], sort=True)["y"].agg(["mean", "var", "size"])
        pair["var"] = pair["var"].fillna(0.0)
        within_df = float((pair["size"] - 1).sum())
        sigma2 = float(((pair["size"] - 1) * pair["var"]).sum() / within_df) if within_df > 0 else float(df["y"].var(ddof=0))
        sigma2 = max(sigma2, 1e-6)
        prod = df.groupby("product_id", sort=True)["y"].agg(["mean", "size"])
        mu = float(df["y"].mean())
        tau2 = max(float(pair["mean"].var(ddof=0)) - sigma2 * float((1 / pair["size"]).mean()), 1e-4) \
            if len(pair) > 1 else 1e-4
        kappa = float(self.prior_strength) if self.prior_strength is not None else sigma2 / tau2
        # Products shrink to the global mean with their own number of gaps as weight.
        mu_p = (prod["size"] * prod["mean"] + kappa * mu) / (prod["size"] + kappa)
        pairs = pair.reset_index().merge(mu_p.rename("mu_p").reset_index(), on="product_id")
        theta = (pairs["size"] * pairs["mean"] + kappa * pairs["mu_p"]) / (pairs["size"] + kappa)
        keep = prod.index[prod["size"] >= self.min_history]
        n_cust = pairs.groupby("product_id").size()
        self.product_intervals_ = pd.DataFrame(
            {
                "product_id": keep.to_numpy(),
                "interval_days": np.exp(mu_p.reindex(keep).to_numpy()),
                "n_gaps": prod["size"].reindex(keep).to_numpy().astype("int64"),
                "n_customers": n_cust.reindex(keep).fillna(0).to_numpy().astype("int64"),
            }
        )
        mine = pairs["product_id"].isin(keep).to_numpy()
        self.customer_intervals_ = pd.DataFrame(
            {
                "customer_id": pairs["customer_id"].to_numpy()[mine],
                "product_id": pairs["product_id"].to_numpy()[mine],
                "interval_days": np.exp(theta.to_numpy()[mine]),
                "n_gaps": pairs["size"].to_numpy()[mine].astype("int64"),
            }
        )
        self.global_interval_days_ = float(np.exp(mu))
        self.sigma2_, self.tau2_, self.kappa_ = sigma2, tau2, kappa
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Interval in days for each (customer_id, product_id) row of X.

        Personal when the pair was seen, the product's when only the product
        was, the global median gap otherwise.
        """
        check_is_fitted(self, "product_intervals_")
        df = self._frame(X, 2)
        personal = df.merge(self.customer_intervals_, on=["customer_id", "product_id"], how="left")
        product = df.merge(self.product_intervals_, on="product_id", how="left")
        out = personal["interval_days"].fillna(product["interval_days"]).fillna(self.global_interval_days_)
        return out.to_numpy(dtype="float64")

    def repurchase_days(self, level: str = "product") -> pd.DataFrame:
        """The table for ``trigger_candidates(..., repurchase_days=...)``.

        ``level='product'`` gives ``product_id, interval_days`` (what the
        trigger joins on today); ``'customer'`` adds ``customer_id`` for a
        trigger that joins on both.
        """
        check_is_fitted(self, "product_intervals_")
        if level == "product":
            return self.product_intervals_[["product_id", "interval_days"]].copy()
        if level == "customer":
            return self.customer_intervals_[["customer_id", "product_id", "interval_days"]].copy()
        raise ValueError(f"level must be 'product' or 'customer', got {level!r}")
