"""What every trainer's `run_job` shares: load model and data, probe answers, save.

Public API:

- `load_start(config) -> (policy, tokenizer, loaded)`: a trainable fp32 copy of the starting
  model (`core.models.load_model(config.model)`), never the cached object.
- `load_rows(config, kind) -> Dataset`: `config.rows` (a table edited in the page) when set,
  else a bundled dataset name, else a file path.
- `answer_probabilities(model, tokenizer, prompts, answers) -> list[float]`: P(answer | prompt)
  for each pair, the answer's EOS left out, for the before/after table.
- `run_preference_job` and `run_sft_job`: the bodies of `dpo.run_job` and `sft.run_job`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core import data as data_lib
from core.batching import EncodedSFT, collate_sft, encode_pair, tokenize_preferences, tokenize_sft
from core.train.common import (
    TrainConfig,
    config_from_dict,
    init_distributed,
    prepare_policy,
    process_rank,
    save_trained,
    sequence_logps,
    to_device,
    validate_config,
)

MAX_PROBE_PROMPTS = 8  # prompts in the before/after table
MAX_REPORTED_ISSUES = 50  # dataset issues sent with the first event


def load_start(config: TrainConfig) -> tuple[nn.Module, Any, Any]:
    """Load the starting model and return a trainable fp32 copy, its tokenizer and the original."""
    from core.models import load_model

    device = config.device
    if device is None and process_rank()[1] > 1:
        from accelerate import PartialState

        device = str(PartialState().device)  # one device per process under accelerate launch
    loaded = load_model(config.model, device=device)
    policy = loaded.fresh_copy()
    for param in policy.parameters():  # fp32 weights; CUDA adds bf16 autocast on top
        if param.dtype != torch.float32:
            param.data = param.data.float()
    return policy, loaded.tokenizer, loaded


def load_rows(config: TrainConfig, kind: str) -> data_lib.Dataset:
    """Return the validated training rows named by the config."""
    if config.rows:
        records, issues = data_lib.read_records(config.rows)
        return data_lib.build_dataset(kind, records, issues, name="edited table")
    bundled = {b.name: b for b in data_lib.list_bundled()}
    if config.dataset in bundled:
        dataset = data_lib.load_bundled(config.dataset)
        if dataset.kind != kind:
            raise data_lib.DataError(f"Dataset {config.dataset!r} holds {dataset.kind} rows, "
                                     f"but this method needs {kind} rows.")
        return dataset
    if Path(config.dataset).is_file():
        loader = data_lib.load_sft if kind == "sft" else data_lib.load_preferences
        return loader(config.dataset)
    raise data_lib.DataError(f"Dataset {config.dataset!r} is neither a bundled dataset "
                             f"({', '.join(bundled)}) nor an existing file.")


@torch.no_grad()
def answer_probabilities(model: nn.Module, tokenizer, prompts: list, answers: list) -> list[float]:
    """Return P(answer | prompt) for each pair, with the answer's EOS left out (one batch)."""
    rows = []
    for prompt, answer in zip(prompts, answers):
        prompt_ids, answer_ids = encode_pair(tokenizer, prompt, answer)
        if answer_ids[-1:] == [tokenizer.eos_token_id]:
            answer_ids = answer_ids[:-1]
        rows.append(EncodedSFT(prompt_ids, answer_ids))
    was_training = model.training
    model.eval()
    try:
        batch = to_device(collate_sft(rows, tokenizer.pad_token_id), next(model.parameters()).device)
        return sequence_logps(model, batch).exp().tolist()
    finally:
        model.train(was_training)


def _probe_table(dataset: data_lib.Dataset) -> tuple[list, list, list]:
    """Return up to MAX_PROBE_PROMPTS (prompt, answer, other answer) triples, one per prompt."""
    prompts, answers, others = [], [], []
    for row in dataset.rows:
        if row.prompt in prompts:
            continue
        prompts.append(row.prompt)
        answers.append(row.completion if dataset.kind == "sft" else row.chosen)
        others.append(None if dataset.kind == "sft" else row.rejected)
        if len(prompts) == MAX_PROBE_PROMPTS:
            break
    return prompts, answers, others


def _label(prompt) -> str:
    return prompt if isinstance(prompt, str) else prompt[-1]["content"]


def _probe(model, tokenizer, dataset) -> dict[str, dict[str, float]]:
    prompts, answers, others = _probe_table(dataset)
    table = {"chosen": answer_probabilities(model, tokenizer, prompts, answers)}
    if dataset.kind == "preference":
        table["rejected"] = answer_probabilities(model, tokenizer, prompts, others)
    return {name: {_label(p): v for p, v in zip(prompts, values)}
            for name, values in table.items()}


def _start(config_dict: dict, ctx, config_cls: type, kind: str):
    """Shared opening of a job: config, data, model, the first event and the 'before' probe."""
    config = config_from_dict(config_cls, config_dict)
    validate_config(config)
    init_distributed()
    dataset = load_rows(config, kind)
    policy, tokenizer, loaded = load_start(config)
    tokenize = tokenize_sft if kind == "sft" else tokenize_preferences
    rows, issues = tokenize(dataset, tokenizer, config.max_length, config.max_prompt_length)
    all_issues = [str(i) for i in dataset.issues + issues]
    ctx.emit({"step": 0, "data/rows": len(rows), "data/issues": all_issues[:MAX_REPORTED_ISSUES],
              "data/issue_count": len(all_issues)})
    if not config.sample_prompts:
        config.sample_prompts = dataset.prompts()[:2]
    before = _probe(policy, tokenizer, dataset)
    policy = prepare_policy(policy, config)
    return config, dataset, policy, tokenizer, loaded, rows, before


def _finish(config, dataset, result, tokenizer, loaded, before, ctx, stage: str) -> dict:
    if result.stopped:
        return {"stopped": True}
    after = _probe(result.model, tokenizer, dataset)
    if process_rank()[0] != 0:
        return {}  # under accelerate launch only the first process saves
    weights = save_trained(result.model, tokenizer, ctx.output_dir)
    summary = {k: v for k, v in result.final.items() if k != "step" and isinstance(v, float)}
    summary["steps"] = len(result.history)
    summary["probs/before"] = before
    summary["probs/after"] = after
    family = getattr(loaded.spec, "family", None)
    summary["run"] = {"stage": stage, "weights": weights, "parent": config.model,
                      "method": stage, "family": family, "data_hash": dataset.content_hash(),
                      "recipe": {k: v for k, v in vars(config).items() if k != "rows"}}
    return summary


def run_preference_job(config_dict: dict, ctx, config_cls: type, train: Callable) -> dict:
    """Run a DPO-style job end to end; see `core.train.dpo.run_job`."""
    config, dataset, policy, tokenizer, loaded, pairs, before = _start(
        config_dict, ctx, config_cls, "preference")
    result = train(policy, tokenizer, pairs, config, emit=ctx.emit, should_stop=ctx.should_stop,
                   sample=ctx.sample)
    stage = "ipo" if getattr(config, "loss_type", "") == "ipo" else "dpo"
    return _finish(config, dataset, result, tokenizer, loaded, before, ctx, stage)


def run_sft_job(config_dict: dict, ctx, config_cls: type, train: Callable) -> dict:
    """Run an SFT job end to end; see `core.train.sft.run_job`."""
    config, dataset, policy, tokenizer, loaded, rows, before = _start(
        config_dict, ctx, config_cls, "sft")
    result = train(policy, tokenizer, rows, config, emit=ctx.emit, should_stop=ctx.should_stop,
                   sample=ctx.sample)
    return _finish(config, dataset, result, tokenizer, loaded, before, ctx, "sft")
