"""Send time per customer: when each customer engages, as a distribution over the hour of week.

Model. Every customer ``c`` has a peak hour ``P_c`` of their local day (a
half-hour grid of 48 values). A message sent at local hour ``h`` on channel
``k`` is engaged with (opened or clicked) with probability

.. math::

    \\operatorname{logit} \\Pr(y = 1) = a_{ck} + \\beta\\, (m(h, P_c) - \\bar m), \\qquad
    m(h, P) = \\exp\\!\\left(-\\tfrac12 \\left(d(h, P) / \\sigma\\right)^2\\right),

``d`` the distance between the two hours on the 24-hour circle and ``\\bar m``
the mean of ``m`` over the day, so that ``a_ck`` is the customer's average
engagement rate on the channel (their rate, shrunk to the channel's with
``prior_strength`` pseudo-sends). A session that starts at local hour ``h``
adds the evidence of an activity density ``(1 + \\gamma\\, m(h, P)) / (1 +
\\gamma \\bar m)``, so sessions sharpen the peak only as far as the data says
they carry timing: ``\\gamma`` is estimated and lands near 0 when they do
not. The peak's prior ``\\pi`` is the shop's own curve (empirical Bayes). The
fit alternates (ECM): given the lifts, EM on ``\\pi`` alone, which converges
slowly but only needs the customers' likelihood ratios, runs to convergence;
then one Newton step for each lift given the posteriors, under a N(0, 2²)
prior that keeps them finite when a small history is perfectly separated.
Every customer's posterior over ``P`` follows; one with little history keeps
a posterior close to the shop's curve, so no customer is left without a
time. The bandwidth ``sigma`` is chosen among :data:`BANDWIDTHS` by the
marginal likelihood on a sample of customers unless given.

Hour of week. Individual histories (tens of sends a year) cannot support a
day-of-week pattern per customer, so the hour-of-week profile is the
customer's hour-of-day curve times the channel's weekday factor, estimated
shop-wide (engagement rate on that weekday over the channel's, shrunk).

Why written here: no maintained library fits a latent-peak mixture of this
shape; it is a small EM in numpy (13.2 s on a year of a 4,000-customer
shop, bandwidth selection included; ``benchmarks/send_time.py``).

Examples
--------
>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> n = 20000
>>> cust = rng.integers(0, 200, n)
>>> hour = rng.uniform(0, 24, n)
>>> peak = np.where(np.arange(200) < 100, 9.0, 20.0)[cust]
>>> d = np.minimum(abs(hour - peak), 24 - abs(hour - peak))
>>> p = 1 / (1 + np.exp(-(-1.5 + 1.5 * np.exp(-0.5 * (d / 1.5) ** 2))))
>>> sends = pd.DataFrame({"customer_id": cust.astype(str), "channel": "email", "local_hour": hour,
...                       "weekday": rng.integers(0, 7, n), "engaged": rng.random(n) < p})
>>> model = SendTimeModel(bandwidth=1.5).fit(sends)
>>> best = model.best_hour(["0", "150"])
>>> [round(float(h)) for h in best]
[9, 20]
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Real
from typing import Any, ClassVar, TypeAlias

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from cadence.contract.clock import circular_hours
from cadence.contract.tables import CHANNELS
from cadence.features.engagement import (  # the model reads what the features write
    SEND_COLUMNS,
    SESSION_COLUMNS,
)

#: Candidate peak hours: the local day on a half-hour grid.
PEAKS: np.ndarray = np.arange(48) / 2.0
#: Bandwidths (hours) tried when ``bandwidth=None``.
BANDWIDTHS: tuple[float, ...] = (1.0, 1.5, 2.0, 3.0, 4.0)
#: Hours of the day at which profiles are evaluated (quarter-hour grid).
_FINE = np.arange(96) / 4.0
#: Standard deviation of the normal prior on both lifts (MAP, not ML): keeps
#: them finite when a small history separates engaged sends perfectly.
_LIFT_PRIOR_SD = 2.0
#: Cap on the prior's EM steps between two updates of the lifts.
_PRIOR_STEPS = 2000
#: Customer ids as the predict methods accept them (anything ``pd.Series`` takes).
CustomerIds: TypeAlias = Sequence[Any] | pd.Series | pd.Index | np.ndarray
WEEKDAYS: tuple[str, ...] = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


#: An id no customer has: its posterior is the shop's curve.
_NO_CUSTOMER = "\0no customer"


def _match(hours: np.ndarray, sigma: float) -> np.ndarray:
    """``m(h, P)`` for every hour (rows) and peak of :data:`PEAKS` (columns)."""
    d = circular_hours(np.asarray(hours, float)[:, None], PEAKS[None, :])
    return np.exp(-0.5 * (d / sigma) ** 2)


class SendTimeModel(BaseEstimator):
    """Each customer's engagement by local hour of week, shrunk to the shop's curve.

    Parameters
    ----------
    bandwidth : float or None
        Width (hours) of a customer's engagement peak; ``None`` chooses it
        among :data:`BANDWIDTHS` by marginal likelihood.
    prior_strength : float
        Pseudo-sends pulling a customer's engagement rate on a channel to the channel's.
    use_sessions : bool
        Let session start times inform the peak (their weight ``gamma`` is
        estimated). Off by default: on the default synthetic shop, whose
        browsing is spread evenly over the day, sessions did not raise the
        share of customers whose best hour was found and doubled the fit
        time. Turn it on where browsing follows habit: in the world variant
        ``ShopConfig(browse_at_preferred_hour=0.5)`` it raised that share from
        0.30 to 0.64 (``benchmarks/send_time.py``).
    max_iter, tol
        Updates of the lifts (each followed by EM on the prior to
        convergence); stops when they move by less than ``tol``.
    selection_customers, random_state
        With ``bandwidth=None``, the bandwidth is chosen on a seeded sample
        of at most this many customers, then the model is fitted on all.

    Attributes
    ----------
    bandwidth_ : float
    peak_prior_ : ndarray (48,)
        The shop's distribution of peak hours (:data:`PEAKS`).
    lift_ : float
        ``beta``: the engagement log-odds gained at a customer's peak.
    session_lift_ : float
        ``gamma``: how much more sessions start at the peak (0: no timing signal).
    channel_rate_ : dict
        Engagement rate per channel.
    weekday_factor_ : ndarray (channels, 7)
        Engagement on each weekday relative to the channel's mean.
    customers_ : pandas.Index
        Customers with history (the rows of ``posterior_``).
    posterior_ : ndarray (customers, 48)
        Each customer's posterior over the peak hour.
    n_sends_ : ndarray
        Sends seen per customer.
    log_likelihood_ : float
        Marginal log-likelihood at the fit (per customer).
    bandwidth_scores_ : dict
        Marginal log-likelihood per customer of each bandwidth tried (on
        the selection sample; empty when ``bandwidth`` was given).
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "bandwidth": [Interval(Real, 0.25, 12, closed="both"), None],
        "prior_strength": [Interval(Real, 0, None, closed="neither")],
        "use_sessions": ["boolean"],
        "max_iter": [Interval(Real, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "selection_customers": [Interval(Real, 10, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, bandwidth: float | None = None, prior_strength: float = 5.0, use_sessions: bool = False,
                 max_iter: int = 50, tol: float = 1e-4, selection_customers: int = 2000,
                 random_state: int = 0) -> None:
        self.bandwidth = bandwidth
        self.prior_strength = prior_strength
        self.use_sessions = use_sessions
        self.max_iter = max_iter
        self.tol = tol
        self.selection_customers = selection_customers
        self.random_state = random_state

    # ------------------------------------------------------------------ fit
    def fit(self, sends: pd.DataFrame, sessions: pd.DataFrame | None = None) -> SendTimeModel:
        """Fit on sends (:data:`SEND_COLUMNS`) and optional session starts (:data:`SESSION_COLUMNS`).

        Build both with :func:`cadence.features.engagement.send_time_frames`.
        """
        self._validate_params()
        _require(sends, SEND_COLUMNS, "sends")
        if len(sends) == 0:
            raise ValueError("sends: no sent messages to learn send times from")
        bad = ~sends["channel"].isin(CHANNELS)
        if bad.any():
            raise ValueError(f"sends.channel: {sends['channel'][bad].iloc[0]!r} is not one of {CHANNELS}")
        hours = sends["local_hour"].to_numpy(float)
        if not np.isfinite(hours).all() or (hours < 0).any() or (hours >= 24).any():
            raise ValueError("sends.local_hour: expected hours in [0, 24)")
        # The sessions the fit uses: None unless use_sessions and some were given.
        sess = sessions if self.use_sessions and sessions is not None and len(sessions) > 0 else None
        if sess is not None:
            _require(sess, SESSION_COLUMNS, "sessions")
        ids = [sends["customer_id"].astype(str)]
        if sess is not None:
            ids.append(sess["customer_id"].astype(str))
        self.customers_ = pd.Index(pd.unique(pd.concat(ids, ignore_index=True)))
        data = _Data(self.customers_, sends, sess, self.prior_strength)
        self.channel_rate_ = {ch: float(r) for ch, r in zip(CHANNELS, data.channel_rate, strict=True)}
        self.weekday_factor_ = data.weekday_factor()
        self.n_sends_ = np.bincount(data.cust, minlength=len(self.customers_))
        self.bandwidth_scores_ = {}
        if self.bandwidth is None:
            # Chosen on a seeded subsample of customers: the choice needs far fewer than a large shop has.
            pick = self.customers_
            if len(pick) > self.selection_customers:
                rng = np.random.default_rng(self.random_state)
                pick = pick[np.sort(rng.choice(len(pick), int(self.selection_customers), replace=False))]
            s_sends = sends[sends["customer_id"].astype(str).isin(pick)]
            s_sess = sess[sess["customer_id"].astype(str).isin(pick)] if sess is not None else None
            s_data = _Data(pd.Index(pick), s_sends, s_sess, self.prior_strength)
            self.bandwidth_scores_ = {w: _em(s_data, w, int(self.max_iter), float(self.tol))["loglik"]
                                      for w in BANDWIDTHS}
        self.bandwidth_ = (max(self.bandwidth_scores_, key=self.bandwidth_scores_.__getitem__)
                           if self.bandwidth is None else float(self.bandwidth))
        best = _em(data, self.bandwidth_, int(self.max_iter), float(self.tol))
        self.peak_prior_, self.lift_, self.session_lift_ = best["prior"], best["beta"], best["gamma"]
        self.posterior_, self.log_likelihood_, self.n_iter_ = best["post"], best["loglik"], best["n_iter"]
        self.offset_ = data.offset  # customer x channel logit of the shrunk engagement rate
        return self

    # -------------------------------------------------------------- predict
    def _rows(self, customer_ids: CustomerIds) -> np.ndarray:
        return self.customers_.get_indexer(pd.Index(pd.Series(customer_ids).astype(str)))

    def peak_posterior(self, customer_ids: CustomerIds) -> np.ndarray:
        """Posterior over the peak hour (:data:`PEAKS`) per customer; the shop's curve for unknown ones."""
        check_is_fitted(self, "posterior_")
        rows = self._rows(customer_ids)
        return np.where((rows >= 0)[:, None], self.posterior_[np.maximum(rows, 0)], self.peak_prior_[None, :])

    def expected_match(self, customer_ids: CustomerIds) -> np.ndarray:
        """``E[m(h, P)]`` on the quarter-hour grid of the day, ``(n, 96)``."""
        return self.peak_posterior(customer_ids) @ _match(_FINE, self.bandwidth_).T

    def engagement_rate(self, customer_ids: CustomerIds, channel: Sequence[str] | np.ndarray | str,
                        local_hour: np.ndarray, weekday: np.ndarray) -> np.ndarray:
        """Engagement probability of a send at these local hours and weekdays, ``(n, k)``.

        ``local_hour`` and ``weekday`` are ``(n, k)`` arrays (k candidate
        times per row) or ``(n,)``.
        """
        check_is_fitted(self, "posterior_")
        n = len(customer_ids)
        ch = np.asarray([channel] * n if isinstance(channel, str) else channel, dtype=object)
        k = np.array([CHANNELS.index(c) if c in CHANNELS else 0 for c in ch], np.int64)
        hour = np.asarray(local_hour, float).reshape(n, -1)
        wd = np.asarray(weekday, np.int64).reshape(n, -1)
        rows = self._rows(customer_ids)
        base = np.array([self.channel_rate_[c] for c in CHANNELS])
        a = np.where(rows >= 0, self.offset_[np.maximum(rows, 0), k], _logit(base[k]))
        em = self.expected_match(customer_ids)
        fine = np.round(hour * 4).astype(np.int64) % 96
        ex = np.take_along_axis(em, fine, axis=1)
        mbar = float(_match(_FINE, self.bandwidth_).mean())
        rate = expit(a[:, None] + self.lift_ * (ex - mbar))
        return np.clip(rate * self.weekday_factor_[k[:, None], wd % 7], 0.0, 1.0)

    def profile(self, customer_ids: CustomerIds, channel: str = "email") -> np.ndarray:
        """Engagement probability by hour of week (Monday 00:00 first), ``(n, 168)``."""
        n = len(customer_ids)
        how = np.arange(168)
        return self.engagement_rate(customer_ids, channel, np.tile(how % 24 + 0.0, (n, 1)), np.tile(how // 24, (n, 1)))

    def best_hour(self, customer_ids: CustomerIds) -> np.ndarray:
        """Each customer's best local hour of the day (quarter-hour grid)."""
        return _FINE[np.argmax(self.expected_match(customer_ids), axis=1)]

    def shop_best_hour(self) -> float:
        """The best local hour for a customer without history (the shop's curve)."""
        return float(self.best_hour([_NO_CUSTOMER])[0])

    def shop_curve(self) -> pd.DataFrame:
        """Engagement by hour of week for a customer without history, one column per channel."""
        check_is_fitted(self, "posterior_")
        how = np.arange(168)
        out = {ch: self.engagement_rate([_NO_CUSTOMER], ch, how % 24 + 0.0, how // 24)[0] for ch in CHANNELS}
        return pd.DataFrame({"weekday": how // 24, "hour": how % 24, **out})

    def summary(self) -> dict[str, Any]:
        """The fitted shop-level settings, JSON-ready (no customer appears in it)."""
        check_is_fitted(self, "posterior_")
        return {"bandwidth_hours": self.bandwidth_, "lift": self.lift_, "session_lift": self.session_lift_,
                "peak_prior": dict(zip(PEAKS.tolist(), np.round(self.peak_prior_, 6).tolist(), strict=True)),
                "channel_rate": self.channel_rate_, "weekday_factor": {
                    ch: dict(zip(WEEKDAYS, np.round(f, 6).tolist(), strict=True))
                    for ch, f in zip(CHANNELS, self.weekday_factor_, strict=True)},
                "customers": len(self.customers_), "sends": int(self.n_sends_.sum())}


def _require(df: pd.DataFrame, cols: Sequence[str], name: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{name}: column(s) {', '.join(missing)} missing (expected {', '.join(cols)})")


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


class _Data:
    """Sends and sessions as arrays sorted by customer code, with the shrunk intercepts."""

    def __init__(self, customers: pd.Index, sends: pd.DataFrame, sessions: pd.DataFrame | None,
                 prior_strength: float) -> None:
        cust = customers.get_indexer(pd.Index(sends["customer_id"].astype(str)))
        order = np.argsort(cust, kind="stable")
        self.n_customers = len(customers)
        self.cust = cust[order]
        self.ch = pd.Categorical(sends["channel"], categories=list(CHANNELS)).codes.astype(np.int64)[order]
        self.hour = sends["local_hour"].to_numpy(float)[order]
        self.weekday = sends["weekday"].to_numpy(np.int64)[order] % 7
        self.y = sends["engaged"].to_numpy(bool)[order].astype(float)
        k = len(CHANNELS)
        n_ch = np.bincount(self.ch, minlength=k).astype(float)
        e_ch = np.bincount(self.ch, weights=self.y, minlength=k)
        overall = self.y.mean()
        self.channel_rate = np.where(n_ch > 0, (e_ch + overall) / (n_ch + 1), overall)
        key = self.cust * k + self.ch
        n_ck = np.bincount(key, minlength=self.n_customers * k).reshape(-1, k)
        e_ck = np.bincount(key, weights=self.y, minlength=self.n_customers * k).reshape(-1, k)
        rate = (e_ck + prior_strength * self.channel_rate) / (n_ck + prior_strength)
        self.offset = _logit(rate)
        self.s_cust = None
        if sessions is not None:
            sc = customers.get_indexer(pd.Index(sessions["customer_id"].astype(str)))
            s_order = np.argsort(sc, kind="stable")
            self.s_cust = sc[s_order]
            self.s_hour = sessions["local_hour"].to_numpy(float)[s_order]

    def weekday_factor(self, prior: float = 50.0) -> np.ndarray:
        k = len(CHANNELS)
        key = self.ch * 7 + self.weekday
        n = np.bincount(key, minlength=k * 7).reshape(k, 7)
        e = np.bincount(key, weights=self.y, minlength=k * 7).reshape(k, 7)
        rate = (e + prior * self.channel_rate[:, None]) / (n + prior)
        return rate / self.channel_rate[:, None]


def _sum_by(codes: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Row sums of ``values`` per code (``codes`` sorted), ``(n, columns)``."""
    out = np.zeros((n, values.shape[1]))
    if len(codes):
        starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
        out[codes[starts]] = np.add.reduceat(values, starts, axis=0, dtype=np.float64)
    return out


def _em(data: _Data, sigma: float, max_iter: int, tol: float) -> dict[str, Any]:
    """EM for the peak prior, ``beta`` and ``gamma`` at one bandwidth."""
    m_send = _match(data.hour, sigma)  # (n_sends, 48)
    mbar = float(_match(_FINE, sigma).mean())
    m_sess = None if data.s_cust is None else _match(data.s_hour, sigma)
    n_c = data.n_customers
    prior = np.full(len(PEAKS), 1 / len(PEAKS))
    beta, gamma = 1.0, (0.1 if m_sess is not None else 0.0)
    # The (sends x peaks) arrays dominate the cost: float32 halves it; sums are taken in float64.
    a = data.offset[data.cust, data.ch][:, None].astype(np.float32)
    y = data.y[:, None].astype(np.float32)
    prev = -np.inf
    loglik = -np.inf
    post = np.tile(prior, (n_c, 1))
    it = 0
    x = (m_send - mbar).astype(np.float32)
    for it in range(1, max_iter + 1):  # noqa: B007
        # Each customer's log-likelihood of every peak at the current lifts (the costly part)...
        eta = a + np.float32(beta) * x
        softplus = np.logaddexp(np.float32(0), eta)
        ll = _sum_by(data.cust, y * eta - softplus, n_c)
        if m_sess is not None:
            assert data.s_cust is not None  # set with the sessions m_sess comes from
            ll += _sum_by(data.s_cust, np.log1p(gamma * m_sess) - np.log1p(gamma * mbar), n_c)
        # ...then EM on the shop's prior alone, which only needs the likelihood ratios and
        # converges slowly: cheap multiplications, run to convergence.
        top = ll.max(axis=1, keepdims=True)
        lik = np.exp(ll - top)
        for _ in range(_PRIOR_STEPS):
            marginal = lik @ prior
            new = (prior * (lik / marginal[:, None]).sum(axis=0) + 0.5) / (n_c + 0.5 * len(PEAKS))
            done = np.abs(new - prior).max() < 1e-6
            prior = new
            if done:
                break
        marginal = lik @ prior
        post = lik * prior[None, :] / marginal[:, None]
        loglik = float((np.log(marginal) + top[:, 0]).sum()) / n_c
        # One Newton step for each lift given the posteriors (ECM); stop when nothing moves.
        wx = post[data.cust].astype(np.float32) * x
        p = np.exp(eta - softplus)  # expit(eta), reusing softplus
        g = float((wx * (y - p)).sum(dtype=np.float64)) - beta / _LIFT_PRIOR_SD**2
        h = float((wx * x * p * (1 - p)).sum(dtype=np.float64)) + 1 / _LIFT_PRIOR_SD**2
        step = g / h if h > 0 else 0.0
        beta_new = max(0.0, beta + step)
        gamma_new = gamma
        if m_sess is not None:
            assert data.s_cust is not None
            ws = post[data.s_cust]
            r = m_sess / (1 + gamma * m_sess)
            rb = mbar / (1 + gamma * mbar)
            g = float((ws * r).sum()) - len(data.s_cust) * rb - gamma / _LIFT_PRIOR_SD**2
            h = float((ws * r**2).sum()) - len(data.s_cust) * rb**2 + 1 / _LIFT_PRIOR_SD**2
            gamma_new = max(0.0, gamma + g / h) if h > 0 else gamma
        moved = max(abs(beta_new - beta), abs(gamma_new - gamma))
        beta, gamma = beta_new, gamma_new
        if moved < tol or loglik - prev < tol * 1e-3 and it > 1:
            break
        prev = loglik
    return {"prior": prior, "beta": beta, "gamma": gamma, "post": post, "loglik": loglik, "n_iter": it}


def send_time_figure(model: SendTimeModel, channel: str = "email") -> Any:
    """The shop's engagement on ``channel`` as a heatmap by local hour of week (what a customer
    without history gets), beside the customers' learned best hours of the day."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    check_is_fitted(model, "posterior_")
    curve = model.shop_curve()[channel].to_numpy().reshape(7, 24)
    best = np.floor(model.best_hour(model.customers_)).astype(np.int64)
    share = np.bincount(best, minlength=24) / max(len(best), 1)
    fig = make_subplots(rows=1, cols=2, column_widths=[0.6, 0.4], horizontal_spacing=0.1, subplot_titles=(
        f"Shop curve: {channel} engagement by local hour of week", "Customers by learned best hour"))
    fig.add_trace(go.Heatmap(z=curve, x=list(range(24)), y=list(WEEKDAYS), colorscale="Viridis",
                             colorbar={"x": 0.55, "title": "rate"},
                             hovertemplate="%{y} %{x}:00 %{z:.3f}<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Bar(x=list(range(24)), y=share, marker_color="#4c78a8", showlegend=False,
                         hovertemplate="%{x}:00 %{y:.1%}<extra></extra>"), row=1, col=2)
    fig.update_yaxes(autorange="reversed", row=1, col=1)
    fig.update_yaxes(tickformat=".0%", row=1, col=2)
    fig.update_xaxes(title="local hour", dtick=3)
    fig.update_layout(title=f"Send time: bandwidth {model.bandwidth_:g} h, lift {model.lift_:.2f} log-odds at "
                            f"the peak, {len(model.customers_):,} customers", height=380)
    return fig
