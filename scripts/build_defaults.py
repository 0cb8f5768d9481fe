"""Build the shipped SFT and DPO checkpoints in assets/models/ by their documented recipes.

Run from the repository root:

    .venv/bin/python scripts/build_defaults.py                 # all four, in order
    .venv/bin/python scripts/build_defaults.py --only tiny-gpt-sft --only tiny-gpt-dpo
    .venv/bin/python scripts/build_defaults.py --list          # print the recipes

Each recipe trains with the lab's own trainers (`core.train.sft`, `core.train.dpo`), starting
from the model named by `parent`. It writes a lab checkpoint: weights or a LoRA adapter, the
tokenizer, and a run.json with the recipe, data hash, metrics, the probe probabilities of the
parent and the checkpoint, and the command that rebuilds it. A checkpoint is written to a temporary folder and renamed into
place, so an interrupted build leaves the old one intact. A DPO recipe starts from the SFT
checkpoint of its family, so build SFT first (the default order does).

The shipped weights of these four checkpoints must stay within WEIGHT_BUDGET_BYTES; the
script exits with status 1 when they do not.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

WEIGHT_BUDGET_BYTES = 15 * 10**6
PROBE_PROMPT = "Two plus two equals"
PROBE_ANSWERS = (" four", " five")

# The recipes. `config` is the trainer's job config (core.train.common.SFTConfig/DPOConfig).
RECIPES: dict[str, dict] = {
    "tiny-gpt-sft": {
        "name": "tiny GPT, SFT on chat Q&A",
        "kind": "sft",
        "parent": "tiny-gpt-base",
        "config": {"dataset": "tiny-chat", "steps": 60, "batch_size": 8,
                   "learning_rate": 1e-3, "warmup_steps": 5, "max_length": 96,
                   "max_prompt_length": 64, "lora_rank": 0, "seed": 0, "sample_every": 0},
    },
    "tiny-gpt-dpo": {
        "name": "tiny GPT, DPO (with NLL term) on arithmetic truth",
        "kind": "dpo",
        "parent": "tiny-gpt-sft",
        "config": {"dataset": "arithmetic-truth", "steps": 10, "batch_size": 8,
                   "learning_rate": 5e-4, "beta": 0.1, "loss_type": "sigmoid",
                   "nll_weight": 1.0, "max_length": 64, "max_prompt_length": 48,
                   "lora_rank": 0, "seed": 0, "sample_every": 0},
    },
    "smollm2-135m-instruct-sft": {
        "name": "SmolLM2-135M-Instruct, SFT (LoRA) as a bookshop's customer assistant",
        "kind": "sft",
        "parent": "smollm2-135m-instruct",
        "config": {"dataset": "customer-assistant", "steps": 30, "batch_size": 8,
                   "learning_rate": 1e-3, "max_length": 160, "max_prompt_length": 112,
                   "lora_rank": 4, "lora_alpha": 8.0, "seed": 0, "sample_every": 0},
    },
    "smollm2-135m-instruct-dpo": {
        "name": "SmolLM2-135M-Instruct, DPO (LoRA, with NLL term) on arithmetic truth",
        "kind": "dpo",
        "parent": "smollm2-135m-instruct-sft",
        "config": {"dataset": "arithmetic-truth", "steps": 15, "batch_size": 8,
                   "learning_rate": 2e-3, "beta": 0.1, "loss_type": "sigmoid",
                   "nll_weight": 1.0, "max_length": 64, "max_prompt_length": 48,
                   "lora_rank": 4, "lora_alpha": 8.0, "seed": 0, "sample_every": 0},
    },
}


class _Context:
    """The job context the trainers expect, printing one line per step."""

    def __init__(self, output_dir: Path, device: str, checkpoint_id: str):
        self.output_dir, self.device, self.checkpoint_id = output_dir, device, checkpoint_id
        self.events: list[dict] = []
        self.started = time.perf_counter()

    def emit(self, event: dict) -> None:
        self.events.append(event)
        if "loss/train" in event:
            elapsed = time.perf_counter() - self.started
            print(f"{self.checkpoint_id} | step {event['step']:3d} | loss "
                  f"{event['loss/train']:.4f} | {elapsed:6.1f} s", flush=True)

    def sample(self, step: int, texts: list[str]) -> None:
        pass

    def should_stop(self) -> bool:
        return False


def rebuild_command(checkpoint_id: str) -> str:
    return f"python scripts/build_defaults.py --only {checkpoint_id}"


def probe(checkpoint: str) -> dict[str, float]:
    """Return P(answer | PROBE_PROMPT) for each probe answer under a checkpoint or model."""
    from core.models import load_model
    from core.train.jobs_support import answer_probabilities

    loaded = load_model(checkpoint, device="cpu")
    values = answer_probabilities(loaded.model, loaded.tokenizer,
                                  [PROBE_PROMPT] * len(PROBE_ANSWERS), list(PROBE_ANSWERS))
    return dict(zip(PROBE_ANSWERS, values))


def build(checkpoint_id: str, device: str | None) -> Path:
    """Train one recipe and write its checkpoint to assets/models/<checkpoint_id>."""
    from core import checkpoints, paths
    from core.jobs import resolve_kind, run_meta

    recipe = RECIPES[checkpoint_id]
    config = {"model": recipe["parent"], **recipe["config"]}
    target = paths.SHIPPED_MODELS_DIR / checkpoint_id
    staging = target.with_name(f".{checkpoint_id}.build-{uuid.uuid4().hex}")
    (staging / "output").mkdir(parents=True)
    try:
        ctx = _Context(staging / "output", device or "cpu", checkpoint_id)
        if device:
            config["device"] = device
        result = resolve_kind(recipe["kind"])(config, ctx)
        meta = run_meta(recipe["kind"], config, result, owner="scripts/build_defaults.py")
        meta.update({"id": checkpoint_id, "name": recipe["name"],
                     "rebuild": rebuild_command(checkpoint_id),
                     "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        meta.pop("owner", None)
        meta["recipe"].pop("device", None)
        checkpoints.write_json_atomic(ctx.output_dir / checkpoints.RUN_FILE, meta)
        strip_local_paths(ctx.output_dir, recipe["parent"])
        checkpoints.replace_dir_atomic(ctx.output_dir, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def record_probe(folder: Path, before: dict[str, float], after: dict[str, float]) -> None:
    """Add the parent's and the checkpoint's probe probabilities to run.json."""
    from core import checkpoints

    meta = json.loads((folder / checkpoints.RUN_FILE).read_text(encoding="utf-8"))
    meta["probe"] = {"prompt": PROBE_PROMPT, "parent": before, "checkpoint": after}
    checkpoints.write_json_atomic(folder / checkpoints.RUN_FILE, meta)


def strip_local_paths(folder: Path, parent: str) -> None:
    """Remove this machine's paths that peft writes into an adapter folder.

    peft stores the base model's folder (a cache path here) in adapter_config.json and in a
    generated model card. The lab loads an adapter on top of run.json's `parent`, so the
    config gets the parent's name and the card is dropped.
    """
    from core import checkpoints

    (folder / "README.md").unlink(missing_ok=True)
    config_path = folder / "adapter_config.json"
    if config_path.is_file():
        config = json.loads(config_path.read_text(encoding="utf-8"))
        config["base_model_name_or_path"] = parent
        checkpoints.write_json_atomic(config_path, config)


def weights_total(ids: list[str]) -> int:
    from core import checkpoints, paths

    total = 0
    for checkpoint_id in ids:
        folder = paths.SHIPPED_MODELS_DIR / checkpoint_id
        if folder.is_dir():
            total += checkpoints.weights_size_bytes(folder)
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=list(RECIPES),
                        help="build only this checkpoint (repeatable); default: all, in order")
    parser.add_argument("--list", action="store_true", help="print the recipes as JSON and exit")
    parser.add_argument("--device", default=None, help="cpu, cuda or mps; default: automatic")
    args = parser.parse_args(argv)
    if args.list:
        print(json.dumps(RECIPES, indent=2))
        return 0

    for checkpoint_id in args.only or list(RECIPES):
        started = time.perf_counter()
        folder = build(checkpoint_id, args.device)
        parent = RECIPES[checkpoint_id]["parent"]
        before, after = probe(parent), probe(checkpoint_id)
        record_probe(folder, before, after)
        print(f"{checkpoint_id}: built in {time.perf_counter() - started:.0f} s -> {folder}")
        for answer in PROBE_ANSWERS:
            print(f"  P({answer!r} | {PROBE_PROMPT!r}): {parent} {before[answer]:.3f} -> "
                  f"{checkpoint_id} {after[answer]:.3f}")

    total = weights_total(list(RECIPES))
    print(f"weights of the shipped SFT and DPO checkpoints: {total / 1e6:.1f} MB "
          f"(budget {WEIGHT_BUDGET_BYTES / 1e6:.0f} MB)")
    if total > WEIGHT_BUDGET_BYTES:
        print("error: the shipped weights exceed the budget; lower the LoRA rank or model size",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
