"""Mixture-cure AFT regressions on lifelines' :class:`ParametricRegressionFitter`.

Some customers never buy again. A mixture-cure model gives them a share
``pi(z)`` of the population and lets the rest follow an AFT family ``S_0``:

.. math::

    S(t \\mid z) = \\pi(z) + (1 - \\pi(z))\\, S_0(t \\mid z), \\qquad
    \\operatorname{logit} \\pi(z) = \\gamma_0 + \\gamma^\\top z ,

so that churn risk ``S(e + h) / S(e)`` tends to 1, not to a power of
``e / (e + h)``, for long-lapsed customers. As in lifelines' own AFT fitters
only the cumulative hazard ``-log S`` is written here; the base class derives
the (left-truncated) likelihood, standard errors and the summary.

Imported lazily by :mod:`cadence.models.survival` (lifelines pulls in
autograd and formulaic); kept in its own module so fitted models pickle.

References
----------
.. [1] Farewell, V. T. (1982). The use of mixture models for the analysis
   of survival data with long-term survivors. *Biometrics* 38, 1041-1046.
"""

from __future__ import annotations

from typing import Any, ClassVar

import autograd.numpy as anp
import numpy as np
from autograd.scipy.stats import norm
from lifelines.fitters import ParametricRegressionFitter


class _CureAFTFitter(ParametricRegressionFitter):  # type: ignore[misc]
    """Base: location ``loc`` on log time, common ``shape``, cure logit ``pi_``."""

    _loc: ClassVar[str]
    _shape: ClassVar[str]

    @staticmethod
    def _log_s0(w: Any, shape: Any) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def _create_initial_point(self, Ts: Any, E: Any, entries: Any, weights: Any, Xs: Any) -> dict[str, np.ndarray]:
        point: dict[str, np.ndarray] = super()._create_initial_point(Ts, E, entries, weights, Xs)
        T = np.asarray(Ts[0] if Ts[0] is not None else Ts[1], dtype=float)
        cols = list(Xs[self._loc].columns)
        if "Intercept" in cols:
            point[self._loc][cols.index("Intercept")] = float(np.log(np.median(T[np.isfinite(T) & (T > 0)])))
        return point

    def _cumulative_hazard(self, params: dict[str, Any], T: Any, Xs: Any) -> Any:
        loc = anp.dot(Xs[self._loc], params[self._loc])
        shape = anp.exp(anp.dot(Xs[self._shape], params[self._shape]))
        logit = anp.dot(Xs["pi_"], params["pi_"])
        w = anp.log(anp.maximum(T, 1e-12)) - loc
        log_pi, log_1m_pi = -anp.logaddexp(0.0, -logit), -anp.logaddexp(0.0, logit)
        return -anp.logaddexp(log_pi, log_1m_pi + self._log_s0(w, shape))


class WeibullCureFitter(_CureAFTFitter):
    """``S_0 = exp(-(t / lambda)^rho)``."""

    _fitted_parameter_names: ClassVar[list[str]] = ["lambda_", "rho_", "pi_"]
    _loc, _shape = "lambda_", "rho_"

    @staticmethod
    def _log_s0(w: Any, shape: Any) -> Any:
        return -anp.exp(shape * w)


class LogLogisticCureFitter(_CureAFTFitter):
    """``S_0 = 1 / (1 + (t / alpha)^beta)``."""

    _fitted_parameter_names: ClassVar[list[str]] = ["alpha_", "beta_", "pi_"]
    _loc, _shape = "alpha_", "beta_"

    @staticmethod
    def _log_s0(w: Any, shape: Any) -> Any:
        return -anp.logaddexp(0.0, shape * w)


class LogNormalCureFitter(_CureAFTFitter):
    """``S_0 = 1 - Phi((log t - mu) / sigma)``."""

    _fitted_parameter_names: ClassVar[list[str]] = ["mu_", "sigma_", "pi_"]
    _loc, _shape = "mu_", "sigma_"

    @staticmethod
    def _log_s0(w: Any, shape: Any) -> Any:
        return norm.logcdf(-w / shape)


CURE_FITTERS: dict[str, type[_CureAFTFitter]] = {
    "weibull_cure": WeibullCureFitter,
    "loglogistic_cure": LogLogisticCureFitter,
    "lognormal_cure": LogNormalCureFitter,
}
