"""Failures seen in public trainers, each with the value our code must give instead."""

from __future__ import annotations

import math

import pytest
import torch

from core import data
from core.batching import (
    EncodedPair,
    EncodedSFT,
    collate_preferences,
    collate_sft,
    encode_pair,
    tokenize_preferences,
    tokenize_sft,
)
from core.train import dpo, sft
from core.train.common import (
    ConfigError,
    DPOConfig,
    NonFiniteLossError,
    Reference,
    ReferenceChangedError,
    SFTConfig,
    check_trainable,
    prepare_policy,
    sequence_logps,
    token_logps,
    validate_config,
)
from tests import tiny


@pytest.fixture(scope="module")
def tok():
    return tiny.build_tokenizer()


@pytest.fixture(scope="module")
def pairs(tok):
    return tokenize_preferences(data.load_bundled("arithmetic-truth"), tok, 32, 16)[0]


@pytest.fixture(scope="module")
def sft_rows(tok):
    return tokenize_sft(data.load_bundled("tiny-chat"), tok, 48, 24)[0]


class RecordingSGD(torch.optim.SGD):
    """An optimizer that stores the gradients of each step and leaves the weights alone."""

    def __init__(self, params):
        super().__init__(list(params), lr=0.0)
        self.grads: list[torch.Tensor] = []

    def step(self, closure=None):
        self.grads = [p.grad.clone() for g in self.param_groups for p in g["params"]]


# Truncation and lengths

def test_completion_emptied_by_truncation(tok):
    ds = data.load_sft([{"prompt": "The cat sat on the mat. " * 3, "completion": " four"}])
    rows, issues = tokenize_sft(ds, tok, max_length=6, max_prompt_length=None)
    assert rows == []
    assert [(i.line, i.field, i.action) for i in issues] == [(1, "completion", "dropped")]


def test_empty_completion_gives_zero_not_nan(tok):
    model = tiny.build_model(tok)
    batch = collate_sft([EncodedSFT([5, 6, 7], [])], tok.pad_token_id)
    assert sequence_logps(model, batch).tolist() == [0.0]
    config = SFTConfig(steps=1, batch_size=1)
    policy = prepare_policy(model, config)
    metrics = sft.sft_step(policy, torch.optim.SGD(policy.parameters(), lr=0.1),
                           [EncodedSFT([5, 6, 7], [])], config, tok, step=0)
    assert metrics["loss/train"] == 0.0


def test_prompt_longer_than_max_length(tok):
    ds = data.load_sft([{"prompt": "The cat sat on the mat. " * 4 + "Two plus two equals",
                         "completion": " four"}])
    rows, issues = tokenize_sft(ds, tok, max_length=12, max_prompt_length=8)
    assert len(rows[0].prompt_ids) == 8
    assert tok.decode(rows[0].prompt_ids).endswith("Two plus two equals")
    assert rows[0].completion_ids == tok(" four")["input_ids"] + [tok.eos_token_id]
    assert [(i.field, i.action) for i in issues] == [("prompt", "cut")]


def test_prompt_limit_must_be_below_max_length():
    with pytest.raises(ConfigError, match="max_prompt_length=64 must be below max_length=64"):
        validate_config(SFTConfig(max_length=64, max_prompt_length=64))


# Settings

def test_beta_zero_rejected():
    with pytest.raises(ConfigError, match="beta=0"):
        validate_config(DPOConfig(beta=0.0))


def test_chosen_equal_rejected(tok):
    ds_issues = []
    assert data.parse_preference_rows(3, {"prompt": "p", "chosen": " a", "rejected": " a"},
                                      ds_issues) == []
    assert ds_issues[0].line == 3
    # a pair with equal sides passed in anyway: loss ln 2 and no gradient at all
    config = DPOConfig(steps=1, batch_size=1)
    policy = prepare_policy(tiny.build_model(tok), config)
    same = EncodedPair([5, 6], [7, 0], [7, 0])
    ref = torch.zeros(1, 2)
    optimizer = RecordingSGD(policy.parameters())
    metrics = dpo.dpo_step(policy, optimizer, [same], ref, config, tok, step=0)
    assert metrics["loss/train"] == pytest.approx(math.log(2))
    assert max(g.abs().max().item() for g in optimizer.grads) < 1e-7


def test_nothing_trainable_stuck_at_ln2(tok, pairs):
    model = tiny.build_model(tok)
    for param in model.parameters():
        param.requires_grad_(False)
    with pytest.raises(ConfigError, match="ln 2"):
        check_trainable(model)
    with pytest.raises(ConfigError, match="Nothing in the model is trainable"):
        dpo.train_dpo(model, tok, pairs, DPOConfig(steps=2))


# Tokens and masks

def test_pad_equal_to_eos_sft_raises_p_eos(tok, sft_rows):
    assert tok.pad_token_id == tok.eos_token_id
    row = sft_rows[0]
    batch = collate_sft(sft_rows[:4], tok.pad_token_id)
    end = len(row.prompt_ids) + len(row.completion_ids) - 1  # position of the final EOS
    assert batch["labels"][0, end].item() == tok.eos_token_id

    def p_eos(model):
        ids = torch.tensor([row.prompt_ids + row.completion_ids])
        with torch.no_grad():
            return token_logps(model, ids, torch.ones_like(ids))[0, end - 1].exp().item()

    config = SFTConfig(steps=20, batch_size=4, learning_rate=1e-2)
    policy = prepare_policy(tiny.build_model(tok), config)
    before = p_eos(policy)
    sft.train_sft(policy, tok, sft_rows[:4], config)
    assert before < 0.01
    assert p_eos(policy) > 0.5


def test_doubled_bos_removed():
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    backend = tiny.build_tokenizer().backend_tokenizer
    backend.add_special_tokens(["<s>"])
    bos = backend.token_to_id("<s>")
    backend.post_processor = processors.TemplateProcessing(single="<s> $A",
                                                           special_tokens=[("<s>", bos)])
    bos_tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>",
                                      eos_token="<|endoftext|>")
    assert bos_tok("<s>Two plus")["input_ids"][:2] == [bos, bos]  # the bug, done naively
    prompt_ids, _ = encode_pair(bos_tok, "<s>Two plus", " two")
    assert prompt_ids[:2] == [bos, bos_tok("Two")["input_ids"][1]]


def test_prompt_space_does_not_split_answer(tok):
    prompt_ids, completion_ids = encode_pair(tok, "Two plus two equals ", "four")
    joined = tok("Two plus two equals four")["input_ids"]
    assert prompt_ids + completion_ids[:-1] == joined
    assert tok.decode(completion_ids[:1]) == " four"


def test_mask_covers_exactly_the_answer(tok):
    """The first answer token is in the loss and the last prompt token is not."""
    model = tiny.build_model(tok)
    prompt_ids, completion_ids = encode_pair(tok, "Two plus two equals", " four")
    batch = collate_sft([EncodedSFT(prompt_ids, completion_ids)], tok.pad_token_id)
    ours = sequence_logps(model, batch).item()
    expected = 0.0
    with torch.no_grad():
        for i, token in enumerate(completion_ids):
            context = torch.tensor([prompt_ids + completion_ids[:i]])
            logits = model(context).logits[0, -1]
            expected += torch.log_softmax(logits, -1)[token].item()
    assert ours == pytest.approx(expected, abs=1e-5)
    per_token = token_logps(model, batch["input_ids"], batch["attention_mask"])[0]
    start = len(prompt_ids) - 1  # index in per_token of the first answer token
    first_left_out = per_token[start + 1:].sum().item()
    last_prompt_in = per_token[start - 1:].sum().item()
    assert first_left_out != pytest.approx(expected, abs=1e-3)
    assert last_prompt_in != pytest.approx(expected, abs=1e-3)


def test_gpt2_left_padding_matches_unpadded(tok):
    model = tiny.build_model(tok)
    short = tok("Two plus two")["input_ids"]
    long = tok("The cat sat on the mat")["input_ids"]
    pad = len(long) - len(short)
    ids = torch.tensor([[tok.pad_token_id] * pad + short, long])
    mask = torch.tensor([[0] * pad + [1] * len(short), [1] * len(long)])
    ours = token_logps(model, ids, mask)[0, pad:]  # the real tokens of the short row
    alone = token_logps(model, torch.tensor([short]), torch.ones(1, len(short), dtype=torch.long))[0]
    assert torch.allclose(ours, alone, atol=1e-5)
    with torch.no_grad():  # without position ids from the mask, GPT-2 shifts the positions
        naive = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits[0, pad:-1], -1)
    naive_picked = naive.gather(-1, torch.tensor(short[1:]).unsqueeze(-1)).squeeze(-1)
    assert not torch.allclose(naive_picked, alone, atol=1e-3)


# Gradients, precision, the reference

def _grads(tok, rows, grad_accum: int) -> list[torch.Tensor]:
    config = SFTConfig(steps=1, batch_size=len(rows), grad_accum=grad_accum)
    policy = prepare_policy(tiny.build_model(tok), config)
    optimizer = RecordingSGD(policy.parameters())
    sft.sft_step(policy, optimizer, rows, config, tok, step=0)
    return optimizer.grads


def test_grad_accum_unequal_lengths_matches_big_batch(tok, sft_rows):
    rows = sorted(sft_rows, key=lambda r: len(r.completion_ids))[::4][:4]
    assert len({len(r.completion_ids) for r in rows}) > 1
    full = _grads(tok, rows, grad_accum=1)
    for accum in (2, 4):
        split = _grads(tok, rows, grad_accum=accum)
        for a, b in zip(full, split):
            assert torch.allclose(a, b, atol=1e-6)
    # the common mistake, a mean per micro-batch, gives a different gradient
    model = prepare_policy(tiny.build_model(tok), SFTConfig())
    for half in (rows[:2], rows[2:]):
        nll, n_tokens, _ = sft.sft_loss_sum(model, collate_sft(half, tok.pad_token_id))
        (nll / n_tokens / 2).backward()
    naive = [p.grad for p in model.parameters()]
    assert not all(torch.allclose(a, b, atol=1e-6) for a, b in zip(full, naive))


def test_dpo_grad_accum_matches_big_batch(tok, pairs):
    def grads(accum):
        config = DPOConfig(steps=1, batch_size=4, grad_accum=accum, nll_weight=1.0)
        policy = prepare_policy(tiny.build_model(tok), config)
        optimizer = RecordingSGD(policy.parameters())
        ref = torch.full((4, 2), -5.0)
        dpo.dpo_step(policy, optimizer, pairs[:4], ref, config, tok, step=0)
        return optimizer.grads

    for a, b in zip(grads(1), grads(4)):
        assert torch.allclose(a, b, atol=1e-6)


def test_bf16_logps_close_to_fp32(tok, pairs):
    model = tiny.build_model(tok)
    batch = collate_preferences(pairs[:4], tok.pad_token_id)
    fp32 = token_logps(model, batch["input_ids"], batch["attention_mask"])
    low = token_logps(model.to(torch.bfloat16), batch["input_ids"], batch["attention_mask"])
    assert low.dtype == torch.float32  # log-softmax runs in fp32 whatever the weights
    assert (low - fp32).abs().max().item() < 0.1
    with torch.no_grad():  # log-softmax in bf16, the failure, is further off
        logits = model(input_ids=batch["input_ids"]).logits[:, :-1]
        bf16_softmax = torch.log_softmax(logits, -1).gather(
            -1, batch["input_ids"][:, 1:].unsqueeze(-1)).squeeze(-1).float()
    assert (bf16_softmax - fp32).abs().mean() > (low - fp32).abs().mean()


def test_reference_drift_detected(tok):
    reference = Reference.copy_of(tiny.build_model(tok))
    reference.verify()
    with torch.no_grad():
        next(reference.model.parameters()).add_(1e-3)
    with pytest.raises(ReferenceChangedError):
        reference.verify()


def test_reference_is_not_the_policy(tok, pairs):
    config = DPOConfig(steps=5, batch_size=4, learning_rate=1e-2)
    policy = prepare_policy(tiny.build_model(tok), config)
    reference = Reference.copy_of(policy)
    batch = collate_preferences(pairs[:4], tok.pad_token_id)
    before = reference.logps(batch)
    result = dpo.train_dpo(policy, tok, pairs, config, reference=reference)
    assert torch.equal(reference.logps(batch), before)
    assert result.history[-1]["rewards/margins"] > 0
    # a reference rebuilt from the trained policy reads zero reward: the bug it would cause
    rebuilt = Reference.copy_of(policy)
    chosen, rejected = (sequence_logps(policy, batch) - rebuilt.logps(batch)).chunk(2)
    assert chosen.abs().max().item() < 1e-6
    assert rejected.abs().max().item() < 1e-6


def test_nan_stops_with_step_and_rows(tok, pairs):
    config = DPOConfig(steps=3, batch_size=2)
    policy = prepare_policy(tiny.build_model(tok), config)
    reference = Reference.copy_of(policy)
    with torch.no_grad():
        policy.transformer.wte.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError) as info:
        dpo.train_dpo(policy, tok, pairs, config, reference=reference)
    assert info.value.step == 0
    assert len(info.value.lines) == 2
    assert "step 0" in str(info.value)
