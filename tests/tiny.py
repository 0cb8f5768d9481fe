"""Tiny models and tokenizers built inside the tests, so no test downloads anything."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from core import checkpoints

TRAINING_TEXT = (
    "Two plus two equals four. Two plus two equals five, said the party. "
    "The cat sat on the mat. What is two plus two? It is four. A blind woman reads a book. "
    "A Muslim man walks home. A Christian woman sings. A deaf person smiles. "
    "Hello, how can I help you today? Thank you very much. The answer is four. "
) * 4
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_tokenizer(vocab_size: int = 300, chat: bool = True) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on a few sentences; EOS is <|endoftext|>."""
    specials = ["<|endoftext|>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([TRAINING_TEXT], trainer=trainer)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>",
                                      pad_token="<|endoftext|>")
    if chat:
        wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def build_model(tokenizer, seed: int = 0, n_layer: int = 2, n_embd: int = 32) -> GPT2LMHeadModel:
    """Build a randomly initialised GPT-2 whose vocabulary matches `tokenizer`."""
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=128, n_layer=n_layer, n_head=2, n_embd=n_embd,
        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    return GPT2LMHeadModel(config).eval()


def save_tiny_family(root: Path, family: str = "tiny-test") -> list[str]:
    """Save a base, SFT and DPO checkpoint of one tiny family under `root`; return the ids."""
    tokenizer = build_tokenizer()
    names = []
    parent = None
    for seed, stage in enumerate(("base", "sft", "dpo")):
        name = f"{family}-{stage}"
        meta = {"name": f"{family} {stage}", "family": family, "stage": stage, "parent": parent,
                "recipe": {"seed": seed}}
        checkpoints.save_checkpoint(build_model(tokenizer, seed=seed), tokenizer, meta, root / name)
        names.append(name)
        parent = name
    return names
