"""Size presets for the tiny GPT: the transformers GPT-2 architecture built from a config.

Presets (parameter counts with the shipped tokenizer's 1,719 tokens; embeddings are tied):

    micro  1 layer,   64 wide,  64-token context, 0.16M: for tests, seconds of training
    cpu    2 layers, 128 wide, 128-token context, 0.63M: the shipped base model
    gpu    6 layers, 384 wide, 256-token context, 11.4M: for a GPU

NOTE: "about a minute" for the cpu preset's default 300 steps of 32 x 128 tokens is an
estimate: the shipped build reported about 16,500 tokens/s over its last steps on a shared
2-core CPU in a quiet moment, which gives about 75 s. bench/pretrain_bench.py measures it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class SizePreset:
    """The shape of a tiny GPT; names follow GPT-2's config."""

    n_layer: int  # transformer blocks
    n_head: int  # attention heads per block; n_embd must divide by it
    n_embd: int  # width of the residual stream
    block_size: int  # context length in tokens (GPT-2's n_positions)
    description: str


PRESETS = {
    "micro": SizePreset(1, 2, 64, 64, "tests: trains in seconds"),
    "cpu": SizePreset(2, 4, 128, 128, "about a minute on two CPU cores (estimate)"),
    "gpu": SizePreset(6, 6, 384, 256, "for a GPU; minutes on a CPU"),
}


def get_preset(name: str) -> SizePreset:
    if name not in PRESETS:
        raise ValueError(f"unknown size preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def build_config(preset: str, tokenizer: PreTrainedTokenizerBase) -> GPT2Config:
    """Return a GPT-2 config for `preset` sized to `tokenizer` (vocabulary and special ids)."""
    size = get_preset(preset)
    return GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=size.block_size,
        n_embd=size.n_embd,
        n_layer=size.n_layer,
        n_head=size.n_head,
        resid_pdrop=0.0,  # no dropout: the models are small and see each token a few times
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )


def build_model(preset: str, tokenizer: PreTrainedTokenizerBase) -> GPT2LMHeadModel:
    """Build a freshly initialised tiny GPT (call `torch.manual_seed` first to fix it)."""
    return GPT2LMHeadModel(build_config(preset, tokenizer))


def preset_summary(name: str) -> dict:
    return {"preset": name, **asdict(get_preset(name))}


def count_parameters(model: GPT2LMHeadModel) -> int:
    """Count unique parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())
