"""A synthetic shop with known ground truth: people, sessions, orders, triggers, messages.

>>> from cadence.data.synthetic import ShopConfig, generate_shop, simulate_truth
"""

from cadence.data.synthetic.churn import true_churn_risk
from cadence.data.synthetic.config import ResponseParams, ShopConfig
from cadence.data.synthetic.logging_policy import RandomizedLoggingPolicy
from cadence.data.synthetic.world import generate_shop, load_config, load_truth, simulate_truth

__all__ = [
    "ResponseParams",
    "ShopConfig",
    "RandomizedLoggingPolicy",
    "generate_shop",
    "load_config",
    "load_truth",
    "simulate_truth",
    "true_churn_risk",
]
