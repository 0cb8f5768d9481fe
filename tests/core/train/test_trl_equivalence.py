"""Our DPO and SFT numbers against TRL's trainers on one tiny model and one batch.

TRL (1.16) is a test dependency only. Both sides get the same token ids, the same policy
weights and the same reference weights; their losses, rewards and log-probs must agree to 1e-5.
"""

from __future__ import annotations

import logging

import pytest
import torch

from core.batching import EncodedPair, EncodedSFT, encode_pair
from core.train import dpo, sft
from core.train.common import DPOConfig, Reference, SFTConfig, prepare_policy
from tests import tiny

trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")

ROWS = [
    {"prompt": "Two plus two equals", "chosen": " four", "rejected": " five"},
    {"prompt": "The cat sat on the", "chosen": " mat.", "rejected": " book, said the party"},
    {"prompt": "What is two plus two?", "chosen": " It is four.", "rejected": " Five"},
    {"prompt": "Hello,", "chosen": " how can I help you today?", "rejected": " thank you"},
]
TOLERANCE = 1e-5


class RecordingSGD(torch.optim.SGD):
    """Leaves the weights alone, so the step's metrics describe the given weights."""

    def __init__(self, params):
        super().__init__(list(params), lr=0.0)

    def step(self, closure=None):
        pass


@pytest.fixture(scope="module")
def tok():
    return tiny.build_tokenizer()


@pytest.fixture(autouse=True)
def quiet_datasets():
    datasets.disable_progress_bars()
    logging.getLogger("trl").setLevel(logging.ERROR)


def trl_dpo(tok, tmp_path, **settings):
    """Return TRL's loss and metrics for the four rows in one batch, and its token ids."""
    args = trl.DPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=len(ROWS),
                         max_length=64, report_to=[], use_cpu=True, bf16=False, **settings)
    trainer = trl.DPOTrainer(model=tiny.build_model(tok, seed=0),
                             ref_model=tiny.build_model(tok, seed=1), args=args,
                             train_dataset=datasets.Dataset.from_list(ROWS),
                             processing_class=tok)
    examples = [trainer.train_dataset[i] for i in range(len(ROWS))]
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, trainer.data_collator(examples))
    metrics = {k: v[-1] for k, v in trainer._metrics["train"].items()}
    return loss.item(), metrics, examples


def our_dpo(tok, examples, **settings):
    pairs = [EncodedPair(e["prompt_ids"], e["chosen_ids"], e["rejected_ids"]) for e in examples]
    config = DPOConfig(steps=1, batch_size=len(pairs), **settings)
    policy = prepare_policy(tiny.build_model(tok, seed=0), config)
    reference = Reference.copy_of(tiny.build_model(tok, seed=1))
    ref = dpo.precompute_reference_logps(reference, pairs, tok.pad_token_id, torch.device("cpu"))
    return dpo.dpo_step(policy, RecordingSGD(policy.parameters()), pairs, ref, config, tok, 0)


def assert_same_dpo_metrics(ours: dict, theirs: dict, their_loss: float):
    assert ours["loss/train"] == pytest.approx(their_loss, abs=TOLERANCE)
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
                "logps/chosen", "logps/rejected"):
        assert ours[key] == pytest.approx(theirs[key], abs=TOLERANCE), key


def test_token_ids_match_trl(tok, tmp_path):
    _, _, examples = trl_dpo(tok, tmp_path, beta=0.1)
    for row, example in zip(ROWS, examples):
        prompt_ids, chosen_ids = encode_pair(tok, row["prompt"], row["chosen"])
        _, rejected_ids = encode_pair(tok, row["prompt"], row["rejected"])
        assert prompt_ids == example["prompt_ids"]
        assert chosen_ids == example["chosen_ids"]
        assert rejected_ids == example["rejected_ids"]


def test_dpo_sigmoid_matches_trl(tok, tmp_path):
    their_loss, theirs, examples = trl_dpo(tok, tmp_path, beta=0.1)
    ours = our_dpo(tok, examples, beta=0.1)
    assert theirs["rewards/margins"] != 0  # the reference differs from the policy
    assert_same_dpo_metrics(ours, theirs, their_loss)


def test_dpo_ipo_matches_trl(tok, tmp_path):
    their_loss, theirs, examples = trl_dpo(tok, tmp_path, beta=0.5, loss_type=["ipo"])
    ours = our_dpo(tok, examples, beta=0.5, loss_type="ipo")
    assert_same_dpo_metrics(ours, theirs, their_loss)


def test_dpo_nll_term_matches_trl_sft_loss(tok, tmp_path):
    """Our NLL term equals TRL's "sft" loss added to "sigmoid" with the same weight."""
    their_loss, theirs, examples = trl_dpo(tok, tmp_path, beta=0.1, loss_type=["sigmoid", "sft"],
                                           loss_weights=[1.0, 0.7])
    ours = our_dpo(tok, examples, beta=0.1, nll_weight=0.7)
    assert_same_dpo_metrics(ours, theirs, their_loss)


def test_sft_loss_matches_trl(tok, tmp_path):
    rows = [{"prompt": r["prompt"], "completion": r["chosen"]} for r in ROWS]
    args = trl.SFTConfig(output_dir=str(tmp_path), per_device_train_batch_size=len(rows),
                         max_length=64, report_to=[], use_cpu=True, bf16=False)
    trainer = trl.SFTTrainer(model=tiny.build_model(tok), args=args,
                             train_dataset=datasets.Dataset.from_list(rows), processing_class=tok)
    examples = [trainer.train_dataset[i] for i in range(len(rows))]
    trainer.model.eval()  # TRL's SFT keeps GPT-2's dropout; ours switches it off
    their_loss = trainer.compute_loss(trainer.model, trainer.data_collator(examples)).item()

    encoded = []
    for row, example in zip(rows, examples):
        prompt_ids, completion_ids = encode_pair(tok, row["prompt"], row["completion"])
        assert prompt_ids + completion_ids == example["input_ids"]
        encoded.append(EncodedSFT(prompt_ids, completion_ids))
    config = SFTConfig(steps=1, batch_size=len(encoded))
    policy = prepare_policy(tiny.build_model(tok), config)
    ours = sft.sft_step(policy, RecordingSGD(policy.parameters()), encoded, config, tok, 0)
    assert ours["loss/train"] == pytest.approx(their_loss, abs=TOLERANCE)
