"""A word-level bigram language model whose log-probs can be worked out by hand."""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

BOS = "<s>"
VOCAB = [BOS, "The", "person", "deaf", "kind", "rude", "good", "hearted", "women", "men",
         "are", "bad", "here"]


def word_tokenizer() -> PreTrainedTokenizerFast:
    """One token per whitespace-separated word of VOCAB; BOS, EOS and pad are all <s>."""
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token=BOS))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=BOS,
                                   pad_token=BOS)


class BigramLM(torch.nn.Module):
    """Logits at each position are `table[previous token]`, whatever came before it."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = table  # (V, V): row = previous token, column = next token

    def forward(self, input_ids, attention_mask=None, cache=None, use_cache=None):
        return SimpleNamespace(logits=self.table[input_ids], cache=None)  # (B, T, V)


def bigram_lm(boosts: dict[tuple[str, str], float]) -> SimpleNamespace:
    """A loaded-model stand-in: every logit is 0 except `boosts[(previous, next)]`."""
    table = torch.zeros(len(VOCAB), len(VOCAB))
    for (prev, nxt), logit in boosts.items():
        table[VOCAB.index(prev), VOCAB.index(nxt)] = logit
    return SimpleNamespace(model=BigramLM(table), tokenizer=word_tokenizer(),
                           device=torch.device("cpu"))


def bigram_logp(boosts: dict[tuple[str, str], float], prev: str, nxt: str) -> float:
    """log P(nxt | prev) under `bigram_lm(boosts)`, written out: boost - log(sum of exp)."""
    row = [boosts.get((prev, w), 0.0) for w in VOCAB]
    return boosts.get((prev, nxt), 0.0) - math.log(sum(math.exp(x) for x in row))
