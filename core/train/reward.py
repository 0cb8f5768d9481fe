"""Reward model: a language model with a scalar head, trained on preference pairs.

The reward r(x, y) of a prompt x and an answer y is a linear head on the last hidden state
at the last real token of x + y, which is the completion's EOS. That position comes from the
attention mask, never from the pad id, so it is right when the pad token is EOS and with left
or right padding.
Training minimises the Bradley–Terry loss -log sigmoid(r(x, y_chosen) - r(x, y_rejected))
(Bradley and Terry 1952; Ouyang et al. 2022, eq. 1), as TRL's `RewardTrainer` does.

Public API:

- `RewardConfig`: the shared `TrainConfig` plus `center_rewards_coefficient`.
- `build_reward_model(lm, pad_token_id) -> PreTrainedModel`: a `...ForSequenceClassification`
  with one label, the backbone copied from a causal LM and a zero-initialised head, so every
  reward starts at 0 and the first loss is ln 2.
- `sequence_rewards(model, input_ids, attention_mask) -> (B,)` rewards in fp32.
- `bradley_terry_loss(chosen_rewards, rejected_rewards, margin=None,
  center_rewards_coefficient=0.0) -> (B,)` per-pair losses.
- `train_reward(model, tokenizer, pairs, config, emit=None, should_stop=None) -> TrainResult`.
- `load_reward_model(name, device=None) -> (model, tokenizer)` for a reward run or folder;
  `score(model, tokenizer, prompts, completions) -> list[float]` scores texts with it.
- `run_job(config: dict, ctx) -> dict`: the job entry point (see docs/architecture.md).

Metric events (one per optimizer step, computed on the batch before that step's update):

- `loss/train` (lower is better; ln 2 = 0.693 at step 0 because the head starts at zero);
- `rewards/chosen`, `rewards/rejected`: mean reward of each side (unbounded, 0 at step 0);
  `rewards/margins`: mean of chosen minus rejected (higher is better);
  `rewards/accuracies`: share of pairs whose chosen reward is strictly higher, in [0, 1]
  (ties, as at step 0, count as not accurate); `rewards/ties`: share of exactly equal rewards;
- `train/grad_norm` (before clipping), `train/learning_rate`, `train/tokens_per_second`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForSequenceClassification, PreTrainedModel

from core.batching import EncodedPair, collate_preferences, encode_pair
from core.train.common import (
    ConfigError,
    Throughput,
    TrainConfig,
    autocast,
    batches,
    check_finite,
    config_from_dict,
    disable_dropout,
    lora_targets,
    make_optimizer,
    optimizer_step,
    to_device,
    validate_config,
)
from core.train.dpo import Emit, TrainResult

HEAD_NAME = "score"  # the scalar head of every transformers ...ForSequenceClassification


@dataclass
class RewardConfig(TrainConfig):
    """Bradley–Terry reward model on preference pairs."""

    learning_rate: float = 1e-4
    sample_every: int = 0  # a reward model does not generate text
    # weight of mean((r_chosen + r_rejected)^2), which keeps rewards centred on 0 (Eisenstein
    # et al. 2023); TRL calls it the same; 0 turns it off
    center_rewards_coefficient: float = 0.0


def validate_reward_config(config: RewardConfig) -> None:
    """Raise ConfigError for invalid shared settings or a negative centring weight."""
    validate_config(config)
    if config.center_rewards_coefficient < 0:
        raise ConfigError(f"Invalid training settings: center_rewards_coefficient="
                          f"{config.center_rewards_coefficient}: use 0 or above.")


# Model

def build_reward_model(lm: nn.Module, pad_token_id: int) -> PreTrainedModel:
    """Return a sequence classifier with one output whose backbone is a copy of `lm`'s.

    `lm` is a causal LM (GPT-2, Llama and others); it is not changed. The scalar head
    (`score`) starts at zero, so every reward is 0 before training.
    """
    config = copy.deepcopy(lm.config)
    config.num_labels = 1
    config.pad_token_id = pad_token_id
    config.architectures = None
    model = AutoModelForSequenceClassification.from_config(config)
    missing, _unexpected = model.load_state_dict(lm.state_dict(), strict=False)
    not_copied = [name for name in missing if not name.startswith(HEAD_NAME + ".")]
    if not_copied:
        raise ConfigError(f"Cannot build a reward model from {type(lm).__name__}: weights "
                          f"{not_copied[:3]} have no counterpart in the language model.")
    nn.init.zeros_(getattr(model, HEAD_NAME).weight)
    param = next(lm.parameters())
    return model.to(device=param.device, dtype=param.dtype)


def _hf_model(model: nn.Module) -> nn.Module:
    """Return the transformers model inside a peft wrapper (LoRA layers stay injected)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Return the position of the last real token of each row, shape (B,).

    Works for left and right padding because it reads the mask, not the token ids.
    """
    if not bool(attention_mask.any(-1).all()):
        raise ValueError("A row of the batch has no real token (its attention mask is all 0).")
    positions = torch.arange(attention_mask.shape[-1], device=attention_mask.device)  # (T,)
    return (positions * attention_mask.long()).argmax(-1)  # (B,)


def sequence_rewards(model: nn.Module, input_ids: torch.Tensor,
                     attention_mask: torch.Tensor) -> torch.Tensor:
    """Return one reward per sequence, shape (B,), in fp32.

    `input_ids` and `attention_mask` are (B, T). The head reads the hidden state at the last
    real token. Position ids come from the mask, so padding never shifts them.
    """
    hf = _hf_model(model)
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, T)
    with autocast(input_ids.device):
        hidden = hf.base_model(input_ids=input_ids, attention_mask=attention_mask,
                               position_ids=position_ids, use_cache=False).last_hidden_state
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        last_hidden = hidden[rows, last_token_index(attention_mask)]  # (B, H)
        rewards = getattr(hf, HEAD_NAME)(last_hidden)  # (B, 1)
    return rewards.squeeze(-1).float()


def bradley_terry_loss(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor,
                       margin: torch.Tensor | None = None,
                       center_rewards_coefficient: float = 0.0) -> torch.Tensor:
    """Return per-pair losses, shape (B,), from rewards of shape (B,).

    -log sigmoid(r_chosen - r_rejected - margin): ln 2 when the rewards are equal, towards 0
    as the chosen reward pulls ahead. `margin` (B,) sets a minimum gap (Llama 2's reward
    models). The centring term adds c * (r_chosen + r_rejected)^2. The mean over pairs equals
    TRL's `RewardTrainer.compute_loss` (trl 1.16) for the same rewards.
    """
    diff = chosen_rewards - rejected_rewards
    if margin is not None:
        diff = diff - margin
    losses = -F.logsigmoid(diff)
    if center_rewards_coefficient:
        losses = losses + center_rewards_coefficient * (chosen_rewards + rejected_rewards) ** 2
    return losses


# Training

def prepare_reward_model(model: PreTrainedModel, config: RewardConfig) -> nn.Module:
    """Make the reward model trainable: all weights, or LoRA plus a trainable head.

    Dropout is switched off (as TRL does by default), so a step's rewards do not depend on
    which units were dropped and the first loss is exactly ln 2.
    """
    torch.manual_seed(config.seed)
    disable_dropout(model)
    if config.lora_rank == 0:
        for param in model.parameters():
            param.requires_grad_(True)
    else:
        from peft import LoraConfig, get_peft_model

        # peft's SEQ_CLS task keeps the `score` head trainable and saves it with the adapter
        lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha,
                          lora_dropout=config.lora_dropout, task_type="SEQ_CLS",
                          target_modules=lora_targets(model, config.lora_targets))
        model = get_peft_model(model, lora)
    model.train()
    return model


def pair_rewards(model: nn.Module, pairs: list[EncodedPair], pad_token_id: int,
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Return chosen rewards (B,), rejected rewards (B,) and the real token count."""
    batch = to_device(collate_preferences(pairs, pad_token_id), device)
    rewards = sequence_rewards(model, batch["input_ids"], batch["attention_mask"])  # (2B,)
    chosen, rejected = rewards.chunk(2)
    return chosen, rejected, int(batch["attention_mask"].sum())


def reward_step(model: nn.Module, optimizer: torch.optim.Optimizer, pairs: list[EncodedPair],
                config: RewardConfig, pad_token_id: int, step: int) -> dict:
    """Run one optimizer step over `pairs`, split into `grad_accum` micro-batches.

    Each micro-batch loss is its summed pair losses over the step's pair count, so the
    accumulated gradient equals that of one batch. Returns the step's metrics.
    """
    device = next(model.parameters()).device
    size = math.ceil(len(pairs) / config.grad_accum)
    chosen_all, rejected_all, loss_total, tokens = [], [], 0.0, 0
    for start in range(0, len(pairs), size):
        part = pairs[start:start + size]
        chosen, rejected, n_tokens = pair_rewards(model, part, pad_token_id, device)
        losses = bradley_terry_loss(chosen, rejected,
                                    center_rewards_coefficient=config.center_rewards_coefficient)
        loss = losses.sum() / len(pairs)
        check_finite(loss, step, [p.line for p in part])
        loss.backward()
        loss_total += loss.item()
        chosen_all.append(chosen.detach())
        rejected_all.append(rejected.detach())
        tokens += n_tokens

    params = [p for p in model.parameters() if p.requires_grad]
    lr, grad_norm = optimizer_step(optimizer, params, step, config)

    chosen, rejected = torch.cat(chosen_all), torch.cat(rejected_all)
    return {"step": step, "loss/train": loss_total, **pair_metrics(chosen, rejected),
            "train/grad_norm": grad_norm, "train/learning_rate": lr, "tokens": tokens}


def pair_metrics(chosen: torch.Tensor, rejected: torch.Tensor) -> dict[str, float]:
    """Return the `rewards/*` metrics of chosen and rejected rewards, each (B,)."""
    margins = chosen - rejected
    return {"rewards/chosen": chosen.mean().item(), "rewards/rejected": rejected.mean().item(),
            "rewards/margins": margins.mean().item(),
            "rewards/accuracies": (margins > 0).float().mean().item(),
            "rewards/ties": (margins == 0).float().mean().item()}


@torch.no_grad()
def evaluate_pairs(model: nn.Module, pairs: list[EncodedPair], pad_token_id: int,
                   batch_size: int = 16) -> dict[str, float]:
    """Return the `rewards/*` metrics over all `pairs` without training."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    chosen, rejected = [], []
    try:
        for start in range(0, len(pairs), batch_size):
            c, r, _ = pair_rewards(model, pairs[start:start + batch_size], pad_token_id, device)
            chosen.append(c)
            rejected.append(r)
    finally:
        model.train(was_training)
    return pair_metrics(torch.cat(chosen), torch.cat(rejected))


def train_reward(model: nn.Module, tokenizer, pairs: list[EncodedPair], config: RewardConfig,
                 emit: Emit | None = None, should_stop: Callable[[], bool] | None = None,
                 ) -> TrainResult:
    """Train `model` (see `prepare_reward_model`) in place and return it with its history."""
    validate_reward_config(config)
    if not pairs:
        raise ValueError("No preference pairs left to train on; check the dataset issues.")
    optimizer = make_optimizer(model, config)
    order = batches(len(pairs), config.batch_size, config.seed)
    meter, result = Throughput(), TrainResult(model)
    model.train()
    for step in range(config.steps):
        if should_stop is not None and should_stop():
            result.stopped = True
            break
        chosen_pairs = [pairs[i] for i in next(order)]
        metrics = reward_step(model, optimizer, chosen_pairs, config, tokenizer.pad_token_id,
                              step)
        metrics["train/tokens_per_second"] = meter.add(metrics.pop("tokens"))
        result.history.append(metrics)
        if emit is not None:
            emit(metrics)
    return result


# Scoring with a trained reward model

def load_reward_model(name: str, device: torch.device | str | None = None):
    """Load a reward run, shipped checkpoint or folder; return (model, tokenizer) in eval mode.

    A LoRA reward run is rebuilt on its parent language model and merged.
    """
    from transformers import AutoTokenizer

    from core import device as device_lib
    from core import models

    spec = models.resolve(name)
    if spec.stage != "reward" or spec.path is None:
        raise models.ModelError(f"Model {name!r} is not a reward model (its stage is "
                                f"{spec.stage!r}); train one with `core.cli train reward`.")
    device = device_lib.pick_device(str(device) if device is not None else None)
    tokenizer = AutoTokenizer.from_pretrained(spec.path)
    if spec.weights == "lora":
        from peft import PeftModel

        parent = models.load_model(str(spec.parent), device=device)
        base = build_reward_model(parent.model, parent.tokenizer.pad_token_id)
        model = PeftModel.from_pretrained(base, spec.path).merge_and_unload()
    else:
        model = AutoModelForSequenceClassification.from_pretrained(
            spec.path, dtype=device_lib.default_dtype(device))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device).eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return model, tokenizer


@torch.no_grad()
def score(model: nn.Module, tokenizer, prompts: list[Any], completions: list[str],
          batch_size: int = 16) -> list[float]:
    """Return the reward of each (prompt, completion) pair, tokenized as in training."""
    if len(prompts) != len(completions):
        raise ValueError(f"Got {len(prompts)} prompts but {len(completions)} completions.")
    device = next(model.parameters()).device
    rewards: list[float] = []
    for start in range(0, len(prompts), batch_size):
        encoded = [encode_pair(tokenizer, p, c) for p, c in
                   zip(prompts[start:start + batch_size], completions[start:start + batch_size])]
        rows = [EncodedPair(p, c, c) for p, c in encoded]
        batch = to_device(collate_preferences(rows, tokenizer.pad_token_id), device)
        half = len(rows)
        values = sequence_rewards(model, batch["input_ids"][:half],
                                  batch["attention_mask"][:half])
        rewards += values.tolist()
    return rewards


# Job

def run_job(config: dict, ctx) -> dict:
    """Train a reward model as a job and save it into ctx.output_dir (stage "reward").

    Returns the last step's metrics plus `accuracy/before` and `accuracy/after`: the share of
    training pairs ranked correctly (ties count as wrong) before and after training.
    """
    from core.batching import tokenize_preferences
    from core.train import jobs_support

    cfg = config_from_dict(RewardConfig, {"device": ctx.device, **config})
    validate_reward_config(cfg)
    dataset = jobs_support.load_rows(cfg, "preference")
    lm, tokenizer, loaded = jobs_support.load_start(cfg)
    pairs, issues = tokenize_preferences(dataset, tokenizer, cfg.max_length,
                                         cfg.max_prompt_length)
    all_issues = [str(issue) for issue in dataset.issues + issues]
    ctx.emit({"step": 0, "data/rows": len(pairs), "data/issue_count": len(all_issues),
              "data/issues": all_issues[:jobs_support.MAX_REPORTED_ISSUES]})
    model = prepare_reward_model(build_reward_model(lm, tokenizer.pad_token_id), cfg)
    del lm
    before = evaluate_pairs(model, pairs, tokenizer.pad_token_id)
    result = train_reward(model, tokenizer, pairs, cfg, emit=ctx.emit,
                          should_stop=ctx.should_stop)
    if result.stopped:
        return {"stopped": True}
    after = evaluate_pairs(result.model, pairs, tokenizer.pad_token_id)
    result.model.save_pretrained(ctx.output_dir, safe_serialization=True)
    tokenizer.save_pretrained(ctx.output_dir)
    summary = {k: v for k, v in result.final.items() if k != "step"}
    summary.update({"accuracy/before": before["rewards/accuracies"],
                    "accuracy/after": after["rewards/accuracies"], "steps": len(result.history)})
    summary["run"] = {
        "stage": "reward", "method": "reward", "parent": cfg.model,
        "family": getattr(loaded.spec, "family", None),
        "weights": "lora" if hasattr(result.model, "peft_config") else "full",
        "data_hash": dataset.content_hash(),
        "recipe": {k: v for k, v in vars(cfg).items() if k != "rows"},
    }
    return summary
