"""Tests for RL with REINFORCE leave-one-out, its rewards and its job."""

from __future__ import annotations

import math

import pytest
import torch

from core.train.common import ConfigError, Reference, prepare_policy
from core.train.rl import (REWARD_FUNCTIONS, RLConfig, import_reward, length_penalty,
                           no_flattery, resolve_reward, rl_step, rloo_advantages, run_job,
                           sample_completions, says_four, train_rl)
from tests import tiny

PROMPTS = ["Two plus two equals", "What is two plus two?"]


@pytest.fixture(scope="module")
def tokenizer():
    return tiny.build_tokenizer()


def starts_with_letter(prompts, completions):
    """1.0 when a completion starts with an ASCII letter: a reward every sample can earn."""
    return [1.0 if text[:1].isascii() and text[:1].isalpha() else 0.0 for text in completions]


@torch.no_grad()
def letter_mass(model, tokenizer, prompt: str) -> float:
    """Return the probability that the next token starts with an ASCII letter."""
    ids = torch.tensor([tokenizer(prompt)["input_ids"]])
    probs = torch.softmax(model(ids).logits[0, -1].float(), dim=-1)
    starts = [tokenizer.decode([i], skip_special_tokens=True)[:1] for i in range(len(probs))]
    mask = torch.tensor([c.isascii() and c.isalpha() for c in starts])
    return float(probs[mask].sum())


def test_rloo_advantages_leave_one_out():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 2.0, 4.0, 6.0, 8.0])
    advantages = rloo_advantages(rewards, k=4)
    expected = torch.tensor([1.0, -1 / 3, -1 / 3, -1 / 3, -4.0, -4 / 3, 4 / 3, 4.0])
    torch.testing.assert_close(advantages, expected)
    torch.testing.assert_close(advantages.view(2, 4).sum(-1), torch.zeros(2))


def test_rloo_equal_rewards_give_no_signal():
    advantages = rloo_advantages(torch.full((6,), 0.7), k=3)
    torch.testing.assert_close(advantages, torch.zeros(6), atol=1e-6, rtol=0)


@pytest.mark.parametrize("completion, expected", [
    (" four.", 1.0), (" 4", 1.0), (" Four, of course", 1.0), (" five", 0.0),
    (" five, not four", 0.0), (" fourteen", 0.0), (" a cat", 0.0),
])
def test_says_four(completion, expected):
    assert says_four(["Two plus two equals"], [completion]) == [expected]


def test_length_penalty_prefers_short():
    short, long = length_penalty(["p", "p"], ["Yes.", " ".join(["word"] * 30)])
    assert short == pytest.approx(0.95)
    assert long == 0.0


def test_no_flattery_counts_phrases():
    rewards = no_flattery(["p"] * 3, ["No, it is not visible.",
                                      "What a sharp observation! You are right.",
                                      "Great question, you genius, what a masterpiece"])
    assert rewards == [1.0, 0.0, -1.0]


def test_resolve_reward_names_and_paths():
    assert resolve_reward(RLConfig(reward="no_flattery")) is no_flattery
    assert resolve_reward(RLConfig(reward="core.train.rl:length_penalty")) is length_penalty
    assert set(REWARD_FUNCTIONS) == {"says_four", "length_penalty", "no_flattery"}
    with pytest.raises(ConfigError, match="neither a built-in"):
        import_reward("nice_answers")
    with pytest.raises(ConfigError, match="Cannot import"):
        import_reward("core.train.rl:no_such_function")


@pytest.mark.parametrize("settings, fragment", [
    ({"samples_per_prompt": 1}, "samples_per_prompt"),
    ({"beta": -0.1}, "beta"),
    ({"max_new_tokens": 0}, "max_new_tokens"),
    ({"max_prompt_length": 128, "max_length": 64}, "max_prompt_length"),
])
def test_invalid_settings_rejected(tokenizer, settings, fragment):
    policy = tiny.build_model(tokenizer)
    with pytest.raises(ConfigError, match=fragment):
        train_rl(policy, tokenizer, PROMPTS, says_four, RLConfig(**settings))


def test_samples_end_after_first_eos(tokenizer):
    rows = sample_completions(tiny.build_model(tokenizer), tokenizer, PROMPTS, k=3,
                              max_new_tokens=6, seed=0)
    assert len(rows) == 6
    assert [row.line for row in rows] == [0, 0, 0, 1, 1, 1]
    eos = tokenizer.eos_token_id
    for row in rows:
        assert 1 <= len(row.completion_ids) <= 6
        assert eos not in row.completion_ids[:-1]


def test_step_zero_kl_is_zero(tokenizer):
    config = RLConfig(batch_size=2, samples_per_prompt=3, max_new_tokens=5)
    policy = prepare_policy(tiny.build_model(tokenizer), config)
    reference = Reference.for_policy(policy)
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.0)
    metrics, samples = rl_step(policy, optimizer, reference, tokenizer, PROMPTS,
                               starts_with_letter, config, step=0)
    assert metrics["kl/ref"] == pytest.approx(0.0, abs=1e-6)
    assert 0.0 < metrics["policy/entropy"] <= math.log(len(tokenizer)) + 1e-4
    assert 0.0 <= metrics["reward/mean"] <= 1.0
    assert len(samples) == 6


def test_training_raises_rewarded_probability(tokenizer):
    config = RLConfig(steps=12, batch_size=2, samples_per_prompt=8, max_new_tokens=1,
                      learning_rate=3e-2, beta=0.0)
    policy = prepare_policy(tiny.build_model(tokenizer), config)
    before = [letter_mass(policy, tokenizer, p) for p in PROMPTS]
    events = []
    result = train_rl(policy, tokenizer, PROMPTS, starts_with_letter, config,
                      emit=events.append)
    after = [letter_mass(result.model, tokenizer, p) for p in PROMPTS]
    assert len(events) == 12
    for prompt, old, new in zip(PROMPTS, before, after):
        assert new > old + 0.15, f"{prompt!r}: P(letter) {old:.3f} -> {new:.3f}"
    assert events[0]["kl/ref"] == pytest.approx(0.0, abs=1e-6)
    assert events[-1]["kl/ref"] != 0.0


def test_lora_trains_adapter_and_keeps_base(tokenizer):
    from core.train.common import weights_hash

    config = RLConfig(steps=3, batch_size=2, samples_per_prompt=4, max_new_tokens=2,
                      learning_rate=3e-2, lora_rank=4)
    policy = prepare_policy(tiny.build_model(tokenizer), config)
    base_hash = weights_hash(policy, skip_lora=True)
    events = []
    train_rl(policy, tokenizer, PROMPTS, starts_with_letter, config, emit=events.append)
    lora_b = [p for name, p in policy.named_parameters() if "lora_B" in name]
    assert lora_b and any(torch.count_nonzero(p) > 0 for p in lora_b)
    assert weights_hash(policy, skip_lora=True) == base_hash
    assert events[0]["kl/ref"] == pytest.approx(0.0, abs=1e-6)
    assert events[-1]["kl/ref"] != 0.0


def test_reward_function_must_return_one_value_each(tokenizer):
    policy = prepare_policy(tiny.build_model(tokenizer), RLConfig())
    config = RLConfig(steps=1, batch_size=2, samples_per_prompt=2, max_new_tokens=3)
    with pytest.raises(ValueError, match="one per completion"):
        train_rl(policy, tokenizer, PROMPTS, lambda p, c: [1.0], config)
    with pytest.raises(ValueError, match="non-finite"):
        train_rl(policy, tokenizer, PROMPTS, lambda p, c: [math.nan] * len(c), config)


class _Context:
    def __init__(self, output_dir, device="cpu"):
        self.output_dir, self.device = output_dir, device
        self.events, self.samples = [], []
        output_dir.mkdir(parents=True)

    def emit(self, event):
        self.events.append(event)

    def sample(self, step, texts):
        self.samples.append((step, texts))

    def should_stop(self):
        return False


def test_run_job_with_function_reward(tiny_lab, lab_home):
    from core import store
    from core.jobs import run_meta
    from core.models import load_model

    config = {"model": tiny_lab[0], "prompts": PROMPTS, "steps": 2, "batch_size": 2,
              "samples_per_prompt": 2, "max_new_tokens": 4, "reward": "length_penalty",
              "sample_every": 1}
    ctx = _Context(lab_home / "rl-output")
    result = run_job(config, ctx)
    assert result["run"]["stage"] == "rl"
    assert result["steps"] == 2
    assert [step for step, _ in ctx.samples] == [0, 1]
    store.land(ctx.output_dir, "tiny-rl", run_meta("rl", config, result, "test"))
    assert load_model("tiny-rl").spec.stage == "rl"


def test_run_job_with_reward_model(tiny_lab, lab_home):
    from core import store
    from core.jobs import run_meta
    from core.train import reward

    rows = [{"prompt": "Two plus two equals", "chosen": " four", "rejected": " five"}]
    reward_config = {"model": tiny_lab[0], "rows": rows, "steps": 2, "batch_size": 1}
    reward_ctx = _Context(lab_home / "reward-output")
    summary = reward.run_job(reward_config, reward_ctx)
    store.land(reward_ctx.output_dir, "tiny-rm",
               run_meta("reward", reward_config, summary, "test"))

    config = {"model": tiny_lab[0], "dataset": "arithmetic-truth", "steps": 1,
              "batch_size": 2, "samples_per_prompt": 2, "max_new_tokens": 3,
              "reward_model": "tiny-rm"}
    ctx = _Context(lab_home / "rl-output")
    result = run_job(config, ctx)
    assert math.isfinite(result["reward/mean"])
    assert ctx.events[0]["data/rows"] > 1
