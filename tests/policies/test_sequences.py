"""Sequences: refused when they cannot run (naming the step), walked against a known history."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cadence.policies.sequences import (
    CART_ABANDON,
    WELCOME,
    Branch,
    CheckGoal,
    Condition,
    Exit,
    Send,
    Sequence,
    SequenceError,
    Split,
    Wait,
    from_dict,
    learned_weights,
    sequence_figure,
    step_counts,
    walk,
    walk_many,
)

H = 3600


def test_a_cycle_without_a_wait_is_refused_naming_the_step() -> None:
    steps = {"a": Send("email", next="b"), "b": CheckGoal(if_met=None, if_not="a")}
    with pytest.raises(SequenceError, match=r"sequence 'loop' step 'a': cycle a -> b -> a has no wait"):
        Sequence("loop", "cart_abandon", "a", steps)


def test_a_cycle_with_a_wait_runs_until_it_expires() -> None:
    steps = {"a": Send("email", next="w"), "w": Wait(24, next="g"), "g": CheckGoal(if_met=None, if_not="a")}
    seq = Sequence("daily", "browse_abandon", "a", steps, expire_days=3)
    run = walk(seq, {}, 0, np.zeros(0, np.int64), np.random.default_rng(0))
    assert [s.at_s for s in run.sends] == [0, 24 * H, 48 * H, 72 * H] and run.ended == "expired"
    with pytest.raises(SequenceError, match=r"step 'a': cycle a -> w -> g -> a needs expire_days"):
        Sequence("daily", "browse_abandon", "a", steps, expire_days=None)


def test_a_branch_to_an_unknown_step_is_refused_naming_the_step() -> None:
    with pytest.raises(SequenceError, match=r"sequence 's' step 'b': goes to unknown step 'nowhere'"):
        Sequence("s", "cart_abandon", "a", {"a": Send("push", next="b"),
                                             "b": Branch(Condition("opt_in_sms", "==", True), "nowhere", None)})


def test_split_weights_that_do_not_sum_to_one_are_refused_naming_the_step() -> None:
    steps = {"ab": Split({"x": 0.5, "y": 0.4}), "x": Send("email"), "y": Send("push")}
    with pytest.raises(SequenceError, match=r"sequence 's' step 'ab': weights .* sum to 1 \(sum 0.9\)"):
        Sequence("s", "birthday", "ab", steps)


@pytest.mark.parametrize(("steps", "message"), [
    ({"a": Send("fax")}, r"step 'a': channel 'fax'"),
    ({"a": Send("email", incentive="gold")}, r"step 'a': incentive 'gold'"),
    ({"a": Wait(0)}, r"step 'a': a wait needs hours > 0"),
    ({"a": Exit("nirvana")}, r"step 'a': exits to unknown stage 'nirvana'"),
    ({"a": Send("email"), "orphan": Send("push")}, r"step 'orphan': no path from the start reaches it"),
])
def test_other_invalid_steps_are_named(steps: dict, message: str) -> None:
    with pytest.raises(SequenceError, match=message):
        Sequence("s", "cart_abandon", "a", steps)


def test_unknown_stage_and_start_are_refused() -> None:
    with pytest.raises(SequenceError, match=r"stage 'checkout'"):
        Sequence("s", "checkout", "a", {"a": Send("email")})
    with pytest.raises(SequenceError, match=r"start step 'b' is not defined"):
        Sequence("s", "cart_abandon", "b", {"a": Send("email")})


def test_cart_abandon_default_push_at_20_minutes_then_email_at_12_hours() -> None:
    rng = np.random.default_rng(0)
    none = np.zeros(0, np.int64)
    run = walk(CART_ABANDON, {"opt_in_push": True}, 1_000, none, rng)
    assert [(s.step, s.channel, s.at_s - 1_000) for s in run.sends] == [("push", "push", 20 * 60), ("email", "email", 12 * H)]
    assert run.ended == "end"
    # Not opted in to push: the email alone, still at 12 hours.
    run = walk(CART_ABANDON, {"opt_in_push": False}, 1_000, none, rng)
    assert [(s.channel, s.at_s - 1_000) for s in run.sends] == [("email", 12 * H)]


def test_cart_abandon_stops_on_purchase_seen_only_when_it_happened() -> None:
    rng = np.random.default_rng(0)
    # An order 10 minutes after the trigger: nothing is sent.
    run = walk(CART_ABANDON, {"opt_in_push": True}, 0, np.array([600]), rng)
    assert run.sends == () and run.ended == "goal"
    # An order 2 hours after: the push went out, the email does not.
    run = walk(CART_ABANDON, {"opt_in_push": True}, 0, np.array([2 * H]), rng)
    assert [s.step for s in run.sends] == ["push"] and run.ended == "goal"
    # An order before the trigger is not the goal.
    run = walk(CART_ABANDON, {"opt_in_push": True}, 10 * H, np.array([H]), rng)
    assert [s.step for s in run.sends] == ["push", "email"]


def test_welcome_chain_resends_then_moves_to_reactivation_with_split_propensities() -> None:
    runs = [walk(WELCOME, {}, 0, np.zeros(0, np.int64), np.random.default_rng(i)) for i in range(400)]
    arms = [r.sends[1].step for r in runs]
    assert {r.ended for r in runs} == {"exit"} and {r.exit_to for r in runs} == {"win_back"}
    assert all(r.sends[0].probability == 1.0 and r.sends[1].probability == 0.5 for r in runs)
    assert all(r.sends[1].at_s == 72 * H for r in runs)
    share = np.mean([a == "resend_free_shipping" for a in arms])
    assert 0.43 < share < 0.57  # 400 draws at 0.5: +-2.8 sd
    # A first order within three days ends the chain after the welcome.
    run = walk(WELCOME, {}, 0, np.array([50 * H]), np.random.default_rng(0))
    assert [s.step for s in run.sends] == ["welcome"] and run.ended == "goal"


def test_walk_many_and_counts_agree_with_the_history() -> None:
    t0 = pd.Timestamp("2025-03-01 12:00", tz="UTC")
    triggers = pd.DataFrame({"customer_id": ["a", "b", "c"], "triggered_at": [t0] * 3,
                             "opt_in_push": [True, True, False]})
    orders = pd.DataFrame({"customer_id": ["b"], "ts": [t0 + pd.Timedelta(hours=3)]})
    sends = walk_many(CART_ABANDON, triggers, orders)
    assert sends[["trigger", "step", "delay_minutes"]].values.tolist() == [
        [0, "push", 20], [0, "email", 720], [1, "push", 20], [2, "email", 720]]
    assert (sends["send_at"] == t0 + pd.to_timedelta(sends["delay_minutes"], unit="min")).all()
    counts = step_counts(CART_ABANDON, sends.attrs["paths"])
    got = {(r.source, r.target): r.count for r in counts.itertuples()}
    assert got[("purchased_12h", "email")] == 2 and got[("purchased_12h", "goal")] == 1
    assert got[("push_opted_in", "wait_20m")] == 2 and got[("email", "end")] == 2
    fig = sequence_figure(CART_ABANDON, counts)
    assert fig.data[0].type == "sankey" and sum(fig.data[0].link.value) == counts["count"].sum()


def test_definitions_round_trip_through_json() -> None:
    for seq in (CART_ABANDON, WELCOME):
        assert from_dict(json.loads(json.dumps(seq.to_dict()))) == seq
    bad = CART_ABANDON.to_dict()
    bad["steps"]["email"]["type"] = "Teleport"
    with pytest.raises(SequenceError, match=r"step 'email': unknown type 'Teleport'"):
        from_dict(bad)


def test_learned_weights_favour_the_better_arm_and_keep_exploring() -> None:
    w = learned_weights({"resend_free_shipping": 30, "resend_plain": 12},
                        {"resend_free_shipping": 200, "resend_plain": 200}, floor=0.1)
    assert w["resend_free_shipping"] > 0.85 and w["resend_plain"] >= 0.1 - 1e-12
    assert abs(sum(w.values()) - 1) < 1e-12
    seq = WELCOME.with_weights("resend_split", w)
    assert seq.steps["resend_split"].arms == w
    # No data yet: an even split.
    even = learned_weights({}, {"x": 0, "y": 0})
    assert abs(even["x"] - 0.5) < 0.03
    with pytest.raises(SequenceError, match="not a split"):
        WELCOME.with_weights("welcome", w)


def test_sequence_policy_plans_the_first_send_and_the_follow_up() -> None:
    from cadence.policies.rules import RulesPolicy
    from cadence.policies.sequences import SequencePolicy

    c = pd.DataFrame({"customer_id": ["a", "b", "c"], "stage": ["cart_abandon", "cart_abandon", "birthday"],
                      "triggered_at": pd.to_datetime(["2025-01-01"] * 3, utc=True),
                      "opt_in_email": [True] * 3, "opt_in_push": [True, False, True]})
    d = SequencePolicy({"cart_abandon": CART_ABANDON}, RulesPolicy()).decide(c, np.random.default_rng(0))
    assert d[["action", "channel", "delay_minutes"]].values.tolist()[:2] == [["send", "push", 20], ["send", "email", 720]]
    assert d["followup_action"].tolist()[:2] == ["send", None] and d["followup_delay_minutes"].tolist()[:2] == [720, 0]
    rules = RulesPolicy().decide(c, np.random.default_rng(0))
    assert d.iloc[2][["action", "channel", "delay_minutes"]].tolist() == rules.iloc[2][["action", "channel", "delay_minutes"]].tolist()
    single = SequencePolicy({"cart_abandon": CART_ABANDON}, single=True).decide(c, np.random.default_rng(0))
    assert single["followup_action"].isna().all() and single["action"].tolist() == ["send", "send", "hold"]


def test_sequence_policy_refuses_what_the_world_cannot_follow() -> None:
    from cadence.policies.sequences import SequencePolicy

    cont = Sequence("c", "cart_abandon", "a", {"a": Send("email", next="g"), "g": CheckGoal(if_met="thanks"),
                                                "thanks": Send("push")})
    with pytest.raises(SequenceError, match=r"step 'g': a goal check that continues"):
        SequencePolicy({"cart_abandon": cont})
    three = Sequence("t", "cart_abandon", "a", {"a": Send("email", next="b"), "b": Wait(1, next="c"),
                                                 "c": Send("push", next="d"), "d": Wait(1, next="e"), "e": Send("sms")})
    c = pd.DataFrame({"stage": ["cart_abandon"]})
    with pytest.raises(SequenceError, match=r"step 'e': a third send"):
        SequencePolicy({"cart_abandon": three}).decide(c, np.random.default_rng(0))
    with pytest.raises(SequenceError, match="is for stage 'cart_abandon', given for 'birthday'"):
        SequencePolicy({"birthday": CART_ABANDON})
