"""Log-probs of token sequences under a causal LM, in fp32, for the trainers.

Public API (also importable from `core.train.common`):

- `token_logps(model, input_ids, attention_mask) -> (B, T-1)`: every position, through the
  model's own forward pass (logits (B, T, V)).
- `completion_token_logps(model, input_ids, attention_mask, completion_mask) -> (B, T-1)`:
  the same numbers at completion positions and 0 elsewhere, with the LM head run only at
  those positions when `plain_head(model)` finds one.
- `sequence_logps(model, batch) -> (B,)`: summed log-prob of each completion.
- `autocast(device)`: bf16 autocast on CUDA, nothing elsewhere.

Position ids come from the attention mask, so left and right padding give the same numbers.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

# Model types whose causal-LM forward returns exactly lm_head(last_hidden_state), read in the
# transformers 5.25 source. Others (Gemma 2's soft-capping, Cohere's and Granite's scaling,
# and any type not read) take the full path.
PLAIN_HEAD_MODEL_TYPES = frozenset({"gpt2", "llama", "mistral", "qwen2", "qwen3", "gpt_neox",
                                    "phi3", "olmo2", "smollm3"})
# Config attributes that scale or soft-cap logits after the head. When one is set (not 0 or
# None), the full path is taken even for a listed model type.
LOGIT_TRANSFORM_KEYS = ("final_logit_softcapping", "logit_scale", "logits_scaling")


def autocast(device: torch.device | str):
    """Return bf16 autocast on CUDA and a no-op context elsewhere (fp32 on CPU)."""
    # NOTE: the CUDA branch has not run in this project's tests, which have no GPU.
    device = torch.device(device)
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, T)


def token_logps(model: nn.Module, input_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> torch.Tensor:
    """Return log p(x_t | x_<t) for t = 1..T-1, shape (B, T-1), in fp32.

    Position ids come from the attention mask, so a left-padded row gets the same positions
    as the same row unpadded (GPT-2 adds absolute position embeddings).
    """
    position_ids = _position_ids(attention_mask)  # (B, T)
    device = input_ids.device
    with autocast(device):
        logits = model(input_ids=input_ids, attention_mask=attention_mask,
                       position_ids=position_ids, use_cache=False).logits  # (B, T, V)
    logits = logits[:, :-1].float()  # (B, T-1, V): position t predicts token t+1
    targets = input_ids[:, 1:].unsqueeze(-1)  # (B, T-1, 1)
    picked = logits.gather(-1, targets).squeeze(-1)  # (B, T-1)
    return picked - torch.logsumexp(logits, dim=-1)  # log-softmax in fp32


def plain_head(model: nn.Module) -> tuple[nn.Module, nn.Module] | None:
    """Return (decoder, LM head) when logits are exactly head(decoder output), else None.

    `model` is a transformers causal LM, or a peft model with a LoRA adapter around one. The
    LoRA layers sit inside the decoder, so the adapter and `disable_adapter()` still apply.
    The decoder's last hidden state is taken after the final norm (GPT-2's ln_f, Llama's norm).
    NOTE: this path skips the top-level `forward`, so hooks or wrappers placed there (such as
    `accelerate.prepare`'s autocast) do not run. A DDP wrapper has no config and gets None.
    """
    peft_config = getattr(model, "active_peft_config", None)
    if getattr(peft_config, "is_prompt_learning", False):
        return None  # virtual tokens are added by the peft wrapper, which this path skips
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(inner, "config", None)
    if getattr(config, "model_type", None) not in PLAIN_HEAD_MODEL_TYPES:
        return None
    if any(getattr(config, key, None) for key in LOGIT_TRANSFORM_KEYS):
        return None
    name = type(inner).__name__
    if not name.endswith(("ForCausalLM", "LMHeadModel")):
        return None
    decoder, head = inner.base_model, inner.get_output_embeddings()
    if decoder is inner or head is None:
        return None
    return decoder, head


def completion_token_logps(model: nn.Module, input_ids: torch.Tensor,
                           attention_mask: torch.Tensor,
                           completion_mask: torch.Tensor) -> torch.Tensor:
    """Compute log p(x_t | x_<t) in fp32 where `completion_mask[:, 1:]` is 1, shape (B, T-1).

    Other positions read 0. The values equal `token_logps` at those positions, but the LM
    head and the fp32 log-softmax run only on the N completion positions, (N, V) instead of
    (B, T, V). Models without a plain head (see `plain_head`) take the full path. Measured
    with bench/head_only_logps.py on a shared 2-core CPU, one forward and backward pass took
    34% less CPU time on tiny-gpt-base and 14% less on SmolLM2-135M with LoRA.
    """
    mask = completion_mask[:, 1:].bool()  # (B, T-1): position t predicts token t+1
    parts = plain_head(model)
    if parts is None:
        return token_logps(model, input_ids, attention_mask).masked_fill(~mask, 0.0)
    decoder, head = parts
    with autocast(input_ids.device):
        hidden = decoder(input_ids=input_ids, attention_mask=attention_mask,
                         position_ids=_position_ids(attention_mask),
                         use_cache=False).last_hidden_state  # (B, T, H)
        logits = head(hidden[:, :-1][mask]).float()  # (N, V)
    targets = input_ids[:, 1:][mask]  # (N,)
    picked = logits.gather(-1, targets[:, None]).squeeze(-1)  # (N,)
    picked = picked - torch.logsumexp(logits, dim=-1)  # log-softmax in fp32
    return picked.new_zeros(mask.shape).masked_scatter(mask, picked)  # (B, T-1)


def sequence_logps(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Return the summed log-prob of each sequence's completion tokens, shape (B,).

    `batch` contains `input_ids`, `attention_mask` and `completion_mask`, each (B, T). A row
    with no completion token gets 0, never NaN.
    """
    per_token = completion_token_logps(model, batch["input_ids"], batch["attention_mask"],
                                       batch["completion_mask"])  # (B, T-1)
    return per_token.sum(-1)
