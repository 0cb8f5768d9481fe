"""Supervised fine-tuning (SFT) with the loss on completion tokens only.

Public API:

- `sft_loss_sum(model, batch) -> (nll_sum, n_tokens, answer_logps)`: summed negative
  log-likelihood of the completion tokens of a collated batch (`core.batching.collate_sft`),
  their count, and each row's completion log-prob without its EOS, shape (B,).
- `train_sft(policy, tokenizer, rows, config, emit=None, should_stop=None, sample=None)
  -> TrainResult`: the training loop.
- `run_job(config: dict, ctx) -> dict`: the job entry point (see docs/architecture.md).

The loss of a step is the summed NLL over every completion token of the whole step divided by
the number of those tokens, so gradient accumulation over micro-batches of unequal lengths
gives the gradient of one big batch. (A mean per micro-batch would weight a token of a short
micro-batch more than one of a long micro-batch.)

Metric events, one per optimizer step, computed before that step's update:
`loss/train` (mean NLL per completion token, nats, lower is better; ln V for a uniform model),
`train/perplexity` (exp of the loss), `probs/completion` (mean P(completion text | prompt)
without its EOS), `train/grad_norm` (before clipping), `train/learning_rate`,
`train/tokens_per_second`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from core.batching import EncodedSFT, collate_sft
from core.train.common import (
    SFTConfig,
    Throughput,
    batches,
    check_finite,
    check_trainable,
    completion_token_logps,
    greedy_samples,
    make_optimizer,
    optimizer_step,
    process_rank,
    sum_across_processes,
    to_device,
    validate_config,
)
from core.train.dpo import Emit, TrainResult


def sft_loss_sum(model: nn.Module, batch: dict[str, torch.Tensor],
                 ) -> tuple[torch.Tensor, int, torch.Tensor]:
    """Return (summed NLL of completion tokens, their count, per-row answer log-probs (B,)).

    The answer log-probs leave out each row's final EOS, for `probs/completion`.
    """
    per_token = completion_token_logps(model, batch["input_ids"], batch["attention_mask"],
                                       batch["completion_mask"])  # (B, T-1), 0 outside completions
    mask = batch["completion_mask"][:, 1:].to(per_token.dtype)  # (B, T-1)
    nll_sum = -(per_token * mask).sum()
    eos = batch.get("eos_token_id")
    answer_mask = mask if eos is None else mask * (batch["input_ids"][:, 1:] != eos)
    answer_logps = (per_token.detach() * answer_mask).sum(-1)  # (B,)
    return nll_sum, int(mask.sum().item()), answer_logps


def sft_step(policy: nn.Module, optimizer: torch.optim.Optimizer, rows: list[EncodedSFT],
             config: SFTConfig, tokenizer, step: int) -> dict:
    """Run one optimizer step over `rows`, split into grad_accum micro-batches."""
    device = next(policy.parameters()).device
    n_targets = sum(len(r.completion_ids) for r in rows)  # over all processes
    rank, world = process_rank()
    local_rows = rows[rank::world]  # this process's share of the rows
    size = max(math.ceil(len(local_rows) / config.grad_accum), 1)
    totals = {"loss": 0.0, "probs": 0.0, "tokens": 0.0}
    for start in range(0, len(local_rows), size):
        chunk = local_rows[start:start + size]
        batch = to_device(collate_sft(chunk, tokenizer.pad_token_id), device)
        batch["eos_token_id"] = tokenizer.eos_token_id
        nll_sum, _, answer_logps = sft_loss_sum(policy, batch)
        loss = nll_sum / max(n_targets, 1)  # normalised by the targets of the whole step
        check_finite(loss, step, [r.line for r in chunk])
        loss.backward()
        totals["loss"] += loss.item()
        totals["probs"] += answer_logps.exp().sum().item()
        totals["tokens"] += int(batch["attention_mask"].sum())
    params = [p for p in policy.parameters() if p.requires_grad]
    totals = sum_across_processes(params, totals)
    loss_total = totals["loss"]

    lr, grad_norm = optimizer_step(optimizer, params, step, config)
    return {"step": step, "loss/train": loss_total,
            "train/perplexity": math.exp(min(loss_total, 50.0)),
            "probs/completion": totals["probs"] / len(rows), "train/grad_norm": grad_norm,
            "train/learning_rate": lr, "tokens": int(totals["tokens"])}


def train_sft(policy: nn.Module, tokenizer, rows: list[EncodedSFT], config: SFTConfig,
              emit: Emit | None = None, should_stop: Callable[[], bool] | None = None,
              sample: Callable[[int, list[str]], None] | None = None) -> TrainResult:
    """Train `policy` in place on SFT rows and return it with its metric history."""
    validate_config(config)
    check_trainable(policy)
    if not rows:
        raise ValueError("No SFT rows left to train on; check the dataset issues.")
    optimizer = make_optimizer(policy, config)
    order = batches(len(rows), config.batch_size, config.seed)
    meter, result = Throughput(), TrainResult(policy)
    prompts = config.sample_prompts or [
        tokenizer.decode(rows[0].prompt_ids, skip_special_tokens=False)]
    policy.train()

    for step in range(config.steps):
        if should_stop is not None and should_stop():
            result.stopped = True
            break
        metrics = sft_step(policy, optimizer, [rows[i] for i in next(order)], config,
                           tokenizer, step)
        metrics["train/tokens_per_second"] = meter.add(metrics.pop("tokens"))
        result.history.append(metrics)
        if emit is not None:
            emit(metrics)
        if sample is not None and config.sample_every and (step + 1) % config.sample_every == 0:
            sample(step, greedy_samples(policy, tokenizer, prompts, config.sample_max_new_tokens))
    return result


def run_job(config: dict, ctx) -> dict:
    """Train SFT as a job: load the starting model, train a copy, save into ctx.output_dir."""
    from core.train import jobs_support

    return jobs_support.run_sft_job(config, ctx, SFTConfig, train_sft)
