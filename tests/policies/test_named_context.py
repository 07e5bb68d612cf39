"""The built-in learned policy's context, and which commands compute a context at all (fast: no data)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cadence.deployment.registry import LEARNED_PARAMS, build_policy, context_families, save_policy
from cadence.deployment.tuning import CONTEXTS
from cadence.policies.context import CONTEXT_FAMILIES
from cadence.policies.learned import UpliftPolicy
from cadence.workflows import policies as wp


def test_the_builtin_learned_policy_decides_with_every_family() -> None:
    pol = UpliftPolicy(**LEARNED_PARAMS)
    assert pol.learner == "linear" and tuple(pol.context) == CONTEXT_FAMILIES
    with pytest.raises(ValueError, match="learns from data"):
        build_policy("learned", None)


def test_context_families_by_name(tmp_path: Path) -> None:
    save_policy("dr-trigger", "learned", {"learner": "dr", "context": ["trigger"]}, policies_dir=tmp_path)
    save_policy("dr-scores", "learned", {"learner": "dr", "context": ["trigger", "scores"]}, policies_dir=tmp_path)
    save_policy("uplift-t", "learned", {"learner": "t"}, policies_dir=tmp_path)  # decides from the trigger's columns
    save_policy("pct", "rules", {"incentive": "percent_code"}, policies_dir=tmp_path)
    assert context_families(["logging", "rules", "pct", "uplift-t", "dr-trigger"], tmp_path) == ()
    assert context_families(["rules", "dr-scores"], tmp_path) == ("scores",)
    assert context_families(["dr-scores", "learned"], tmp_path) == ("customer", "scores")
    assert set(CONTEXTS["all"]) == set(CONTEXT_FAMILIES)  # the tuning space reaches the built-in's context


def test_no_context_is_computed_when_no_policy_reads_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("load_context called")

    monkeypatch.setattr(wp, "load_context", refuse)
    assert wp.named_context(tmp_path, ["rules", "logging"], policies_dir=tmp_path) is None
    given = object()
    assert wp.named_context(tmp_path, ["learned"], policies_dir=tmp_path, context=given) is given  # type: ignore[arg-type]
    with pytest.raises(AssertionError, match="load_context called"):
        wp.named_context(tmp_path, ["rules", "learned"], policies_dir=tmp_path)
