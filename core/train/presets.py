"""Named training settings for the Align page and the CLI.

Public API:

- `PRESETS: dict[str, Preset]`, `presets_for(method, family=None) -> list[Preset]`.
- `preset_config(name, **overrides) -> dict`: a job config for `core.train.<method>.run_job`.

Each preset's `why` tells in plain words what the run shows. The arithmetic-truth DPO presets
come in pairs, with and without the NLL term, because the pair shows likelihood
displacement: plain DPO widens the margin between " four" and " five" while the
probability of " four" itself can fall.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SMOLLM2 = "smollm2-135m-instruct"
TINY_GPT = "tiny-gpt-base"

_NLL_WHY = (
    "DPO only asks that ' four' gain on ' five' relative to the starting model; both may lose "
    "probability at once (likelihood displacement), and with this small LoRA run on SmolLM2 "
    "P(' four') first drops. The NLL term (weight 1) also rewards the chosen answer itself, "
    "so P(' four') rises.")


@dataclass(frozen=True)
class Preset:
    """A named set of training settings."""

    name: str
    method: str  # "sft" or "dpo": the job kind
    family: str  # model family it was tuned for: "smollm2" or "tiny-gpt"
    label: str  # short title for a picker
    why: str  # what the run shows, in plain words
    config: dict[str, Any] = field(default_factory=dict)  # settings for the method's config


def _dpo_arithmetic(family: str, model: str, nll: bool, **settings) -> Preset:
    suffix = "" if nll else "-plain"
    why = _NLL_WHY if nll else (
        "Plain DPO on the same pairs, to compare with the NLL version: watch logps/chosen "
        "and P(' four') fall while the reward margin grows.")
    config = {"model": model, "dataset": "arithmetic-truth", "beta": 0.1,
              "nll_weight": 1.0 if nll else 0.0, "batch_size": 8, "max_length": 32,
              "max_prompt_length": 24, "sample_every": 4, "sample_max_new_tokens": 4,
              **settings}
    label = "Arithmetic truth, DPO + NLL" if nll else "Arithmetic truth, plain DPO"
    return Preset(f"{family}-dpo-arithmetic{suffix}", "dpo", family, label, why, config)


_ALL = [
    # Measured with bench/align_presets.py on a shared 2-core CPU (2026-12-04): the SmolLM2
    # preset took P(" four") from 0.127 to 0.965 in 23.6 s of CPU time for the whole job
    # (load, reference pass, 10 steps, save); the plain one drove it to 0.0001. The tiny GPT
    # preset took it from 0.287 to 0.996 in 13.9 s wall, most of it imports and loading.
    _dpo_arithmetic("smollm2", SMOLLM2, True, lora_rank=8, lora_alpha=16, learning_rate=3e-3,
                    steps=10),
    _dpo_arithmetic("smollm2", SMOLLM2, False, lora_rank=8, lora_alpha=16, learning_rate=3e-3,
                    steps=10),
    _dpo_arithmetic("tiny-gpt", TINY_GPT, True, lora_rank=0, learning_rate=2e-3, steps=30),
    _dpo_arithmetic("tiny-gpt", TINY_GPT, False, lora_rank=0, learning_rate=2e-3, steps=30),
    Preset("smollm2-sft-customer-assistant", "sft", "smollm2",
           "Customer assistant persona, SFT",
           "Supervised fine-tuning on 24 bookshop conversations: the model takes on the "
           "shop's tone and facts. Only the assistant replies count in the loss.",
           {"model": SMOLLM2, "dataset": "customer-assistant", "lora_rank": 8,
            "learning_rate": 1e-3, "steps": 20, "batch_size": 8, "max_length": 192,
            "max_prompt_length": 128, "sample_every": 5, "sample_max_new_tokens": 24}),
    Preset("tiny-gpt-sft-chat", "sft", "tiny-gpt", "Chat turns for the tiny GPT, SFT",
           "Supervised fine-tuning of the tiny GPT on 16 short exchanges, so it learns to "
           "answer in chat turns.",
           {"model": TINY_GPT, "dataset": "tiny-chat", "lora_rank": 0, "learning_rate": 2e-3,
            "steps": 60, "batch_size": 8, "max_length": 64, "max_prompt_length": 40,
            "sample_every": 10, "sample_max_new_tokens": 12}),
    Preset("smollm2-dpo-sycophancy", "dpo", "smollm2", "Less flattery, DPO + NLL",
           "Prefers a plain correction over flattery that agrees with a false belief.",
           {"model": SMOLLM2, "dataset": "sycophancy", "lora_rank": 8, "learning_rate": 1e-3,
            "beta": 0.1, "nll_weight": 0.5, "steps": 15, "batch_size": 6, "max_length": 96,
            "max_prompt_length": 48, "sample_every": 5, "sample_max_new_tokens": 20}),
    Preset("smollm2-dpo-hedging", "dpo", "smollm2", "Direct answers, DPO + NLL",
           "Prefers a direct answer over one buried in hedges.",
           {"model": SMOLLM2, "dataset": "hedging", "lora_rank": 8, "learning_rate": 1e-3,
            "beta": 0.1, "nll_weight": 0.5, "steps": 15, "batch_size": 6, "max_length": 64,
            "max_prompt_length": 32, "sample_every": 5, "sample_max_new_tokens": 16}),
]
PRESETS: dict[str, Preset] = {p.name: p for p in _ALL}


def presets_for(method: str, family: str | None = None) -> list[Preset]:
    """Return the presets of one method ("sft" or "dpo"), optionally of one model family."""
    return [p for p in _ALL if p.method == method and (family is None or p.family == family)]


def preset_config(name: str, **overrides: Any) -> dict[str, Any]:
    """Return a copy of a preset's job config with `overrides` applied."""
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; choose one of: {', '.join(PRESETS)}.")
    return {**PRESETS[name].config, **overrides}
