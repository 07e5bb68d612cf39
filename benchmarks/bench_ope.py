"""Benchmark: off-policy evaluation of 10 target policies x 4 estimators on 10M logged rows.

Target: <= 60 s wall and <= 8 GB peak RSS on 2 cores, intervals included.

The log is synthetic and generated here (2 context features, 4 actions, softmax
logging policy, Bernoulli rewards). Target policies are softmax / epsilon-greedy
/ uniform rules of the context, handed to :func:`compare` as a lazy mapping
that builds each ``(n, 4)`` array when it is read (``--eager`` builds all ten
up front, as a plain dict would). The reward model is a 2-fold cross-fitted
ridge regression, timed separately from the estimators.

Run::

    .venv/bin/python benchmarks/bench_ope.py               # the target configuration
    .venv/bin/python benchmarks/bench_ope.py --bootstrap 200 --bootstrap-policies 1
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Callable, Iterator, Mapping

import numpy as np
from sklearn.linear_model import Ridge

from cadence.data.bandit import LoggedBandit
from cadence.evaluation.compare import compare
from cadence.evaluation.estimators import IPS, SNIPS, DirectMethod, DoublyRobust
from cadence.evaluation.reward_models import fit_reward_model

N_ACTIONS = 4


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


class LazyPolicies(Mapping[str, np.ndarray]):
    """Builds each target policy's ``action_dist`` only when it is read."""

    def __init__(self, makers: dict[str, Callable[[], np.ndarray]]) -> None:
        self._makers = makers

    def __getitem__(self, name: str) -> np.ndarray:
        return self._makers[name]()

    def __iter__(self) -> Iterator[str]:
        return iter(self._makers)

    def __len__(self) -> int:
        return len(self._makers)


def make_log(n: int, seed: int) -> tuple[LoggedBandit, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    coef = np.array([[0.5, -0.3], [-0.2, 0.4], [0.1, 0.1], [-0.4, -0.2]])
    logging = _softmax(x @ coef.T)
    u = rng.random(n)
    action = (u[:, None] > np.cumsum(logging, axis=1)).sum(axis=1).clip(max=N_ACTIONS - 1)
    pscore = np.take_along_axis(logging, action[:, None], axis=1)[:, 0]
    del logging
    theta = np.array([[0.8, 0.2], [-0.5, 0.6], [0.3, -0.7], [0.0, 0.0]])
    base = np.array([-1.0, -1.2, -0.9, -1.5])
    logit = np.einsum("nd,nd->n", x, theta[action]) + base[action]
    reward = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float64)
    fb = LoggedBandit(action=action, reward=reward, pscore=pscore, n_actions=N_ACTIONS, context=x)
    return fb, x


def make_policies(x: np.ndarray) -> dict[str, Callable[[], np.ndarray]]:
    scores = x @ np.array([[0.6, 0.1], [-0.4, 0.5], [0.2, -0.6], [0.0, 0.0]]).T

    def soft(temp: float) -> Callable[[], np.ndarray]:
        return lambda: _softmax(scores / temp)

    def eps_greedy(eps: float) -> Callable[[], np.ndarray]:
        def make() -> np.ndarray:
            dist = np.full(scores.shape, eps / N_ACTIONS)
            np.put_along_axis(
                dist, scores.argmax(axis=1)[:, None], 1 - eps + eps / N_ACTIONS, axis=1
            )
            return dist

        return make

    makers: dict[str, Callable[[], np.ndarray]] = {
        "uniform": lambda: np.full(scores.shape, 1.0 / N_ACTIONS)
    }
    for t in (0.25, 0.5, 1.0, 2.0):
        makers[f"softmax_t{t:g}"] = soft(t)
    for e in (0.0, 0.05, 0.1, 0.2, 0.5):
        makers[f"eps_greedy_{e:g}"] = eps_greedy(e)
    return makers


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--eager", action="store_true", help="build all policies up front")
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=0,
        help="also time a forced Poisson bootstrap with this many resamples",
    )
    parser.add_argument("--bootstrap-policies", type=int, default=1)
    args = parser.parse_args()
    n = args.rows

    t0 = time.perf_counter()
    fb, x = make_log(n, seed=0)
    t_log = time.perf_counter() - t0

    t0 = time.perf_counter()
    q = fit_reward_model(fb, Ridge(alpha=1.0), cv=2)
    t_model = time.perf_counter() - t0

    makers = make_policies(x)
    policies: Mapping[str, np.ndarray]
    policies = {k: make() for k, make in makers.items()} if args.eager else LazyPolicies(makers)
    estimators = [IPS(), SNIPS(), DirectMethod(), DoublyRobust()]

    t0 = time.perf_counter()
    df = compare(fb, policies, estimators, q, reference="uniform")  # interval="auto"
    t_ope = time.perf_counter() - t0

    print(f"rows                 {n:,}")
    print(f"policies x estimators {len(makers)} x {len(estimators)} = {len(df)} estimates")
    print(f"interval             {df['interval'].unique().tolist()} (alpha={df['alpha'].iloc[0]})")
    print(f"generate log         {t_log:6.1f} s")
    print(f"reward model (ridge, 2-fold cross-fit, untimed below) {t_model:6.1f} s")
    print(
        f"compare() wall       {t_ope:6.1f} s  ({'eager dict' if args.eager else 'lazy mapping'})"
    )
    print(
        f"throughput           {n * len(df) / t_ope:,.0f} row-estimates/s "
        f"({n * len(makers) / t_ope:,.0f} policy-rows/s)"
    )
    print(f"peak RSS so far      {peak_rss_gb():6.2f} GB")
    cols = ["policy", "estimator", "value", "lower", "upper", "lift", "ess_share", "supported"]
    print(df[cols].round(4).to_string(index=False))

    if args.bootstrap:
        sub = {k: policies[k] for k in list(makers)[: args.bootstrap_policies]}
        t0 = time.perf_counter()
        boot = compare(fb, sub, estimators, q, interval="bootstrap", n_bootstrap=args.bootstrap)
        t_boot = time.perf_counter() - t0
        print(
            f"\nforced bootstrap: {len(sub)} policies x {len(estimators)} estimators, "
            f"B={args.bootstrap}: {t_boot:.1f} s, peak RSS {peak_rss_gb():.2f} GB"
        )
        print(
            boot[["policy", "estimator", "value", "lower", "upper"]].round(4).to_string(index=False)
        )


if __name__ == "__main__":
    main()
