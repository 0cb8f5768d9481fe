"""Tokenization and padding of SFT rows and preference pairs for training.

Public API:

- `encode_pair(tokenizer, prompt, completion) -> (prompt_ids, completion_ids)`: the prompt and
  the completion are tokenized separately and concatenated, so no token merges across the
  boundary. The prompt gets exactly one BOS when the tokenizer adds one, chat messages go
  through the model's chat template, and every completion ends with EOS.
- `tokenize_sft(dataset, tokenizer, max_length, max_prompt_length) -> (rows, issues)` and
  `tokenize_preferences(...)`: encode and truncate a whole `core.data.Dataset`, reporting each
  row that was cut or dropped.
- `collate_sft(rows, pad_token_id) -> dict` and `collate_preferences(rows, pad_token_id)`:
  right-padded tensors. `completion_mask` (not `input_ids != pad`) marks the loss targets, so
  the final EOS keeps its label when the pad token is EOS.
- `completion_boundary(tokenizer, prompt, completion) -> list[TokenView]`: each token with
  the part it belongs to and whether it counts in the loss, for the page.

Truncation: a prompt longer than `max_prompt_length` keeps its end (the part next to the
answer) and its BOS; a completion that does not fit in `max_length` keeps its start and loses
its EOS; a row left with no completion token is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core.data import Dataset, Issue, PreferenceRow, SFTRow, Text

IGNORE_INDEX = -100  # label value that cross-entropy skips


@dataclass(frozen=True)
class EncodedSFT:
    """One SFT row as token ids; the loss is taken on `completion_ids`."""

    prompt_ids: list[int]
    completion_ids: list[int]
    line: int = 0


@dataclass(frozen=True)
class EncodedPair:
    """One preference pair as token ids; chosen and rejected share `prompt_ids`."""

    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    line: int = 0


@dataclass(frozen=True)
class TokenView:
    """One token of a training sequence, as the page shows it."""

    text: str  # the token decoded on its own
    token_id: int
    part: str  # "prompt" or "completion"
    in_loss: bool  # True when the model is trained to predict this token


# Encoding

def uses_bos(tokenizer) -> bool:
    """Return True when the tokenizer puts a BOS token in front of plain text."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return len(ids) > 0 and ids[0] == bos


def _content(text: Text) -> str:
    return text if isinstance(text, str) else "\n".join(m["content"] for m in text)


def _plain_chat(messages: list[dict]) -> str:
    """Render messages as plain "Role: text" lines for tokenizers without a chat template."""
    lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n".join(lines) + "\nAssistant:"


def render(tokenizer, prompt: Text, completion: Text) -> tuple[str, str]:
    """Return the prompt and completion as the strings the model reads.

    Plain text passes through. Chat messages use the tokenizer's chat template (the prompt
    with the generation prompt appended; the completion is what the template adds after it),
    or "User: ..." lines when the tokenizer has none.
    """
    if isinstance(prompt, str):
        return prompt, _content(completion)
    reply = [{"role": "assistant", "content": _content(completion)}]
    if not getattr(tokenizer, "chat_template", None):
        return _plain_chat(prompt), " " + reply[0]["content"]
    prompt_text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    full_text = tokenizer.apply_chat_template(prompt + reply, tokenize=False)
    if full_text.startswith(prompt_text):
        return prompt_text, full_text[len(prompt_text):]
    # NOTE: a template that renders the prompt differently once a reply follows (some strip
    # earlier reasoning) falls back to the bare reply after the generation prompt.
    return prompt_text, reply[0]["content"]


def encode_prompt(tokenizer, text: str) -> list[int]:
    """Tokenize prompt text with exactly one BOS when the tokenizer uses one, else none."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    bos = tokenizer.bos_token_id
    if uses_bos(tokenizer):
        while ids and ids[0] == bos:  # a template that already wrote BOS
            ids = ids[1:]
        ids = [bos] + ids
    return ids


def encode_completion(tokenizer, text: str) -> list[int]:
    """Tokenize completion text without special tokens and end it with exactly one EOS.

    Text after the first EOS (a chat template's trailing newline) is dropped.
    """
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("The tokenizer has no EOS token, so completions cannot end; set "
                         "tokenizer.eos_token before training.")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if eos in ids:
        return ids[: ids.index(eos) + 1]
    return ids + [eos]


def move_trailing_space(prompt: str, completion: str) -> tuple[str, str, bool]:
    """Move spaces at the end of a plain-text prompt to the start of the completion.

    BPE tokenizers read " four" as one word token; a prompt ending in a space would train the
    answer as " " followed by "four", a pair the model never reads at inference.
    """
    stripped = prompt.rstrip(" ")
    if stripped == prompt or not stripped or completion[:1].isspace():
        return prompt, completion, False
    return stripped, prompt[len(stripped):] + completion, True


def encode_pair(tokenizer, prompt: Text, completion: Text) -> tuple[list[int], list[int]]:
    """Return (prompt_ids, completion_ids) for one row, as described in the module docstring."""
    prompt_text, completion_text = render(tokenizer, prompt, completion)
    if isinstance(prompt, str):
        prompt_text, completion_text, _ = move_trailing_space(prompt_text, completion_text)
    return encode_prompt(tokenizer, prompt_text), encode_completion(tokenizer, completion_text)


# Truncation

def _cut_prompt(ids: list[int], limit: int | None, bos: int | None) -> list[int]:
    if limit is None or len(ids) <= limit:
        return ids
    if bos is not None and ids[:1] == [bos]:
        return [bos] + ids[len(ids) - limit + 1:]
    return ids[len(ids) - limit:]


def _fit(row_line: int, prompt_ids: list[int], completions: dict[str, list[int]],
         max_length: int, max_prompt_length: int | None, bos: int | None,
         issues: list[Issue]) -> tuple[list[int], dict[str, list[int]]] | None:
    """Truncate one row by the rules in the module docstring; return None to drop it."""
    cut_prompt = _cut_prompt(prompt_ids, max_prompt_length, bos)
    if len(cut_prompt) < len(prompt_ids):
        issues.append(Issue(row_line, "prompt", f"has {len(prompt_ids)} tokens, more than the "
                            f"prompt limit {max_prompt_length}; its start was cut", "cut"))
    room = max_length - len(cut_prompt)
    fitted = {}
    for name, ids in completions.items():
        if room <= 0:
            issues.append(Issue(row_line, name, f"has no room: the prompt fills all "
                                f"{max_length} tokens", "dropped"))
            return None
        if len(ids) > room:
            issues.append(Issue(row_line, name, f"prompt plus {name} has "
                                f"{len(cut_prompt) + len(ids)} tokens, more than the maximum "
                                f"length {max_length}; the {name} was cut to {room} tokens and "
                                "lost its EOS", "cut"))
        fitted[name] = ids[:room]
    return cut_prompt, fitted


def tokenize_sft(dataset: Dataset, tokenizer, max_length: int,
                 max_prompt_length: int | None = None) -> tuple[list[EncodedSFT], list[Issue]]:
    """Encode and truncate every SFT row; return the rows kept and the issues found."""
    rows, issues = [], []
    bos = tokenizer.bos_token_id if uses_bos(tokenizer) else None
    for row in dataset.rows:
        assert isinstance(row, SFTRow)
        _note_space(row, issues)
        prompt_ids, completion_ids = encode_pair(tokenizer, row.prompt, row.completion)
        fitted = _fit(row.line, prompt_ids, {"completion": completion_ids}, max_length,
                      max_prompt_length, bos, issues)
        if fitted is not None:
            rows.append(EncodedSFT(fitted[0], fitted[1]["completion"], row.line))
    return rows, issues


def tokenize_preferences(dataset: Dataset, tokenizer, max_length: int,
                         max_prompt_length: int | None = None,
                         ) -> tuple[list[EncodedPair], list[Issue]]:
    """Encode and truncate every preference pair; return the pairs kept and the issues found.

    A pair whose chosen and rejected ids become equal after truncation is dropped: it has no
    preference signal left.
    """
    rows, issues = [], []
    bos = tokenizer.bos_token_id if uses_bos(tokenizer) else None
    for row in dataset.rows:
        assert isinstance(row, PreferenceRow)
        _note_space(row, issues)
        prompt_ids, chosen_ids = encode_pair(tokenizer, row.prompt, row.chosen)
        _, rejected_ids = encode_pair(tokenizer, row.prompt, row.rejected)
        fitted = _fit(row.line, prompt_ids, {"chosen": chosen_ids, "rejected": rejected_ids},
                      max_length, max_prompt_length, bos, issues)
        if fitted is None:
            continue
        prompt_ids, parts = fitted
        if parts["chosen"] == parts["rejected"]:
            issues.append(Issue(row.line, "rejected", "equals 'chosen' after truncation",
                                "dropped"))
            continue
        rows.append(EncodedPair(prompt_ids, parts["chosen"], parts["rejected"], row.line))
    return rows, issues


def _note_space(row: SFTRow | PreferenceRow, issues: list[Issue]) -> None:
    if isinstance(row.prompt, str) and row.prompt.endswith(" ") and row.prompt.strip():
        answer = row.completion if isinstance(row, SFTRow) else row.chosen
        if not _content(answer)[:1].isspace():
            issues.append(Issue(row.line, "prompt", "ends in a space; the space was moved to "
                                "the start of the answer so it tokenizes as the model reads it",
                                "changed"))


# Padding

def _pad(sequences: list[list[int]], value: int) -> torch.Tensor:
    width = max(len(s) for s in sequences)
    return torch.tensor([s + [value] * (width - len(s)) for s in sequences], dtype=torch.long)


def collate_sft(rows: list[EncodedSFT], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad SFT rows into tensors.

    Returns `input_ids`, `attention_mask`, `completion_mask` (1 on completion tokens, EOS
    included) and `labels` (input ids with everything but completion tokens set to -100),
    each of shape (B, T).
    """
    ids = [r.prompt_ids + r.completion_ids for r in rows]
    masks = [[0] * len(r.prompt_ids) + [1] * len(r.completion_ids) for r in rows]
    input_ids = _pad(ids, pad_token_id)  # (B, T)
    completion_mask = _pad(masks, 0)  # (B, T)
    attention_mask = _pad([[1] * len(s) for s in ids], 0)  # (B, T)
    labels = input_ids.masked_fill(completion_mask == 0, IGNORE_INDEX)
    return {"input_ids": input_ids, "attention_mask": attention_mask,
            "completion_mask": completion_mask, "labels": labels}


def collate_preferences(rows: list[EncodedPair], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad B pairs into one batch of 2B sequences: all chosen first, then all rejected.

    Returns `input_ids`, `attention_mask` and `completion_mask`, each of shape (2B, T).
    """
    chosen = [EncodedSFT(r.prompt_ids, r.chosen_ids, r.line) for r in rows]
    rejected = [EncodedSFT(r.prompt_ids, r.rejected_ids, r.line) for r in rows]
    batch = collate_sft(chosen + rejected, pad_token_id)
    del batch["labels"]
    return batch


# Display

def completion_boundary(tokenizer, prompt: Text, completion: Text) -> list[TokenView]:
    """Return every token of one training sequence with its part and whether it is a target."""
    prompt_ids, completion_ids = encode_pair(tokenizer, prompt, completion)
    views = [TokenView(tokenizer.decode([i]), i, "prompt", False) for i in prompt_ids]
    views += [TokenView(tokenizer.decode([i]), i, "completion", True) for i in completion_ids]
    return views
