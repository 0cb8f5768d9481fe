"""Tests for core/train/dpo.py on tiny GPT-2 models built in the test."""

from __future__ import annotations

import math

import pytest
import torch

from core import data
from core.batching import tokenize_preferences
from core.train import dpo
from core.train.common import ConfigError, DPOConfig, Reference, prepare_policy
from tests import tiny


@pytest.fixture(scope="module")
def tok():
    return tiny.build_tokenizer()


@pytest.fixture(scope="module")
def pairs(tok):
    ds = data.load_bundled("arithmetic-truth")
    return tokenize_preferences(ds, tok, max_length=32, max_prompt_length=16)[0]


def train(tok, pairs, **settings):
    config = DPOConfig(**{"steps": 3, "batch_size": 4, "learning_rate": 5e-3, **settings})
    policy = prepare_policy(tiny.build_model(tok), config)
    return dpo.train_dpo(policy, tok, pairs, config)


def test_loss_sigmoid_at_zero_is_ln2():
    zeros = torch.zeros(3)
    losses, chosen, rejected = dpo.dpo_loss(zeros, zeros, zeros, zeros, beta=0.1)
    assert torch.allclose(losses, torch.full((3,), math.log(2)))
    assert chosen.abs().sum() == 0
    assert rejected.abs().sum() == 0


def test_loss_sigmoid_value():
    losses, chosen, rejected = dpo.dpo_loss(torch.tensor([-1.0]), torch.tensor([-3.0]),
                                            torch.tensor([-2.0]), torch.tensor([-2.0]), beta=0.5)
    # h = (−1 − −2) − (−3 − −2) = 2, loss = −log σ(0.5·2) = log(1 + e^−1)
    assert losses.item() == pytest.approx(math.log1p(math.exp(-1)))
    assert chosen.item() == pytest.approx(0.5)
    assert rejected.item() == pytest.approx(-0.5)


def test_label_smoothing_value():
    h = torch.tensor([2.0])
    zero = torch.zeros(1)
    losses, _, _ = dpo.dpo_loss(h, zero, zero, zero, beta=1.0, label_smoothing=0.2)
    expected = -0.8 * math.log(1 / (1 + math.exp(-2))) - 0.2 * math.log(1 / (1 + math.exp(2)))
    assert losses.item() == pytest.approx(expected)


def test_label_smoothing_at_zero_is_ln2():
    zero = torch.zeros(2)
    losses, _, _ = dpo.dpo_loss(zero, zero, zero, zero, beta=0.1, label_smoothing=0.3)
    assert torch.allclose(losses, torch.full((2,), math.log(2)))


def test_ipo_value_normalises_by_length():
    losses, _, _ = dpo.dpo_loss(torch.tensor([-2.0]), torch.tensor([-4.0]), torch.tensor([-4.0]),
                                torch.tensor([-4.0]), beta=0.5, loss_type="ipo",
                                chosen_lengths=torch.tensor([2.0]),
                                rejected_lengths=torch.tensor([4.0]))
    # h' = 2/2 − 0/4 = 1, loss = (1 − 1/(2·0.5))² = 0
    assert losses.item() == pytest.approx(0.0)


def test_ipo_needs_lengths():
    zero = torch.zeros(1)
    with pytest.raises(ValueError, match="lengths"):
        dpo.dpo_loss(zero, zero, zero, zero, beta=0.1, loss_type="ipo")


def test_step0_reads_ln2_and_zero_rewards(tok, pairs):
    first = train(tok, pairs, steps=1).history[0]
    assert first["loss/train"] == pytest.approx(math.log(2), abs=1e-6)
    assert first["rewards/chosen"] == pytest.approx(0.0, abs=1e-6)
    assert first["rewards/margins"] == pytest.approx(0.0, abs=1e-6)
    assert first["rewards/accuracies"] == 0.0
    assert first["rewards/ties"] == 1.0


def test_training_raises_margin(tok, pairs):
    history = train(tok, pairs, steps=8).history
    assert history[-1]["rewards/margins"] > 0.05
    assert history[-1]["loss/train"] < math.log(2)
    assert history[-1]["rewards/accuracies"] > 0.5


def test_metric_keys(tok, pairs):
    event = train(tok, pairs, steps=1).history[0]
    for key in ("step", "loss/train", "loss/dpo", "loss/nll", "rewards/chosen", "rewards/rejected",
                "rewards/margins", "rewards/accuracies", "rewards/ties", "logps/chosen",
                "logps/rejected", "probs/chosen", "probs/rejected", "train/grad_norm",
                "train/learning_rate", "train/tokens_per_second"):
        assert key in event, key


def test_nll_term_raises_chosen_probability(tok, pairs):
    plain = train(tok, pairs, steps=6, nll_weight=0.0).history[-1]
    with_nll = train(tok, pairs, steps=6, nll_weight=1.0).history[-1]
    assert with_nll["logps/chosen"] > plain["logps/chosen"]


def test_nll_adds_to_step0_loss(tok, pairs):
    first = train(tok, pairs, steps=1, nll_weight=0.5).history[0]
    assert first["loss/train"] == pytest.approx(math.log(2) + 0.5 * first["loss/nll"], rel=1e-5)


def test_ipo_trains(tok, pairs):
    history = train(tok, pairs, steps=5, loss_type="ipo", beta=0.5).history
    assert history[0]["loss/train"] == pytest.approx(1.0, abs=1e-5)  # (0 − 1/(2·0.5))²
    assert history[-1]["rewards/margins"] > 0


def test_lora_reference_is_adapter_off(tok, pairs):
    config = DPOConfig(steps=4, batch_size=4, learning_rate=1e-2, lora_rank=4)
    policy = prepare_policy(tiny.build_model(tok), config)
    base = {n: p.clone() for n, p in policy.named_parameters() if "lora_" not in n}
    result = dpo.train_dpo(policy, tok, pairs, config)
    assert result.history[0]["loss/train"] == pytest.approx(math.log(2), abs=1e-6)
    assert result.history[-1]["rewards/margins"] > 0
    for name, param in result.model.named_parameters():
        if "lora_" not in name:
            assert torch.equal(param, base[name]), name


def test_every_trainable_parameter_changes(tok, pairs):
    config = DPOConfig(steps=2, batch_size=4, learning_rate=1e-2)
    policy = prepare_policy(tiny.build_model(tok), config)
    before = {n: p.clone() for n, p in policy.named_parameters()}
    dpo.train_dpo(policy, tok, pairs, config)
    unchanged = [n for n, p in policy.named_parameters() if torch.equal(p, before[n])]
    assert unchanged == []


def test_should_stop_ends_run(tok, pairs):
    config = DPOConfig(steps=10, batch_size=4)
    policy = prepare_policy(tiny.build_model(tok), config)
    calls = []
    result = dpo.train_dpo(policy, tok, pairs, config, should_stop=lambda: len(calls) >= 2,
                           emit=calls.append)
    assert result.stopped
    assert len(result.history) == 2


def test_samples_every_n_steps(tok, pairs):
    config = DPOConfig(steps=4, batch_size=4, sample_every=2, sample_max_new_tokens=3)
    policy = prepare_policy(tiny.build_model(tok), config)
    samples = []
    dpo.train_dpo(policy, tok, pairs, config, sample=lambda step, texts: samples.append(step))
    assert samples == [1, 3]


def test_explicit_reference_used(tok, pairs):
    config = DPOConfig(steps=1, batch_size=4)
    policy = prepare_policy(tiny.build_model(tok), config)
    other = Reference.copy_of(tiny.build_model(tok, seed=1))
    first = dpo.train_dpo(policy, tok, pairs, config, reference=other).history[0]
    assert first["rewards/margins"] != pytest.approx(0.0, abs=1e-6)


def test_invalid_settings_rejected(tok, pairs):
    policy = tiny.build_model(tok)
    with pytest.raises(ConfigError, match="label_smoothing"):
        dpo.train_dpo(policy, tok, pairs, DPOConfig(label_smoothing=0.5))
    with pytest.raises(ConfigError, match="loss_type"):
        dpo.train_dpo(policy, tok, pairs, DPOConfig(loss_type="hinge"))


class KeepWeightsSGD(torch.optim.SGD):
    """Records the gradients of a step and leaves the weights alone."""

    def __init__(self, params):
        super().__init__(list(params), lr=0.0)
        self.grads: list[torch.Tensor] = []

    def step(self, closure=None):
        self.grads = [p.grad.clone() for g in self.param_groups for p in g["params"]]


def _step_grads(pairs, nll_weight: float):
    tok = tiny.build_tokenizer()
    config = DPOConfig(steps=1, batch_size=len(pairs), nll_weight=nll_weight)
    policy = prepare_policy(tiny.build_model(tok), config)
    optimizer = KeepWeightsSGD(policy.parameters())
    ref = torch.linspace(-9.0, -3.0, 2 * len(pairs)).reshape(len(pairs), 2)
    metrics = dpo.dpo_step(policy, optimizer, pairs, ref, config, tok, step=0)
    return optimizer.grads, metrics


def _worker(rank: int, world: int, port: int, pairs, out_path: str):
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        grads, metrics = _step_grads(pairs, nll_weight=1.0)
        if rank == 0:
            torch.save({"grads": grads, "metrics": metrics}, out_path)
    finally:
        torch.distributed.destroy_process_group()


def test_two_processes_match_one(pairs, tmp_path):
    """Under accelerate launch each process takes half the rows; the summed step is the same."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "rank0.pt"
    mp.spawn(_worker, args=(2, port, pairs[:5], str(out)), nprocs=2, join=True)
    shared = torch.load(out)
    grads, metrics = _step_grads(pairs[:5], nll_weight=1.0)
    for a, b in zip(grads, shared["grads"]):
        assert torch.allclose(a, b, atol=1e-6)
    for key in ("loss/train", "rewards/margins", "logps/chosen", "loss/nll"):
        assert shared["metrics"][key] == pytest.approx(metrics[key], abs=1e-6), key
