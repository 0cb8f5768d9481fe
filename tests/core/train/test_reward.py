"""Tests for the Bradley–Terry reward model, including equality with TRL's RewardTrainer."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from core.batching import EncodedPair, collate_preferences, encode_pair
from core.train.common import ConfigError
from core.train.reward import (RewardConfig, bradley_terry_loss, build_reward_model,
                               evaluate_pairs, last_token_index, load_reward_model,
                               prepare_reward_model, reward_step, run_job, score,
                               sequence_rewards, train_reward)
from tests import tiny

ARITHMETIC = [
    ("Two plus two equals", " four", " five"),
    ("Three plus three equals", " six", " seven"),
    ("The cat sat on the", " mat.", " dog and the cat sat"),
    ("What is two plus two?", " It is four.", " five"),
]


@pytest.fixture(scope="module")
def tokenizer():
    return tiny.build_tokenizer()


def _pairs(tokenizer, rows=ARITHMETIC) -> list[EncodedPair]:
    pairs = []
    for line, (prompt, chosen, rejected) in enumerate(rows, start=1):
        prompt_ids, chosen_ids = encode_pair(tokenizer, prompt, chosen)
        _, rejected_ids = encode_pair(tokenizer, prompt, rejected)
        pairs.append(EncodedPair(prompt_ids, chosen_ids, rejected_ids, line))
    return pairs


def _random_head(model, seed: int = 1):
    torch.manual_seed(seed)
    torch.nn.init.normal_(model.score.weight, std=0.5)
    return model.eval()


def test_last_token_index_both_paddings():
    right = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0]])
    left = torch.tensor([[0, 1, 1, 1], [0, 0, 0, 1]])
    assert last_token_index(right).tolist() == [2, 3, 0]
    assert last_token_index(left).tolist() == [3, 3]


def test_last_token_index_rejects_empty_row():
    with pytest.raises(ValueError, match="no real token"):
        last_token_index(torch.tensor([[1, 1], [0, 0]]))


def test_build_copies_backbone_and_zero_head(tokenizer):
    lm = tiny.build_model(tokenizer)
    before = {k: v.clone() for k, v in lm.state_dict().items()}
    model = build_reward_model(lm, tokenizer.pad_token_id)
    for name, value in model.transformer.state_dict().items():
        assert torch.equal(value, lm.transformer.state_dict()[name]), name
    assert torch.count_nonzero(model.score.weight) == 0
    for name, value in lm.state_dict().items():
        assert torch.equal(value, before[name]), f"{name} of the language model changed"


def test_first_loss_is_ln2_and_rewards_zero(tokenizer):
    model = prepare_reward_model(build_reward_model(tiny.build_model(tokenizer),
                                                    tokenizer.pad_token_id), RewardConfig())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    metrics = reward_step(model, optimizer, _pairs(tokenizer), RewardConfig(),
                          tokenizer.pad_token_id, step=0)
    assert metrics["loss/train"] == pytest.approx(math.log(2), abs=1e-6)
    assert metrics["rewards/chosen"] == 0.0
    assert metrics["rewards/margins"] == 0.0
    assert metrics["rewards/ties"] == 1.0
    assert metrics["rewards/accuracies"] == 0.0


def test_reward_read_at_final_eos_when_pad_is_eos(tokenizer):
    assert tokenizer.pad_token_id == tokenizer.eos_token_id
    model = _random_head(build_reward_model(tiny.build_model(tokenizer), tokenizer.pad_token_id))
    pairs = _pairs(tokenizer)
    batch = collate_preferences(pairs, tokenizer.pad_token_id)
    batched = sequence_rewards(model, batch["input_ids"], batch["attention_mask"])  # (2B,)
    for i, pair in enumerate(pairs):
        ids = torch.tensor([pair.prompt_ids + pair.chosen_ids])
        alone = sequence_rewards(model, ids, torch.ones_like(ids))
        assert batched[i].item() == pytest.approx(alone.item(), abs=1e-5)
        without_eos = ids[:, :-1]
        other = sequence_rewards(model, without_eos, torch.ones_like(without_eos))
        assert other.item() != pytest.approx(alone.item(), abs=1e-6), "EOS was not read"


def test_left_padding_matches_right_padding(tokenizer):
    model = _random_head(build_reward_model(tiny.build_model(tokenizer), tokenizer.pad_token_id))
    right = collate_preferences(_pairs(tokenizer), tokenizer.pad_token_id)
    ids, mask = right["input_ids"], right["attention_mask"]
    lengths = mask.sum(-1)
    left_ids, left_mask = torch.full_like(ids, tokenizer.pad_token_id), torch.zeros_like(mask)
    for row, n in enumerate(lengths.tolist()):
        left_ids[row, ids.shape[1] - n:] = ids[row, :n]
        left_mask[row, ids.shape[1] - n:] = 1
    expected = sequence_rewards(model, ids, mask)
    got = sequence_rewards(model, left_ids, left_mask)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_loss_matches_trl_reward_trainer(tokenizer, tmp_path):
    datasets = pytest.importorskip("datasets")
    trl = pytest.importorskip("trl")
    # A pad id that never occurs in the rows, so transformers' own pooling (the rightmost
    # token that is not pad) reads the same position as our attention-mask rule.
    pad_id = tokenizer.convert_tokens_to_ids("<|system|>")
    model = _random_head(build_reward_model(tiny.build_model(tokenizer), pad_id))
    pairs = _pairs(tokenizer)
    batch = collate_preferences(pairs, pad_id)
    rewards = sequence_rewards(model, batch["input_ids"], batch["attention_mask"])
    chosen, rejected = rewards.chunk(2)
    ours = bradley_terry_loss(chosen, rejected).mean()

    trl_tokenizer = tiny.build_tokenizer()
    trl_tokenizer.pad_token = "<|system|>"
    rows = datasets.Dataset.from_dict({
        "chosen_ids": [p.prompt_ids + p.chosen_ids for p in pairs],
        "rejected_ids": [p.prompt_ids + p.rejected_ids for p in pairs]})
    args = trl.RewardConfig(output_dir=str(tmp_path), report_to="none", bf16=False,
                            per_device_train_batch_size=len(pairs))
    trainer = trl.RewardTrainer(model=model, args=args, train_dataset=rows,
                                processing_class=trl_tokenizer)
    inputs = trainer.data_collator([rows[i] for i in range(len(pairs))])
    assert torch.equal(inputs["input_ids"], batch["input_ids"])
    model.eval()
    theirs = trainer.compute_loss(trainer.model, inputs)
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-5)
    assert ours.item() != pytest.approx(math.log(2), abs=1e-3), "the head was not random"

    margin = torch.tensor([0.5, 0.0, -0.2, 1.0])
    inputs["margin"] = margin
    with_margin = trainer.compute_loss(trainer.model, inputs)
    ours_margin = bradley_terry_loss(chosen, rejected, margin=margin).mean()
    assert ours_margin.item() == pytest.approx(with_margin.item(), abs=1e-5)


def test_centring_term_adds_squared_sum():
    chosen, rejected = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 1.0])
    plain = bradley_terry_loss(chosen, rejected)
    centred = bradley_terry_loss(chosen, rejected, center_rewards_coefficient=0.01)
    torch.testing.assert_close(centred - plain, 0.01 * (chosen + rejected) ** 2)


def test_accumulation_equals_one_batch(tokenizer):
    pairs = _pairs(tokenizer)  # rows of unequal lengths
    grads = []
    for grad_accum in (1, 2, 4):
        model = _random_head(build_reward_model(tiny.build_model(tokenizer),
                                                tokenizer.pad_token_id))
        config = RewardConfig(grad_accum=grad_accum, batch_size=4)
        model = prepare_reward_model(model, config)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
        grads.append(_grads_after_backward(model, optimizer, pairs, config, tokenizer))
    for other in grads[1:]:
        for name, grad in grads[0].items():
            torch.testing.assert_close(other[name], grad, atol=1e-6, rtol=1e-5)


def _grads_after_backward(model, optimizer, pairs, config, tokenizer) -> dict:
    """Run reward_step with a no-op optimizer step and return the accumulated gradients."""
    captured = {}
    original_step = optimizer.step

    def step_and_capture(*args, **kwargs):
        for name, param in model.named_parameters():
            if param.grad is not None:
                captured[name] = param.grad.detach().clone()
        return original_step(*args, **kwargs)

    optimizer.step = step_and_capture
    reward_step(model, optimizer, pairs, config, tokenizer.pad_token_id, step=0)
    return captured


def test_training_ranks_chosen_higher(tokenizer):
    model = build_reward_model(tiny.build_model(tokenizer), tokenizer.pad_token_id)
    config = RewardConfig(steps=25, batch_size=4, learning_rate=3e-3)
    model = prepare_reward_model(model, config)
    pairs = _pairs(tokenizer)
    events = []
    result = train_reward(model, tokenizer, pairs, config, emit=events.append)
    assert len(events) == 25
    assert events[-1]["loss/train"] < 0.2
    assert evaluate_pairs(result.model, pairs, tokenizer.pad_token_id)["rewards/accuracies"] == 1.0
    keys = {"loss/train", "rewards/chosen", "rewards/rejected", "rewards/margins",
            "rewards/accuracies", "train/grad_norm", "train/learning_rate",
            "train/tokens_per_second"}
    assert keys <= set(events[0])


def test_lora_trains_adapter_and_head_only(tokenizer):
    model = build_reward_model(tiny.build_model(tokenizer), tokenizer.pad_token_id)
    model = prepare_reward_model(model, RewardConfig(lora_rank=2))
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert any("lora_" in name for name in trainable)
    assert any("score" in name for name in trainable)
    assert all("lora_" in name or "score" in name for name in trainable)


def test_stop_request_ends_training(tokenizer):
    model = prepare_reward_model(build_reward_model(tiny.build_model(tokenizer),
                                                    tokenizer.pad_token_id), RewardConfig())
    calls = iter([False, False, True])
    result = train_reward(model, tokenizer, _pairs(tokenizer), RewardConfig(steps=10),
                          should_stop=lambda: next(calls))
    assert result.stopped
    assert len(result.history) == 2


@pytest.mark.parametrize("settings, fragment", [
    ({"center_rewards_coefficient": -1.0}, "center_rewards_coefficient"),
    ({"max_prompt_length": 64, "max_length": 64}, "max_prompt_length"),
    ({"learning_rate": 0.0}, "learning_rate"),
])
def test_invalid_settings_rejected(tokenizer, settings, fragment):
    model = build_reward_model(tiny.build_model(tokenizer), tokenizer.pad_token_id)
    with pytest.raises(ConfigError, match=fragment):
        train_reward(model, tokenizer, _pairs(tokenizer), RewardConfig(**settings))


class _Context:
    def __init__(self, output_dir: Path, device: str = "cpu"):
        self.output_dir, self.device, self.events = output_dir, device, []
        output_dir.mkdir(parents=True)

    def emit(self, event):
        self.events.append(event)

    def sample(self, step, texts):
        pass

    def should_stop(self):
        return False


@pytest.mark.parametrize("lora_rank", [0, 2])
def test_run_job_saves_loadable_reward_model(tiny_lab, lab_home, lora_rank):
    from core import store
    from core.jobs import run_meta

    rows = [{"prompt": p, "chosen": c, "rejected": r} for p, c, r in ARITHMETIC]
    config = {"model": tiny_lab[0], "rows": rows, "steps": 3, "batch_size": 4,
              "lora_rank": lora_rank, "learning_rate": 1e-3}
    ctx = _Context(lab_home / "job-output")
    result = run_job(config, ctx)
    assert result["run"]["stage"] == "reward"
    assert result["steps"] == 3
    assert 0.0 <= result["accuracy/after"] <= 1.0
    assert [e["step"] for e in ctx.events if "loss/train" in e] == [0, 1, 2]
    store.land(ctx.output_dir, "tiny-reward", run_meta("reward", config, result, "test"))

    model, tokenizer = load_reward_model("tiny-reward")
    prompts = [p for p, _, _ in ARITHMETIC]
    chosen = score(model, tokenizer, prompts, [c for _, c, _ in ARITHMETIC])
    rejected = score(model, tokenizer, prompts, [r for _, _, r in ARITHMETIC])
    assert all(math.isfinite(r) for r in chosen + rejected)
    accuracy = sum(c > r for c, r in zip(chosen, rejected)) / len(ARITHMETIC)
    assert accuracy == pytest.approx(result["accuracy/after"])


def test_load_reward_model_rejects_language_model(tiny_lab):
    from core.models import ModelError

    with pytest.raises(ModelError, match="not a reward model"):
        load_reward_model(tiny_lab[0])
