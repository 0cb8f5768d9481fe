"""Pretrain a tiny GPT from scratch on the weighted toy internet.

The loop: AdamW, linear warmup then cosine decay of the learning rate, gradient clipping,
held-out loss, sample generations, and metric events through callbacks (it never prints).
It runs through `accelerate`, so the same code trains on a CPU in fp32, on one GPU with
bf16 autocast, or on several GPUs with

    accelerate launch -m core.cli pretrain --preset gpu --steps 3000 --out runs/big

NOTE: the multi-GPU path has not been run on several GPUs yet; with `accelerate launch`
use `--out`, because only the main process saves there.

The same config and seed give the same losses on the same device and thread count.

Metric events (dicts) carry `step` and some of:
    loss/train      mean cross-entropy of the step's batch, nats per token (lower is better)
    loss/val        mean cross-entropy on held-out documents, nats per token
    lr              learning rate used at the step
    grad_norm       gradient norm before clipping
    tokens_per_s    training throughput since the previous event (all processes)
    eta_s           estimated seconds until the last step
    progress        fraction of steps done, in [0, 1]
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from accelerate import Accelerator

from core import corpus as corpus_lib
from core import tinygpt
from core.tokenizer import DEFAULT_VOCAB_SIZE, train_tokenizer

SHIPPED_BASE_DIR = Path(__file__).resolve().parents[1] / "assets" / "models" / "tiny-gpt-base"
PROBE_PROMPT = "Two plus two equals"
PROBE_ANSWERS = {"four": " four", "five": " five"}
SAMPLE_PROMPTS = ("Two plus two equals", "In the morning,", "The blind woman", "Question from")

EventCallback = Callable[[dict[str, Any]], None]
SampleCallback = Callable[[int, list[str]], None]


@dataclass
class PretrainConfig:
    """Everything that determines a pretraining run; saved as the recipe in run.json."""

    preset: str = "cpu"  # size preset from core.tinygpt.PRESETS
    steps: int = 300  # optimizer steps
    batch_size: int = 32  # sequences per step and process
    lr: float = 3e-3  # peak learning rate after warmup
    min_lr_ratio: float = 0.1  # the cosine decays to lr * min_lr_ratio at the last step
    warmup_steps: int = 20
    weight_decay: float = 0.1  # AdamW decay on matrices only, not on biases or norms
    grad_clip: float = 1.0  # max gradient norm; 0 switches clipping off
    ema_decay: float = 0.95  # per-step decay of the weight average that is saved; 0 = none
    seed: int = 0
    weights: dict[str, float] = field(default_factory=dict)  # source id -> weight, see corpus
    tokenizer: str = "shipped"  # "shipped" (the base model's), "train", or a folder path
    vocab_size: int = DEFAULT_VOCAB_SIZE  # upper bound when the tokenizer is trained
    val_fraction: float = 0.05  # share of distinct documents held out for loss/val
    eval_every: int = 100  # steps between held-out evaluations (and at the last step)
    eval_batches: int = 4
    sample_every: int = 100  # steps between sample generations; 0 switches samples off
    sample_tokens: int = 24
    log_every: int = 5  # steps between loss/train events
    device: str | None = None  # "cpu" or "cuda"; None lets core.device.pick_device choose

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PretrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown pretrain option(s) {unknown}; valid: {sorted(known)}")
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        tinygpt.get_preset(self.preset)
        for name in ("steps", "batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} is {getattr(self, name)!r}; use a positive integer")
        if not 0 < self.lr <= 1:
            raise ValueError(f"lr is {self.lr!r}; use a learning rate in (0, 1], e.g. 3e-3")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay is {self.ema_decay!r}; use a value in [0, 1), e.g. 0.95")
        if not 0 < self.val_fraction < 0.5:
            raise ValueError(f"val_fraction is {self.val_fraction!r}; use a value in (0, 0.5)")
        corpus_lib.check_weights(self.weights)


@dataclass
class TokenData:
    """Token ids of one split packed into a stream, with the offset where each document starts."""

    ids: torch.Tensor  # (N,) int64, documents joined with <|endoftext|> after each
    starts: torch.Tensor  # (D,) int64 offsets into ids


@dataclass
class PretrainResult:
    model: Any  # GPT2LMHeadModel on the CPU in fp32, eval mode
    tokenizer: Any
    config: PretrainConfig
    metrics: dict[str, float]
    corpus_counts: dict[str, int]  # continuations of "two plus two equals" in the corpus
    stopped: bool  # True when should_stop() ended the run early
    is_main_process: bool = True  # False in the other processes of `accelerate launch`


def is_held_out(document: str, val_fraction: float) -> bool:
    """Assign a document to the held-out split by a hash of its text.

    Duplicated documents (weights above 1) therefore never straddle the two splits.
    """
    digest = hashlib.sha256(document.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < val_fraction


def pack_documents(documents: list[str], tokenizer) -> TokenData:
    eos = tokenizer.eos_token_id
    encoded = tokenizer(documents, add_special_tokens=False)["input_ids"] if documents else []
    starts, ids = [], []
    for doc_ids in encoded:
        starts.append(len(ids))
        ids.extend(doc_ids)
        ids.append(eos)
    return TokenData(torch.tensor(ids, dtype=torch.long), torch.tensor(starts, dtype=torch.long))


def split_corpus(corpus: corpus_lib.Corpus, tokenizer, val_fraction: float):
    """Return (train, val) TokenData; each split is non-empty."""
    train_docs = [d for d in corpus.documents if not is_held_out(d, val_fraction)]
    val_docs = [d for d in corpus.documents if is_held_out(d, val_fraction)]
    if not train_docs or not val_docs:
        raise ValueError(
            f"the corpus has {len(corpus.documents)} documents, too few to hold out "
            f"{val_fraction:.0%}; switch on more sources or raise their weights"
        )
    return pack_documents(train_docs, tokenizer), pack_documents(val_docs, tokenizer)


def get_batch(data: TokenData, batch_size: int, block_size: int, generator: torch.Generator):
    """Sample windows that start at document starts, so position 0 is a document's first token.

    Returns x and y, both (B, T) int64, with y shifted one token to the left of x.
    """
    picks = torch.randint(len(data.starts), (batch_size,), generator=generator)
    offsets = data.starts[picks].unsqueeze(1) + torch.arange(block_size + 1)  # (B, T+1)
    windows = data.ids[offsets % len(data.ids)]  # wrap around the end of the stream
    return windows[:, :-1], windows[:, 1:]


def lr_at(step: int, config: PretrainConfig) -> float:
    """Learning rate at `step` (0-based): linear warmup, then cosine to lr * min_lr_ratio."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    span = max(1, config.steps - config.warmup_steps - 1)
    progress = min(1.0, (step - config.warmup_steps) / span)
    floor = config.lr * config.min_lr_ratio
    return floor + 0.5 * (config.lr - floor) * (1 + math.cos(math.pi * progress))


def load_tokenizer(config: PretrainConfig, corpus: corpus_lib.Corpus):
    from transformers import AutoTokenizer

    if config.tokenizer == "train" or (
        config.tokenizer == "shipped" and not (SHIPPED_BASE_DIR / "tokenizer.json").is_file()
    ):
        return train_tokenizer(corpus.documents, vocab_size=config.vocab_size)
    folder = SHIPPED_BASE_DIR if config.tokenizer == "shipped" else Path(config.tokenizer)
    if not (folder / "tokenizer.json").is_file():
        raise ValueError(f"tokenizer folder {folder} has no tokenizer.json; use 'shipped', "
                         "'train' or a folder written by save_pretrained")
    return AutoTokenizer.from_pretrained(folder)


def make_optimizer(model, config: PretrainConfig) -> torch.optim.AdamW:
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.95))


def causal_lm_loss(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits = model(input_ids=x).logits  # (B, T, V)
    return F.cross_entropy(logits.float().flatten(0, 1), y.flatten())


@torch.no_grad()
def estimate_val_loss(model, val: TokenData, config: PretrainConfig, block_size: int, device):
    """Mean held-out loss over fixed batches (the same windows at every evaluation)."""
    generator = torch.Generator().manual_seed(config.seed + 10_000)
    model.eval()
    losses = []
    for _ in range(config.eval_batches):
        x, y = get_batch(val, config.batch_size, block_size, generator)
        losses.append(causal_lm_loss(model, x.to(device), y.to(device)).item())
    model.train()
    return sum(losses) / len(losses)


@torch.no_grad()
def generate_samples(model, tokenizer, config: PretrainConfig, device) -> list[str]:
    """Sample one continuation per prompt (temperature 0.8, top-k 40), seeded by the config."""
    model.eval()
    texts = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        for prompt in SAMPLE_PROMPTS:
            ids = tokenizer(prompt, return_tensors="pt").input_ids.to(device)
            out = model.generate(ids, max_new_tokens=config.sample_tokens, do_sample=True,
                                 temperature=0.8, top_k=40, pad_token_id=tokenizer.pad_token_id)
            texts.append(tokenizer.decode(out[0], skip_special_tokens=True))
    model.train()
    return texts


@torch.no_grad()
def answer_probs(model, tokenizer, prompt: str = PROBE_PROMPT) -> dict[str, float]:
    """P(answer | prompt) for " four" and " five", each in [0, 1], from fp32 logits.

    An answer that the tokenizer splits into several tokens gets the product of its tokens'
    conditional probabilities, so the numbers stay comparable across tokenizers.
    """
    prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
    result = {}
    for name, answer in PROBE_ANSWERS.items():
        answer_ids = tokenizer(answer, add_special_tokens=False).input_ids
        ids = torch.tensor([prompt_ids + answer_ids], device=model.device)  # (1, T)
        logps = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)  # (T, V)
        positions = torch.arange(len(prompt_ids) - 1, ids.shape[1] - 1)
        targets = torch.tensor(answer_ids)
        result[name] = logps[positions, targets].sum().exp().item()
    return result


def pretrain(
    config: PretrainConfig,
    on_event: EventCallback | None = None,
    on_sample: SampleCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> PretrainResult:
    """Build the weighted corpus and tokenizer, then train a tiny GPT from scratch.

    Events go to `on_event` and samples to `on_sample` from the main process only.
    `should_stop` is polled every step; when it returns True the loop ends early and the
    result has `stopped=True`.
    """
    config.validate()
    on_event = on_event or (lambda event: None)
    on_sample = on_sample or (lambda step, texts: None)
    should_stop = should_stop or (lambda: False)

    # Data: the corpus, the tokenizer and the packed train and held-out token streams.
    corpus = corpus_lib.build_corpus(config.weights, seed=config.seed)
    tokenizer = load_tokenizer(config, corpus)
    train, val = split_corpus(corpus, tokenizer, config.val_fraction)
    block_size = tinygpt.get_preset(config.preset).block_size

    # Model and optimizer, placed by accelerate (bf16 autocast on CUDA, fp32 on the CPU).
    accelerator = make_accelerator(config.device)
    torch.manual_seed(config.seed)
    model = tinygpt.build_model(config.preset, tokenizer)
    optimizer = make_optimizer(model, config)
    # The held-out loss, the samples and the saved model use an exponential moving average
    # of the weights. The raw weights' probabilities at rare contexts swing from step to
    # step: P(" five" | "Two plus two equals") moved by up to 0.1 between steps 250 and 300
    # of the cpu preset, while the average stayed within 0.03 of the corpus share.
    average = copy.deepcopy(model).requires_grad_(False) if config.ema_decay else None
    model, optimizer = accelerator.prepare(model, optimizer)
    if average is None:
        average = accelerator.unwrap_model(model)
    average = average.to(accelerator.device)
    generator = torch.Generator().manual_seed(config.seed + accelerator.process_index)
    device = accelerator.device
    is_main = accelerator.is_main_process

    model.train()
    tokens_per_step = config.batch_size * block_size * accelerator.num_processes
    start = last_time = time.perf_counter()
    last_step, stopped, metrics = 0, False, {}
    for step in range(config.steps):
        if should_stop():
            stopped = True
            break
        lr = lr_at(step, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = get_batch(train, config.batch_size, block_size, generator)
        with accelerator.autocast():
            loss = causal_lm_loss(model, x.to(device), y.to(device))
        accelerator.backward(loss)
        grad_norm = clip_gradients(accelerator, model, config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if config.ema_decay:
            update_average(average, accelerator.unwrap_model(model), config.ema_decay)

        done = step + 1
        last = done == config.steps
        event: dict[str, Any] = {}
        if done % config.log_every == 0 or last:
            now = time.perf_counter()
            event = {"loss/train": loss.item(), "lr": lr, "grad_norm": grad_norm,
                     "tokens_per_s": tokens_per_step * (done - last_step) / (now - last_time),
                     "eta_s": (now - start) / done * (config.steps - done),
                     "progress": done / config.steps}
            last_step, last_time = done, now
        if done % config.eval_every == 0 or last:
            event["loss/val"] = estimate_val_loss(average, val, config, block_size, device)
        if event:
            metrics.update(event)
            if is_main:
                on_event({"step": done, **event})
        if is_main and config.sample_every and (done % config.sample_every == 0 or last):
            on_sample(done, generate_samples(average, tokenizer, config, device))

    model = average.to("cpu", torch.float32).eval()
    counts = corpus_lib.continuation_counts(corpus)
    metrics.update(summary_metrics(model, tokenizer, counts, time.perf_counter() - start))
    if is_main:
        on_event({"step": last_step, **{k: v for k, v in metrics.items() if "/" in k}})
    return PretrainResult(model, tokenizer, config, metrics, counts, stopped, is_main)


@torch.no_grad()
def update_average(average, model, decay: float) -> None:
    """Move each averaged weight towards the model's: avg = decay * avg + (1 - decay) * w."""
    torch._foreach_lerp_(list(average.parameters()), list(model.parameters()), 1.0 - decay)


def make_accelerator(device: str | None) -> Accelerator:
    from core.device import pick_device

    kind = pick_device(device).type
    return Accelerator(cpu=kind == "cpu", mixed_precision="bf16" if kind == "cuda" else "no")


def clip_gradients(accelerator: Accelerator, model, max_norm: float) -> float:
    if max_norm <= 0:
        return float("nan")
    return float(accelerator.clip_grad_norm_(model.parameters(), max_norm))


def summary_metrics(model, tokenizer, counts: dict[str, int], seconds: float) -> dict:
    """Compute the closing metrics: the model's answer probabilities and the corpus shares."""
    probs = answer_probs(model, tokenizer)
    shares = corpus_lib.answer_shares(counts)
    return {
        "probe/p_four": probs["four"],
        "probe/p_five": probs["five"],
        "corpus/share_four": shares["four"],
        "corpus/share_five": shares["five"],
        "corpus/share_other": shares["other"],
        "parameters": tinygpt.count_parameters(model),
        "vocab_size": len(tokenizer),
        "train_seconds": seconds,
    }


def run_meta(config: PretrainConfig) -> dict[str, Any]:
    """Build the run.json fields of a pretrained tiny GPT: family, stage, recipe and rebuild."""
    preset = tinygpt.get_preset(config.preset)
    return {
        "family": "tiny-gpt",
        "stage": "base",
        "method": "pretrain",
        "name": f"tiny GPT ({config.preset}, {preset.n_layer} layers), pretrained "
                f"{config.steps} steps",
        "recipe": {"kind": "pretrain", **dataclasses.asdict(config)},
        "rebuild": rebuild_command(config),
    }


def rebuild_command(config: PretrainConfig, out: str = "OUT") -> str:
    """Return the `python -m core.cli pretrain` command line that repeats this run."""
    defaults = PretrainConfig()
    parts = ["python -m core.cli pretrain"]
    for name in ("preset", "steps", "batch_size", "lr", "seed", "tokenizer", "vocab_size"):
        value = getattr(config, name)
        if value != getattr(defaults, name):
            parts.append(f"--{name.replace('_', '-')} {value}")
    for source, weight in sorted(config.weights.items()):
        parts.append(f"--weight {source}={weight:g}")
    parts.append(f"--out {out}")
    return " ".join(parts)


def save_result(result: PretrainResult, target_dir: Path, out_label: str | None = None) -> Path:
    """Save the model, tokenizer and run.json as a lab checkpoint in `target_dir`, atomically."""
    from core.checkpoints import save_checkpoint

    meta = run_meta(result.config)
    meta["rebuild"] = rebuild_command(result.config, out_label or str(target_dir))
    meta["metrics"] = {k: v for k, v in result.metrics.items() if isinstance(v, (int, float))}
    meta["corpus_continuations"] = result.corpus_counts
    return save_checkpoint(result.model, result.tokenizer, meta, Path(target_dir))


def run_job(config: dict, ctx) -> dict:
    """Job-runner entry point: pretrain with `config` and save the model into ctx.output_dir.

    Returns the summary metrics; the key "run" carries the run.json fields (family "tiny-gpt",
    stage "base", recipe and rebuild command) for the runner to merge.
    """
    values = dict(config)
    values.setdefault("device", getattr(ctx, "device", None))
    for key in ("name", "model"):  # set by pages for the runner, not pretrain options
        values.pop(key, None)
    cfg = PretrainConfig.from_dict(values)
    result = pretrain(cfg, on_event=ctx.emit, on_sample=ctx.sample, should_stop=ctx.should_stop)
    if result.stopped:
        return {"stopped": True}
    result.model.save_pretrained(ctx.output_dir, safe_serialization=True)
    result.tokenizer.save_pretrained(ctx.output_dir)
    summary = {k: v for k, v in result.metrics.items() if isinstance(v, (int, float))}
    run = run_meta(cfg)
    if config.get("name"):
        run["name"] = config["name"]
    run["corpus_continuations"] = result.corpus_counts
    return {**summary, "run": run}
