"""Pieces shared by every trainer: configs, policy set-up, the reference model, log-probs.

Public API:

- `TrainConfig` (shared fields), `SFTConfig`, `DPOConfig`: dataclasses with commented fields.
  `config_from_dict(cls, data)` builds one from a job's config dict (unknown keys raise) and
  `validate_config(config)` raises `ConfigError` listing every invalid setting.
- `prepare_policy(model, config) -> nn.Module`: full fine-tuning, or a fresh LoRA adapter
  through peft when `config.lora_rank > 0`. Dropout is switched off, so the policy and the
  reference give the same log-probs at step 0. `check_trainable(model)` raises when nothing would train.
- `Reference`: the frozen starting point of a run, either a deep copy of the starting weights
  (`Reference.copy_of(policy)`) or the same peft model with its adapter disabled
  (`Reference.adapter_off(policy)`). `reference.logps(batch)` gives per-sequence log-probs;
  `reference.verify()` raises `ReferenceChangedError` when its weights' hash has changed.
- `token_logps`, `completion_token_logps`, `sequence_logps` and `autocast`, defined in
  `core.train.logps`: log-probs in fp32 (the LM head only at completion positions where the
  model allows it).
- `check_finite(loss, step, lines)`: raises `NonFiniteLossError` naming the step and rows.
- `make_optimizer`, `lr_at`, `Throughput`, `batches`, `greedy_samples`, `save_trained`.
- Several processes: `init_distributed()`, `process_rank() -> (rank, world)` and
  `sum_across_processes(params, totals)`. Each process takes every world-th row of a step
  and the gradients are summed, so `accelerate launch` trains one model on all devices.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.train.logps import (  # noqa: F401 (re-exported for the trainers and tests)
    autocast,
    completion_token_logps,
    sequence_logps,
    token_logps,
)

LOSS_TYPES = ("sigmoid", "ipo")
JOB_KEYS = ("name",)  # config keys the job runner reads and the trainers ignore
# LoRA target modules tried in order; the first group found in the model is used. GPT-2's
# "c_proj" also names its MLP output, so LoRA on GPT-2 wraps that layer too.
LORA_TARGET_GROUPS = (("q_proj", "k_proj", "v_proj", "o_proj"), ("c_attn", "c_proj"),
                      ("query_key_value",))


class ConfigError(ValueError):
    """A training setting is invalid; the message names each bad value and the fix."""


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite at optimizer `step` on the rows from file `lines`."""

    def __init__(self, step: int, lines: list[int], value: float):
        self.step, self.lines, self.value = step, lines, value
        rows = ", ".join(str(n) for n in lines)
        super().__init__(f"The loss became {value} at step {step} on the rows from lines "
                         f"{rows}; the run was stopped. Lower the learning rate or check those "
                         "rows.")


class ReferenceChangedError(RuntimeError):
    """The reference model's weights changed during a run, so its log-probs are stale."""


# Configs

@dataclass
class TrainConfig:
    """Settings every trainer shares. Lengths are in tokens."""

    model: str = "tiny-gpt-base"  # starting model: any name core.models.load_model accepts
    dataset: str = "arithmetic-truth"  # bundled dataset name or a path to JSONL, JSON or CSV
    rows: list[dict] | None = None  # rows edited in the page; when set, replace `dataset`
    steps: int = 20  # optimizer steps
    batch_size: int = 8  # rows per optimizer step (preference pairs for DPO)
    grad_accum: int = 1  # micro-batches per step; each gets batch_size / grad_accum rows
    learning_rate: float = 1e-4  # peak AdamW learning rate
    warmup_steps: int = 0  # linear warm-up from 0, then constant
    weight_decay: float = 0.0  # AdamW weight decay
    max_grad_norm: float = 1.0  # gradient clipping threshold; 0 turns clipping off
    max_length: int = 128  # prompt plus completion; longer completions are cut
    max_prompt_length: int = 64  # prompts keep their last tokens; must be below max_length
    lora_rank: int = 0  # 0 = full fine-tuning; r > 0 trains a LoRA adapter of rank r
    lora_alpha: float = 16.0  # LoRA scaling numerator (the update is scaled by alpha / r)
    lora_dropout: float = 0.0  # dropout on the LoRA input
    lora_targets: list[str] | None = None  # module names; None picks the attention projections
    seed: int = 0  # seeds row order, LoRA initialisation and dropout
    sample_every: int = 5  # steps between sample generations; 0 turns samples off
    sample_prompts: list[Any] = field(default_factory=list)  # default: the dataset's first two
    sample_max_new_tokens: int = 12  # length of each greedy sample
    device: str | None = None  # cuda, mps or cpu; None picks automatically


@dataclass
class SFTConfig(TrainConfig):
    """Supervised fine-tuning: maximise log p(completion | prompt)."""

    dataset: str = "customer-assistant"
    learning_rate: float = 5e-4


@dataclass
class DPOConfig(TrainConfig):
    """Direct preference optimisation and its IPO variant."""

    beta: float = 0.1  # strength of the pull towards the reference; must be > 0
    loss_type: str = "sigmoid"  # "sigmoid" (DPO) or "ipo"
    label_smoothing: float = 0.0  # assumed share of flipped labels (cDPO), in [0, 0.5)
    nll_weight: float = 0.0  # weight of the NLL term on the chosen answer (0 = plain DPO)


def config_from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Build a config dataclass from a dict, converting numbers given as text.

    Keys in JOB_KEYS are skipped; any other key that is not a field raises ConfigError.
    """
    names = {f.name: f for f in dataclasses.fields(cls)}
    data = {k: v for k, v in data.items() if k not in JOB_KEYS}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"Unknown setting(s) {', '.join(unknown)} for {cls.__name__}; valid "
                          f"settings: {', '.join(names)}.")
    values = {}
    for key, value in data.items():
        default = names[key].default
        if isinstance(value, str) and isinstance(default, (int, float)) \
                and not isinstance(default, bool):
            try:
                value = type(default)(float(value)) if isinstance(default, int) else float(value)
            except ValueError:
                raise ConfigError(f"Setting {key}={value!r} must be a number.") from None
        values[key] = value
    return cls(**values)


def validate_config(config: TrainConfig) -> None:
    """Raise ConfigError listing every invalid setting before a run starts."""
    problems = []
    if config.steps < 1:
        problems.append(f"steps={config.steps}: use at least 1")
    if config.batch_size < 1 or config.grad_accum < 1:
        problems.append("batch_size and grad_accum must be at least 1")
    elif config.batch_size % config.grad_accum:
        problems.append(f"batch_size={config.batch_size} must be a multiple of "
                        f"grad_accum={config.grad_accum}")
    if not config.learning_rate > 0:
        problems.append(f"learning_rate={config.learning_rate}: use a value above 0")
    if config.max_prompt_length >= config.max_length:
        problems.append(f"max_prompt_length={config.max_prompt_length} must be below "
                        f"max_length={config.max_length}, or no completion token fits")
    if config.lora_rank < 0:
        problems.append(f"lora_rank={config.lora_rank}: use 0 (full fine-tuning) or above")
    if isinstance(config, DPOConfig):
        if not config.beta > 0:
            problems.append(f"beta={config.beta}: use a value above 0 (beta = 0 removes the "
                            "preference signal; 0.1 is usual)")
        if not 0 <= config.label_smoothing < 0.5:
            problems.append(f"label_smoothing={config.label_smoothing}: use a value in [0, 0.5)")
        if config.loss_type not in LOSS_TYPES:
            problems.append(f"loss_type={config.loss_type!r}: use one of {', '.join(LOSS_TYPES)}")
        if config.nll_weight < 0:
            problems.append(f"nll_weight={config.nll_weight}: use 0 or above")
    if problems:
        raise ConfigError("Invalid training settings: " + "; ".join(problems) + ".")


# Policy and reference

def lora_targets(model: nn.Module, requested: list[str] | None) -> list[str]:
    """Return the module names a LoRA adapter wraps: `requested`, or the attention projections."""
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    if requested:
        missing = [t for t in requested if t not in names]
        if missing:
            raise ConfigError(f"LoRA target(s) {missing} not found in the model.")
        return list(requested)
    for group in LORA_TARGET_GROUPS:
        if any(t in names for t in group):
            return [t for t in group if t in names]
    raise ConfigError("No attention projection found for LoRA; set lora_targets.")


def prepare_policy(model: nn.Module, config: TrainConfig) -> nn.Module:
    """Make `model` trainable: all weights, or a fresh LoRA adapter (the base stays frozen).

    The caller passes a copy it owns; this function changes it in place and returns it (for
    LoRA, wrapped in a `peft.PeftModel`).
    """
    torch.manual_seed(config.seed)
    disable_dropout(model)
    if config.lora_rank == 0:
        for param in model.parameters():
            param.requires_grad_(True)
    else:
        from peft import LoraConfig, get_peft_model

        targets = lora_targets(model, config.lora_targets)
        # GPT-2 stores its projections as transposed Conv1D weights
        conv1d = any(type(m).__name__ == "Conv1D" for n, m in model.named_modules()
                     if n.rsplit(".", 1)[-1] in targets)
        lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha,
                          lora_dropout=config.lora_dropout, task_type="CAUSAL_LM",
                          target_modules=targets, fan_in_fan_out=conv1d)
        model = get_peft_model(model, lora)
    check_trainable(model)
    model.train()
    return model


def disable_dropout(model: nn.Module) -> None:
    """Set every dropout probability in `model` to 0, in place.

    With dropout on, the policy's training forward pass differs from the reference's eval
    pass even before any update, so step 0 would not read loss ln 2 and rewards 0, and the
    rewards would carry dropout noise.
    """
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0


def check_trainable(model: nn.Module) -> None:
    """Raise ConfigError when no parameter would receive a gradient."""
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError("Nothing in the model is trainable, so the loss would stay where it "
                          "starts (ln 2 for DPO); use full fine-tuning or a LoRA rank above 0.")


def weights_hash(model: nn.Module, skip_lora: bool = False) -> str:
    """Return a sha256 over every parameter and buffer (LoRA weights left out if `skip_lora`)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        if skip_lora and "lora_" in name:
            continue
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class Reference:
    """The frozen model a run is measured against: the exact starting weights."""

    def __init__(self, model: nn.Module, adapter_off: bool):
        self.model = model
        self.adapter_off = adapter_off  # True: `model` is the policy, run with LoRA disabled
        self.fingerprint = weights_hash(model, skip_lora=adapter_off)

    @classmethod
    def copy_of(cls, policy: nn.Module) -> Reference:
        """Freeze a deep copy of `policy` as it is now (call before the first update)."""
        frozen = copy.deepcopy(policy).eval()
        for param in frozen.parameters():
            param.requires_grad_(False)
        return cls(frozen, adapter_off=False)

    @classmethod
    def adapter_off(cls, policy: nn.Module) -> Reference:
        """Use a peft policy's base model, with the adapter disabled, as the reference."""
        if not hasattr(policy, "disable_adapter"):
            raise ConfigError("Reference.adapter_off needs a peft model with a LoRA adapter.")
        return cls(policy, adapter_off=True)

    @classmethod
    def for_policy(cls, policy: nn.Module) -> Reference:
        """Return the adapter-off reference for a peft policy, else a frozen copy."""
        return cls.adapter_off(policy) if hasattr(policy, "disable_adapter") else cls.copy_of(policy)

    @torch.no_grad()
    def logps(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Return per-sequence log-probs (B,) of the completion tokens under the reference."""
        was_training = self.model.training
        self.model.eval()
        context = self.model.disable_adapter() if self.adapter_off else contextlib.nullcontext()
        try:
            with context:
                return sequence_logps(self.model, batch)
        finally:
            self.model.train(was_training)

    def verify(self) -> None:
        """Raise ReferenceChangedError if the reference weights differ from when it was built."""
        if weights_hash(self.model, skip_lora=self.adapter_off) != self.fingerprint:
            raise ReferenceChangedError("The reference model's weights changed during the run, "
                                        "so rewards and KL are measured against a moving target.")


# Finite checks

def check_finite(loss: torch.Tensor, step: int, lines: list[int]) -> None:
    """Raise NonFiniteLossError when `loss` is NaN or infinite."""
    value = float(loss.detach())
    if not math.isfinite(value):
        raise NonFiniteLossError(step, lines, value)


# Several processes (`accelerate launch`)

def init_distributed() -> None:
    """Join the process group when started by `accelerate launch` or torchrun (WORLD_SIZE > 1)."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not _distributed():
        from accelerate import PartialState

        PartialState()  # reads RANK, WORLD_SIZE and MASTER_ADDR, then joins the group


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def process_rank() -> tuple[int, int]:
    """Return (rank, world size): (0, 1) in a single process."""
    if _distributed():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def sum_across_processes(params: list[nn.Parameter], totals: dict[str, float]) -> dict[str, float]:
    """Sum gradients and metric totals over all processes; a no-op in a single process.

    Each process computes its shard's loss divided by the whole step's counts, so the sum of
    the gradients is the gradient of the whole step.
    """
    if not _distributed():
        return totals
    for param in params:
        if param.grad is None:
            param.grad = torch.zeros_like(param)
        torch.distributed.all_reduce(param.grad)
    keys = sorted(totals)
    device = params[0].device if params else torch.device("cpu")
    values = torch.tensor([float(totals[k]) for k in keys], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(values)
    return dict(zip(keys, values.tolist()))


# Optimisation and bookkeeping

def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Return AdamW over the trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)


def lr_at(step: int, config: TrainConfig) -> float:
    """Return the learning rate for 0-based `step`: linear warm-up, then constant."""
    if config.warmup_steps and step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    return config.learning_rate


def optimizer_step(optimizer: torch.optim.Optimizer, params: list[nn.Parameter], step: int,
                   config: TrainConfig) -> tuple[float, float]:
    """Set the step's learning rate, clip the gradients, step and clear them.

    Returns `(learning_rate, grad_norm)`; the norm is measured before clipping, and
    `max_grad_norm <= 0` turns clipping off.
    """
    lr = lr_at(step, config)
    for group in optimizer.param_groups:
        group["lr"] = lr
    clip = config.max_grad_norm if config.max_grad_norm > 0 else float("inf")
    grad_norm = torch.nn.utils.clip_grad_norm_(params, clip).item()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return lr, grad_norm


def batches(n_rows: int, batch_size: int, seed: int) -> Iterator[list[int]]:
    """Yield row indices forever: reshuffled each epoch, each batch of `batch_size` rows.

    A dataset smaller than the batch gives batches of the whole dataset.
    """
    rng = random.Random(seed)
    order: list[int] = []
    while True:
        if len(order) < min(batch_size, n_rows):
            fresh = list(range(n_rows))
            rng.shuffle(fresh)
            order += fresh
        take, order = order[:min(batch_size, n_rows)], order[min(batch_size, n_rows):]
        yield take


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


class Throughput:
    """Tokens per second over the whole run so far (wall clock)."""

    def __init__(self):
        self.start, self.tokens = time.perf_counter(), 0

    def add(self, n_tokens: int) -> float:
        """Count `n_tokens` more and return tokens/s since the start."""
        self.tokens += n_tokens
        return self.tokens / max(time.perf_counter() - self.start, 1e-9)


@torch.no_grad()
def greedy_samples(model: nn.Module, tokenizer, prompts: list[Any], max_new_tokens: int,
                   ) -> list[str]:
    """Return the greedy continuation of each prompt (text or chat messages)."""
    from core.batching import encode_prompt, render

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    texts = []
    try:
        for prompt in prompts:
            ids = torch.tensor([encode_prompt(tokenizer, render(tokenizer, prompt, "")[0])],
                               device=device)
            with autocast(device):
                out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                     max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id)
            texts.append(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True))
    finally:
        model.train(was_training)
    return texts


def save_trained(model: nn.Module, tokenizer, output_dir: str | Path) -> str:
    """Save weights (safetensors) or a LoRA adapter, plus the tokenizer; return the form.

    Returns "lora" or "full", the `weights` value of run.json. The job runner adds run.json.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir, safe_serialization=True)
    tokenizer.save_pretrained(output_dir)
    return "lora" if hasattr(model, "peft_config") else "full"
