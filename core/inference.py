"""Inference on a LoadedModel: next-token distributions, generation, log-probs, hidden states.

Every function here is pure: it reads the model and never changes it, so pages, the CLI
and analysis code can share one cached model. Log-probabilities are computed in fp32
whatever dtype the weights have. Batched calls pad on the right and pass the attention mask,
so a batched result equals the single-prompt result (tests check this).
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TypeVar

import torch
import torch.nn.functional as F

from core import threads
from core.models import LoadedModel

T = TypeVar("T")

NUMBER_WORDS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12",
}


# Running several models at once

# Workers shared by every caller in the process. Four covers the largest comparison a page
# offers, and a shared pool also caps how many forward passes one server runs at once.
MAX_PARALLEL_MODELS = 4
_POOL = ThreadPoolExecutor(MAX_PARALLEL_MODELS, thread_name_prefix="lab-model")
_IN_WORKER = threading.local()


def _run_in_worker(fn: Callable[[LoadedModel], T], lm: LoadedModel) -> T:
    _IN_WORKER.active = True
    try:
        return fn(lm)
    finally:
        _IN_WORKER.active = False


def map_models(fn: Callable[[LoadedModel], T], lms: Sequence[LoadedModel]) -> list[T]:
    """Call `fn(lm)` for every model concurrently and return the results in order.

    A small model's forward pass on a short prompt leaves much of the CPU idle: most of its
    time goes to reading weights and to per-layer overhead. PyTorch releases the GIL inside
    its kernels, so the models' passes overlap. On a 2-core CPU, three SmolLM2-sized models
    take about two thirds of the sequential time (`bench/inference_bench.py`). `fn` must
    only read its model. The first exception, in model order, is raised after every call
    has finished. A call from inside a worker runs sequentially, so nesting cannot deadlock.
    """
    if len(lms) <= 1 or getattr(_IN_WORKER, "active", False):
        return [fn(lm) for lm in lms]
    futures = [_POOL.submit(_run_in_worker, fn, lm) for lm in lms]
    wait(futures)
    return [future.result() for future in futures]


# Prompt formatting and encoding

def format_prompt(
    lm: LoadedModel, text: str, chat: bool = False, system: str | None = None,
    response_prefix: str = "",
) -> str:
    """Return the text the model sees: `text` itself, or wrapped in the chat template.

    With `chat=True`, `response_prefix` starts the assistant's reply (for example "The answer
    is"), so the next token is the answer itself. A model without a chat template sees
    `text` unchanged, followed by a space and the prefix when one is given.
    """
    if not chat or not lm.has_chat_template:
        return f"{text} {response_prefix}" if chat and response_prefix else text
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": text}
    ]
    templated = lm.tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    )
    return templated + response_prefix


def encode(lm: LoadedModel, text: str, templated: bool = False) -> list[int]:
    """Tokenize a prompt. Text from the chat template already has its special tokens."""
    return lm.tokenizer(text, add_special_tokens=not templated)["input_ids"]


def _pad_right(seqs: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    max_len = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), max_len), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), max_len), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids.to(device), mask.to(device)


@torch.no_grad()
def _logps(lm: LoadedModel, seqs: list[list[int]]) -> torch.Tensor:
    """Return fp32 log-softmax over the vocabulary for right-padded sequences, (B, T, V)."""
    ids, mask = _pad_right(seqs, lm.tokenizer.pad_token_id, lm.device)
    logits = lm.model(input_ids=ids, attention_mask=mask).logits  # (B, T, V)
    return F.log_softmax(logits.float(), dim=-1)


# Next-token distribution

@dataclass
class TokenProb:
    """One entry of a next-token distribution."""

    token: str  # decoded text of the token, e.g. " four"
    token_id: int
    prob: float
    logp: float


@dataclass
class CandidateScore:
    """The probability of a whole candidate answer after the prompt.

    A candidate of several tokens is scored exactly: its log-prob is the sum of each token's
    log-prob given the prompt and the tokens before it.
    """

    text: str
    tokens: list[str]
    logp: float  # sum over the candidate's tokens, natural log
    logp_per_token: float  # logp divided by the number of tokens
    prob: float  # exp(logp)


@dataclass
class NextTokenResult:
    """The model's distribution over the token that follows a prompt."""

    prompt: str
    model_input: str  # the prompt after the chat template, if one was applied
    top: list[TokenProb]
    entropy_nats: float  # of the full next-token distribution; 0 means certain
    candidates: list[CandidateScore] = field(default_factory=list)
    merged: dict[str, float] = field(default_factory=dict)  # answer -> summed probability

    @property
    def entropy_bits(self) -> float:
        return self.entropy_nats / math.log(2)


def normalize_answer(text: str) -> str:
    """Map surface forms of one answer to one key: " Four", "four." and " 4" become "4"."""
    key = re.sub(r"[^\w]+", " ", text.lower()).strip()
    return NUMBER_WORDS.get(key, key)


@torch.no_grad()
def _score_pass(lm: LoadedModel, prompt_ids: list[int], cand_ids: list[list[int]]):
    """Run the prompt and every multi-token candidate in one batched forward pass.

    Returns the prompt's next-token log-softmax (V,) and, per candidate, the log-probs of its
    tokens. On a CPU a forward pass of a small model is bound by reading the weights, so one
    pass over a batch costs about the same as one pass over the prompt alone. Each row is the
    prompt followed by a candidate's tokens but its last. Right padding leaves the prompt's
    positions identical in every row, so row 0 also gives the next-token distribution.
    """
    multi = [i for i, ids in enumerate(cand_ids) if len(ids) > 1]
    rows = [prompt_ids + cand_ids[i][:-1] for i in multi] or [prompt_ids]
    ids, mask = _pad_right(rows, lm.tokenizer.pad_token_id, lm.device)
    start = len(prompt_ids)
    # only positions from the prompt's last token on are read, so the LM head runs there only
    kept = ids.shape[1] - start + 1
    logits = lm.model(input_ids=ids, attention_mask=mask, logits_to_keep=kept).logits
    logps = F.log_softmax(logits.float(), dim=-1)  # (R, kept, V); index 0 is position start-1
    next_logps = logps[0, 0]  # (V,)
    token_logps = [[float(next_logps[ids_i[0]])] for ids_i in cand_ids]
    for row, i in enumerate(multi):
        rest = torch.tensor(cand_ids[i][1:], device=logps.device)
        positions = torch.arange(1, 1 + len(rest), device=logps.device)
        token_logps[i] += logps[row, positions, rest].tolist()
    return next_logps, token_logps


def _candidate_ids(lm: LoadedModel, candidates: list[str]) -> list[list[int]]:
    cand_ids = [lm.tokenizer(c, add_special_tokens=False)["input_ids"] for c in candidates]
    empty = [c for c, ids in zip(candidates, cand_ids) if not ids]
    if empty:
        raise ValueError(f"Candidate answers {empty!r} are empty; type at least one character.")
    return cand_ids


def _candidate_scores(lm, candidates, cand_ids, token_logps) -> list[CandidateScore]:
    scores = []
    for text, ids, logps_i in zip(candidates, cand_ids, token_logps):
        total = sum(logps_i)
        scores.append(CandidateScore(
            text=text, tokens=[lm.tokenizer.decode([i]) for i in ids], logp=total,
            logp_per_token=total / len(ids), prob=math.exp(total),
        ))
    return scores


def score_candidates(lm: LoadedModel, prompt_ids: list[int], candidates: list[str]) -> list[CandidateScore]:
    """Score each candidate continuation of a tokenized prompt by its exact log-probability."""
    cand_ids = _candidate_ids(lm, candidates)
    _, token_logps = _score_pass(lm, prompt_ids, cand_ids)
    return _candidate_scores(lm, candidates, cand_ids, token_logps)


def next_token_distribution(
    lm: LoadedModel,
    prompt: str,
    top_k: int = 10,
    candidates: list[str] | None = None,
    chat: bool = False,
    merge_forms: bool = True,
    response_prefix: str = "",
) -> NextTokenResult:
    """Compute the next-token distribution after `prompt`.

    Returns the `top_k` most likely tokens, the entropy of the whole distribution, and, for
    each candidate answer, its exact probability. With `merge_forms`, candidates that are
    surface forms of one answer (" four", " Four", " 4") are also summed under one key.
    With `chat`, `response_prefix` starts the assistant's reply (see `format_prompt`).
    """
    if not prompt:
        raise ValueError("The prompt is empty; type a prompt such as 'Two plus two equals'.")
    if top_k < 1:
        raise ValueError(f"top_k={top_k} is invalid; use 1 or more.")
    model_input = format_prompt(lm, prompt, chat=chat, response_prefix=response_prefix)
    prompt_ids = encode(lm, model_input, templated=chat and lm.has_chat_template)
    cand_ids = _candidate_ids(lm, candidates or [])
    logps, token_logps = _score_pass(lm, prompt_ids, cand_ids)  # logps: (V,)
    probs = logps.exp()
    entropy = float(-(probs * logps).sum())
    top = torch.topk(logps, k=min(top_k, logps.numel()))
    top_tokens = [
        TokenProb(lm.tokenizer.decode([int(i)]), int(i), float(v.exp()), float(v))
        for v, i in zip(top.values, top.indices)
    ]
    result = NextTokenResult(prompt, model_input, top_tokens, entropy)
    if candidates:
        result.candidates = _candidate_scores(lm, candidates, cand_ids, token_logps)
        if merge_forms:
            for cand in result.candidates:
                key = normalize_answer(cand.text)
                result.merged[key] = result.merged.get(key, 0.0) + cand.prob
    return result


def next_token_distributions(
    lms: Sequence[LoadedModel], prompt: str, **kwargs
) -> list[NextTokenResult]:
    """Run `next_token_distribution` on several models at once, results in model order.

    Keyword arguments are those of `next_token_distribution`. The models run concurrently
    (see `map_models`), and each result matches the one a single call gives.
    """
    return map_models(lambda lm: next_token_distribution(lm, prompt, **kwargs), lms)


# Generation

# Upper limits that keep one request from holding a shared server for minutes.
MAX_NEW_TOKENS = 1024
MAX_SAMPLES = 64

@dataclass
class GenerationConfig:
    """Decoding settings shared by every model in a comparison."""

    max_new_tokens: int = 40  # tokens generated after the prompt
    do_sample: bool = True  # False means greedy decoding
    temperature: float = 1.0  # divides the logits before sampling; must be > 0
    top_k: int = 0  # keep only the k most likely tokens; 0 turns the filter off
    top_p: float = 1.0  # keep the smallest set of tokens whose mass reaches p; 1.0 is off
    n_samples: int = 1  # continuations per prompt
    seed: int = 0  # the same seed gives the same samples from the same model
    chat: bool = False  # wrap the prompt in the model's chat template, when it has one

    def validate(self) -> None:
        if not 1 <= self.max_new_tokens <= MAX_NEW_TOKENS:
            raise ValueError(f"max_new_tokens={self.max_new_tokens} is invalid; use 1 to "
                             f"{MAX_NEW_TOKENS}.")
        if self.do_sample and self.temperature <= 0:
            raise ValueError(
                f"temperature={self.temperature} is invalid; use a value above 0, or greedy."
            )
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p={self.top_p} is invalid; use a value in (0, 1].")
        if self.top_k < 0:
            raise ValueError(f"top_k={self.top_k} is invalid; use 0 (off) or more.")
        if not 1 <= self.n_samples <= MAX_SAMPLES:
            raise ValueError(f"n_samples={self.n_samples} is invalid; use 1 to {MAX_SAMPLES}.")


@dataclass
class Generation:
    """One generated continuation with each token's log-prob under the generating model."""

    prompt: str
    text: str  # the continuation only
    tokens: list[str]
    token_ids: list[int]
    token_logps: list[float]  # log P(token | everything before), untempered, natural log
    finished: bool  # True when the model emitted EOS before max_new_tokens

    @property
    def mean_logp(self) -> float:
        return sum(self.token_logps) / max(len(self.token_logps), 1)


def _filter_logits(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Mask tokens outside the top-k and the top-p nucleus with -inf; logits are (B, V)."""
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        # keep a token while the mass before it is below top_p, so the top token always stays
        drop_sorted = (cumulative - sorted_logits.softmax(-1)) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


@torch.no_grad()
def generate(lm: LoadedModel, prompt: str, config: GenerationConfig | None = None) -> list[Generation]:
    """Generate `config.n_samples` continuations of one prompt.

    Sampling uses its own seeded torch.Generator, so concurrent users never disturb each
    other's random state and the same seed reproduces the same text.
    """
    config = config or GenerationConfig()
    config.validate()
    if not prompt:
        raise ValueError("The prompt is empty; type a prompt to continue.")
    model_input = format_prompt(lm, prompt, chat=config.chat)
    prompt_ids = encode(lm, model_input, templated=model_input != prompt)
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    ids = torch.tensor([prompt_ids] * config.n_samples, device=lm.device)  # (N, T)
    eos_id = lm.tokenizer.eos_token_id
    out_ids, out_logps = [], []
    finished = torch.zeros(config.n_samples, dtype=torch.bool, device=lm.device)
    past, step_input = None, ids
    for _ in range(config.max_new_tokens):
        output = lm.model(input_ids=step_input, cache=past, use_cache=True, logits_to_keep=1)
        past = output.cache
        logits = output.logits[:, -1].float()  # (N, V)
        logps = F.log_softmax(logits, dim=-1)
        if config.do_sample:
            filtered = _filter_logits(logits / config.temperature, config.top_k, config.top_p)
            probs = filtered.softmax(-1).cpu()
            next_ids = torch.multinomial(probs, 1, generator=generator).to(lm.device)  # (N, 1)
        else:
            next_ids = logits.argmax(-1, keepdim=True)
        out_ids.append(next_ids)
        out_logps.append(logps.gather(1, next_ids))
        if eos_id is not None:
            finished = finished | (next_ids.squeeze(1) == eos_id)
        if bool(finished.all()):
            break
        step_input = next_ids
    return _collect(lm, prompt, torch.cat(out_ids, 1), torch.cat(out_logps, 1), eos_id)


def _collect(lm, prompt, new_ids, new_logps, eos_id) -> list[Generation]:
    results = []
    for row_ids, row_logps in zip(new_ids.tolist(), new_logps.tolist()):
        finished = eos_id is not None and eos_id in row_ids
        if finished:
            cut = row_ids.index(eos_id)
            row_ids, row_logps = row_ids[:cut], row_logps[:cut]
        results.append(Generation(
            prompt=prompt, text=lm.tokenizer.decode(row_ids, skip_special_tokens=True),
            tokens=[lm.tokenizer.decode([i]) for i in row_ids], token_ids=row_ids,
            token_logps=row_logps,
            finished=finished,
        ))
    return results


# Log-probs of given text

@dataclass
class TokenLogprobs:
    """Log-prob of every token of a text given the tokens before it."""

    tokens: list[str]
    token_ids: list[int]
    logps: list[float | None]  # None for the first token, which has no context to predict it


@torch.no_grad()
def token_logprobs(lm: LoadedModel, text: str) -> TokenLogprobs:
    """Return the per-token log-probs of `text` under the model."""
    ids = encode(lm, text)
    if not ids:
        raise ValueError("The text is empty; there is nothing to score.")
    logps = _logps(lm, [ids])[0]  # (T, V)
    scored = logps[:-1].gather(1, torch.tensor(ids[1:], device=logps.device)[:, None])[:, 0]
    return TokenLogprobs(
        tokens=[lm.tokenizer.decode([i]) for i in ids], token_ids=ids,
        logps=[None] + [float(v) for v in scored],
    )


@torch.no_grad()
def sequence_logprobs(
    lm: LoadedModel, prompts: list[str], completions: list[str], batch_size: int = 16
) -> list[float]:
    """Return log P(completion | prompt) for each pair, summed over the completion's tokens.

    The prompt and completion are tokenized separately and joined, so no token spans the
    boundary. An empty prompt scores the completion as a whole text from its first token on.
    """
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions; pass pairs.")
    totals: list[float] = []
    for start in range(0, len(prompts), batch_size):
        chunk = list(zip(prompts[start:start + batch_size], completions[start:start + batch_size]))
        seqs, spans = [], []
        for prompt, completion in chunk:
            p_ids = encode(lm, prompt) if prompt else []
            c_ids = lm.tokenizer(completion, add_special_tokens=not p_ids)["input_ids"]
            seqs.append(p_ids + c_ids)
            spans.append((max(len(p_ids), 1), len(p_ids) + len(c_ids)))
        logps = _logps(lm, seqs)  # (B, T, V)
        for row, (seq, (first, end)) in enumerate(zip(seqs, spans)):
            targets = torch.tensor(seq[first:end], device=logps.device)
            picked = logps[row, first - 1:end - 1].gather(1, targets[:, None])
            totals.append(float(picked.sum()))
    return totals


# Hidden states and the logit lens

def hidden_states(
    lm: LoadedModel, texts: list[str], batch_size: int = 16, chat: bool = False
) -> dict[str, torch.Tensor]:
    """Return pooled hidden states of every layer for each text, in fp32 on the CPU.

    Returns `{"last": (L+1, N, D), "mean": (L+1, N, D)}`: index 0 is the embedding output and
    index L the final layer (after the final norm, as transformers reports it). "last" is the
    state at the last prompt token. "mean" averages the real tokens but leaves out position
    0, because its activations are outsized in GPT-2-style models (a one-token text keeps it).
    On a CPU with enough batches, the batches run on `core.threads.cpu_streams`. A caller's
    CPU autocast setting carries over to those workers.
    """
    if not texts:
        raise ValueError("No texts given; pass at least one prompt.")
    inputs = [format_prompt(lm, t, chat=chat) for t in texts]
    seqs = [encode(lm, x, templated=x != t) for x, t in zip(inputs, texts)]
    # Batches of similar token counts pad little. On the shipped prompt set, batches sorted
    # by characters instead computed 42% more positions.
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    batches = [[seqs[i] for i in order[start:start + batch_size]]
               for start in range(0, len(order), batch_size)]
    streams = threads.cpu_streams() if lm.device.type == "cpu" else None
    # With fewer batches than two per worker, one batch at a time on every thread is faster.
    if streams is None or len(batches) < 2 * streams.size:
        pooled = [_pooled_batch(lm, batch) for batch in batches]
    else:
        autocast = (torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"))
        pooled = streams.map(lambda batch: _pooled_batch(lm, batch, autocast), batches)
    inverse = torch.argsort(torch.tensor(order))  # back to the caller's order
    return {"last": torch.cat([last for last, _ in pooled], 1)[:, inverse],
            "mean": torch.cat([mean for _, mean in pooled], 1)[:, inverse]}


@torch.no_grad()
def _pooled_batch(lm: LoadedModel, batch: list[list[int]],
                  autocast: tuple[bool, torch.dtype] | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the last-token and mean pooled states of every layer, each (L+1, B, D).

    `autocast` is a CPU autocast setting (enabled, dtype) to apply in this thread; None
    keeps the thread's own.
    """
    ids, mask = _pad_right(batch, lm.tokenizer.pad_token_id, lm.device)
    context = (torch.autocast("cpu", dtype=autocast[1], enabled=autocast[0]) if autocast
               else contextlib.nullcontext())
    with context:
        # The base model skips the LM head, which hidden states never need, and without a
        # KV cache it does not copy every layer's keys and values.
        out = lm.model.base_model(input_ids=ids, attention_mask=mask, output_hidden_states=True,
                                  use_cache=False)
    lengths = mask.sum(1)  # (B,)
    rows = torch.arange(len(batch), device=ids.device)
    keep = mask.float()
    keep[lengths > 1, 0] = 0.0  # leave out position 0 unless it is the only token
    weights = keep / keep.sum(1, keepdim=True)  # (B, T)
    # Pool layer by layer: stacking all layers first would copy (L+1, B, T, D) floats.
    last = torch.stack([h[rows, lengths - 1].float() for h in out.hidden_states])
    mean = torch.stack([torch.einsum("btd,bt->bd", h.float(), weights)
                        for h in out.hidden_states])
    return last.cpu(), mean.cpu()


@dataclass
class LogitLens:
    """The raw logit lens: each layer's hidden state read through the final norm and head."""

    tokens: list[str]  # the input tokens, one per position
    target: str  # the token whose probability the grid shows
    probs: list[list[float]]  # (L+1, T): P(target) read from layer l at position t
    top_tokens: list[list[str]]  # (L+1, T): the most likely token read from each cell


def _final_norm(model: torch.nn.Module):
    base = model.base_model
    for attr in ("ln_f", "norm", "final_layernorm"):
        if hasattr(base, attr):
            return getattr(base, attr)
    raise ValueError(f"Cannot find the final norm of {type(model).__name__} for the logit lens.")


@torch.no_grad()
def logit_lens(lm: LoadedModel, prompt: str, candidate: str, chat: bool = False) -> LogitLens:
    """Compute the raw logit lens (nostalgebraist 2020) for the first token of `candidate`.

    Intermediate layers are not trained to be read this way, so early rows are noisy. Tuned
    lenses correct for that; this is deliberately the raw one.
    """
    cand_ids = lm.tokenizer(candidate, add_special_tokens=False)["input_ids"]
    if not cand_ids:
        raise ValueError("The candidate is empty; type the answer to follow, such as ' four'.")
    model_input = format_prompt(lm, prompt, chat=chat)
    ids = encode(lm, model_input, templated=model_input != prompt)
    out = lm.model(input_ids=torch.tensor([ids], device=lm.device), output_hidden_states=True)
    norm, head = _final_norm(lm.model), lm.model.get_output_embeddings()
    layers = list(out.hidden_states)
    normed = [norm(h) for h in layers[:-1]] + [layers[-1]]  # the last one is already normed
    logps = F.log_softmax(head(torch.cat(normed)).float(), dim=-1)  # (L+1, T, V)
    target = cand_ids[0]
    top_ids = logps.argmax(-1)  # (L+1, T)
    return LogitLens(
        tokens=[lm.tokenizer.decode([i]) for i in ids],
        target=lm.tokenizer.decode([target]),
        probs=logps[:, :, target].exp().tolist(),
        top_tokens=[[lm.tokenizer.decode([int(i)]) for i in row] for row in top_ids],
    )
