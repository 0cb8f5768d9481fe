"""Batched sampling and log-probability scoring for the bias probes.

Every function reads a loaded model (`.model`, `.tokenizer`, `.device`, as in
`core.models.LoadedModel`) and never changes it. Sampling batches many prompts at once and
seeds each (prompt, sample) row on its own, so a prompt's samples do not depend on which
other prompts share its batch.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from core.inference import sequence_logprobs

if TYPE_CHECKING:
    from core.models import LoadedModel


class BiasInputError(ValueError):
    """Invalid marker list, word list, setting or CrowS-Pairs file. The message names the fix."""


def _row_seed(seed: int, prompt: str, sample: int) -> int:
    # Stable across processes (unlike hash()), so a prompt's samples do not depend on the grid.
    return zlib.crc32(f"{seed}|{prompt}|{sample}".encode())


@torch.no_grad()
def _sample_batch(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    generators: list[torch.Generator],
    max_new_tokens: int,
    temperature: float,
    eos_id: int | None,
) -> torch.Tensor:
    """Sample continuations of equal-length prompts (B, T) and return the new token ids (B, N).

    Stops early once every row has produced `eos_id`. The caller cuts each row at its EOS.
    """
    cache, x, new_tokens = None, input_ids, []
    finished = torch.zeros(len(input_ids), dtype=torch.bool)
    for _ in range(max_new_tokens):
        # transformers 5.25 names the KV cache `cache` and warns that `past_key_values`
        # goes away in 5.40.
        out = model(input_ids=x, cache=cache, use_cache=True)
        cache = out.cache
        logits = out.logits[:, -1, :].float()  # (B, V)
        if temperature == 0:
            next_ids = logits.argmax(-1, keepdim=True).cpu()  # (B, 1)
        else:
            probs = torch.softmax(logits / temperature, dim=-1).cpu()  # (B, V)
            next_ids = torch.stack(
                [torch.multinomial(p, 1, generator=g) for p, g in zip(probs, generators)]
            )  # (B, 1)
        new_tokens.append(next_ids)
        if eos_id is not None:
            finished |= next_ids[:, 0] == eos_id
            if bool(finished.all()):
                break
        x = next_ids.to(input_ids.device)
    return torch.cat(new_tokens, dim=1)


def _decode_continuation(tokenizer, ids: list[int]) -> str:
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id in ids:
        ids = ids[: ids.index(tokenizer.eos_token_id)]
    return tokenizer.decode(ids, skip_special_tokens=True)


def sample_continuations(
    lm: LoadedModel,
    prompts: Sequence[str],
    n: int = 4,
    max_new_tokens: int = 20,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 32,
) -> list[list[str]]:
    """Sample `n` continuations of each prompt and return their text without the prompt.

    Each (prompt, sample) row has its own generator seeded from `seed`, the prompt and the
    sample index, so a prompt's samples are the same whatever other prompts are in the grid.
    Prompts are batched by token length, so no batch needs padding. `temperature` 0 is greedy.
    """
    if n < 1 or max_new_tokens < 1:
        raise BiasInputError(f"n={n} and max_new_tokens={max_new_tokens} must both be at least 1")
    if temperature < 0:
        raise BiasInputError(f"temperature={temperature} is invalid: use 0 (greedy) or more")
    tokenizer = lm.tokenizer
    prompt_ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    rows_by_length: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for i, ids in enumerate(prompt_ids):
        if not ids:
            raise BiasInputError(f"prompt {prompts[i]!r} has no tokens")
        rows_by_length[len(ids)].extend((i, j) for j in range(n))
    window = context_window(lm)
    longest = max((len(ids) for ids in prompt_ids), default=0)
    if window is not None and longest + max_new_tokens > window:
        raise BiasInputError(
            f"a prompt of {longest} tokens plus max_new_tokens={max_new_tokens} exceeds the "
            f"model's context window of {window} tokens: sample fewer tokens")

    texts = [[""] * n for _ in prompts]
    for _, rows in sorted(rows_by_length.items()):
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            input_ids = torch.tensor([prompt_ids[i] for i, _ in chunk], device=lm.device)
            generators = [
                torch.Generator().manual_seed(_row_seed(seed, prompts[i], j)) for i, j in chunk
            ]
            new_ids = _sample_batch(lm.model, input_ids, generators, max_new_tokens,
                                    temperature, tokenizer.eos_token_id)
            for (i, j), ids in zip(chunk, new_ids.tolist()):
                texts[i][j] = _decode_continuation(tokenizer, ids)
    return texts


def context_window(lm: LoadedModel) -> int | None:
    """Return the maximum sequence length the model accepts, or None when its config has none."""
    config = getattr(lm.model, "config", None)
    for attr in ("n_positions", "max_position_embeddings"):
        value = getattr(config, attr, None)
        if isinstance(value, int):
            return value
    return None


def _start_text(tokenizer) -> str:
    # A start-of-text token before a whole sentence lets its first word be scored too.
    return tokenizer.bos_token or tokenizer.eos_token or ""


def continuation_logprobs(
    lm: LoadedModel,
    contexts: Sequence[str],
    continuations: Sequence[str],
    batch_size: int = 16,
) -> np.ndarray:
    """Score log P(continuation | context), summed over the continuation's tokens (N,), nats.

    An empty context becomes the tokenizer's BOS token (EOS if it has none), so the first
    token of a whole sentence is scored as well. The sums come from
    `core.inference.sequence_logprobs` (fp32 log-softmax, right-padded batches).
    NOTE: a tokenizer with neither BOS nor EOS cannot score a sentence's first token.
    """
    start = _start_text(lm.tokenizer)
    contexts = [context or start for context in contexts]
    return np.array(sequence_logprobs(lm, contexts, list(continuations), batch_size))


@torch.no_grad()
def shared_context_logprobs(
    lm: LoadedModel, context: str, continuations: Sequence[str]
) -> np.ndarray:
    """Score log P(continuation | context) for many continuations of one context (N,), nats.

    Gives the same sums as `continuation_logprobs` (tests check this), but runs the context
    once and reuses its KV cache for every continuation, so a long context costs one pass.
    The context is tokenized with the tokenizer's special tokens, as
    `core.inference.sequence_logprobs` does. Models that return no cache take the plain path.
    """
    tokenizer = lm.tokenizer
    context_ids = tokenizer(context)["input_ids"] if context else []
    context_ids = context_ids or tokenizer(_start_text(tokenizer))["input_ids"]
    cont_ids = [tokenizer(c, add_special_tokens=False)["input_ids"] for c in continuations]
    if not context_ids or min(len(ids) for ids in cont_ids) == 0:
        return continuation_logprobs(lm, [context] * len(cont_ids), continuations)
    out = lm.model(input_ids=torch.tensor([context_ids], device=lm.device), use_cache=True)
    if getattr(out, "cache", None) is None:
        return continuation_logprobs(lm, [context] * len(cont_ids), continuations)
    first_logps = torch.log_softmax(out.logits[0, -1].float(), dim=-1).cpu()  # (V,)
    totals = np.array([float(first_logps[ids[0]]) for ids in cont_ids])
    width = max(len(ids) for ids in cont_ids) - 1  # tokens after each continuation's first
    if width == 0:
        return totals

    # Feed every continuation but its last token, right-padded, after the shared context.
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = torch.full((len(cont_ids), width), pad_id, dtype=torch.long)  # (W, L-1)
    attention_mask = torch.zeros(len(cont_ids), len(context_ids) + width, dtype=torch.long)
    attention_mask[:, : len(context_ids)] = 1
    for row, ids in enumerate(cont_ids):
        input_ids[row, : len(ids) - 1] = torch.tensor(ids[:-1])
        attention_mask[row, len(context_ids) : len(context_ids) + len(ids) - 1] = 1
    cache = out.cache
    cache.batch_repeat_interleave(len(cont_ids))
    logits = lm.model(input_ids=input_ids.to(lm.device), cache=cache,
                      attention_mask=attention_mask.to(lm.device), use_cache=True).logits
    logps = torch.log_softmax(logits.float(), dim=-1).cpu()  # (W, L-1, V)
    for row, ids in enumerate(cont_ids):
        for t, token in enumerate(ids[1:]):
            totals[row] += float(logps[row, t, token])
    return totals


def count_tokens(tokenizer, texts: Sequence[str]) -> list[int]:
    """Count the tokens of each text, leaving out special tokens."""
    return [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
