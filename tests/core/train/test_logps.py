"""Head-only completion log-probs against the full forward pass, on GPT-2 and Llama."""

from __future__ import annotations

import pytest
import torch
from transformers import Gemma2Config, Gemma2ForCausalLM, LlamaConfig, LlamaForCausalLM

from core import data
from core.batching import collate_preferences, tokenize_preferences
from core.train.common import DPOConfig, Reference, prepare_policy
from core.train.logps import completion_token_logps, plain_head, sequence_logps, token_logps
from tests import tiny

ATOL = 1e-5


@pytest.fixture(scope="module")
def tok():
    return tiny.build_tokenizer()


@pytest.fixture(scope="module", params=["right-padded", "left-padded"])
def batch(tok, request):
    pairs = tokenize_preferences(data.load_bundled("arithmetic-truth"), tok, 32, 16)[0]
    batch = collate_preferences(pairs[:4], tok.pad_token_id)  # 8 rows, right-padded
    if request.param == "left-padded":
        for row, length in enumerate(batch["attention_mask"].sum(-1).tolist()):
            for key in batch:
                batch[key][row] = batch[key][row].roll(batch[key].shape[1] - length)
        assert batch["attention_mask"][:, 0].min() == 0  # some row really starts with padding
    return batch


def build_llama(tok) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=128, tie_word_embeddings=False,
                         pad_token_id=tok.pad_token_id)
    return LlamaForCausalLM(config).eval()


def build_policy(tok, arch: str, lora_rank: int) -> torch.nn.Module:
    model = tiny.build_model(tok) if arch == "gpt2" else build_llama(tok)
    policy = prepare_policy(model, DPOConfig(lora_rank=lora_rank))
    if lora_rank:
        with torch.no_grad():  # LoRA B starts at 0; move it so the adapter changes the output
            for name, param in policy.named_parameters():
                if "lora_B" in name:
                    param.normal_(std=0.05)
    return policy


def full_and_head_only(policy, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    ids, attention = batch["input_ids"], batch["attention_mask"]
    mask = batch["completion_mask"][:, 1:].float()  # (B, T-1)
    full = token_logps(policy, ids, attention) * mask
    head_only = completion_token_logps(policy, ids, attention, batch["completion_mask"])
    return full, head_only, mask


def trainable_grads(policy, logps: torch.Tensor, weights: torch.Tensor) -> list[torch.Tensor]:
    policy.zero_grad(set_to_none=True)
    (logps * weights).sum().backward()
    return [p.grad.clone() for p in policy.parameters() if p.requires_grad]


CASES = [("gpt2", 0), ("gpt2", 4), ("llama", 0), ("llama", 4)]


@pytest.mark.parametrize(("arch", "lora_rank"), CASES)
def test_head_only_logps_match_full(tok, batch, arch, lora_rank):
    policy = build_policy(tok, arch, lora_rank)
    assert plain_head(policy) is not None  # the head-only path is the one under test
    full, head_only, mask = full_and_head_only(policy, batch)
    assert head_only.shape == full.shape
    assert (head_only * (1 - mask)).abs().max().item() == 0.0
    assert (head_only - full).abs().max().item() < ATOL
    assert torch.allclose(sequence_logps(policy, batch), full.sum(-1), atol=ATOL)


@pytest.mark.parametrize(("arch", "lora_rank"), CASES)
def test_head_only_grads_match_full(tok, batch, arch, lora_rank):
    policy = build_policy(tok, arch, lora_rank).train()
    mask = batch["completion_mask"][:, 1:].float()  # (B, T-1)
    weights = torch.randn(mask.shape, generator=torch.Generator().manual_seed(0)) * mask
    full_grads = trainable_grads(policy, token_logps(
        policy, batch["input_ids"], batch["attention_mask"]), weights)
    head_grads = trainable_grads(policy, completion_token_logps(
        policy, batch["input_ids"], batch["attention_mask"], batch["completion_mask"]), weights)
    assert len(head_grads) == len(full_grads) > 0
    for a, b in zip(head_grads, full_grads):
        assert torch.allclose(a, b, atol=ATOL)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_adapter_off_reference_uses_base(tok, batch, arch):
    policy = build_policy(tok, arch, lora_rank=4)
    reference = Reference.adapter_off(policy)
    with torch.no_grad(), policy.disable_adapter():
        base = (token_logps(policy, batch["input_ids"], batch["attention_mask"])
                * batch["completion_mask"][:, 1:]).sum(-1)
    with torch.no_grad():
        adapted = sequence_logps(policy, batch)
    assert torch.allclose(reference.logps(batch), base, atol=ATOL)
    assert (adapted - base).abs().max().item() > 1e-3  # the adapter really moved the policy


def test_softcapped_model_takes_full_path(tok, batch):
    torch.manual_seed(0)
    config = Gemma2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                          num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                          head_dim=16, max_position_embeddings=128,
                          final_logit_softcapping=2.0, pad_token_id=tok.pad_token_id)
    model = Gemma2ForCausalLM(config).eval()
    assert plain_head(model) is None
    full, head_only, _ = full_and_head_only(model, batch)
    assert (head_only - full).abs().max().item() < ATOL


def test_logit_scale_setting_takes_full_path(tok):
    model = tiny.build_model(tok)
    assert plain_head(model) is not None
    model.config.logit_scale = 0.5
    assert plain_head(model) is None
