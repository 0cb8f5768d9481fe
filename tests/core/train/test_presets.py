"""Tests for core/train/presets.py and core/train/explain.py."""

from __future__ import annotations

import pytest

from core import data
from core.train import explain, presets
from core.train.common import DPOConfig, SFTConfig, config_from_dict, validate_config


@pytest.mark.parametrize("name", sorted(presets.PRESETS))
def test_preset_config_valid(name):
    preset = presets.PRESETS[name]
    config_cls = {"sft": SFTConfig, "dpo": DPOConfig}[preset.method]
    config = config_from_dict(config_cls, presets.preset_config(name))
    validate_config(config)
    bundled = {b.name: b.kind for b in data.list_bundled()}
    expected_kind = "sft" if preset.method == "sft" else "preference"
    assert bundled[config.dataset] == expected_kind
    assert preset.why


def test_arithmetic_presets_pair_nll_and_plain():
    for family in ("smollm2", "tiny-gpt"):
        with_nll = presets.PRESETS[f"{family}-dpo-arithmetic"].config
        plain = presets.PRESETS[f"{family}-dpo-arithmetic-plain"].config
        assert with_nll["nll_weight"] > 0
        assert plain["nll_weight"] == 0
        assert {k: v for k, v in with_nll.items() if k != "nll_weight"} == \
            {k: v for k, v in plain.items() if k != "nll_weight"}


def test_smollm2_dpo_preset_uses_lora():
    assert presets.PRESETS["smollm2-dpo-arithmetic"].config["lora_rank"] > 0


def test_overrides_and_unknown_name():
    assert presets.preset_config("tiny-gpt-sft-chat", steps=3)["steps"] == 3
    with pytest.raises(ValueError, match="Unknown preset"):
        presets.preset_config("nope")


def test_presets_for_method():
    names = {p.name for p in presets.presets_for("dpo", "smollm2")}
    assert "smollm2-dpo-arithmetic" in names
    assert all(p.method == "sft" for p in presets.presets_for("sft"))


def test_dpo_explanation_says_ln2():
    assert "ln 2" in explain.explain("dpo")


@pytest.mark.parametrize("method", ["sft", "dpo", "ipo", "nll", "reward", "rl"])
def test_every_method_explained(method):
    assert len(explain.explain(method)) > 200


def test_unknown_method_explanation():
    with pytest.raises(ValueError, match="No explanation"):
        explain.explain("ppo")
