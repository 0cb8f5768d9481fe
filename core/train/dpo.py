"""Direct preference optimisation (DPO), its IPO variant and an optional NLL term.

Public API:

- `dpo_loss(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta,
  loss_type="sigmoid", label_smoothing=0.0, chosen_lengths=None, rejected_lengths=None)
  -> (losses, chosen_rewards, rejected_rewards)`, all of shape (B,).
- `precompute_reference_logps(reference, pairs, pad_token_id, device) -> (N, 2)` tensor of
  reference log-probs for (chosen, rejected), computed once before training.
- `train_dpo(policy, tokenizer, pairs, config, reference=None, emit=None, should_stop=None,
  sample=None) -> TrainResult`: the training loop.
- `run_job(config: dict, ctx) -> dict`: the job entry point (see docs/architecture.md).

Metric events (one per optimizer step, computed on the batch before that step's update, so
step 0 describes the starting model):

- `loss/train` (lower is better; ln 2 = 0.693 at step 0 for the sigmoid loss), `loss/dpo`,
  `loss/nll` (mean NLL per chosen token, reported even when its weight is 0);
- `rewards/chosen`, `rewards/rejected`: beta * (log pi - log pi_ref) of each answer, mean over
  the batch, 0 at step 0; `rewards/margins`: their difference (higher is better);
  `rewards/accuracies`: share of pairs whose chosen reward is strictly higher (ties, as at
  step 0, count as not accurate); `rewards/ties`: share of exactly equal rewards;
- `logps/chosen`, `logps/rejected`: mean summed log-prob of each completion (EOS included);
  when both fall, the model is losing probability on the answer it should prefer
  (likelihood displacement);
- `probs/chosen`, `probs/rejected`: mean probability of each answer text without its EOS,
  such as P(" four" | "Two plus two equals");
- `train/grad_norm` (before clipping), `train/learning_rate`, `train/tokens_per_second`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from core.batching import EncodedPair, collate_preferences
from core.train.common import (
    DPOConfig,
    Reference,
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

Emit = Callable[[dict], None]
# per-step totals summed over micro-batches and processes, then divided by the step's counts
SUM_KEYS = ("loss", "loss/dpo", "nll", "rewards/chosen", "rewards/rejected", "rewards/margins",
            "rewards/accuracies", "rewards/ties", "logps/chosen", "logps/rejected",
            "probs/chosen", "probs/rejected", "tokens")


@dataclass
class TrainResult:
    """The result of a training loop."""

    model: nn.Module  # the trained policy (a peft model when LoRA was used)
    history: list[dict] = field(default_factory=list)  # every emitted metric event
    stopped: bool = False  # True when should_stop() ended the run early

    @property
    def final(self) -> dict:
        return self.history[-1] if self.history else {}


def dpo_loss(chosen_logps: torch.Tensor, rejected_logps: torch.Tensor,
             ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor, beta: float,
             loss_type: str = "sigmoid", label_smoothing: float = 0.0,
             chosen_lengths: torch.Tensor | None = None,
             rejected_lengths: torch.Tensor | None = None,
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return per-pair losses and the implicit rewards, each of shape (B,).

    Inputs are summed completion log-probs, shape (B,). The implicit reward of an answer is
    beta * (log pi(y|x) - log pi_ref(y|x)).

    - "sigmoid" (Rafailov et al. 2023, eq. 7): -log sigmoid(beta * h), where h is the chosen
      log-ratio minus the rejected log-ratio. With label smoothing eps (conservative DPO) it
      is -(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h). At h = 0 both read ln 2.
    - "ipo" (Azar et al. 2023, eq. 17): (h' - 1 / (2 beta))^2, where h' uses log-ratios
      divided by each answer's token count (the lengths are then required), as TRL does.
    """
    chosen_logratios = chosen_logps - ref_chosen_logps  # (B,)
    rejected_logratios = rejected_logps - ref_rejected_logps  # (B,)
    if loss_type == "sigmoid":
        h = chosen_logratios - rejected_logratios
        losses = -(1 - label_smoothing) * F.logsigmoid(beta * h) \
            - label_smoothing * F.logsigmoid(-beta * h)
    elif loss_type == "ipo":
        if chosen_lengths is None or rejected_lengths is None:
            raise ValueError("The IPO loss needs chosen_lengths and rejected_lengths.")
        h = chosen_logratios / chosen_lengths.clamp(min=1) \
            - rejected_logratios / rejected_lengths.clamp(min=1)
        losses = (h - 1 / (2 * beta)) ** 2
    else:
        raise ValueError(f"Unknown DPO loss_type {loss_type!r}; use 'sigmoid' or 'ipo'.")
    chosen_rewards = beta * chosen_logratios.detach()
    rejected_rewards = beta * rejected_logratios.detach()
    return losses, chosen_rewards, rejected_rewards


@torch.no_grad()
def precompute_reference_logps(reference: Reference, pairs: list[EncodedPair],
                               pad_token_id: int, device: torch.device,
                               batch_size: int = 16) -> torch.Tensor:
    """Return reference log-probs, shape (N, 2): column 0 chosen, column 1 rejected.

    The reference never changes during a run, so one pass before training replaces a
    reference forward pass at every step.
    """
    out = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        batch = to_device(collate_preferences(chunk, pad_token_id), device)
        logps = reference.logps(batch)  # (2b,)
        out.append(torch.stack(logps.chunk(2), dim=1))  # (b, 2)
    return torch.cat(out).float()


def _micro_batch(policy: nn.Module, pairs: list[EncodedPair], ref: torch.Tensor,
                 config: DPOConfig, pad_token_id: int, eos_token_id: int, n_pairs: int,
                 n_chosen_tokens: int, device: torch.device) -> tuple[torch.Tensor, dict]:
    """Forward one micro-batch; return its share of the step loss and metric sums."""
    batch = to_device(collate_preferences(pairs, pad_token_id), device)
    per_token = completion_token_logps(policy, batch["input_ids"], batch["attention_mask"],
                                       batch["completion_mask"])  # (2b, T-1), 0 outside completions
    mask = batch["completion_mask"][:, 1:].float()  # (2b, T-1)
    logps = (per_token * mask).sum(-1)  # (2b,)
    chosen_logps, rejected_logps = logps.chunk(2)
    lengths = mask.sum(-1)
    losses, chosen_rewards, rejected_rewards = dpo_loss(
        chosen_logps, rejected_logps, ref[:, 0], ref[:, 1], config.beta, config.loss_type,
        config.label_smoothing, *lengths.chunk(2))
    chosen_mask = mask.chunk(2)[0]
    nll_sum = -(per_token.chunk(2)[0] * chosen_mask).sum()
    loss = losses.sum() / n_pairs + config.nll_weight * nll_sum / max(n_chosen_tokens, 1)

    # probability of each answer text without its final EOS, e.g. P(" four" | prompt)
    is_eos = (batch["input_ids"][:, 1:] == eos_token_id).float()
    answer_logps = (per_token.detach() * mask * (1 - is_eos)).sum(-1)  # (2b,)
    margins = chosen_rewards - rejected_rewards
    sums = {
        "loss/dpo": losses.detach().sum().item(), "nll": nll_sum.detach().item(),
        "rewards/chosen": chosen_rewards.sum().item(),
        "rewards/rejected": rejected_rewards.sum().item(),
        "rewards/margins": margins.sum().item(),
        "rewards/accuracies": (margins > 0).float().sum().item(),
        "rewards/ties": (margins == 0).float().sum().item(),
        "logps/chosen": chosen_logps.detach().sum().item(),
        "logps/rejected": rejected_logps.detach().sum().item(),
        "probs/chosen": answer_logps.chunk(2)[0].exp().sum().item(),
        "probs/rejected": answer_logps.chunk(2)[1].exp().sum().item(),
        "tokens": int(batch["attention_mask"].sum()),
    }
    return loss, sums


def dpo_step(policy: nn.Module, optimizer: torch.optim.Optimizer, pairs: list[EncodedPair],
             ref: torch.Tensor, config: DPOConfig, tokenizer, step: int) -> dict:
    """Run one optimizer step over `pairs` (split into grad_accum micro-batches).

    Each micro-batch loss is scaled by its share of the whole step (pairs for the DPO term,
    chosen tokens for the NLL term), so the summed gradient equals that of one big batch.
    Returns the step's metrics (without the throughput, which the caller measures).
    """
    device = next(policy.parameters()).device
    n_pairs = len(pairs)  # counts of the whole step, over all processes
    n_chosen = sum(len(p.chosen_ids) for p in pairs)
    rank, world = process_rank()
    mine = list(range(rank, n_pairs, world))  # this process's share of the rows
    local_pairs, local_ref = [pairs[i] for i in mine], ref[mine]
    size = max(math.ceil(len(local_pairs) / config.grad_accum), 1)
    totals = dict.fromkeys(SUM_KEYS, 0.0)
    for start in range(0, len(local_pairs), size):
        chunk = local_pairs[start:start + size]
        loss, sums = _micro_batch(policy, chunk, local_ref[start:start + size], config,
                                  tokenizer.pad_token_id, tokenizer.eos_token_id, n_pairs,
                                  n_chosen, device)
        check_finite(loss, step, [p.line for p in chunk])
        loss.backward()
        sums["loss"] = loss.item()
        for key, value in sums.items():
            totals[key] += value
    params = [p for p in policy.parameters() if p.requires_grad]
    totals = sum_across_processes(params, totals)

    lr, grad_norm = optimizer_step(optimizer, params, step, config)

    metrics = {"step": step, "loss/train": totals.pop("loss"),
               "loss/nll": totals.pop("nll") / max(n_chosen, 1)}
    tokens = totals.pop("tokens")
    metrics.update({key: value / n_pairs for key, value in totals.items()})
    metrics.update({"train/grad_norm": grad_norm, "train/learning_rate": lr, "tokens": tokens})
    return metrics


def train_dpo(policy: nn.Module, tokenizer, pairs: list[EncodedPair], config: DPOConfig,
              reference: Reference | None = None, emit: Emit | None = None,
              should_stop: Callable[[], bool] | None = None,
              sample: Callable[[int, list[str]], None] | None = None) -> TrainResult:
    """Train `policy` in place on preference pairs and return it with its metric history.

    `policy` must already be trainable (see `prepare_policy`). Without `reference`, the
    reference is the policy's starting weights: the base with the adapter disabled for a
    peft model, else a frozen copy. Its log-probs are computed once, before the first step,
    and its weights are checked unchanged by hash at the end.
    """
    validate_config(config)
    check_trainable(policy)
    if not pairs:
        raise ValueError("No preference pairs left to train on; check the dataset issues.")
    device = next(policy.parameters()).device
    reference = reference or Reference.for_policy(policy)
    ref_logps = precompute_reference_logps(reference, pairs, tokenizer.pad_token_id, device)
    if not reference.adapter_off:
        reference.model.to("cpu")  # the copy is only needed again for the final hash check
    optimizer = make_optimizer(policy, config)
    order = batches(len(pairs), config.batch_size, config.seed)
    meter, result = Throughput(), TrainResult(policy)
    prompts = config.sample_prompts or _first_prompts(pairs, tokenizer)
    policy.train()

    for step in range(config.steps):
        if should_stop is not None and should_stop():
            result.stopped = True
            break
        index = next(order)
        metrics = dpo_step(policy, optimizer, [pairs[i] for i in index], ref_logps[index],
                           config, tokenizer, step)
        metrics["train/tokens_per_second"] = meter.add(metrics.pop("tokens"))
        result.history.append(metrics)
        if emit is not None:
            emit(metrics)
        if sample is not None and config.sample_every and (step + 1) % config.sample_every == 0:
            sample(step, greedy_samples(policy, tokenizer, prompts, config.sample_max_new_tokens))
    reference.verify()
    return result


def _first_prompts(pairs: list[EncodedPair], tokenizer, limit: int = 2) -> list[str]:
    prompts: list[str] = []
    for pair in pairs:
        text = tokenizer.decode(pair.prompt_ids, skip_special_tokens=False)
        if text not in prompts:
            prompts.append(text)
        if len(prompts) == limit:
            break
    return prompts


def run_job(config: dict, ctx) -> dict:
    """Train DPO as a job: load the starting model, train a copy, save into ctx.output_dir.

    Returns summary metrics for run.json: the last step's metrics plus `probs/before` and
    `probs/after` maps (prompt -> P(chosen answer)) from `core.train.jobs_support`.
    """
    from core.train import jobs_support

    return jobs_support.run_preference_job(config, ctx, DPOConfig, train_dpo)
