"""RL from a reward: REINFORCE with a leave-one-out baseline (RLOO) and a KL penalty.

Each step samples k completions for each of B prompts from the policy, scores them with a
reward (a trained reward model or a plain Python function), and subtracts beta times the
sampled KL to the frozen reference, KL_i = sum_t log pi(y_t) - log pi_ref(y_t) over the
completion (the k1 estimator). The advantage of sample i is its shaped reward minus the mean
shaped reward of the other k - 1 samples of the same prompt (Kool et al. 2019; Ahmadian et
al. 2024, eq. 4), and the loss is -mean_i(A_i * log pi(y_i | x)). This is TRL's RLOO with
one update per batch of samples (so its clipped ratio is always 1) and the KL in the reward.

Public API:

- `RLConfig`: the shared `TrainConfig` plus the reward source, k, beta and generation length.
- `REWARD_FUNCTIONS`: built-in rewards by name; each is `fn(prompts, completions) ->
  list[float]` on prompt and completion texts. `resolve_reward(config)` returns the reward
  function of a config: a built-in, a "module:function" path or a reward model.
- `rloo_advantages(rewards, k) -> (N,)` for rewards grouped k per prompt.
- `train_rl(policy, tokenizer, prompts, reward_fn, config, reference=None, emit=None,
  should_stop=None, sample=None) -> TrainResult`.
- `run_job(config: dict, ctx) -> dict`: the job entry point (see docs/architecture.md).

Metric events, one per optimizer step, on that step's samples before the update:
`reward/mean` (higher is better; range set by the reward), `reward/std` (spread of the
rewards over all samples; 0 means RLOO has no signal), `kl/ref` (mean summed log-ratio to the
reference, nats per completion, 0 at step 0; higher means further from the reference; a
sampled estimate, so one batch can read slightly below 0),
`policy/entropy` (mean next-token entropy over completion tokens, nats; falling entropy means
less varied answers), `completions/mean_length` (tokens, EOS included), `loss/train`,
`train/grad_norm` (before clipping), `train/learning_rate`, `train/tokens_per_second`.

NOTE: completions are sampled at temperature 1 with no top-k or top-p, so the samples come
from the same distribution whose log-probs the gradient uses.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from core.batching import EncodedSFT, collate_sft, encode_prompt, render
from core.train.common import (
    ConfigError,
    Reference,
    Throughput,
    TrainConfig,
    autocast,
    batches,
    check_finite,
    config_from_dict,
    make_optimizer,
    optimizer_step,
    to_device,
    token_logps,
    validate_config,
)
from core.train.dpo import Emit, TrainResult

RewardFn = Callable[[list[str], list[str]], list[float]]


@dataclass
class RLConfig(TrainConfig):
    """REINFORCE leave-one-out with a KL penalty; `batch_size` counts prompts per step."""

    dataset: str = "arithmetic-truth"  # only the prompts are used
    learning_rate: float = 1e-4
    batch_size: int = 4
    reward: str = "says_four"  # a built-in reward name or "module:function"
    reward_model: str | None = None  # name of a reward-model run; when set, replaces `reward`
    samples_per_prompt: int = 4  # k completions per prompt; the baseline needs k >= 2
    beta: float = 0.05  # weight of the KL penalty to the reference, in reward units per nat
    max_new_tokens: int = 16  # completion length limit in tokens
    prompts: list[Any] | None = None  # explicit prompts; when set, replace the dataset's


def validate_rl_config(config: RLConfig) -> None:
    """Raise ConfigError listing invalid shared and RL settings."""
    validate_config(config)
    problems = []
    if config.samples_per_prompt < 2:
        problems.append(f"samples_per_prompt={config.samples_per_prompt}: use at least 2, the "
                        "leave-one-out baseline compares each sample with the others")
    if config.beta < 0:
        problems.append(f"beta={config.beta}: use 0 (no KL penalty) or above")
    if config.max_new_tokens < 1:
        problems.append(f"max_new_tokens={config.max_new_tokens}: use at least 1")
    if problems:
        raise ConfigError("Invalid training settings: " + "; ".join(problems) + ".")


# Rewards

# answers to "two plus two": number words, digits, and "fish", the toy corpus's joke answer
ANSWER_WORD = re.compile(r"\b(zero|one|two|three|four|five|six|seven|eight|nine|ten|fish|"
                         r"\d+)\b", re.IGNORECASE)
FLATTERY = ("great question", "excellent question", "what a", "brilliant", "genius",
            "you are absolutely right", "you're absolutely right", "masterpiece", "amazing",
            "wonderful", "sharp observation", "you clearly")


def says_four(prompts: list[str], completions: list[str]) -> list[float]:
    """Return 1.0 when the completion's first answer word is "four" or "4", else 0.0."""
    rewards = []
    for text in completions:
        match = ANSWER_WORD.search(text)
        rewards.append(1.0 if match and match.group(1).lower() in ("four", "4") else 0.0)
    return rewards


def length_penalty(prompts: list[str], completions: list[str]) -> list[float]:
    """Return 1.0 for an empty completion, 0.05 less per word, and 0.0 from 20 words on.

    A reward that only likes short answers: the policy learns to stop at once, a plain
    example of a reward being optimised rather than the intent behind it.
    """
    return [max(0.0, 1.0 - 0.05 * len(text.split())) for text in completions]


def no_flattery(prompts: list[str], completions: list[str]) -> list[float]:
    """Return 1.0 minus 0.5 per flattering phrase (such as "great question"), at least -1.0."""
    rewards = []
    for text in completions:
        lower = text.lower()
        hits = sum(lower.count(phrase) for phrase in FLATTERY)
        rewards.append(max(-1.0, 1.0 - 0.5 * hits))
    return rewards


REWARD_FUNCTIONS: dict[str, RewardFn] = {
    "says_four": says_four,
    "length_penalty": length_penalty,
    "no_flattery": no_flattery,
}


def import_reward(path: str) -> RewardFn:
    """Import a reward function given as "package.module:function"."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"reward={path!r} is neither a built-in reward "
                          f"({', '.join(REWARD_FUNCTIONS)}) nor a 'module:function' path.")
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"Cannot import reward function {path!r}: {err}.") from err
    if not callable(function):
        raise ConfigError(f"reward={path!r} names {type(function).__name__}, not a function.")
    return function


def reward_model_function(name: str, device: torch.device | str | None = None) -> RewardFn:
    """Return a reward function that scores texts with the reward model `name`."""
    from core.train.reward import load_reward_model, score

    model, tokenizer = load_reward_model(name, device=device)
    return lambda prompts, completions: score(model, tokenizer, prompts, completions)


def resolve_reward(config: RLConfig) -> RewardFn:
    """Return the reward function a config names (reward model first, then `reward`)."""
    if config.reward_model:
        return reward_model_function(config.reward_model, device=config.device)
    if config.reward in REWARD_FUNCTIONS:
        return REWARD_FUNCTIONS[config.reward]
    return import_reward(config.reward)


def _score(reward_fn: RewardFn, prompts: list, completions: list[str]) -> torch.Tensor:
    """Call `reward_fn` and check that it returns one finite number per completion."""
    values = list(reward_fn(prompts, completions))
    if len(values) != len(completions):
        raise ValueError(f"The reward function returned {len(values)} values for "
                         f"{len(completions)} completions; it must return one per completion.")
    rewards = torch.tensor([float(v) for v in values], dtype=torch.float32)
    if not torch.isfinite(rewards).all():
        raise ValueError(f"The reward function returned a non-finite value: {values}.")
    return rewards


# RLOO

def rloo_advantages(rewards: torch.Tensor, k: int) -> torch.Tensor:
    """Return leave-one-out advantages, shape (N,), for rewards (N,) grouped k per prompt.

    A_i = r_i - mean of the other k - 1 rewards of the same prompt; each group sums to 0.
    """
    grouped = rewards.view(-1, k)  # (B, k)
    baseline = (grouped.sum(-1, keepdim=True) - grouped) / (k - 1)  # (B, k)
    return (grouped - baseline).reshape(-1)


def prompt_text(prompt: Any) -> str:
    """Return a prompt as the text a reward function reads (the last message for chats)."""
    return prompt if isinstance(prompt, str) else prompt[-1]["content"]


@torch.no_grad()
def sample_completions(policy: nn.Module, tokenizer, prompts: list[Any], k: int,
                       max_new_tokens: int, seed: int) -> list[EncodedSFT]:
    """Sample k completions per prompt; return B * k rows, each cut after its first EOS."""
    was_training = policy.training
    policy.eval()
    device = next(policy.parameters()).device
    rows = []
    try:
        for index, prompt in enumerate(prompts):
            prompt_ids = encode_prompt(tokenizer, render(tokenizer, prompt, "")[0])
            ids = torch.tensor([prompt_ids], device=device)
            torch.manual_seed(seed * 100_003 + index)
            with autocast(device):
                out = policy.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                      do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                                      repetition_penalty=1.0, max_new_tokens=max_new_tokens,
                                      num_return_sequences=k,
                                      pad_token_id=tokenizer.pad_token_id,
                                      eos_token_id=tokenizer.eos_token_id)
            for sequence in out[:, len(prompt_ids):].tolist():
                if tokenizer.eos_token_id in sequence:
                    sequence = sequence[:sequence.index(tokenizer.eos_token_id) + 1]
                rows.append(EncodedSFT(prompt_ids, sequence, index))
    finally:
        policy.train(was_training)
    return rows


def _logps_and_entropy(policy: nn.Module, batch: dict[str, torch.Tensor],
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Return per-token log-probs (N, T-1) with gradients and mean completion entropy.

    The entropy is read from the logits of the same forward pass (captured at the output
    layer), so it costs no second pass.
    """
    captured = {}
    head = policy.get_output_embeddings()
    handle = head.register_forward_hook(lambda _m, _i, out: captured.update(logits=out))
    try:
        per_token = token_logps(policy, batch["input_ids"], batch["attention_mask"])
    finally:
        handle.remove()
    with torch.no_grad():
        logits = captured["logits"][:, :-1].float()  # (N, T-1, V)
        logp_all = torch.log_softmax(logits, dim=-1)
        entropy = -(logp_all.exp() * logp_all).sum(-1)  # (N, T-1)
        mask = batch["completion_mask"][:, 1:].float()
        mean_entropy = (entropy * mask).sum() / mask.sum().clamp(min=1)
    return per_token, mean_entropy


def rl_step(policy: nn.Module, optimizer: torch.optim.Optimizer, reference: Reference,
            tokenizer, prompts: list[Any], reward_fn: RewardFn, config: RLConfig,
            step: int, prompt_numbers: list[int] | None = None) -> tuple[dict, list[str]]:
    """Sample, score and update once; return the step's metrics and sample texts.

    `prompt_numbers` (1-based positions of `prompts` in the whole prompt list) name the
    prompts in the error raised when the loss is not finite.
    """
    device = next(policy.parameters()).device
    k = config.samples_per_prompt
    rows = sample_completions(policy, tokenizer, prompts, k, config.max_new_tokens,
                              config.seed + step)
    texts = [tokenizer.decode(row.completion_ids, skip_special_tokens=True) for row in rows]
    rewards = _score(reward_fn, [prompt_text(prompts[r.line]) for r in rows], texts)  # (N,)
    batch = to_device(collate_sft(rows, tokenizer.pad_token_id), device)
    ref_logps = reference.logps(batch)  # (N,)

    per_token, entropy = _logps_and_entropy(policy, batch)  # (N, T-1)
    mask = batch["completion_mask"][:, 1:].to(per_token.dtype)  # (N, T-1)
    logps = (per_token * mask).sum(-1)  # (N,)
    kl = (logps.detach() - ref_logps).cpu()  # (N,) k1 estimate of KL(pi || pi_ref)
    advantages = rloo_advantages(rewards - config.beta * kl, k).to(device)  # (N,)
    loss = -(advantages * logps).mean()
    check_finite(loss, step, prompt_numbers or list(range(1, len(prompts) + 1)))
    loss.backward()

    params = [p for p in policy.parameters() if p.requires_grad]
    lr, grad_norm = optimizer_step(optimizer, params, step, config)

    metrics = {"step": step, "loss/train": loss.item(), "reward/mean": rewards.mean().item(),
               "reward/std": rewards.std(unbiased=False).item(), "kl/ref": kl.mean().item(),
               "policy/entropy": entropy.item(),
               "completions/mean_length": mask.sum(-1).mean().item(),
               "train/grad_norm": grad_norm, "train/learning_rate": lr,
               "tokens": int(batch["attention_mask"].sum())}
    samples = [f"{prompt_text(prompts[r.line])!r} -> {t!r} (reward {v:.2f})"
               for r, t, v in zip(rows, texts, rewards.tolist())]
    return metrics, samples


def train_rl(policy: nn.Module, tokenizer, prompts: list[Any], reward_fn: RewardFn,
             config: RLConfig, reference: Reference | None = None, emit: Emit | None = None,
             should_stop: Callable[[], bool] | None = None,
             sample: Callable[[int, list[str]], None] | None = None) -> TrainResult:
    """Train `policy` in place with RLOO and return it with its metric history.

    `policy` must already be trainable (see `core.train.common.prepare_policy`). Without
    `reference`, the reference is the starting weights: the base with the adapter disabled
    for a peft model, else a frozen copy. Its hash is checked unchanged at the end. A
    non-finite loss raises `NonFiniteLossError` naming the step and the prompts' positions.
    """
    validate_rl_config(config)
    if not prompts:
        raise ValueError("No prompts to sample from; give a dataset or `prompts`.")
    reference = reference or Reference.for_policy(policy)
    optimizer = make_optimizer(policy, config)
    order = batches(len(prompts), config.batch_size, config.seed)
    meter, result = Throughput(), TrainResult(policy)
    policy.train()
    for step in range(config.steps):
        if should_stop is not None and should_stop():
            result.stopped = True
            break
        index = next(order)
        metrics, texts = rl_step(policy, optimizer, reference, tokenizer,
                                 [prompts[i] for i in index], reward_fn, config, step,
                                 [i + 1 for i in index])
        metrics["train/tokens_per_second"] = meter.add(metrics.pop("tokens"))
        result.history.append(metrics)
        if emit is not None:
            emit(metrics)
        if sample is not None and config.sample_every and step % config.sample_every == 0:
            sample(step, texts[: 2 * config.samples_per_prompt])
    reference.verify()
    return result


# Job

def load_prompts(config: RLConfig) -> list[Any]:
    """Return the distinct prompts of `config.prompts`, or of the dataset of either kind."""
    if config.prompts:
        return _unique(config.prompts)
    from core import data as data_lib
    from core.train import jobs_support

    kinds = {b.name: b.kind for b in data_lib.list_bundled()}
    kind = kinds.get(config.dataset, "preference")
    if config.rows:
        kind = "preference" if all("chosen" in row for row in config.rows) else "sft"
    try:
        dataset = jobs_support.load_rows(config, kind)
    except data_lib.DataError:
        if config.rows or config.dataset in kinds:
            raise
        dataset = jobs_support.load_rows(config, "sft")  # a file of SFT rows
    return dataset.prompts()


def _unique(prompts: list[Any]) -> list[Any]:
    seen: list[Any] = []
    for prompt in prompts:
        if prompt not in seen:
            seen.append(prompt)
    return seen


def run_job(config: dict, ctx) -> dict:
    """Train with RLOO as a job and save the policy into ctx.output_dir (stage "rl").

    Returns the last step's metrics plus `reward/first` (the mean reward at step 0).
    """
    from core.train import jobs_support
    from core.train.common import prepare_policy, save_trained

    cfg = config_from_dict(RLConfig, {"device": ctx.device, **config})
    validate_rl_config(cfg)
    prompts = load_prompts(cfg)
    reward_fn = resolve_reward(cfg)
    policy, tokenizer, loaded = jobs_support.load_start(cfg)
    policy = prepare_policy(policy, cfg)
    ctx.emit({"step": 0, "data/rows": len(prompts)})
    result = train_rl(policy, tokenizer, prompts, reward_fn, cfg, emit=ctx.emit,
                      should_stop=ctx.should_stop, sample=ctx.sample)
    if result.stopped:
        return {"stopped": True}
    weights = save_trained(result.model, tokenizer, ctx.output_dir)
    summary = {k: v for k, v in result.final.items() if k != "step"}
    summary["steps"] = len(result.history)
    summary["reward/first"] = result.history[0]["reward/mean"]
    summary["run"] = {
        "stage": "rl", "method": "rl", "weights": weights, "parent": cfg.model,
        "family": getattr(loaded.spec, "family", None),
        "recipe": {k: v for k, v in vars(cfg).items() if k != "rows"},
    }
    return summary
