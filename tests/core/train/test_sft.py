"""Tests for core/train/sft.py on tiny GPT-2 models built in the test."""

from __future__ import annotations

import math

import pytest
import torch

from core import data
from core.batching import collate_sft, tokenize_sft
from core.train import sft
from core.train.common import SFTConfig, prepare_policy
from tests import tiny


@pytest.fixture(scope="module")
def tok():
    return tiny.build_tokenizer()


@pytest.fixture(scope="module")
def rows(tok):
    return tokenize_sft(data.load_bundled("tiny-chat"), tok, max_length=48, max_prompt_length=24)[0]


def train(tok, rows, **settings):
    config = SFTConfig(**{"steps": 4, "batch_size": 4, "learning_rate": 5e-3, **settings})
    policy = prepare_policy(tiny.build_model(tok), config)
    return sft.train_sft(policy, tok, rows, config)


def test_loss_is_mean_nll_of_completion_tokens(tok, rows):
    model = tiny.build_model(tok)
    batch = collate_sft(rows[:3], tok.pad_token_id)
    nll_sum, n_tokens, _ = sft.sft_loss_sum(model, batch)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    expected = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), batch["labels"][:, 1:].reshape(-1))
    assert n_tokens == sum(len(r.completion_ids) for r in rows[:3])
    assert (nll_sum / n_tokens).item() == pytest.approx(expected.item(), rel=1e-5)


def test_first_loss_near_uniform(tok, rows):
    first = train(tok, rows, steps=1).history[0]
    assert first["loss/train"] == pytest.approx(math.log(len(tok)), rel=0.1)


def test_loss_falls(tok, rows):
    history = train(tok, rows, steps=8).history
    assert history[-1]["loss/train"] < history[0]["loss/train"] - 0.5


def test_metric_keys(tok, rows):
    event = train(tok, rows, steps=1).history[0]
    for key in ("step", "loss/train", "train/perplexity", "probs/completion", "train/grad_norm",
                "train/learning_rate", "train/tokens_per_second"):
        assert key in event, key


def test_lora_trains_only_adapter(tok, rows):
    config = SFTConfig(steps=3, batch_size=4, learning_rate=1e-2, lora_rank=4)
    policy = prepare_policy(tiny.build_model(tok), config)
    frozen = {n: p.clone() for n, p in policy.named_parameters() if not p.requires_grad}
    history = sft.train_sft(policy, tok, rows, config).history
    assert history[-1]["loss/train"] < history[0]["loss/train"]
    for name, param in policy.named_parameters():
        if name in frozen:
            assert torch.equal(param, frozen[name]), name


def test_warmup_learning_rate(tok, rows):
    history = train(tok, rows, steps=3, warmup_steps=2, learning_rate=1e-3).history
    assert [h["train/learning_rate"] for h in history] == pytest.approx([5e-4, 1e-3, 1e-3])
