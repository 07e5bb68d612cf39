"""A synthetic shop with known ground truth: people, sessions, orders, triggers, messages.

>>> from cadence.synthetic import ShopConfig, generate_shop, simulate_truth
"""

from cadence.synthetic.churn import true_churn_risk
from cadence.synthetic.config import (
    REALISED_RESPONSE,
    ObservableResponse,
    ResponseParams,
    ShopConfig,
    Tastes,
)
from cadence.synthetic.logging_policy import RandomizedLoggingPolicy
from cadence.synthetic.world import (
    generate_shop,
    load_config,
    load_truth,
    simulate_truth,
    true_relevance,
)

__all__ = [
    "REALISED_RESPONSE",
    "ResponseParams",
    "ObservableResponse",
    "ShopConfig",
    "RandomizedLoggingPolicy",
    "generate_shop",
    "load_config",
    "load_truth",
    "simulate_truth",
    "true_churn_risk",
    "Tastes",
    "true_relevance",
]
