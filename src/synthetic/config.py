"""Parameters of the synthetic shop: one frozen config, defaults documented.

Examples
--------
>>> cfg = ShopConfig(customers=1_000, days=90, seed=3)
>>> cfg.n_products
200
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from cadence.contract.triggers import TriggerRules

CATEGORIES: dict[str, tuple[str, ...]] = {
    # category: nouns that appear in its product titles (and in searches)
    "coffee": ("espresso", "beans", "roast", "grinder", "filter"),
    "tea": ("matcha", "oolong", "sencha", "chai", "infuser"),
    "beauty": ("serum", "cleanser", "moisturiser", "sunscreen", "mask"),
    "pet": ("kibble", "litter", "leash", "treats", "bowl"),
    "kitchen": ("skillet", "knife", "kettle", "blender", "spatula"),
    "home": ("candle", "cushion", "throw", "vase", "lamp"),
    "outdoor": ("tent", "backpack", "lantern", "bottle", "jacket"),
    "fitness": ("yoga", "dumbbell", "band", "mat", "shaker"),
    "books": ("novel", "cookbook", "atlas", "journal", "poetry"),
    "toys": ("puzzle", "blocks", "plush", "kite", "robot"),
    "garden": ("seeds", "planter", "trowel", "hose", "compost"),
    "tech": ("charger", "cable", "earbuds", "speaker", "stand"),
}
#: Categories whose products are often consumables (bought again on a cycle).
CONSUMABLE_CATEGORIES = ("coffee", "tea", "beauty", "pet", "garden")
ADJECTIVES = (
    "classic", "organic", "deluxe", "compact", "everyday", "premium", "smart",
    "vintage", "bold", "gentle", "travel", "family",
)
#: Search terms the catalogue never matches (zero-result searches).
UNKNOWN_QUERIES = (
    "vinyl turntable", "surfboard", "ps5", "wedding dress", "lawnmower", "drone",
    "espreso machine", "kindle", "bike helmet", "printer ink",
)
TIMEZONES: dict[str, float] = {
    "Europe/London": 0.18, "Europe/Berlin": 0.2, "Europe/Paris": 0.12, "Europe/Madrid": 0.08,
    "America/New_York": 0.14, "America/Chicago": 0.06, "America/Los_Angeles": 0.08,
    "Asia/Tokyo": 0.04, "Australia/Sydney": 0.04, "Asia/Kolkata": 0.06,
}
OPT_IN_RATES: dict[str, float] = {"email": 0.85, "push": 0.45, "sms": 0.3, "whatsapp": 0.2}
SEGMENTS: dict[str, float] = {
    # response segment: share of customers
    "persuadable": 0.35,
    "sure_thing": 0.15,
    "lost_cause": 0.35,
    "annoyed": 0.15,
}


@dataclass(frozen=True)
class ResponseParams:
    """The true response model (log-odds effects), known only to the world.

    Conversion under *hold* has probability ``sigmoid(stage_base + intent)``;
    a send adds the segment's effect (times the stage's effect scale) plus
    channel, incentive, delay and send-time effects, minus fatigue for every
    message in the previous 7 days. Opens and clicks follow their own
    logistic models; each send may unsubscribe the customer from its channel.
    """

    stage_base: dict[str, float] = field(
        default_factory=lambda: {
            "cart_abandon": -1.6, "checkout_abandon": -1.2, "browse_abandon": -3.4,
            "search_abandon": -3.2, "follow_up": -3.6, "birthday": -3.2, "anniversary": -3.6,
            "price_drop": -2.6, "back_in_stock": -2.3, "new_arrivals": -3.6, "buy_again": -1.8,
            "win_back": -4.2, "order_status": -5.0,
        }
    )
    stage_effect_scale: dict[str, float] = field(
        default_factory=lambda: {
            "cart_abandon": 1.2, "checkout_abandon": 1.1, "browse_abandon": 0.8,
            "search_abandon": 0.9, "follow_up": 0.7, "birthday": 1.0, "anniversary": 0.7,
            "price_drop": 1.0, "back_in_stock": 1.1, "new_arrivals": 0.6, "buy_again": 1.0,
            "win_back": 0.9, "order_status": 0.1,
        }
    )
    segment_effect: dict[str, float] = field(
        default_factory=lambda: {"persuadable": 1.0, "sure_thing": 0.05, "lost_cause": 0.0, "annoyed": -0.7}
    )
    segment_intent: dict[str, float] = field(
        default_factory=lambda: {"persuadable": 0.0, "sure_thing": 1.6, "lost_cause": -1.2, "annoyed": 0.2}
    )
    channel_effect: dict[str, float] = field(
        default_factory=lambda: {"email": 0.0, "push": 0.1, "sms": 0.2, "whatsapp": 0.15}
    )
    #: Conversion effect of incentives, scaled by the customer's deal sensitivity.
    incentive_effect: dict[str, float] = field(
        default_factory=lambda: {"none": 0.0, "free_shipping": 0.35, "fixed_amount": 0.5, "percent_code": 0.6}
    )
    #: Log-odds lost per log2 of the delay past 20 minutes (abandon stages).
    delay_decay: float = 0.12
    #: Log-odds gained when the send lands in the customer's preferred hours.
    send_time_effect: float = 0.35
    fatigue_conversion: float = 0.3
    fatigue_open: float = 0.2
    open_base: dict[str, float] = field(
        default_factory=lambda: {"email": -1.1, "push": -1.9, "sms": -0.6, "whatsapp": -0.1}
    )
    click_base: float = -1.3
    unsubscribe_base: float = -6.0
    unsubscribe_annoyed: float = 1.5
    unsubscribe_fatigue: float = 0.35


#: The observable traits :class:`ObservableResponse` reads, each standardised from the
#: customer's own generating parameters (what the shop's data reveal over time):
#: ``frequency`` (log purchase rate: orders per window), ``recency`` (logit of the
#: dropout probability, +1.5 for customers already dormant when the window opens: days
#: since the last order), ``engagement`` (open affinity: opens and clicks), ``tenure``
#: (years since signup at the window's start) and ``browsing`` (log browsing sessions per
#: day: sessions, views and searches).
OBSERVABLE_TRAITS: tuple[str, ...] = ("frequency", "recency", "engagement", "tenure", "browsing")
#: What :class:`ObservableResponse`'s traits are read from (its ``basis``).
OBSERVABLE_BASES: tuple[str, ...] = ("traits", "realised")


@dataclass(frozen=True)
class ObservableResponse:
    """Response types and incentive sensitivity that depend on what a shop can observe (opt-in).

    By default (``ShopConfig.observable_response = None``) a customer's
    response type is drawn from :data:`SEGMENTS` independently of everything
    the shop sees, so no feature can tell a persuadable from a lost cause.
    With an ``ObservableResponse`` the world instead draws, per customer,

    ``segment = argmax_k [log share_k + sum_j segment_weights[k][j] z_j + Gumbel_k]``

    (a multinomial logit: with all weights 0 it is the default shares of
    :data:`SEGMENTS`; the Gumbel draws are the part no feature can see, and
    larger weights make the observables more decisive), where ``z_j`` are
    the standardised traits of :data:`OBSERVABLE_TRAITS`, and

    ``deal_sensitivity = expit(logit(Beta(2, 3)) + sum_j deal_weights[j] z_j)``

    so incentives matter more to some observable groups. The intent under hold is
    the segment's, plus N(0, 0.5) as by default. These draws come from their
    own random stream after the backbone (people, orders, sessions) is
    drawn, so everything else about the shop is the same as without it.

    ``basis`` says what ``z_j`` are. ``"traits"`` (the default): the
    customer's generating parameters (purchase rate, dropout probability,
    open affinity, signup, browsing rate), fixed per customer; the shop
    measures them only through their noisy realisations, so little of the
    response is visible in its columns. ``"realised"``: per trigger, what
    the customer's own history shows just before it
    (:func:`cadence.synthetic.backbone.realised_traits`): orders and
    sessions in the 90 days before, days since the last order, years since
    signup; engagement stays the hidden open affinity, since opens depend
    on the policy. The Gumbel draws, intent noise and base deal sensitivity
    stay the customer's, so the response type moves only as their history
    does (a customer who stops browsing drifts from persuadable to lost
    cause), and a policy reading the shop's features sees most of what
    decides it. The truth then records each message's ``segment``,
    ``intent`` and ``deal_sensitivity`` in ``truth/messages``, and the
    customer-level ones in ``truth/customers`` are null.

    The default weights: sure things buy often and recently; persuadables
    read and browse; the annoyed read little and have been around long;
    lapsed, infrequent customers are more deal-sensitive.
    """

    segment_weights: dict[str, dict[str, float]] = field(
        default_factory=lambda: {
            "persuadable": {"engagement": 0.8, "browsing": 0.6, "recency": 0.2},
            "sure_thing": {"frequency": 1.2, "recency": -0.8, "engagement": 0.3},
            "lost_cause": {},
            "annoyed": {"engagement": -1.0, "tenure": 0.6},
        }
    )
    deal_weights: dict[str, float] = field(
        default_factory=lambda: {"recency": 0.5, "frequency": -0.4, "engagement": 0.2}
    )
    #: ``"traits"`` (generating parameters, per customer) or ``"realised"`` (history before each trigger).
    basis: str = "traits"

    def __post_init__(self) -> None:
        if self.basis not in OBSERVABLE_BASES:
            raise ValueError(f"observable_response.basis: unknown basis {self.basis!r}; choose from {OBSERVABLE_BASES}")
        unknown = sorted(set(self.segment_weights) - set(SEGMENTS))
        if unknown:
            raise ValueError(f"observable_response.segment_weights: unknown segments {unknown}; choose from {tuple(SEGMENTS)}")
        traits = [t for w in self.segment_weights.values() for t in w] + list(self.deal_weights)
        bad = sorted({t for t in traits if t not in OBSERVABLE_TRAITS})
        if bad:
            raise ValueError(f"observable_response: unknown traits {bad}; choose from {OBSERVABLE_TRAITS}")


#: The world where the shop's own columns decide much of the response (``basis="realised"``):
#: persuadables browse and are new, the annoyed have been around long, lost causes browse
#: little, sure things bought often and recently; deal sensitivity grows with time since the
#: last order and with browsing, and shrinks with tenure. Engagement (hidden) keeps a small part.
#: The policy-context study's world (:func:`cadence.studies.policy_context.world`).
REALISED_RESPONSE = ObservableResponse(
    segment_weights={
        "persuadable": {"browsing": 2.0, "tenure": -1.0, "engagement": 0.4},
        "sure_thing": {"frequency": 1.2, "recency": -0.8},
        "lost_cause": {"browsing": -1.0},
        "annoyed": {"tenure": 2.0, "engagement": -0.5},
    },
    deal_weights={"recency": 0.5, "tenure": -0.8, "browsing": 0.5},
    basis="realised",
)


#: Regular-order purchases (latest first) whose complements a customer's choice remembers.
TASTE_HISTORY = 8
#: Draws a cart add or order item gets to land on a product in stock (the last one is kept).
TASTE_TRIES = 8


@dataclass(frozen=True)
class Tastes:
    """Latent item tastes: what customers view, cart and buy, and how much a message's items matter (opt-in).

    By default (``ShopConfig.tastes = None``) a product is drawn by picking a
    category from the customer's category affinity ``a_c`` (Dirichlet(0.35))
    and then a product of that category by popularity ``pi_i``: the customer's
    taste within a category is nobody's. With ``Tastes`` every customer ``c``
    has ``factors`` latent taste factors ``U_c ~ N(0, I)`` and every product
    ``i`` factors ``V_i ~ N(0, I / factors)``, and the static weight of a product is

    ``w_ci = a_c[cat(i)] * pi_i / Pi_cat(i) * exp(taste_scale * U_c . V_i)``

    (``Pi_k`` the popularity of category ``k``; ``taste_scale = 0`` is the
    default world's rule). Each product ``A`` also has ``complements``
    partner products (half in its own category, half in a partner category,
    by popularity): after buying ``A`` in a regular order at ``t_A``, each
    partner ``B`` gets the kernel ``kappa_cB(t) = sum exp(-(t - t_A) / complement_days)``
    over the customer's last :data:`TASTE_HISTORY` regular-order purchases before
    ``t`` (organic orders, not replenishments or orders caused by messages, so
    relevance is the same under every policy). The probability that a choice
    the customer makes at ``t`` is product ``i`` (over the products that exist
    at ``t``, ``E(t)``) is

    ``p_ci(t) = (1 - g) * w_ci / sum_{j in E(t)} w_cj + g * kappa_ci(t) / K_c(t)``,
    ``K_c(t) = sum_{j in E(t)} kappa_cj(t)``, ``g = complement_share * K / (1 + complement_share * K)``,

    and the **true relevance** is its lift over an average product,
    ``r_ci(t) = |E(t)| * p_ci(t)`` (the mean over existing products is 1).
    Product views (outside purchase sessions and searches), fallback cart
    adds and the items of regular orders are drawn from ``p_ci(t)``; carts
    and orders keep only products in stock at ``t`` (redrawing, up to
    :data:`TASTE_TRIES` times). A clicked search still views products of the
    query's category, chosen within it by ``w_ci`` (no complements).

    **Response.** A sent message that shows items ``S`` (the ``items``
    column) shifts its click and conversion log-odds by

    ``item_effect * (log(1 + mean_{i in S} r_ci(tau)) - log 2)`` (conversion)
    and ``click_item_effect * (...)`` (click),

    ``tau`` the send time: items of average relevance (``r = 1``) leave the
    response as it was, irrelevant ones lower it, relevant ones raise it
    (the conversion probability under hold is unchanged). A converted send
    with items buys one shown item, drawn with probability proportional to
    ``r``, and its true value if converted is the ``r``-weighted mean price.

    **Items and their propensity.** Every trigger has a candidate set (its
    products, then the most popular products existing at the trigger of the
    first product's category, else of the search query's category, else
    overall; ``candidates`` products at most), passed to policies as the
    ``item_candidates`` column. A policy whose decisions carry ``items``
    (``|``-joined product ids, any catalogue products) shows those;
    otherwise the world shows ``items_per_message`` candidates drawn
    uniformly on recommendation stages, as the logging policy does. The log
    records ``items``, ``items_propensity`` (the set's probability given the
    send, ``1 / binom(m, k)`` for the logging policy) and ``item_candidates``;
    the truth records each message's ``items_relevance`` (mean ``r``), and
    :func:`cadence.synthetic.true_relevance` gives ``r_ci(t)`` for any
    customer, product and time.

    Taste draws come from their own random streams, so everything drawn
    before the first product choice (people, purchase times) is the
    default world's.
    """

    factors: int = 8
    taste_scale: float = 1.5
    complements: int = 2
    complement_share: float = 0.25
    complement_days: float = 30.0
    item_effect: float = 0.5
    click_item_effect: float = 0.5
    items_per_message: int = 3
    candidates: int = 12

    def __post_init__(self) -> None:
        if self.factors < 1:
            raise ValueError(f"tastes.factors must be >= 1, got {self.factors}")
        for name in ("taste_scale", "complement_share", "item_effect", "click_item_effect"):
            if not np.isfinite(getattr(self, name)) or getattr(self, name) < 0:
                raise ValueError(f"tastes.{name} must be a finite number >= 0, got {getattr(self, name)}")
        if self.complements < 0:
            raise ValueError(f"tastes.complements must be >= 0, got {self.complements}")
        if self.complement_days <= 0:
            raise ValueError(f"tastes.complement_days must be > 0, got {self.complement_days}")
        if not 1 <= self.items_per_message <= self.candidates:
            raise ValueError(f"tastes: need 1 <= items_per_message <= candidates, got {self.items_per_message}"
                             f" and {self.candidates}")


@dataclass(frozen=True)
class ShopConfig:
    """Everything that shapes a synthetic shop; the same config gives the same bytes.

    Customers are processed in chunks of ``chunk_size`` with random streams
    keyed by ``(seed, chunk)``, so memory stays flat and the output depends
    on the seed and size only, never on the machine.
    """

    customers: int = 20_000
    days: int = 365
    seed: int = 0
    start: str = "2025-01-01"
    products: int | None = None
    chunk_size: int = 25_000
    #: Share of customers who signed up before the data window opened.
    existing_share: float = 0.35
    #: Share of those already dormant (dropped out) when the window opens.
    existing_dormant: float = 0.35
    #: Purchase rate per day ~ Gamma(rate_shape, rate_scale) (BG/NBD's lambda).
    rate_shape: float = 0.9
    rate_scale: float = 0.011
    #: Dropout probability after each purchase ~ Beta(dropout_a, dropout_b).
    dropout_a: float = 1.0
    dropout_b: float = 3.0
    #: Non-purchase sessions per purchase opportunity ~ LogNormal around this.
    browse_per_purchase: float = 3.0
    #: Floor rate of browsing sessions per day for alive customers.
    browse_floor: float = 0.01
    #: Share of browsing sessions that start near the customer's preferred local
    #: hour (1.5-hour sd) instead of at a uniform time of day. 0 (the default)
    #: leaves browsing times uniform, so only opens and conversions reveal the hour.
    browse_at_preferred_hour: float = 0.0
    birth_date_missing: float = 0.15
    feb29_share: float = 0.004
    #: Share of logged marketing triggers held out (randomised holdout).
    logging_hold: float = 0.2
    #: Share of sent abandonment messages the logging policy follows up 12 hours
    #: after the trigger (randomised, else a logged hold); 0 logs single messages.
    logging_followup: float = 0.0
    rules: TriggerRules = field(default_factory=TriggerRules)
    response: ResponseParams = field(default_factory=ResponseParams)
    #: Response types and deal sensitivity that depend on observable traits
    #: (:class:`ObservableResponse`); None (the default) keeps them independent of
    #: everything the shop sees, and the shop byte-identical to earlier versions.
    observable_response: ObservableResponse | None = None
    #: Latent item tastes and item-dependent response (:class:`Tastes`); None (the
    #: default) keeps today's category-and-popularity rule, byte-identical.
    tastes: Tastes | None = None

    def __post_init__(self) -> None:
        if self.customers < 1:
            raise ValueError(f"customers must be >= 1, got {self.customers}")
        if self.days < 1:
            raise ValueError(f"days must be >= 1, got {self.days}")
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size}")
        if not 0 <= self.browse_at_preferred_hour <= 1:
            raise ValueError(f"browse_at_preferred_hour must be in [0, 1], got {self.browse_at_preferred_hour}")

    @property
    def n_products(self) -> int:
        if self.products is not None:
            return self.products
        return int(np.clip(self.customers // 10, 200, 20_000))

    @property
    def start_s(self) -> int:
        """Window start, seconds since the epoch (UTC)."""
        return int(pd.Timestamp(self.start, tz="UTC").timestamp())

    @property
    def end_s(self) -> int:
        return self.start_s + self.days * 86_400

    @property
    def n_chunks(self) -> int:
        return -(-self.customers // self.chunk_size)

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        if self.observable_response is None:
            del out["observable_response"]  # a default shop's metadata stays byte-identical
        if self.tastes is None:
            del out["tastes"]
        return out
