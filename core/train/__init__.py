"""Trainers that fine-tune a copy of a model: SFT, DPO (and IPO), reward model, RL.

Modules:

- `common`: configs (`TrainConfig`, `SFTConfig`, `DPOConfig`), settings checks, LoRA or full
  fine-tuning, the frozen `Reference`, fp32 log-probs, the NaN guard, optimizer helpers.
- `logps`: fp32 log-probs; the LM head runs only at completion positions where the model
  allows it.
- `sft`: `train_sft`, `run_job`. Completion-only loss over the whole accumulated batch.
- `dpo`: `dpo_loss`, `train_dpo`, `run_job`. Sigmoid, IPO, label smoothing, NLL term.
- `reward`, `rl`: the reward model and RL trainers, built on `common`.
- `jobs_support`: model and data loading, before/after probabilities and saving for `run_job`.
- `presets`: named settings such as the arithmetic-truth DPO preset.
- `explain`: plain-words descriptions of each method for the Align page.

Every trainer emits metric events (dicts with `step` and slash-namespaced keys) through a
callback and never prints. `run_job(config: dict, ctx) -> dict` follows the job contract in
docs/architecture.md.
"""
