"""`python -m core.cli train sft|dpo|reward|rl`: the Align page's training, headless.

Examples:

    python -m core.cli train dpo --preset smollm2-dpo-arithmetic
    python -m core.cli train dpo --model tiny-gpt-base --dataset arithmetic-truth --nll-weight 1
    python -m core.cli train sft --dataset my_rows.jsonl --lora-rank 8 --steps 40 --json
    python -m core.cli train dpo --preset tiny-gpt-dpo-arithmetic --out assets/models/tiny-gpt-dpo

Without `--out` the run lands in the run store, like a run started in the browser. With
`--out` the checkpoint (weights, tokenizer and run.json) is written to that folder instead. Any
config field without its own flag can be set with `--set KEY=VALUE`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from core.cli import progress_printers

METHODS = ("sft", "dpo", "reward", "rl")
CONFIG_CLASSES = {"sft": "core.train.common:SFTConfig", "dpo": "core.train.common:DPOConfig",
                  "reward": "core.train.reward:RewardConfig", "rl": "core.train.rl:RLConfig"}
# flag name -> config field, for the settings the Align page shows as sliders
FLAGS = {
    "model": (str, "starting model name or folder"),
    "dataset": (str, "bundled dataset name or a JSONL, JSON or CSV file"),
    "steps": (int, "optimizer steps"),
    "learning_rate": (float, "peak learning rate"),
    "batch_size": (int, "rows (pairs for DPO) per optimizer step"),
    "grad_accum": (int, "micro-batches per step"),
    "max_length": (int, "maximum tokens of prompt plus answer"),
    "max_prompt_length": (int, "maximum prompt tokens"),
    "lora_rank": (int, "LoRA rank; 0 means full fine-tuning"),
    "seed": (int, "random seed"),
    "device": (str, "cuda, mps or cpu (default: automatic)"),
}
DPO_FLAGS = {
    "beta": (float, "strength of the pull towards the starting model, above 0"),
    "loss_type": (str, "sigmoid (DPO) or ipo"),
    "label_smoothing": (float, "assumed share of flipped preference labels, in [0, 0.5)"),
    "nll_weight": (float, "weight of the NLL term on the chosen answer; 0 is plain DPO"),
}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="fine-tune a model: sft, dpo, reward or rl",
        description="Train a copy of a model with SFT, DPO, a reward model or RL, as the Align "
                    "page does, and save it as a run.")
    methods = parser.add_subparsers(dest="method", metavar="METHOD", required=True)
    for method in METHODS:
        sub = methods.add_parser(method, help=f"train with {method.upper()}")
        sub.add_argument("--preset", default=None, help="start from a named preset "
                         "(see core/train/presets.py); flags override its settings")
        flags = {**FLAGS, **(DPO_FLAGS if method == "dpo" else {})}
        for name, (kind, text) in flags.items():
            sub.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=None,
                             help=text)
        sub.add_argument("--lr", dest="learning_rate", type=float, default=None,
                         help="same as --learning-rate")
        sub.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                         help="any other config field, as JSON or text; repeatable")
        sub.add_argument("--out", default=None, help="write the checkpoint to this folder "
                         "instead of the run store")
        sub.add_argument("--name", default=None, help="display name of the run")
        sub.add_argument("--json", action="store_true", help="print the summary as JSON")
        sub.set_defaults(func=handle)


def _load(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def build_config(args: argparse.Namespace) -> dict[str, Any]:
    """Merge the preset, the flags and --set values into a job config and check it."""
    config: dict[str, Any] = {}
    if args.preset:
        from core.train.presets import PRESETS, preset_config

        if PRESETS.get(args.preset) and PRESETS[args.preset].method != args.method:
            raise ValueError(f"Preset {args.preset!r} is for {PRESETS[args.preset].method}, "
                             f"not {args.method}.")
        config = preset_config(args.preset)
    for name in {**FLAGS, **DPO_FLAGS}:
        value = getattr(args, name, None)
        if value is not None:
            config[name] = value
    for item in args.set:
        key, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r} is invalid; write KEY=VALUE, e.g. warmup_steps=2")
        try:
            config[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            config[key.strip()] = text
    from core.train.common import config_from_dict, validate_config

    validate_config(config_from_dict(_load(CONFIG_CLASSES[args.method]), config))
    return config


def format_event(event: dict[str, Any]) -> str | None:
    if "loss/train" not in event:
        return None
    parts = [f"step {event['step']:>4}", f"loss {event['loss/train']:.4f}"]
    for key in ("rewards/margins", "rewards/accuracies", "probs/chosen", "probs/completion"):
        if key in event:
            parts.append(f"{key.split('/')[1]} {event[key]:.3f}")
    if "train/tokens_per_second" in event:
        parts.append(f"{event['train/tokens_per_second']:,.0f} tok/s")
    return " | ".join(parts)


class FolderContext:
    """A job context that writes into a folder of the caller's choice (for --out)."""

    def __init__(self, output_dir: Path, on_event, on_sample):
        self.output_dir = output_dir
        self.emit, self.sample = on_event, on_sample

    @staticmethod
    def should_stop() -> bool:
        return False


def _train_into(method: str, config: dict, out: Path, on_event, on_sample) -> dict[str, Any]:
    from core import checkpoints

    run_job = _load(f"core.train.{method}:run_job")
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex}")
    tmp.mkdir(parents=True)
    try:
        result = run_job(config, FolderContext(tmp, on_event, on_sample)) or {}
        meta = {"id": out.name, "method": method, "recipe": config, **result.pop("run", {}),
                "metrics": result}
        checkpoints.write_json_atomic(tmp / checkpoints.RUN_FILE, meta)
        checkpoints.replace_dir_atomic(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"checkpoint": str(out), **result}


def handle(args: argparse.Namespace) -> int:
    try:
        config = build_config(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.name:
        config["name"] = args.name

    on_event, on_sample = progress_printers(format_event, quiet=args.json)

    from core.train.common import init_distributed, process_rank

    init_distributed()
    if process_rank()[0] != 0:  # a helper process of `accelerate launch`: train, save nothing
        scratch = Path(tempfile.mkdtemp())
        _load(f"core.train.{args.method}:run_job")(config, FolderContext(scratch, lambda e: None,
                                                                         lambda s, t: None))
        shutil.rmtree(scratch, ignore_errors=True)
        return 0
    if args.out:
        summary = _train_into(args.method, config, Path(args.out), on_event, on_sample)
    else:
        from core import jobs, store

        run_id = jobs.run_inline(args.method, config, on_event=on_event)
        summary = {"run_id": run_id, **store.read_run(run_id).get("metrics", {})}
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(f"saved {summary.get('checkpoint') or 'run ' + str(summary.get('run_id'))}")
        for key, value in summary.items():
            if isinstance(value, float):
                print(f"  {key} = {value:.4f}")
    return 0
